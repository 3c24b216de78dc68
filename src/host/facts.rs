//! Host facts the steps depend on, read from the host's own files under a root directory
//! (`/` on a real host, the model's root on `sim`), by the same code on every backend:
//!
//! | fact | file |
//! |---|---|
//! | NVIDIA kernel driver version | `proc/driver/nvidia/version` (`NVRM version: ... Kernel Module  580.76.05 ...`) |
//! | character-device majors | `proc/devices`, section `Character devices:` |
//! | NVIDIA device nodes | `dev/nvidia*` |
//! | the installed `pve-container` | `var/lib/dpkg/status` (its `Version:`) |

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// Facts about the host machine that steps depend on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// Kernel driver version from `/proc/driver/nvidia/version`, if a driver is loaded.
    pub nvidia_driver: Option<String>,
    /// Character-device majors from `/proc/devices` (`nvidia-frontend` → 195, ...).
    pub char_majors: BTreeMap<String, u32>,
    /// `/dev/nvidia*` nodes present on the host.
    pub nvidia_devices: Vec<String>,
    /// The installed `pve-container` package's version (`6.1.10`), on a Proxmox node.
    pub pve_container: Option<String>,
}

impl HostFacts {
    /// Reads the facts under `root`. A missing file is a missing fact (no driver loaded),
    /// not an error; an unreadable one is.
    pub fn read(root: &Path) -> Result<HostFacts, String> {
        let read = |rel: &str| -> Result<Option<String>, String> {
            let path = root.join(rel);
            match fs::read(&path) {
                Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("cannot read {}: {e}", path.display())),
            }
        };
        let nvidia_driver = read("proc/driver/nvidia/version")?
            .as_deref()
            .and_then(parse_nvidia_version);
        let char_majors = read("proc/devices")?
            .as_deref()
            .map(parse_char_majors)
            .unwrap_or_default();
        let mut nvidia_devices: Vec<String> = match fs::read_dir(root.join("dev")) {
            Ok(dir) => dir
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("nvidia"))
                .map(|n| format!("/dev/{n}"))
                .collect(),
            Err(_) => Vec::new(),
        };
        nvidia_devices.sort();
        let pve_container = read("var/lib/dpkg/status")?
            .as_deref()
            .and_then(|t| installed_version(t, "pve-container"));
        Ok(HostFacts {
            nvidia_driver,
            char_majors,
            nvidia_devices,
            pve_container,
        })
    }
}

/// Parses `/proc/driver/nvidia/version`:
/// `NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.76.05  Tue Jul 29 ...`.
pub fn parse_nvidia_version(text: &str) -> Option<String> {
    let line = text.lines().find(|l| l.starts_with("NVRM version:"))?;
    line.split_whitespace()
        .find(|w| {
            w.split('.').count() >= 2
                && w.split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(str::to_string)
}

/// The version of an installed package in dpkg's status file (stanzas of `Field: value`
/// lines separated by blank lines; `Status: install ok installed` when installed).
pub fn installed_version(status: &str, package: &str) -> Option<String> {
    status.split("\n\n").find_map(|stanza| {
        let field = |name: &str| {
            stanza
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .map(str::trim)
        };
        (field("Package") == Some(package)
            && field("Status").is_some_and(|s| s.ends_with(" installed")))
        .then(|| field("Version").map(str::to_string))
        .flatten()
    })
}

/// Whether Debian version `have` is at least `want`, comparing the runs of digits in
/// order (`5.0.10` > `5.0.7`, `6.1.10` > `5.0.7`, `4.4-6` < `5.0.7`).
pub fn version_at_least(have: &str, want: &str) -> bool {
    let nums = |v: &str| -> Vec<u64> {
        v.split(|c: char| !c.is_ascii_digit())
            .filter(|p| !p.is_empty())
            .filter_map(|p| p.parse().ok())
            .collect()
    };
    nums(have) >= nums(want)
}

/// Parses the `Character devices:` section of `/proc/devices`.
pub fn parse_char_majors(text: &str) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    let mut in_char = false;
    for line in text.lines() {
        let line = line.trim();
        if line == "Character devices:" {
            in_char = true;
        } else if line.ends_with("devices:") {
            in_char = false;
        } else if in_char {
            let mut parts = line.split_whitespace();
            if let (Some(major), Some(name)) = (parts.next(), parts.next()) {
                if let Ok(m) = major.parse() {
                    out.insert(name.to_string(), m);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_files() {
        let v = include_str!("../../tests/fixtures/host/proc-driver-nvidia-version.txt");
        assert_eq!(parse_nvidia_version(v).as_deref(), Some("580.76.05"));
        assert_eq!(parse_nvidia_version("garbage"), None);
        let m = parse_char_majors(include_str!("../../tests/fixtures/host/proc-devices.txt"));
        assert_eq!(m["nvidia-frontend"], 195);
        assert!(m.contains_key("nvidia-uvm"));
        let d = "Character devices:\n  1 mem\n195 nvidia-frontend\n\nBlock devices:\n  8 sd\n";
        assert!(!parse_char_majors(d).contains_key("sd"));
    }

    #[test]
    fn reads_the_installed_pve_container() {
        let status = "Package: pve-cluster\nStatus: install ok installed\nVersion: 9.0.6\n\n\
                      Package: pve-container\nStatus: install ok installed\nPriority: optional\nVersion: 6.1.10\n\n\
                      Package: lxc-pve\nStatus: deinstall ok config-files\nVersion: 6.0.0-1\n";
        assert_eq!(
            installed_version(status, "pve-container").as_deref(),
            Some("6.1.10")
        );
        assert_eq!(installed_version(status, "lxc-pve"), None, "removed");
        assert_eq!(installed_version(status, "qemu-server"), None);
        assert!(version_at_least("6.1.10", "5.0.7"));
        assert!(version_at_least("5.0.10", "5.0.7"));
        assert!(version_at_least("5.0.7", "5.0.7"));
        assert!(!version_at_least("5.0.6", "5.0.7"));
        assert!(!version_at_least("4.4-6", "5.0.7"));
    }

    #[test]
    fn reads_a_root() {
        let t = tempfile::tempdir().unwrap();
        assert_eq!(HostFacts::read(t.path()).unwrap(), HostFacts::default());
        fs::create_dir_all(t.path().join("proc/driver/nvidia")).unwrap();
        fs::create_dir_all(t.path().join("dev")).unwrap();
        fs::write(
            t.path().join("proc/driver/nvidia/version"),
            "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.82.07  x\n",
        )
        .unwrap();
        fs::write(t.path().join("dev/nvidia0"), "").unwrap();
        fs::write(t.path().join("dev/null"), "").unwrap();
        let f = HostFacts::read(t.path()).unwrap();
        assert_eq!(f.nvidia_driver.as_deref(), Some("580.82.07"));
        assert_eq!(f.nvidia_devices, vec!["/dev/nvidia0"]);
    }
}
