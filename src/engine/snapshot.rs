//! Snapshot names. phoenix names a node's build snapshot `phx-` + the first 32 hex digits
//! of its hash: 36 characters, valid under Proxmox's `pve-snapshot-name` rule
//! (`^[a-zA-Z][a-zA-Z0-9_-]+$`, at most 40 characters; `pct-spec.md` §2).

use std::fmt;

use serde::{Deserialize, Serialize};

pub const PREFIX: &str = "phx-";
/// Hex digits of the hash kept in the name.
pub const HASH_DIGITS: usize = 32;

/// Proxmox's rule for snapshot names, reserved names included.
pub fn is_valid_snapshot_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    (2..=40).contains(&name.len())
        && first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name != "current"
        && name != "vzdump"
}

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
}
