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
use std::path::{Path, PathBuf};

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

impl Storage {
    /// The directory a file-based storage keeps its files in: its `path`, or
    /// `/mnt/pve/<id>` for network file storages that leave it to Proxmox [SPLUG].
    pub fn dir(&self) -> Option<PathBuf> {
        match (self.properties.get("path"), self.kind.as_str()) {
            (Some(p), _) => Some(PathBuf::from(p)),
            (None, "nfs" | "cifs" | "cephfs" | "glusterfs") => {
                Some(PathBuf::from(format!("/mnt/pve/{}", self.id)))
            }
            _ => None,
        }
    }
}

/// Storage types whose template volumes Proxmox clones linked, without copying: ZFS
/// (`zfs clone` of the base's `@__base__`), LVM-thin, Ceph RBD and btrfs
/// [pve-storage `volume_has_feature` clone/base]. A `dir` storage links only qcow2 images,
/// which CT disks never are.
pub const LINKED_CLONE_TYPES: &[&str] = &["zfspool", "lvmthin", "rbd", "btrfs"];

/// Whether a template's CT disk on storage `id` is cloned linked (false for a storage that
/// is not in `storage.cfg`: the preflight names that).
pub fn links_clones(storages: &BTreeMap<String, Storage>, id: &str) -> bool {
    storages
        .get(id)
        .is_some_and(|s| LINKED_CLONE_TYPES.contains(&s.kind.as_str()))
}

/// Why a CT's root disk cannot go on storage `id`, if it cannot: the storage is not in
/// `storage.cfg`, or does not hold container disks (`rootdir`).
pub fn check_rootdir(storages: &BTreeMap<String, Storage>, id: &str) -> Result<(), String> {
    let Some(s) = storages.get(id) else {
        let known: Vec<&str> = storages.keys().map(String::as_str).collect();
        return Err(format!(
            "storage '{id}' does not exist in /etc/pve/storage.cfg (it has: {}): set storage_pool to one of them, or add it with `pvesm add`",
            known.join(", ")
        ));
    };
    if !s.holds("rootdir") {
        return Err(format!(
            "storage '{id}' does not hold container disks (content: {}): pick a storage_pool with `rootdir` content, or add it with `pvesm set {id} --content {},rootdir`",
            s.content().join(","),
            s.content().join(",")
        ));
    }
    Ok(())
}

/// Where `pct create` finds an OS template: a volume `<storage>:vztmpl/<file>` is
/// `<storage dir>/template/cache/<file>`, anything else a path on the host [A-LXC
/// create_vm]. Host paths are taken under `root`. `Err` says why it cannot be found.
pub fn ostemplate_path(
    storages: &BTreeMap<String, Storage>,
    root: &Path,
    ostemplate: &str,
) -> Result<PathBuf, String> {
    let under_root = |p: &Path| root.join(p.strip_prefix("/").unwrap_or(p));
    let (id, file) = match ostemplate.split_once(':') {
        Some((id, rest)) if !ostemplate.starts_with('/') => {
            let file = rest.strip_prefix("vztmpl/").ok_or_else(|| {
                format!("OS template '{ostemplate}' is not a template volume: write `{id}:vztmpl/<file>`")
            })?;
            (id, file)
        }
        _ if ostemplate.starts_with('/') => return Ok(under_root(Path::new(ostemplate))),
        _ => {
            return Err(format!(
                "OS template '{ostemplate}' is neither a volume (`local:vztmpl/<file>`) nor an absolute path"
            ))
        }
    };
    let s = storages.get(id).ok_or_else(|| {
        format!("OS template {ostemplate}: storage '{id}' does not exist in /etc/pve/storage.cfg")
    })?;
    if !s.holds("vztmpl") {
        return Err(format!(
            "OS template {ostemplate}: storage '{id}' does not hold container templates (content: {})",
            s.content().join(",")
        ));
    }
    let dir = s.dir().ok_or_else(|| {
        format!(
            "OS template {ostemplate}: storage '{id}' is of type '{}', which keeps no template files",
            s.kind
        )
    })?;
    Ok(under_root(&dir).join("template/cache").join(file))
}

/// Why `pct create` cannot use `ostemplate`, if it cannot: it does not resolve, or its
/// file is missing.
pub fn check_ostemplate(
    storages: &BTreeMap<String, Storage>,
    root: &Path,
    ostemplate: &str,
) -> Result<(), String> {
    let path = ostemplate_path(storages, root, ostemplate)?;
    if path.is_file() {
        return Ok(());
    }
    let fetch = match ostemplate.split_once(':') {
        Some((id, rest)) if !ostemplate.starts_with('/') => format!(
            "download it with `pveam update && pveam download {id} {}`",
            rest.trim_start_matches("vztmpl/")
        ),
        _ => "put the file there or point `template` at one that exists".to_string(),
    };
    Err(format!(
        "OS template {ostemplate} is not on the host ({} is missing): {fetch}",
        path.display()
    ))
}

/// Reads `<root>/etc/pve/storage.cfg`.
pub fn read(root: &Path) -> Result<BTreeMap<String, Storage>, String> {
    let path = root.join("etc/pve/storage.cfg");
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    parse(&text).map_err(|e| format!("{}: {e}", path.display()))
}

/// The preflight of a CT's disk on the node under `root`: [`check_rootdir`] and, for a
/// CT made from an OS template, [`check_ostemplate`]; what both find.
pub fn check(root: &Path, storage: &str, ostemplate: Option<&str>) -> Vec<String> {
    let storages = match read(root) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let mut problems: Vec<String> = check_rootdir(&storages, storage)
        .err()
        .into_iter()
        .collect();
    if let Some(t) = ostemplate {
        problems.extend(check_ostemplate(&storages, root, t).err());
    }
    problems
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

    #[test]
    fn linked_clones_where_proxmox_makes_them() {
        let s = parse(&format!(
            "{DEFAULT_STORAGE_CFG}\nlvmthin: thin\n\tvgname pve\n\tthinpool data\n\tcontent rootdir\n"
        ))
        .unwrap();
        assert!(links_clones(&s, "local-zfs"));
        assert!(links_clones(&s, "thin"));
        assert!(!links_clones(&s, "local"), "dir");
        assert!(!links_clones(&s, "tank"), "unknown");
    }

    #[test]
    fn checks_a_ct_disk_storage() {
        let s = parse(DEFAULT_STORAGE_CFG).unwrap();
        assert_eq!(check_rootdir(&s, "local-zfs"), Ok(()));
        let e = check_rootdir(&s, "local").unwrap_err();
        assert!(
            e.contains("does not hold container disks (content: iso,vztmpl,backup)"),
            "{e}"
        );
        let e = check_rootdir(&s, "tank").unwrap_err();
        assert!(
            e.contains("storage 'tank' does not exist") && e.contains("local, local-zfs"),
            "{e}"
        );
    }

    #[test]
    fn finds_os_templates_by_volume_or_path() {
        let t = tempfile::tempdir().unwrap();
        let s = parse(DEFAULT_STORAGE_CFG).unwrap();
        let vol = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";
        let path = ostemplate_path(&s, t.path(), vol).unwrap();
        assert_eq!(
            path,
            t.path()
                .join("var/lib/vz/template/cache/debian-12-standard_12.7-1_amd64.tar.zst")
        );
        let e = check_ostemplate(&s, t.path(), vol).unwrap_err();
        assert!(
            e.contains("pveam download local debian-12-standard_12.7-1_amd64.tar.zst"),
            "{e}"
        );
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "").unwrap();
        assert_eq!(check_ostemplate(&s, t.path(), vol), Ok(()));

        let abs = "/fastData/shared-iso/template/cache/ubuntu.tar.zst";
        assert_eq!(
            ostemplate_path(&s, t.path(), abs).unwrap(),
            t.path()
                .join("fastData/shared-iso/template/cache/ubuntu.tar.zst")
        );
        assert!(check_ostemplate(&s, t.path(), abs)
            .unwrap_err()
            .contains("is missing"));
        for bad in [
            "ubuntu-24.04-standard",
            "local-zfs:vztmpl/x.tar.zst",
            "local:iso/x.iso",
            "nas:vztmpl/x",
        ] {
            assert!(ostemplate_path(&s, t.path(), bad).is_err(), "{bad}");
        }
    }
}
