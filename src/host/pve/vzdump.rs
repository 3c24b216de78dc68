//! What `vzdump` says about a backup, read back wherever it runs: its output on a node
//! (the local `pve` backend), its task's log over the API.
//!
//! | line | meaning |
//! |---|---|
//! | `INFO: creating vzdump archive '<target>'` (`Proxmox Backup Server archive` on one) | the archive: a path in the storage's `dump/` directory, which is the volume `<storage>:backup/<file name>`; on a Proxmox Backup Server a snapshot name, the volume `<storage>:backup/<name>` [pve-manager VZDump.pm exec_backup_task] |
//! | `ERROR: Backup of VM <vmid> failed - <why>` | one guest's failure; the task itself then ends `job errors` [pve-manager VZDump.pm exec_backup] |
//!
//! The model prints the volume id itself (`<storage>:backup/<file>`), which reads the same.

/// The archive a backup made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Archive {
    /// As a volume of the storage it went to (`local:backup/vzdump-lxc-…`).
    pub volid: String,
    /// The file on the node, when vzdump named one.
    pub path: Option<String>,
}

/// The archive a backup to `storage` made, from vzdump's lines.
pub fn archive<'a>(lines: impl IntoIterator<Item = &'a str>, storage: &str) -> Option<Archive> {
    let target = lines.into_iter().find_map(|l| {
        l.split_once("INFO: creating ")
            .and_then(|(_, rest)| rest.split_once(" archive '"))
            .and_then(|(_, rest)| rest.trim_end().strip_suffix('\''))
    })?;
    let own = format!("{storage}:backup/");
    Some(if target.starts_with(&own) {
        Archive {
            volid: target.to_string(),
            path: None,
        }
    } else if target.starts_with('/') {
        let file = target.rsplit('/').next().unwrap_or(target);
        Archive {
            volid: format!("{own}{file}"),
            path: Some(target.to_string()),
        }
    } else {
        Archive {
            volid: format!("{own}{target}"),
            path: None,
        }
    })
}

/// Why the backup failed, as vzdump logged it for the guest (`Backup of VM <vmid> failed
/// - <why>`), when it did.
pub fn failure<'a>(lines: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    lines.into_iter().find_map(|l| {
        let text = l.split_once("ERROR: ").map(|(_, t)| t)?;
        text.starts_with("Backup of VM ").then_some(text.trim_end())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_archive_is_a_volume_of_the_storage_it_went_to() {
        let node = [
            "INFO: starting new backup job: vzdump 910 --mode stop --storage local",
            "INFO: creating vzdump archive '/var/lib/vz/dump/vzdump-lxc-910-2026_12_04-15_00_00.tar'",
            "INFO: archive file size: 1.2GB",
        ];
        assert_eq!(
            archive(node, "local"),
            Some(Archive {
                volid: "local:backup/vzdump-lxc-910-2026_12_04-15_00_00.tar".into(),
                path: Some("/var/lib/vz/dump/vzdump-lxc-910-2026_12_04-15_00_00.tar".into()),
            })
        );
        let model = ["INFO: creating vzdump archive 'local:backup/vzdump-lxc-910-x.tar'"];
        assert_eq!(
            archive(model, "local").map(|a| a.volid).as_deref(),
            Some("local:backup/vzdump-lxc-910-x.tar")
        );
        let pbs = ["INFO: creating Proxmox Backup Server archive 'ct/910/2026-12-04T15:00:00Z'"];
        assert_eq!(
            archive(pbs, "pbs").map(|a| a.volid).as_deref(),
            Some("pbs:backup/ct/910/2026-12-04T15:00:00Z")
        );
        assert_eq!(archive(["INFO: Finished Backup of VM 910"], "local"), None);
    }

    #[test]
    fn a_failure_is_the_guests_error_line() {
        let log = [
            "INFO: Starting Backup of VM 910 (lxc)",
            "ERROR: Backup of VM 910 failed - unable to find VM '910'",
            "INFO: Backup job finished with errors",
            "TASK ERROR: job errors",
        ];
        assert_eq!(
            failure(log),
            Some("Backup of VM 910 failed - unable to find VM '910'")
        );
        assert_eq!(failure(["TASK ERROR: job errors"]), None);
    }
}
