//! Garbage collection: which `phx-*` snapshots (and, with `--orphans`, which CTs) no
//! current node needs. Pure decisions from the fleet, its hashes and one read of the host;
//! the command carries them out under the host lock.
//!
//! Per phoenix-managed CT, every `phx-*` snapshot is kept when it is
//! - the node's wanted snapshot (`phx-<hash>` of today's config),
//! - the build the live CT descends from (its current generation),
//! - among the newest `keep` other generations,
//! - younger than `older_than`,
//! - the generation a rollback pinned the CT at;
//!
//! and is a candidate otherwise. Snapshots without the `phx-` form and CTs without the
//! `phoenix` tag are never considered. Store templates are decided apart
//! ([`crate::engine::store::gc`]): they are never orphans.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::engine::hash::Hashed;
use crate::engine::snapshot::{current_build, generations};
use crate::fleet::config::Ctid;
use crate::host::CtInfo;

#[derive(Clone, Copy, Debug)]
pub struct Policy {
    /// Generations kept per CT besides the current and the wanted one.
    pub keep: usize,
    /// Snapshots younger than this many seconds are kept.
    pub older_than_s: u64,
    pub now: u64,
    pub orphans: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum Keep {
    /// Today's config builds this snapshot.
    Wanted,
    /// The live CT descends from it.
    Current,
    /// One of the newest `--keep` generations.
    Recent { rank: usize },
    /// Younger than `--older-than`.
    Young { age_s: u64 },
    /// The CT is pinned at it (`phoenix rollback`).
    Pinned,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum Decision {
    Keep {
        #[serde(flatten)]
        reason: Keep,
    },
    Delete,
}

/// A generation kept apart when its CT was replaced (a backup, a subvolume).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeptGeneration {
    pub snapshot: String,
    /// Seconds since the epoch.
    pub kept_at: u64,
    pub location: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotDecision {
    pub ctid: Ctid,
    pub snapshot: String,
    /// A generation kept apart, not a snapshot of the CT: where the host holds it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_copy: Option<String>,
    /// When the snapshot was taken: seconds since the epoch, `built_at` (RFC 3339) in
    /// JSON as in every other document.
    #[serde(rename = "built_at", with = "crate::os::rfc3339_secs")]
    pub snaptime: u64,
    #[serde(flatten)]
    pub decision: Decision,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrphanDecision {
    pub ctid: Ctid,
    pub name: String,
    pub running: bool,
    /// Destroyed only with `--orphans`.
    pub destroy: bool,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcPlan {
    pub snapshots: Vec<SnapshotDecision>,
    pub orphans: Vec<OrphanDecision>,
}

pub fn decide(
    hashes: &BTreeMap<Ctid, Hashed>,
    inventory: &BTreeMap<Ctid, CtInfo>,
    kept: &BTreeMap<Ctid, Vec<KeptGeneration>>,
    pinned: &BTreeMap<Ctid, String>,
    policy: &Policy,
) -> GcPlan {
    let mut out = GcPlan::default();
    // Kept generations, per CT newest first, by the same rules: the pinned one, the
    // newest `keep`, those younger than `older_than`.
    for (&ctid, list) in kept {
        for (rank, k) in list.iter().enumerate() {
            let age_s = policy.now.saturating_sub(k.kept_at);
            let reason = if pinned.get(&ctid) == Some(&k.snapshot) {
                Some(Keep::Pinned)
            } else if rank < policy.keep {
                Some(Keep::Recent { rank: rank + 1 })
            } else if age_s < policy.older_than_s {
                Some(Keep::Young { age_s })
            } else {
                None
            };
            out.snapshots.push(SnapshotDecision {
                ctid,
                snapshot: k.snapshot.clone(),
                kept_copy: Some(k.location.clone()),
                snaptime: k.kept_at,
                decision: reason.map_or(Decision::Delete, |reason| Decision::Keep { reason }),
            });
        }
    }
    for ct in inventory
        .values()
        .filter(|c| c.is_managed() && !crate::engine::store::is_store_template(c))
    {
        let wanted = hashes.get(&ct.ctid).map(|h| h.hash.snapshot().to_string());
        if wanted.is_none() {
            out.orphans.push(OrphanDecision {
                ctid: ct.ctid,
                name: ct.settings.hostname.clone().unwrap_or_default(),
                running: ct.running,
                destroy: policy.orphans,
            });
            if policy.orphans {
                continue;
            }
        }
        let current = current_build(ct).map(|s| s.name.clone());
        let mut rank = 0;
        for s in generations(ct) {
            let reason = if pinned.get(&ct.ctid) == Some(&s.name) {
                Some(Keep::Pinned)
            } else if wanted.as_deref() == Some(s.name.as_str()) {
                Some(Keep::Wanted)
            } else if current.as_deref() == Some(s.name.as_str()) {
                Some(Keep::Current)
            } else if rank < policy.keep {
                rank += 1;
                Some(Keep::Recent { rank })
            } else if policy.now.saturating_sub(s.snaptime) < policy.older_than_s {
                Some(Keep::Young {
                    age_s: policy.now.saturating_sub(s.snaptime),
                })
            } else {
                None
            };
            out.snapshots.push(SnapshotDecision {
                ctid: ct.ctid,
                snapshot: s.name.clone(),
                kept_copy: None,
                snaptime: s.snaptime,
                decision: reason.map_or(Decision::Delete, |reason| Decision::Keep { reason }),
            });
        }
    }
    out
}

/// Parses `--older-than`: `90s`, `30m`, `12h`, `7d`, `2w` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let (num, unit) = t.split_at(t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len()));
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{text}` is not a duration (e.g. 90s, 30m, 12h, 7d, 2w)"))?;
    let mult = match unit {
        "" | "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "`{text}`: unknown unit `{unit}` (use s, m, h, d or w)"
            ))
        }
    };
    Ok(n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90").unwrap(), 90);
        assert_eq!(parse_duration("7d").unwrap(), 604_800);
        assert_eq!(parse_duration("2w").unwrap(), 1_209_600);
        assert!(parse_duration("7 days").is_err());
        assert!(parse_duration("d").is_err());
    }
}
