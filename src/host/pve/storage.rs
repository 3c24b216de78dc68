//! `/etc/pve/storage.cfg`: the node's storages, as far as CT disks need them.
//!
//! ```text
//! dir: local
//!     path /var/lib/vz
//!     content iso,vztmpl,backup
//!
//! zfspool: local-zfs
//!     pool rpool/data
//!     sparse
//!     content images,rootdir
//! ```
//!
//! A section starts with `<type>: <id>` at the start of a line; its properties follow,
//! indented, `key value` (a key alone is a boolean) [STOR, pve-storage `SectionConfig`].

use std::collections::BTreeMap;

/// What Proxmox's installer writes for a ZFS root: the storages the example fleet names.
pub const DEFAULT_STORAGE_CFG: &str = "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\nzfspool: local-zfs\n\tpool rpool/data\n\tsparse\n\tcontent images,rootdir\n";

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Storage {
    pub id: String,
    /// `dir`, `zfspool`, `lvmthin`, ...
    pub kind: String,
    pub properties: BTreeMap<String, String>,
}

impl Storage {
    /// Content types it holds (`rootdir`, `images`, `vztmpl`, ...).
    pub fn content(&self) -> Vec<&str> {
        self.properties
            .get("content")
            .map(|c| c.split(',').map(str::trim).collect())
            .unwrap_or_default()
    }
    pub fn holds(&self, content: &str) -> bool {
        self.content().contains(&content)
    }
}

/// Parses storage.cfg; `Err` names the line that cannot be read.
pub fn parse(text: &str) -> Result<BTreeMap<String, Storage>, String> {
    let mut out = BTreeMap::new();
    let mut current: Option<Storage> = None;
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        if line.starts_with(char::is_whitespace) {
            let Some(s) = current.as_mut() else {
                return Err(format!("line {}: property outside a storage", i + 1));
            };
            let line = line.trim();
            let (k, v) = line.split_once(char::is_whitespace).unwrap_or((line, "1"));
            s.properties.insert(k.to_string(), v.trim().to_string());
        } else {
            let Some((kind, id)) = line.split_once(':') else {
                return Err(format!("line {}: expected `<type>: <id>`", i + 1));
            };
            if let Some(s) = current.take() {
                out.insert(s.id.clone(), s);
            }
            current = Some(Storage {
                id: id.trim().to_string(),
                kind: kind.trim().to_string(),
                properties: BTreeMap::new(),
            });
        }
    }
    if let Some(s) = current {
        out.insert(s.id.clone(), s);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_installers_default() {
        let s = parse(DEFAULT_STORAGE_CFG).unwrap();
        assert_eq!(s["local"].kind, "dir");
        assert!(s["local"].holds("vztmpl"));
        assert_eq!(s["local-zfs"].properties["pool"], "rpool/data");
        assert_eq!(s["local-zfs"].properties["sparse"], "1");
        assert!(s["local-zfs"].holds("rootdir"));
        assert!(parse("\tpool x\n").is_err());
    }
}
