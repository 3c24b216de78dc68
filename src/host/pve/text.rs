//! Proxmox's error texts (pct-spec §0–§5), each with the [`ErrorKind`] phoenix decides on.
//! The model writes them, the `pct` front-end prints them, and [`classify`] reads them
//! back from a real `pct`'s stderr: one place for the words.

use crate::host::{Ctid, ErrorKind, HostError};

fn err(kind: ErrorKind, message: String) -> HostError {
    HostError::new(kind, message)
}

/// `Configuration file 'nodes/<node>/lxc/<vmid>.conf' does not exist` [ABS load_config].
pub fn config_missing(node: &str, ctid: Ctid) -> HostError {
    err(
        ErrorKind::NotFound,
        format!("Configuration file 'nodes/{node}/lxc/{ctid}.conf' does not exist"),
    )
}

/// `CT is locked (<lock>)` [ABS check_lock].
pub fn locked(lock: &str) -> HostError {
    err(ErrorKind::Locked, format!("CT is locked ({lock})"))
}

/// The config file lock was not had within 10 s [PTOOLS lock_file_full].
pub fn lock_timeout(path: &str) -> HostError {
    err(
        ErrorKind::LockTimeout,
        format!("can't lock file '{path}' - got timeout"),
    )
}

/// `CT <vmid> already exists on node '<node>'` [CLU check_vmid_unused].
pub fn already_exists(ctid: Ctid, node: &str) -> HostError {
    err(
        ErrorKind::Exists,
        format!("CT {ctid} already exists on node '{node}'"),
    )
}

/// `VM <vmid> already exists on node '<node>'`: a QEMU guest has the VMID [CLU
/// check_vmid_unused].
pub fn vm_already_exists(vmid: Ctid, node: &str) -> HostError {
    err(
        ErrorKind::Exists,
        format!("VM {vmid} already exists on node '{node}'"),
    )
}

/// `pct create` on a storage without `rootdir` content: a parameter error [A-LXC
/// create_vm].
pub fn no_rootdir(storage: &str) -> HostError {
    err(
        ErrorKind::Invalid,
        format!("400 Parameter verification failed.\nstorage: storage '{storage}' does not support container directories"),
    )
}

/// The OS template is not on its storage [STOR abs_filesystem_path].
pub fn no_such_file(volid: &str) -> HostError {
    err(ErrorKind::Failed, format!("can't find file '{volid}'"))
}

/// `pct clone` [A-LXC clone_vm], in the order it checks.
pub fn clone_storage_linked() -> HostError {
    err(
        ErrorKind::Invalid,
        "parameter 'storage' not allowed for linked clones".into(),
    )
}

pub fn clone_running_full() -> HostError {
    err(
        ErrorKind::Invalid,
        "Full clone of a running container is only possible from a snapshot".into(),
    )
}

pub fn clone_linked_unavailable(volid: &str) -> HostError {
    err(
        ErrorKind::Invalid,
        format!("Linked clone feature for '{volid}' is not available"),
    )
}

/// `pct template`'s checks [A-LXC template] and its worker's [LXC template_create].
pub fn template_with_snapshots() -> HostError {
    err(
        ErrorKind::Invalid,
        "unable to create template, because CT contains snapshots".into(),
    )
}

pub fn template_of_template() -> HostError {
    err(
        ErrorKind::Invalid,
        "you can't convert a template to a template".into(),
    )
}

pub fn template_running() -> HostError {
    err(
        ErrorKind::Running,
        "you can't convert a CT to template if the CT is running".into(),
    )
}

pub fn template_unavailable(volid: &str) -> HostError {
    err(
        ErrorKind::Failed,
        format!("Template feature is not available for '{volid}'"),
    )
}

/// Destroying a template whose base volume linked clones use [STOR vdisk_free].
pub fn base_in_use(volname: &str) -> HostError {
    err(
        ErrorKind::Failed,
        format!("base volume '{volname}' is still in use by linked clones"),
    )
}

pub fn already_running(ctid: Ctid) -> HostError {
    err(ErrorKind::Running, format!("CT {ctid} already running"))
}

/// shutdown/stop of a CT that is not running (also when it does not exist) [A-ST].
pub fn not_running(ctid: Ctid) -> HostError {
    err(ErrorKind::NotRunning, format!("CT {ctid} not running"))
}

/// `pct exec` of a stopped CT [PCT exec].
pub fn exec_not_running(ctid: Ctid) -> HostError {
    err(
        ErrorKind::NotRunning,
        format!("container '{ctid}' not running!"),
    )
}

pub fn push_not_running() -> HostError {
    err(
        ErrorKind::NotRunning,
        "can only push files to a running CT".into(),
    )
}

pub fn pull_not_running() -> HostError {
    err(
        ErrorKind::NotRunning,
        "can only pull files from a running VM".into(),
    )
}

pub fn destroy_running(ctid: Ctid) -> HostError {
    err(
        ErrorKind::Running,
        format!("unable to destroy CT {ctid} - container is running"),
    )
}

pub fn snapshot_missing(name: &str) -> HostError {
    err(
        ErrorKind::NotFound,
        format!("snapshot '{name}' does not exist"),
    )
}

pub fn snapshot_used(name: &str) -> HostError {
    err(
        ErrorKind::Exists,
        format!("snapshot name '{name}' already used"),
    )
}

/// The first failing check of `pct snapshot`'s name [A-SNAP, JS check_prop: format, then
/// length].
pub fn bad_snapshot_name(name: &str) -> Option<HostError> {
    if name == "current" || name == "vzdump" {
        return Some(err(
            ErrorKind::Invalid,
            format!("unable to use snapshot name '{name}' (reserved name)"),
        ));
    }
    if crate::fleet::config::is_valid_snapshot_name(name) {
        return None;
    }
    let valid_format = {
        let mut c = name.chars();
        c.next().is_some_and(|c| c.is_ascii_alphabetic())
            && name.len() >= 2
            && c.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    };
    Some(err(
        ErrorKind::Invalid,
        if valid_format {
            "400 Parameter verification failed.\nsnapname: value may only be 40 characters long"
                .to_string()
        } else {
            format!("400 Parameter verification failed.\nsnapname: invalid format - invalid configuration ID '{name}'")
        },
    ))
}

pub fn template_start() -> HostError {
    err(
        ErrorKind::Invalid,
        "you can't start a CT if it's a template".into(),
    )
}

pub fn template_snapshot() -> HostError {
    err(
        ErrorKind::Invalid,
        "you can't take a snapshot if it's a template".into(),
    )
}

/// ZFS rolls back only to the newest snapshot [ZFS volume_rollback_is_possible].
pub fn rollback_not_latest(name: &str, volid: &str) -> HostError {
    err(
        ErrorKind::Invalid,
        format!("can't rollback, '{name}' is not most recent snapshot on '{volid}'"),
    )
}

pub fn no_lock() -> HostError {
    err(
        ErrorKind::Invalid,
        "no lock found trying to remove any lock".into(),
    )
}

pub fn read_only_option(key: &str) -> HostError {
    err(
        ErrorKind::Invalid,
        format!("unable to modify read-only option: '{key}'"),
    )
}

pub fn no_options() -> HostError {
    err(ErrorKind::Invalid, "no options specified".into())
}

pub fn unknown_storage(storage: &str) -> HostError {
    err(
        ErrorKind::Invalid,
        format!("storage '{storage}' does not exist"),
    )
}

/// A node name the cluster does not have [CLU check_node_exists].
pub fn no_such_node(node: &str) -> HostError {
    err(ErrorKind::Invalid, format!("no such cluster node '{node}'"))
}

/// A storage that `storage.cfg` restricts to other nodes (`nodes`), or disables
/// [STOR storage_check_enabled].
pub fn storage_unavailable(storage: &str, node: &str) -> HostError {
    err(
        ErrorKind::Invalid,
        format!("storage '{storage}' is not available on node '{node}'"),
    )
}

/// `pct migrate` of a running CT without `--restart` [A-LXC migrate_vm].
pub fn migrate_running() -> HostError {
    err(
        ErrorKind::Running,
        "can't migrate running container without --online or --restart".into(),
    )
}

/// `pct migrate` to the node the CT is on [A-LXC migrate_vm].
pub fn migrate_local() -> HostError {
    err(
        ErrorKind::Invalid,
        "400 Parameter verification failed.\ntarget: target is local node.".into(),
    )
}

/// A migration that cannot move one of the CT's volumes: Proxmox logs each reason and
/// ends the task with this [LXC Migrate.pm phase1].
pub fn migrate_aborted(reasons: &[String]) -> HostError {
    err(
        ErrorKind::Failed,
        format!(
            "{}can't migrate CT - check log",
            reasons
                .iter()
                .map(|r| format!("can't migrate local volume {r}; "))
                .collect::<String>()
        ),
    )
}

/// `pct clone --target` into a storage that is not shared [A-LXC clone_vm].
pub fn clone_target_not_shared(storage: &str) -> HostError {
    err(
        ErrorKind::Invalid,
        format!("can't clone to non-shared storage '{storage}'"),
    )
}

/// `pct clone --target` of a CT whose disk would stay on local storage [A-LXC clone_vm].
pub fn clone_target_local(node: &str) -> HostError {
    err(
        ErrorKind::Invalid,
        format!("can't clone CT to node '{node}' (CT uses local storage)"),
    )
}

pub fn shrink() -> HostError {
    err(ErrorKind::Invalid, "unable to shrink disk size".into())
}

/// The kind of a Proxmox error text, as a real `pct` prints it on stderr.
pub fn classify(message: &str) -> ErrorKind {
    let has = |s: &str| message.contains(s);
    if has("CT is locked") {
        ErrorKind::Locked
    } else if (has("can't lock file") && has("got timeout")) || has("trying to acquire lock") {
        ErrorKind::LockTimeout
    } else if has("Configuration file") && has("does not exist") {
        ErrorKind::NotFound
    } else if has("already exists on node") || has("already used") {
        ErrorKind::Exists
    } else if has("not running") || has("from a running") || has("to a running") {
        ErrorKind::NotRunning
    } else if has("already running")
        || has("container is running")
        || has("CT is running")
        || has("migrate running container")
    {
        ErrorKind::Running
    } else if has("400 ")
        || has("reserved name")
        || has("read-only option")
        || has("not allowed for linked clones")
        || has("only possible from a snapshot")
        || has("Linked clone feature")
        || has("to a template")
        || has("CT contains snapshots")
        || has("no such cluster node")
        || has("is not available on node")
        || has("non-shared storage")
        || has("(CT uses local storage)")
    {
        ErrorKind::Invalid
    } else {
        ErrorKind::Failed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every text this module writes reads back as its own kind.
    #[test]
    fn texts_classify_as_their_kind() {
        let all = [
            config_missing("pve", 100),
            locked("disk"),
            lock_timeout("/run/lock/lxc/pve-config-100.lock"),
            already_exists(100, "pve"),
            no_such_node("pve9"),
            storage_unavailable("local-zfs", "pve2"),
            migrate_running(),
            migrate_local(),
            clone_target_not_shared("local-zfs"),
            clone_target_local("pve2"),
            already_running(100),
            not_running(100),
            exec_not_running(100),
            push_not_running(),
            pull_not_running(),
            destroy_running(100),
            snapshot_used("s1"),
            bad_snapshot_name("2024-01-01").unwrap(),
            bad_snapshot_name(&"a".repeat(41)).unwrap(),
            bad_snapshot_name("vzdump").unwrap(),
            read_only_option("unprivileged"),
            vm_already_exists(100, "pve"),
            no_rootdir("local"),
            no_such_file("local:vztmpl/x.tar.zst"),
            clone_storage_linked(),
            clone_running_full(),
            clone_linked_unavailable("local-zfs:subvol-100-disk-0"),
            template_with_snapshots(),
            template_of_template(),
            template_running(),
            template_unavailable("local:100/subvol-100-disk-0.subvol"),
            base_in_use("basevol-100-disk-0"),
        ];
        for e in all {
            assert_eq!(classify(&e.message), e.kind, "{}", e.message);
        }
        assert!(ErrorKind::Locked.is_transient());
        assert!(ErrorKind::LockTimeout.is_transient());
        assert!(!classify("snapshot feature is not available").is_transient());
    }

    #[test]
    fn snapshot_name_errors_follow_pves_check_order() {
        assert!(bad_snapshot_name("phx-0123").is_none());
        assert!(bad_snapshot_name("2024-01-01")
            .unwrap()
            .message
            .ends_with("invalid configuration ID '2024-01-01'"));
        assert!(bad_snapshot_name(&"a".repeat(41))
            .unwrap()
            .message
            .ends_with("value may only be 40 characters long"));
    }
}
