//! What `pct` prints: `config`, `list`, `listsnapshot`, `status` [PCT, GH
//! print_snapshot_tree] — written by the front-end, read back by the `pve` backend.

use std::collections::BTreeMap;

use super::conf::{ConfFile, Section};
use crate::host::{CtInfo, SnapshotInfo};

/// `pct config`: every key sorted, `key: value`, skipping `digest`; the description
/// URI-escaped on one line; then the raw `lxc.*` entries in file order. `pending`: with
/// the `[pve:pending]` values merged in (the default; `--current` shows without).
pub fn config(section: &Section, pending: Option<&Section>) -> String {
    let mut keys: BTreeMap<String, String> = section
        .keys()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    if let Some(p) = pending {
        for (k, v) in p.keys() {
            if k == "delete" {
                for d in v.split(',') {
                    keys.remove(d.trim());
                }
            } else {
                keys.insert(k.to_string(), v.to_string());
            }
        }
    }
    keys.remove("digest");
    let description = section.description();
    if !description.is_empty() {
        keys.insert("description".into(), description);
    }
    let mut out = String::new();
    for (k, v) in &keys {
        let v = if k == "description" {
            escape(v)
        } else {
            v.clone()
        };
        out.push_str(&format!("{k}: {v}\n"));
    }
    for (k, v) in section.lxc() {
        out.push_str(&format!("{k}: {v}\n"));
    }
    out
}

/// `pct config [--current] [--snapshot <name>]` of a config file.
pub fn config_of(conf: &ConfFile, current: bool, snapshot: Option<&str>) -> Result<String, String> {
    match snapshot {
        Some(name) => conf
            .snapshot(name)
            .map(|s| config(s, None))
            .ok_or_else(|| format!("snapshot '{name}' does not exist")),
        None => Ok(config(
            conf.main(),
            if current { None } else { conf.pending() },
        )),
    }
}

/// Control characters, `:` and `%` as `%XX` [pve-common ParseUtils encode_text].
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for c in v.chars() {
        if c == ':' || c == '%' || c.is_control() {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// `pct list`: a header and one row per CT sorted by id, `%-10s %-10s %-12s %-20s`;
/// nothing at all for a node without CTs.
pub fn list<'a>(cts: impl IntoIterator<Item = &'a CtInfo>) -> String {
    let mut out = String::new();
    for (i, ct) in cts.into_iter().enumerate() {
        if i == 0 {
            out.push_str(&format!(
                "{:<10} {:<10} {:<12} {:<20}\n",
                "VMID", "Status", "Lock", "Name"
            ));
        }
        out.push_str(&format!(
            "{:<10} {:<10} {:<12} {:<20}\n",
            ct.ctid,
            status_word(ct),
            ct.lock.as_deref().unwrap_or(""),
            ct.hostname()
        ));
    }
    out
}

pub fn status_word(ct: &CtInfo) -> &'static str {
    if ct.running {
        "running"
    } else {
        "stopped"
    }
}

/// `pct status`: `status: running|stopped`.
pub fn status(ct: &CtInfo) -> String {
    format!("status: {}\n", status_word(ct))
}

/// `pct listsnapshot`: the tree of snapshots with `current` under its parent,
/// `printf("%s %-Ls %-23s %s\n")` with `L = 30 - length(prefix)`; siblings by time; the
/// first line of a description, or `no-description`.
pub fn snapshot_tree(ct: &CtInfo, time: &dyn Fn(u64) -> String) -> String {
    let mut children: BTreeMap<Option<String>, Vec<&SnapshotInfo>> = BTreeMap::new();
    for s in &ct.snapshots {
        children.entry(s.parent.clone()).or_default().push(s);
    }
    let mut out = String::new();
    // Depth-first, children in time order; `current` after the children of its parent.
    fn walk(
        out: &mut String,
        parent: Option<String>,
        depth: usize,
        children: &BTreeMap<Option<String>, Vec<&SnapshotInfo>>,
        ct: &CtInfo,
        time: &dyn Fn(u64) -> String,
    ) {
        let prefix = format!("{}`->", " ".repeat(depth));
        let width = 30usize.saturating_sub(prefix.len());
        let mut kids = children.get(&parent).cloned().unwrap_or_default();
        kids.sort_by_key(|s| s.snaptime);
        for s in kids {
            let desc = s
                .description
                .lines()
                .next()
                .filter(|l| !l.is_empty())
                .unwrap_or("no-description");
            out.push_str(&format!(
                "{prefix} {:<width$} {:<23} {desc}\n",
                s.name,
                time(s.snaptime)
            ));
            walk(out, Some(s.name.clone()), depth + 1, children, ct, time);
        }
        if parent == ct.parent_snapshot {
            out.push_str(&format!(
                "{prefix} {:<width$} {:<23} You are here!\n",
                "current", ""
            ));
        }
    }
    walk(&mut out, None, 0, &children, ct, time);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::Settings;

    fn ct(snaps: &[(&str, Option<&str>, u64, &str)], parent: Option<&str>) -> CtInfo {
        CtInfo {
            ctid: 100,
            running: false,
            lock: None,
            template: false,
            unprivileged: true,
            settings: Settings::default(),
            disk_gb: None,
            passthrough: Default::default(),
            snapshots: snaps
                .iter()
                .map(|(n, p, t, d)| SnapshotInfo {
                    name: n.to_string(),
                    parent: p.map(str::to_string),
                    snaptime: *t,
                    description: d.to_string(),
                })
                .collect(),
            parent_snapshot: parent.map(str::to_string),
            root_volume: None,
            unreadable: None,
            node: None,
            storage: None,
        }
    }

    #[test]
    fn listsnapshot_prints_pves_tree() {
        // pct-spec §1 listsnapshot.
        let c = ct(
            &[
                ("s1", None, 1_704_103_200, ""),
                ("s2", Some("s1"), 1_704_106_800, "before upgrade\nmore"),
            ],
            Some("s2"),
        );
        assert_eq!(
            snapshot_tree(&c, &crate::os::utc),
            "`-> s1                          2024-01-01 10:00:00     no-description\n \
             `-> s2                         2024-01-01 11:00:00     before upgrade\n  \
             `-> current                                           You are here!\n"
        );
        assert_eq!(
            snapshot_tree(&ct(&[], None), &crate::os::utc),
            format!("`-> {:<27} {:<23} You are here!\n", "current", "")
        );
    }

    #[test]
    fn config_is_sorted_with_escaped_description_then_raw_lines() {
        let conf = ConfFile::parse(
            "#a: 50%\n#b\nhostname: web01\narch: amd64\nparent: s1\nlxc.cgroup2.devices.allow: c 195:* rwm\n\n[pve:pending]\nmemory: 1024\n",
        )
        .unwrap();
        assert_eq!(
            config_of(&conf, false, None).unwrap(),
            "arch: amd64\ndescription: a%3A 50%25%0Ab\nhostname: web01\nmemory: 1024\nparent: s1\nlxc.cgroup2.devices.allow: c 195:* rwm\n"
        );
        assert!(!config_of(&conf, true, None).unwrap().contains("memory"));
        assert_eq!(
            config_of(&conf, false, Some("nope")).unwrap_err(),
            "snapshot 'nope' does not exist"
        );
    }

    #[test]
    fn list_pads_like_printf() {
        let mut c = ct(&[], None);
        c.settings.hostname = Some("web01".into());
        assert_eq!(
            list([&c]),
            "VMID       Status     Lock         Name                \n100        stopped                 web01               \n"
        );
        assert_eq!(list(std::iter::empty()), "");
    }
}
