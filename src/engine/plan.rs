//! The plan: what happens to each node (DESIGN §4), decided from the fleet, its hashes and
//! one bulk read of the host. Pure: no host calls, no I/O.
//!
//! | action | when |
//! |---|---|
//! | `fresh` | the CT exists, its newest `phx-*` snapshot is `phx-<hash>`, runtime settings match |
//! | `update` | fresh by hash, but runtime settings differ → `pct set` / `pct resize` |
//! | `create` | the CT does not exist |
//! | `rebuild` | the CT exists and its newest `phx-*` snapshot is not `phx-<hash>` (`replace` or `in-place`) |
//! | `held` | replacing a standard container needs consent; it and its descendants stay untouched |
//! | `blocked` | an ancestor fails, is held, is blocked, or is not phoenix's |
//! | `unmanaged` | a CT with this CTID exists but phoenix did not create it: never touched |

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::engine::hash::{Hashed, NodeHash};
use crate::fleet::config::{Ctid, Fleet, Node, RebuildPolicy};
use crate::host::CtInfo;

/// Consent to replace standard containers whose parent changed.
#[derive(Clone, Debug, Default)]
pub struct Consent {
    pub replace: BTreeSet<Ctid>,
    pub replace_all: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebuildMode {
    /// Destroy the CT and build it again from its parent's snapshot.
    Replace,
    /// Keep the CT, re-run the node's own steps, take the new snapshot.
    InPlace,
}

/// Why a CT that exists is not fresh.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "cause", rename_all = "snake_case")]
pub enum Cause {
    /// The parent's hash changed (or the parent is rebuilt in this run).
    ParentChanged { parent: Ctid },
    /// Only the node's own inputs changed; the parent is as it was.
    OwnInputs,
    /// A build was started but never reached its snapshot.
    Unfinished,
    /// The previous build's parent is not recorded; phoenix cannot tell what changed.
    Unknown,
}

/// A runtime setting that differs: applied with `pct set` / `pct resize`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub key: String,
    pub old: Option<String>,
    pub new: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Fresh,
    Update {
        changes: Vec<Change>,
    },
    Create,
    Rebuild {
        mode: RebuildMode,
        #[serde(flatten)]
        cause: Cause,
        built: String,
    },
    Held {
        #[serde(flatten)]
        cause: Cause,
        built: String,
    },
    Blocked {
        by: Ctid,
    },
    Unmanaged,
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Fresh => "fresh",
            Action::Update { .. } => "update",
            Action::Create => "create",
            Action::Rebuild { .. } => "rebuild",
            Action::Held { .. } => "held",
            Action::Blocked { .. } => "blocked",
            Action::Unmanaged => "unmanaged",
        }
    }
    /// The node gets work in this run.
    pub fn builds(&self) -> bool {
        matches!(
            self,
            Action::Update { .. } | Action::Create | Action::Rebuild { .. }
        )
    }
    /// The node's snapshot is (re)taken in this run, so its descendants' clone source moves.
    pub fn snapshots(&self) -> bool {
        matches!(self, Action::Create | Action::Rebuild { .. })
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub ctid: Ctid,
    pub name: String,
    pub is_template: bool,
    pub parent: Option<Ctid>,
    pub hash: NodeHash,
    pub snapshot: String,
    #[serde(flatten)]
    pub action: Action,
    /// One line for people.
    pub reason: String,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Plan {
    /// Build list first (in build order), then held, blocked, unmanaged, then fresh.
    pub entries: Vec<Entry>,
}

impl Plan {
    pub fn entry(&self, ctid: Ctid) -> Option<&Entry> {
        self.entries.iter().find(|e| e.ctid == ctid)
    }
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for e in &self.entries {
            *out.entry(e.action.name()).or_insert(0) += 1;
        }
        out
    }
}

/// Settings applied to a live CT without rebuilding it (`pct set` keys).
pub fn runtime_settings(node: &Node) -> BTreeMap<String, String> {
    let s = &node.spec;
    let mut out = BTreeMap::new();
    out.insert("hostname".to_string(), s.name.clone());
    out.insert("memory".to_string(), s.memory_mb.to_string());
    out.insert("cores".to_string(), s.cores.to_string());
    if let Some(net) = &s.network_config {
        let mut v = format!("name={},bridge={},ip={}", net.name, net.bridge, net.ip);
        if let Some(gw) = &net.gw {
            v.push_str(&format!(",gw={gw}"));
        }
        if let Some(mac) = &s.mac_address {
            v.push_str(&format!(",hwaddr={}", mac.to_ascii_uppercase()));
        }
        v.push_str(",type=veth");
        out.insert("net0".to_string(), v);
    }
    if let Some(onboot) = s.onboot {
        out.insert(
            "onboot".to_string(),
            if onboot { "1" } else { "0" }.to_string(),
        );
    }
    out
}

fn props(v: &str) -> BTreeMap<String, String> {
    v.split(',')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Runtime settings of `node` that the live CT does not have.
pub fn runtime_changes(node: &Node, ct: &CtInfo) -> Vec<Change> {
    let mut out = Vec::new();
    for (key, want) in runtime_settings(node) {
        let have = ct.config.get(&key);
        let same = match (key.as_str(), have) {
            ("net0", Some(h)) => {
                let (w, h) = (props(&want), props(h));
                // A MAC the config leaves open is whatever Proxmox assigned.
                w.iter()
                    .all(|(k, v)| h.get(k).is_some_and(|hv| hv.eq_ignore_ascii_case(v)))
            }
            (_, Some(h)) => *h == want,
            (_, None) => false,
        };
        if !same {
            out.push(Change {
                key,
                old: have.cloned(),
                new: want,
            });
        }
    }
    if let Some(gb) = ct.rootfs_gb() {
        if node.spec.storage_size_gb > gb {
            out.push(Change {
                key: "rootfs".to_string(),
                old: Some(format!("{gb}G")),
                new: format!("{}G", node.spec.storage_size_gb),
            });
        }
    }
    out
}

/// `parent: <hash>` from a phoenix snapshot description.
pub fn described_parent(description: &str) -> Option<Option<String>> {
    description.lines().find_map(|l| {
        let v = l.strip_prefix("parent: ")?.trim();
        Some(if v == "-" { None } else { Some(v.to_string()) })
    })
}

/// Decides every selected node's action. `targets`: only these nodes and their ancestors
/// (all nodes when `None`).
pub fn plan(
    fleet: &Fleet,
    hashes: &BTreeMap<Ctid, Hashed>,
    inventory: &BTreeMap<Ctid, CtInfo>,
    consent: &Consent,
    targets: Option<&BTreeSet<Ctid>>,
) -> Plan {
    let selected: Option<BTreeSet<Ctid>> =
        targets.map(|t| t.iter().flat_map(|&c| fleet.graph.ancestry(c)).collect());
    let mut actions: BTreeMap<Ctid, Entry> = BTreeMap::new();
    for &ctid in &fleet.graph.order {
        if selected.as_ref().is_some_and(|s| !s.contains(&ctid)) {
            continue;
        }
        let node = &fleet.nodes[&ctid];
        let hashed = &hashes[&ctid];
        let want = hashed.hash.snapshot();
        let parent = fleet.graph.parent_of(ctid);
        let parent_entry = parent.and_then(|p| actions.get(&p));
        let (action, reason) = decide(
            fleet,
            node,
            hashed,
            inventory.get(&ctid),
            parent_entry,
            consent,
        );
        actions.insert(
            ctid,
            Entry {
                ctid,
                name: node.name().to_string(),
                is_template: node.is_template(),
                parent,
                hash: hashed.hash.clone(),
                snapshot: want.to_string(),
                action,
                reason,
            },
        );
    }
    let rank = |a: &Action| match a {
        Action::Create | Action::Rebuild { .. } | Action::Update { .. } => 0,
        Action::Held { .. } => 1,
        Action::Blocked { .. } => 2,
        Action::Unmanaged => 3,
        Action::Fresh => 4,
    };
    let position: BTreeMap<Ctid, usize> = fleet
        .graph
        .order
        .iter()
        .enumerate()
        .map(|(i, &c)| (c, i))
        .collect();
    let mut entries: Vec<Entry> = actions.into_values().collect();
    entries.sort_by_key(|e| (rank(&e.action), position[&e.ctid]));
    Plan { entries }
}

fn decide(
    fleet: &Fleet,
    node: &Node,
    hashed: &Hashed,
    ct: Option<&CtInfo>,
    parent: Option<&Entry>,
    consent: &Consent,
) -> (Action, String) {
    if let Some(p) = parent {
        let stopped_by = match &p.action {
            Action::Blocked { by } => Some(*by),
            Action::Held { .. } | Action::Unmanaged => Some(p.ctid),
            _ => None,
        };
        if let Some(by) = stopped_by {
            return (
                Action::Blocked { by },
                format!(
                    "ancestor {by} is {}",
                    if by == p.ctid {
                        p.action.name()
                    } else {
                        "not built"
                    }
                ),
            );
        }
    }
    let want = hashed.hash.snapshot();
    let Some(ct) = ct else {
        return (Action::Create, "new node: no CT with this id".to_string());
    };
    if !ct.is_managed() {
        return (
            Action::Unmanaged,
            format!("CT {} exists but was not created by phoenix (no `phoenix` tag): it is never touched", node.ctid),
        );
    }
    let built = ct.current_build();
    if built.is_some_and(|s| s.name == want.as_str()) {
        let changes = runtime_changes(node, ct);
        if changes.is_empty() {
            let shrink = ct
                .rootfs_gb()
                .filter(|&gb| gb > node.spec.storage_size_gb)
                .map_or(String::new(), |gb| {
                    format!(
                        "; storage_size_gb {} is below the disk's {gb} GB, and disks never shrink: kept at {gb} GB",
                        node.spec.storage_size_gb
                    )
                });
            return (Action::Fresh, format!("up to date ({want}){shrink}"));
        }
        let keys: Vec<&str> = changes.iter().map(|c| c.key.as_str()).collect();
        return (
            Action::Update {
                changes: changes.clone(),
            },
            format!("runtime settings changed: {}", keys.join(", ")),
        );
    }
    let Some(built) = built else {
        return (
            Action::Rebuild {
                mode: RebuildMode::Replace,
                cause: Cause::Unfinished,
                built: String::new(),
            },
            "an earlier build never reached its snapshot: replaced".to_string(),
        );
    };
    let built_name = built.name.clone();
    // Did the parent change? The snapshot's description records the parent it was built on.
    let cause = match (
        described_parent(&built.description),
        &hashed.manifest.parent,
    ) {
        (None, _) => Cause::Unknown,
        (Some(old), new) => {
            // The parent's hash, not whether it is rebuilt in this run: a parent recreated
            // from the same inputs (its CT was lost) is the same parent.
            let same_parent = old.as_deref() == new.as_ref().map(|p| p.hash.as_str());
            if same_parent {
                Cause::OwnInputs
            } else {
                Cause::ParentChanged {
                    parent: new.as_ref().map_or(0, |p| p.ctid),
                }
            }
        }
    };
    if node.is_template() {
        let why = match &cause {
            Cause::ParentChanged { parent } => format!("parent {parent} changed"),
            Cause::OwnInputs => "its inputs changed".to_string(),
            _ => "built from unrecorded inputs".to_string(),
        };
        return (
            Action::Rebuild {
                mode: RebuildMode::Replace,
                cause,
                built: built_name.clone(),
            },
            format!("template replaced: {why} ({built_name} → {want})"),
        );
    }
    if cause == Cause::OwnInputs {
        return (
            Action::Rebuild {
                mode: RebuildMode::InPlace,
                cause,
                built: built_name.clone(),
            },
            format!("in place: its own inputs changed ({built_name} → {want})"),
        );
    }
    let what = match &cause {
        Cause::ParentChanged { parent } => format!("parent {parent} changed"),
        _ => "the previous build's parent is unknown".to_string(),
    };
    if consent.replace_all
        || consent.replace.contains(&node.ctid)
        || node.spec.rebuild == Some(RebuildPolicy::Replace)
    {
        let by = if node.spec.rebuild == Some(RebuildPolicy::Replace) {
            "\"rebuild\": \"replace\""
        } else {
            "consent given"
        };
        return (
            Action::Rebuild {
                mode: RebuildMode::Replace,
                cause,
                built: built_name,
            },
            format!("replace: {what} ({by}; its data is discarded)"),
        );
    }
    if node.spec.rebuild == Some(RebuildPolicy::InPlace) {
        return (
            Action::Rebuild {
                mode: RebuildMode::InPlace,
                cause,
                built: built_name,
            },
            format!("in place: {what} (\"rebuild\": \"in-place\" converges the live CT)"),
        );
    }
    let _ = fleet;
    (
        Action::Held { cause, built: built_name },
        format!(
            "held: {what}; replacing it destroys its data — run with --replace {} (or --replace-all), or set \"rebuild\" in its block",
            node.ctid
        ),
    )
}
