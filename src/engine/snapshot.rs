//! Build snapshots: their names, the record their description carries, and how a CT's
//! snapshots read as generations.
//!
//! phoenix names a node's build snapshot `phx-` + the first 32 hex digits of its hash: 36
//! characters, valid under Proxmox's `pve-snapshot-name` rule (`^[a-zA-Z][a-zA-Z0-9_-]+$`,
//! at most 40 characters; `pct-spec.md` §2). Its description is a [`BuildRecord`], so the
//! host alone tells what was built:
//!
//! ```text
//! phoenix 0.1.0 build of CT 950 (vllmQwen3Coder)
//! hash: <64 hex>
//! parent: <the parent's 64 hex, or ->
//! base: <the parent's 64 hex whose files the CT holds, when not `parent`'s>
//! built: <seconds since the epoch>
//! label: <template_snapshot_name, when the node has one>
//! linked: <the store template's VMID, when the CT's disk is a linked clone of one>
//! ```
//!
//! `base` is written by an in-place convergence after the parent changed (`"rebuild":
//! "in-place"`): the CT was built on the parent's new hash, but its files descend from the
//! older parent generation it was cloned from.

use std::fmt;

use serde::{Deserialize, Serialize};

pub use crate::fleet::config::is_valid_snapshot_name;
use crate::fleet::config::Ctid;
use crate::host::{CtInfo, SnapshotInfo};

pub const PREFIX: &str = "phx-";
/// Hex digits of the hash kept in the name.
pub const HASH_DIGITS: usize = 32;

/// The name of a phoenix build snapshot.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SnapshotName(String);

impl SnapshotName {
    pub fn for_hash(hex: &str) -> SnapshotName {
        SnapshotName(format!("{PREFIX}{}", &hex[..HASH_DIGITS]))
    }
    /// Reads a name found on a host; `None` unless it is a phoenix build snapshot.
    pub fn parse(name: &str) -> Option<SnapshotName> {
        let hex = name.strip_prefix(PREFIX)?;
        (hex.len() == HASH_DIGITS && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| SnapshotName(name.to_string()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SnapshotName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a build snapshot's description records. Written in one place
/// ([`BuildRecord::description`]) and read in one ([`BuildRecord::parse`]); a field a
/// description lacks (written by hand, or by an older phoenix) reads as `None`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuildRecord {
    pub version: String,
    pub ctid: Option<Ctid>,
    pub name: String,
    /// The node's full hash.
    pub hash: Option<String>,
    /// The parent's full hash; `Some(None)` for a base node, `None` when not recorded.
    pub parent: Option<Option<String>>,
    /// The parent's hash whose snapshot the CT's files were cloned from, when that is not
    /// `parent` (an in-place convergence).
    pub base: Option<String>,
    /// Seconds since the epoch.
    pub built: Option<u64>,
    /// The node's `template_snapshot_name`.
    pub label: Option<String>,
    /// The store template the CT's disk is a linked clone of ([`crate::engine::store`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linked: Option<Ctid>,
}

impl BuildRecord {
    pub fn description(&self) -> String {
        let mut d = format!(
            "phoenix {} build of CT {} ({})\n",
            self.version,
            self.ctid.map_or("?".to_string(), |c| c.to_string()),
            self.name
        );
        if let Some(h) = &self.hash {
            d.push_str(&format!("hash: {h}\n"));
        }
        if let Some(p) = &self.parent {
            d.push_str(&format!("parent: {}\n", p.as_deref().unwrap_or("-")));
        }
        if let Some(b) = &self.base {
            d.push_str(&format!("base: {b}\n"));
        }
        if let Some(t) = self.built {
            d.push_str(&format!("built: {t}\n"));
        }
        if let Some(l) = &self.label {
            d.push_str(&format!("label: {l}\n"));
        }
        if let Some(s) = self.linked {
            d.push_str(&format!("linked: {s}\n"));
        }
        d
    }

    pub fn parse(description: &str) -> BuildRecord {
        let mut r = BuildRecord::default();
        for (i, line) in description.lines().enumerate() {
            if i == 0 {
                if let Some(rest) = line.strip_prefix("phoenix ") {
                    let (version, rest) = rest.split_once(" build of CT ").unwrap_or((rest, ""));
                    r.version = version.to_string();
                    let (ctid, name) = rest.split_once(' ').unwrap_or((rest, ""));
                    r.ctid = ctid.parse().ok();
                    let name = name.trim();
                    r.name = name
                        .strip_prefix('(')
                        .and_then(|n| n.strip_suffix(')'))
                        .unwrap_or(name)
                        .to_string();
                }
                continue;
            }
            let Some((k, v)) = line.split_once(": ") else {
                continue;
            };
            let v = v.trim();
            match k {
                "hash" => r.hash = Some(v.to_string()),
                "parent" => r.parent = Some((v != "-").then(|| v.to_string())),
                "base" => r.base = Some(v.to_string()),
                "built" => r.built = v.parse().ok(),
                "label" => r.label = Some(v.to_string()),
                "linked" => r.linked = v.parse().ok(),
                _ => {}
            }
        }
        r
    }
}

fn is_build(s: &SnapshotInfo) -> bool {
    SnapshotName::parse(&s.name).is_some()
}

/// The newest `phx-*` snapshot on the chain from the CT's current state back to the
/// root: the build the live CT's contents come from.
pub fn current_build(ct: &CtInfo) -> Option<&SnapshotInfo> {
    let mut cur = ct.parent_snapshot.as_deref();
    let mut seen = 0;
    while let Some(name) = cur {
        let snap = ct.snapshot(name)?;
        if is_build(snap) {
            return Some(snap);
        }
        seen += 1;
        if seen > ct.snapshots.len() {
            return None; // a parent cycle in a hand-edited config
        }
        cur = snap.parent.as_deref();
    }
    None
}

/// The CT's `phx-*` snapshots, newest generation first: the chain from the current state
/// back to the root, then any others by time. (Snapshot times have one-second
/// resolution; the chain does not.)
pub fn generations(ct: &CtInfo) -> Vec<&SnapshotInfo> {
    let mut out: Vec<&SnapshotInfo> = Vec::new();
    let mut chain: Vec<&str> = Vec::new();
    let mut cur = ct.parent_snapshot.as_deref();
    while let Some(snap) = cur.and_then(|n| ct.snapshot(n)) {
        if chain.contains(&snap.name.as_str()) {
            break;
        }
        chain.push(&snap.name);
        if is_build(snap) {
            out.push(snap);
        }
        cur = snap.parent.as_deref();
    }
    let mut rest: Vec<&SnapshotInfo> = ct
        .snapshots
        .iter()
        .filter(|s| is_build(s) && !out.iter().any(|o| o.name == s.name))
        .collect();
    rest.sort_by(|a, b| b.snaptime.cmp(&a.snaptime).then(b.name.cmp(&a.name)));
    out.extend(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proxmox_rule() {
        for ok in ["s1", "base-snapshot", "A_b-9", &"a".repeat(40)] {
            assert!(is_valid_snapshot_name(ok), "{ok}");
        }
        for bad in [
            "a",
            "2024-01-01",
            "with space",
            "dot.ted",
            &"a".repeat(41),
            "current",
            "vzdump",
            "-x",
            "",
        ] {
            assert!(!is_valid_snapshot_name(bad), "{bad}");
        }
    }

    #[test]
    fn phoenix_names_are_valid_and_parse_back() {
        let hex = blake3::hash(b"x").to_hex().to_string();
        let name = SnapshotName::for_hash(&hex);
        assert_eq!(name.as_str().len(), 36);
        assert!(is_valid_snapshot_name(name.as_str()));
        assert_eq!(SnapshotName::parse(name.as_str()), Some(name));
        assert_eq!(SnapshotName::parse("phx-xyz"), None);
        assert_eq!(SnapshotName::parse("base-snapshot"), None);
    }

    #[test]
    fn build_records_read_back() {
        let r = BuildRecord {
            version: "0.1.0".into(),
            ctid: Some(950),
            name: "vllm (a)".into(),
            hash: Some("ab".repeat(32)),
            parent: Some(None),
            base: Some("cd".repeat(32)),
            built: Some(1_700_000_000),
            label: Some("base-snapshot".into()),
            linked: Some(9001),
        };
        assert_eq!(BuildRecord::parse(&r.description()), r);
        let partial = BuildRecord::parse("made by hand\nparent: -\n");
        assert_eq!(partial.hash, None);
        assert_eq!(partial.parent, Some(None));
        assert_eq!(BuildRecord::parse("").parent, None);
    }
}
