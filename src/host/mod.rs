//! The host: one trait with Proxmox's verbs for containers, and the types they speak.
//!
//! Everything phoenix does to a machine goes through [`Host`]. Backends (`sim`, later
//! `pve` and `lxc`) implement it; the engine (plan, walker) never sees which one runs.
//! Reads of the whole host are one bulk call ([`Host::inventory`]) so that a no-op build
//! costs O(1) host calls, not one per node.

pub mod pct;
pub mod sim;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::fleet::config::Ctid;

/// The tag phoenix puts on every CT it creates; it never touches a CT without it.
pub const MANAGED_TAG: &str = "phoenix";

/// One snapshot of a CT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub name: String,
    pub description: String,
    /// Seconds since the epoch.
    pub snaptime: u64,
    /// The snapshot this one was taken on top of.
    pub parent: Option<String>,
}

/// What the host knows of one CT, read in bulk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtInfo {
    pub ctid: Ctid,
    pub running: bool,
    pub lock: Option<String>,
    /// `pct config` keys (`hostname`, `memory`, `cores`, `net0`, `rootfs`, `tags`, ...).
    pub config: BTreeMap<String, String>,
    /// Raw `lxc.*` lines of the config, in file order.
    pub raw_lxc: Vec<String>,
    pub snapshots: Vec<SnapshotInfo>,
    /// The snapshot the current state descends from (PVE's `parent:`).
    pub parent_snapshot: Option<String>,
}

impl CtInfo {
    pub fn is_managed(&self) -> bool {
        self.config
            .get("tags")
            .is_some_and(|t| t.split([';', ',', ' ']).any(|t| t == MANAGED_TAG))
    }
    pub fn snapshot(&self, name: &str) -> Option<&SnapshotInfo> {
        self.snapshots.iter().find(|s| s.name == name)
    }
    /// The newest `phx-*` snapshot on the chain from the current state back to the root:
    /// the build the live CT's contents come from.
    pub fn current_build(&self) -> Option<&SnapshotInfo> {
        let mut cur = self.parent_snapshot.as_deref();
        while let Some(name) = cur {
            let snap = self.snapshot(name)?;
            if crate::engine::snapshot::SnapshotName::parse(&snap.name).is_some() {
                return Some(snap);
            }
            cur = snap.parent.as_deref();
        }
        None
    }
    /// The CT's `phx-*` snapshots, newest generation first: the chain from the current
    /// state back to the root, then any others by time. (Snapshot times have one-second
    /// resolution; the chain does not.)
    pub fn generations(&self) -> Vec<&SnapshotInfo> {
        let is_phx =
            |s: &SnapshotInfo| crate::engine::snapshot::SnapshotName::parse(&s.name).is_some();
        let mut out: Vec<&SnapshotInfo> = Vec::new();
        let mut cur = self.parent_snapshot.as_deref();
        while let Some(snap) = cur.and_then(|n| self.snapshot(n)) {
            if out.iter().any(|s| s.name == snap.name) {
                break;
            }
            if is_phx(snap) {
                out.push(snap);
            }
            cur = snap.parent.as_deref();
        }
        let mut rest: Vec<&SnapshotInfo> = self
            .snapshots
            .iter()
            .filter(|s| is_phx(s) && !out.iter().any(|o| o.name == s.name))
            .collect();
        rest.sort_by(|a, b| b.snaptime.cmp(&a.snaptime).then(b.name.cmp(&a.name)));
        out.extend(rest);
        out
    }

    /// rootfs size in GiB from `rootfs: <vol>,size=8G`.
    pub fn rootfs_gb(&self) -> Option<u64> {
        let rootfs = self.config.get("rootfs")?;
        rootfs.split(',').find_map(|kv| {
            let size = kv.strip_prefix("size=")?;
            if let Some(g) = size.strip_suffix('G') {
                g.parse().ok()
            } else if let Some(t) = size.strip_suffix('T') {
                t.parse::<u64>().ok().map(|t| t * 1024)
            } else {
                size.strip_suffix('M')
                    .and_then(|m| m.parse::<u64>().ok())
                    .map(|m| m.div_ceil(1024))
            }
        })
    }
}

/// Facts about the host machine that steps depend on.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostFacts {
    /// Kernel driver version from `/proc/driver/nvidia/version`, if a driver is loaded.
    pub nvidia_driver: Option<String>,
    /// Character-device majors from `/proc/devices` (`nvidia-frontend` → 195, ...).
    pub char_majors: BTreeMap<String, u32>,
    /// `/dev/nvidia*` nodes present on the host.
    pub nvidia_devices: Vec<String>,
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

/// Options of `pct create`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSpec {
    pub ostemplate: String,
    pub storage: String,
    pub rootfs_gb: u64,
    pub unprivileged: bool,
    /// Further `--key value` config options (hostname, memory, cores, net0, features,
    /// tags, description, onboot).
    pub options: BTreeMap<String, String>,
}

/// How a host call failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// Worth retrying: `CT is locked`, `can't lock file ... got timeout`.
    Transient,
    /// The CT does not exist.
    NotFound,
    /// Anything else.
    Failed,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HostError {
    pub kind: ErrorKind,
    /// The host's own words (pct's stderr).
    pub message: String,
}

impl HostError {
    pub fn failed(message: impl Into<String>) -> Self {
        HostError {
            kind: ErrorKind::Failed,
            message: message.into(),
        }
    }
    pub fn transient(message: impl Into<String>) -> Self {
        HostError {
            kind: ErrorKind::Transient,
            message: message.into(),
        }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        HostError {
            kind: ErrorKind::NotFound,
            message: message.into(),
        }
    }
    /// Classifies a Proxmox error text (pct-spec §0, §5).
    pub fn from_pve_text(message: impl Into<String>) -> Self {
        let message = message.into();
        let kind = if message.contains("CT is locked")
            || (message.contains("can't lock file") && message.contains("got timeout"))
            || message.contains("trying to acquire lock")
        {
            ErrorKind::Transient
        } else if message.contains("does not exist") && message.contains("Configuration file") {
            ErrorKind::NotFound
        } else {
            ErrorKind::Failed
        };
        HostError { kind, message }
    }
}

pub type HostResult<T> = Result<T, HostError>;

/// The host verbs (DESIGN §7). Every mutating verb takes the CT's id first.
pub trait Host: Send + Sync {
    /// Backend name, as given to hooks in `PHOENIX_BACKEND`.
    fn name(&self) -> &'static str;
    /// Every CT on the host, in one bulk read.
    fn inventory(&self) -> HostResult<BTreeMap<Ctid, CtInfo>>;
    /// One CT (`pct config`), or `None` when it does not exist.
    fn ct(&self, ctid: Ctid) -> HostResult<Option<CtInfo>>;
    /// The host facts steps rely on (NVIDIA driver, device majors).
    fn facts(&self) -> HostResult<HostFacts>;
    fn create(&self, ctid: Ctid, spec: &CreateSpec) -> HostResult<()>;
    /// Full clone of `source` at `snapname` into `target`.
    fn clone_ct(
        &self,
        source: Ctid,
        snapname: &str,
        target: Ctid,
        hostname: &str,
        storage: &str,
    ) -> HostResult<()>;
    /// `pct set`: each pair is `--key value`.
    fn set(&self, ctid: Ctid, options: &[(String, String)]) -> HostResult<()>;
    /// Grows a disk (`pct resize <ctid> rootfs <N>G`).
    fn resize(&self, ctid: Ctid, disk: &str, size_gb: u64) -> HostResult<()>;
    /// Replaces the raw `lxc.*` lines that start with one of `prefixes` by `lines` (device
    /// passthrough; pct cannot set raw keys).
    fn set_raw_lxc(&self, ctid: Ctid, prefixes: &[&str], lines: &[String]) -> HostResult<()>;
    fn start(&self, ctid: Ctid) -> HostResult<()>;
    fn shutdown(&self, ctid: Ctid, timeout_s: u64) -> HostResult<()>;
    /// Runs `argv` inside the CT; its output goes to `log`. Returns the exit code.
    fn exec(&self, ctid: Ctid, argv: &[String], log: &mut dyn Write) -> HostResult<i32>;
    /// Copies a host file into the CT.
    fn push(&self, ctid: Ctid, local: &Path, dest: &str, perms: u32) -> HostResult<()>;
    fn snapshot(&self, ctid: Ctid, name: &str, description: &str) -> HostResult<()>;
    fn delete_snapshot(&self, ctid: Ctid, name: &str) -> HostResult<()>;
    fn destroy(&self, ctid: Ctid) -> HostResult<()>;
    /// `pct unlock`: removes a lock left behind by an interrupted task.
    fn unlock(&self, ctid: Ctid) -> HostResult<()>;
    /// A directory to put first on a hook's `PATH`: it holds a `pct` that acts on this host.
    /// `None` when the real `pct` is already on `PATH`.
    fn pct_dir(&self) -> Option<PathBuf>;
    /// Environment a hook needs for that `pct` to find this host.
    fn hook_env(&self) -> Vec<(String, String)>;
    /// Expected duration of a verb, for scheduling priorities (any consistent unit).
    fn estimate_ms(&self, verb: &str) -> u64 {
        let _ = verb;
        1
    }
}

impl fmt::Display for CtInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CT {} ({})",
            self.ctid,
            if self.running { "running" } else { "stopped" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_proc_files() {
        let v = "NVRM version: NVIDIA UNIX x86_64 Kernel Module  580.76.05  Tue Jul 29 17:29:08 UTC 2025\nGCC version:  gcc version 12.2.0 (Debian 12.2.0-14)\n";
        assert_eq!(parse_nvidia_version(v).as_deref(), Some("580.76.05"));
        assert_eq!(parse_nvidia_version("garbage"), None);
        let d = "Character devices:\n  1 mem\n195 nvidia-frontend\n226 drm\n509 nvidia-uvm\n510 nvidia-caps\n\nBlock devices:\n  8 sd\n";
        let m = parse_char_majors(d);
        assert_eq!(m["nvidia-frontend"], 195);
        assert_eq!(m["nvidia-uvm"], 509);
        assert!(!m.contains_key("sd"));
    }

    #[test]
    fn transient_errors_are_recognised() {
        assert_eq!(
            HostError::from_pve_text("CT is locked (disk)").kind,
            ErrorKind::Transient
        );
        assert_eq!(
            HostError::from_pve_text(
                "can't lock file '/run/lock/lxc/pve-config-100.lock' - got timeout"
            )
            .kind,
            ErrorKind::Transient
        );
        assert_eq!(
            HostError::from_pve_text("snapshot name 'x' already used").kind,
            ErrorKind::Failed
        );
    }
}
