//! The plan: what happens to each node (DESIGN §4), decided from the fleet, its hashes and
//! one bulk read of the host. Pure: no host calls, no I/O. Every action carries typed
//! causes; the sentences people read are rendered apart
//! ([`render::plan`](crate::render::plan)).
//!
//! | action | when |
//! |---|---|
//! | `fresh` | the CT exists, its newest `phx-*` snapshot is `phx-<hash>`, runtime settings match |
//! | `update` | fresh by hash, but runtime settings differ → set / resize, or a secret field changed → the setup hook runs again on the live CT; no rebuild |
//! | `create` | the CT does not exist |
//! | `rebuild` | the CT exists and its newest `phx-*` snapshot is not `phx-<hash>` (`replace` or `in-place`) |
//! | `held` | replacing a standard container needs consent; it and its descendants stay untouched |
//! | `blocked` | an ancestor is held, blocked, or is not phoenix's |
//! | `unmanaged` | a CT with this CTID exists but phoenix did not create it (or its config cannot be read): never touched |
//! | `skipped` | left out of this run (`--skip-gpu`), with its descendants |
//! | `pinned` | rolled back to an earlier generation and held there (`phoenix rollback`) until `unpin`; its descendants are planned against that generation |
//! | `migrate` | fresh by hash, but on another node than its block (or `default_node`) places it: moved there, never rebuilt (runtime settings that differ are applied after) |
//! | `unreachable` | its CT lives on a cluster node that is offline or does not answer: it fails, its descendants are blocked, the rest of the cluster builds |
//!
//! Placement (a cluster): each entry carries the `node` its CT is on after the run. A CT
//! whose block places it elsewhere moves there first (`moves`); a CT an admin or HA moved
//! while nothing places it stays where it is and is reported (`moved_outside`). A clone
//! whose source is on another node is made there and moved, or made on its own node at
//! once when its storage is shared (`clone_via`). A move that would lose snapshots (a local
//! storage other than ZFS or btrfs cannot carry them) is held like any destructive
//! action, until `--drop-snapshots <CTID>`.
//!
//! A CT without a build snapshot is *unfinished* only with proof that phoenix's own build
//! of it never reached its snapshot: the build record in the state directory, written
//! before the first host change and removed by the snapshot. Without it a standard
//! container is held like any other destructive rebuild: an admin may have deleted the
//! snapshot of a CT full of data.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::engine::hash::{Hashed, NodeHash};
use crate::engine::secrets::Rotated;
use crate::engine::snapshot::{current_build, BuildRecord};
use crate::fleet::config::{Ctid, Node, RebuildPolicy};
use crate::fleet::Fleet;
use crate::host::{ClusterView, CtInfo, Network, Settings};

/// Consent to replace standard containers whose parent changed, and to drop the
/// snapshots of CTs that cannot move with them.
#[derive(Clone, Debug, Default)]
pub struct Consent {
    pub replace: BTreeSet<Ctid>,
    pub replace_all: bool,
    /// `--drop-snapshots`: these CTs may lose the snapshots their storage cannot move.
    pub drop_snapshots: BTreeSet<Ctid>,
}

/// The cluster the fleet is placed on, as the host reports it, and where phoenix last
/// had each CT (its state directory's record).
#[derive(Clone, Debug)]
pub struct Placement {
    pub cluster: ClusterView,
    pub recorded: BTreeMap<Ctid, String>,
}

/// Why a CT moves.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MoveCause {
    /// Its block (or `default_node`) places it on another node than it is on.
    Placed,
    /// phoenix left it on the node its block names, and an admin or HA moved it.
    MovedOutside,
}

/// A migration the run makes before the CT's other work.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Move {
    pub from: String,
    pub to: String,
    pub cause: MoveCause,
    /// It runs: shut down, moved, started there (Proxmox's restart migration).
    pub restart: bool,
    /// Snapshots deleted first because its storage cannot move them (with consent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub drops_snapshots: Vec<String>,
}

/// How a clone whose source is on another node reaches its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "via", rename_all = "snake_case")]
pub enum CloneVia {
    /// Made on its node at once (Proxmox's `target`): its storage is shared.
    Target { source_node: String },
    /// Made on the source's node, then migrated to its own (local storage).
    Migrate { source_node: String },
}

impl CloneVia {
    pub fn source_node(&self) -> &str {
        match self {
            CloneVia::Target { source_node } | CloneVia::Migrate { source_node } => source_node,
        }
    }
}

/// What the run leaves out, and the facts the plan needs beside the host's inventory.
#[derive(Clone, Debug, Default)]
pub struct Context {
    /// `--skip-gpu`: GPU nodes and what descends from them are left out.
    pub skip_gpu: bool,
    /// CTs whose build phoenix started and never committed (the state directory's build
    /// records): the proof that a CT without a build snapshot is phoenix's unfinished one.
    pub unfinished: BTreeSet<Ctid>,
    /// CTs held at a generation by `phoenix rollback`.
    pub pins: BTreeMap<Ctid, Pinned>,
    /// Store templates ([`crate::engine::store`]): `None` when off (no
    /// `store_vmid_range`, or a host that makes none).
    pub store: Option<crate::engine::store::Setup>,
    /// The cluster, where the host is one (`None`: one machine, nothing is placed).
    pub placement: Option<Placement>,
}

/// A CT held at an earlier generation, as the plan shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pinned {
    /// The generation it was rolled back to.
    pub pinned_snapshot: String,
    /// When (RFC 3339 in JSON).
    #[serde(with = "crate::os::rfc3339_secs")]
    pub pinned_at: u64,
    pub pinned_by: String,
    /// False while the rollback has not finished: the CT is not yet what the pin names
    /// (`phoenix rollback` again finishes it).
    pub complete: bool,
}

/// Why a node is left out of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeftOut {
    /// `--skip-gpu`: the node has a GPU, or descends from one that has.
    Gpu,
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
    /// The parent's hash changed. (`changed_parent` in JSON, beside the entry's `parent`.)
    ParentChanged {
        #[serde(rename = "changed_parent")]
        parent: Ctid,
    },
    /// Only the node's own inputs changed; the parent is as it was.
    OwnInputs,
    /// phoenix's own build of it was started and never reached its snapshot (its build
    /// record says so).
    Unfinished,
    /// The CT has no build snapshot phoenix can find, and nothing proves that phoenix's
    /// own build of it was cut short: `missing` says what was found instead.
    NoBuildSnapshot { missing: String },
    /// The previous build's parent is not recorded; phoenix cannot tell what changed.
    Unknown,
    /// Moving it to the node its block names deletes snapshots its storage cannot move
    /// (Proxmox: `non-migratable snapshot exists`).
    SnapshotsLost {
        to: String,
        storage: String,
        lost: Vec<String>,
    },
}

/// Who agreed to a rebuild that discards or converges a standard container.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentBy {
    /// Templates, unfinished builds and a node's own changes need none.
    NotNeeded,
    /// `--replace <CTID>` or `--replace-all`.
    CommandLine,
    /// The block's `"rebuild"` field.
    Config,
}

/// A runtime setting that differs: applied without rebuilding.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// `hostname`, `memory`, `cores`, `network`, `onboot` or `disk`.
    pub key: String,
    pub old: Option<String>,
    pub new: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Action {
    Fresh {
        /// The disk is larger than `storage_size_gb` asks, and disks never shrink.
        #[serde(skip_serializing_if = "Option::is_none")]
        disk_kept_gb: Option<u64>,
        /// Converged in place (`"rebuild": "in-place"`) after its parent changed: the CT
        /// holds its own steps' work over this older snapshot of the parent, not the
        /// parent's current files (`--replace` brings them).
        #[serde(skip_serializing_if = "Option::is_none")]
        in_place_over: Option<InPlaceOver>,
    },
    Update {
        /// Runtime settings to set (may be empty when only secrets changed).
        changes: Vec<Change>,
        /// Secret fields to deliver by running the node's setup hook again, by name.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        secrets: Vec<Rotated>,
    },
    Create,
    Rebuild {
        mode: RebuildMode,
        #[serde(flatten)]
        cause: Cause,
        consent: ConsentBy,
        /// The snapshot the live CT was built as (`None` for an unfinished build).
        #[serde(rename = "built_snapshot")]
        built: Option<String>,
    },
    Held {
        #[serde(flatten)]
        cause: Cause,
        /// The snapshot the live CT was built as (`None`: none can be found).
        #[serde(rename = "built_snapshot")]
        built: Option<String>,
    },
    Blocked {
        /// The held, blocked or unmanaged ancestor at the top.
        #[serde(rename = "blocked_by")]
        by: Ctid,
    },
    Unmanaged {
        /// Why its config could not be read, when that is why (an excerpt, escaped).
        #[serde(skip_serializing_if = "Option::is_none")]
        unreadable: Option<String>,
    },
    /// Rolled back and held at a generation; nothing is done to it until `unpin`.
    Pinned(Pinned),
    /// Fresh by hash but placed on another node: migrated (the entry's `moves`), then the
    /// runtime settings and secrets that differ are applied.
    Migrate {
        changes: Vec<Change>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        secrets: Vec<Rotated>,
    },
    /// Its CT lives on a node that is offline or does not answer: it cannot be read or
    /// changed. It fails (with the node named) and its descendants are blocked.
    Unreachable {
        #[serde(rename = "unreachable_node")]
        node: String,
        why: String,
    },
    /// Left out of this run; nothing is done to it.
    Skipped {
        #[serde(rename = "left_out")]
        why: LeftOut,
        /// The node whose GPU leaves it out: itself or an ancestor.
        #[serde(rename = "left_out_by")]
        by: Ctid,
    },
}

/// The parent generation an in-place converged CT's files come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct InPlaceOver {
    pub parent: Ctid,
    /// The parent's snapshot the CT was made from (`phx-…`).
    pub snapshot: String,
}

impl Action {
    pub fn name(&self) -> &'static str {
        match self {
            Action::Fresh { .. } => "fresh",
            Action::Update { .. } => "update",
            Action::Create => "create",
            Action::Rebuild { .. } => "rebuild",
            Action::Held { .. } => "held",
            Action::Blocked { .. } => "blocked",
            Action::Unmanaged { .. } => "unmanaged",
            Action::Skipped { .. } => "skipped",
            Action::Pinned(_) => "pinned",
            Action::Migrate { .. } => "migrate",
            Action::Unreachable { .. } => "unreachable",
        }
    }
    /// The node gets work in this run (an unreachable one fails in it).
    pub fn builds(&self) -> bool {
        matches!(
            self,
            Action::Update { .. }
                | Action::Create
                | Action::Rebuild { .. }
                | Action::Migrate { .. }
                | Action::Unreachable { .. }
        )
    }
    /// The node's snapshot is (re)taken in this run, so its descendants' clone source moves.
    pub fn snapshots(&self) -> bool {
        matches!(self, Action::Create | Action::Rebuild { .. })
    }
    /// The node stops its descendants from being built.
    fn stops_descendants(&self) -> bool {
        matches!(
            self,
            Action::Held { .. }
                | Action::Blocked { .. }
                | Action::Unmanaged { .. }
                | Action::Unreachable { .. }
        )
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
    /// The cluster node the CT is on once the run is done (`null` where the host is one
    /// machine).
    pub node: Option<String>,
    /// A move to another node made before the CT's other work.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moves: Option<Move>,
    /// With nothing placing it, the CT was found on another node than phoenix left it on
    /// (an admin or HA moved it): left where it is. The node phoenix left it on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moved_outside: Option<String>,
    /// A clone whose source is on another node: how it gets to its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone_via: Option<CloneVia>,
    #[serde(flatten)]
    pub action: Action,
    /// How a node that is cloned in this run is cloned, when store templates are on: a
    /// linked clone of its parent's store template, or a full clone and why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clone: Option<crate::engine::store::CloneFrom>,
    /// The store template this run makes of the node's generation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_template: Option<crate::engine::store::StoreMake>,
    /// The store templates this run makes of the node's generation on other cluster nodes,
    /// for the children placed there on local storage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_store_templates: Vec<crate::engine::store::StoreMake>,
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Plan {
    /// Build list first (in build order), then held, blocked, unmanaged, then fresh.
    pub entries: Vec<Entry>,
    /// What stops the store templates this plan needs (a guest in the range that is not
    /// phoenix's, no free VMID left): a build refuses to start while there is one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub store_problems: Vec<String>,
}

impl Plan {
    pub fn entry(&self, ctid: Ctid) -> Option<&Entry> {
        self.entries.iter().find(|e| e.ctid == ctid)
    }
    /// The nodes that get work in this run, in build order.
    pub fn building(&self) -> Vec<Ctid> {
        self.entries
            .iter()
            .filter(|e| e.action.builds())
            .map(|e| e.ctid)
            .collect()
    }
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut out = BTreeMap::new();
        for e in &self.entries {
            *out.entry(e.action.name()).or_insert(0) += 1;
        }
        out
    }
}

/// The node's runtime settings, applied to a live CT without rebuilding it.
pub fn runtime_settings(node: &Node) -> Settings {
    let s = &node.spec;
    Settings {
        hostname: Some(s.name.clone()),
        memory_mb: Some(s.memory_mb),
        cores: Some(s.cores),
        network: s.network_config.as_ref().map(|n| Network {
            name: n.name.clone(),
            bridge: n.bridge.clone(),
            ip: n.ip.clone(),
            gw: n.gw.clone(),
            mac: s.mac_address.as_ref().map(|m| m.to_ascii_uppercase()),
        }),
        onboot: s.onboot,
        ..Settings::default()
    }
}

fn show_network(n: &Network) -> String {
    let mut v = format!("name={},bridge={},ip={}", n.name, n.bridge, n.ip);
    if let Some(gw) = &n.gw {
        v.push_str(&format!(",gw={gw}"));
    }
    if let Some(mac) = &n.mac {
        v.push_str(&format!(",hwaddr={mac}"));
    }
    v
}

/// Whether a built CT of this node runs: a standard container is started again after its
/// snapshot, a template only when its block says `onboot`.
pub fn should_run(node: &Node) -> bool {
    !node.is_template() || node.spec.onboot == Some(true)
}

/// Runtime settings of `node` that the live CT does not have, its running state among
/// them.
pub fn runtime_changes(node: &Node, ct: &CtInfo) -> Vec<Change> {
    let want = runtime_settings(node);
    let have = &ct.settings;
    let mut out = Vec::new();
    let differ = |out: &mut Vec<Change>, key: &str, old: Option<String>, new: Option<String>| {
        if let Some(new) = new {
            if old.as_ref() != Some(&new) {
                out.push(Change {
                    key: key.to_string(),
                    old,
                    new,
                });
            }
        }
    };
    differ(
        &mut out,
        "hostname",
        have.hostname.clone(),
        want.hostname.clone(),
    );
    differ(
        &mut out,
        "memory",
        have.memory_mb.map(|m| m.to_string()),
        want.memory_mb.map(|m| m.to_string()),
    );
    differ(
        &mut out,
        "cores",
        have.cores.map(|c| c.to_string()),
        want.cores.map(|c| c.to_string()),
    );
    if let Some(net) = &want.network {
        if !have.network.as_ref().is_some_and(|h| net.satisfied_by(h)) {
            out.push(Change {
                key: "network".into(),
                old: have.network.as_ref().map(show_network),
                new: show_network(net),
            });
        }
    }
    let flag = |b: bool| if b { "1" } else { "0" }.to_string();
    differ(
        &mut out,
        "onboot",
        have.onboot.map(flag),
        want.onboot.map(flag),
    );
    if should_run(node) && !ct.running {
        out.push(Change {
            key: "running".to_string(),
            old: Some("stopped".to_string()),
            new: "running".to_string(),
        });
    }
    if let Some(gb) = ct.disk_gb {
        if node.spec.storage_size_gb > gb {
            out.push(Change {
                key: "disk".to_string(),
                old: Some(format!("{gb}G")),
                new: format!("{}G", node.spec.storage_size_gb),
            });
        }
    }
    out
}

/// Decides every selected node's action. `rotations`: the nodes whose secrets changed
/// since their hook last ran ([`secrets`](crate::engine::secrets)); `targets`: only
/// these nodes and their ancestors (all nodes when `None`).
pub fn plan(
    fleet: &Fleet,
    hashes: &BTreeMap<Ctid, Hashed>,
    inventory: &BTreeMap<Ctid, CtInfo>,
    rotations: &BTreeMap<Ctid, Vec<Rotated>>,
    consent: &Consent,
    context: &Context,
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
        let parent = fleet.graph.parent_of(ctid);
        let ct = inventory.get(&ctid);
        // A CT on a node that does not answer cannot be read: whatever its state, it
        // fails in this run.
        let down = context.placement.as_ref().and_then(|p| {
            let on = p.cluster.node(ct?.node.as_deref()?)?;
            (!on.online).then(|| Action::Unreachable {
                node: on.name.clone(),
                why: on
                    .down
                    .clone()
                    .unwrap_or_else(|| format!("node '{}' does not answer", on.name)),
            })
        });
        let action = match parent.and_then(|p| actions.get(&p)) {
            Some(Entry {
                action: Action::Skipped { why, by },
                ..
            }) => Action::Skipped { why: *why, by: *by },
            _ if context.skip_gpu && node.has_gpu() => Action::Skipped {
                why: LeftOut::Gpu,
                by: ctid,
            },
            _ if context.pins.contains_key(&ctid) => Action::Pinned(context.pins[&ctid].clone()),
            Some(p) if p.action.stops_descendants() => Action::Blocked {
                by: match p.action {
                    Action::Blocked { by } => by,
                    _ => p.ctid,
                },
            },
            _ if down.is_some() => down.unwrap_or(Action::Create),
            _ => decide(
                node,
                hashed,
                ct,
                rotations.get(&ctid).map_or(&[], Vec::as_slice),
                consent,
                context.unfinished.contains(&ctid),
            ),
        };
        let placed = place(fleet, node, ct, action, context, consent, &actions);
        actions.insert(
            ctid,
            Entry {
                ctid,
                name: node.name().to_string(),
                is_template: node.is_template(),
                parent,
                hash: hashed.hash.clone(),
                snapshot: hashed.hash.snapshot().to_string(),
                node: placed.node,
                moves: placed.moves,
                moved_outside: placed.moved_outside,
                clone_via: placed.clone_via,
                action: placed.action,
                clone: None,
                store_template: None,
                remote_store_templates: Vec::new(),
            },
        );
    }
    let store_problems = match &context.store {
        Some(setup) => crate::engine::store::decide(fleet, hashes, inventory, &mut actions, setup),
        None => Vec::new(),
    };
    let rank = |a: &Action| match a {
        Action::Create
        | Action::Rebuild { .. }
        | Action::Update { .. }
        | Action::Migrate { .. }
        | Action::Unreachable { .. } => 0,
        Action::Held { .. } => 1,
        Action::Blocked { .. } => 2,
        Action::Unmanaged { .. } => 3,
        Action::Pinned(_) => 4,
        Action::Fresh { .. } => 5,
        Action::Skipped { .. } => 6,
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
    Plan {
        entries,
        store_problems,
    }
}

/// An action with where its CT ends up.
struct Placed {
    node: Option<String>,
    moves: Option<Move>,
    moved_outside: Option<String>,
    clone_via: Option<CloneVia>,
    action: Action,
}

/// Where a node's CT is after the run, and the moves that takes (module doc). Nodes
/// earlier in the graph's order (its parent among them) are in `earlier`.
fn place(
    fleet: &Fleet,
    node: &Node,
    ct: Option<&CtInfo>,
    action: Action,
    context: &Context,
    consent: &Consent,
    earlier: &BTreeMap<Ctid, Entry>,
) -> Placed {
    let current = ct.and_then(|c| c.node.clone());
    let mut out = Placed {
        node: current.clone(),
        moves: None,
        moved_outside: None,
        clone_via: None,
        action,
    };
    let Some(p) = &context.placement else {
        return out;
    };
    let desired = node.placed_on(&fleet.hypervisor).map(str::to_string);
    let recorded = p.recorded.get(&node.ctid);
    let provisions = matches!(
        out.action,
        Action::Create
            | Action::Rebuild {
                mode: RebuildMode::Replace,
                ..
            }
    );
    if provisions || ct.is_none() {
        // Made in this run (or would be): where it is placed, else where it is, else
        // where new CTs go.
        out.node = desired.or(current).or_else(|| Some(p.cluster.home.clone()));
        if provisions {
            out.clone_via = clone_via(node, out.node.as_deref(), p, earlier);
        }
        return out;
    }
    let moving = matches!(
        out.action,
        Action::Fresh { .. }
            | Action::Update { .. }
            | Action::Rebuild {
                mode: RebuildMode::InPlace,
                ..
            }
    );
    match (desired, &current) {
        (Some(to), Some(from)) if moving && to != *from => {
            let ct = ct.expect("a CT with a node exists");
            let lost = lost_snapshots(ct, from, p);
            let storage = ct.storage.clone().unwrap_or_default();
            if !lost.is_empty() && !consent.drop_snapshots.contains(&node.ctid) {
                out.action = Action::Held {
                    cause: Cause::SnapshotsLost { to, storage, lost },
                    built: current_build(ct).map(|b| b.name.clone()),
                };
                return out;
            }
            out.moves = Some(Move {
                from: from.clone(),
                to: to.clone(),
                cause: if recorded == Some(&to) {
                    MoveCause::MovedOutside
                } else {
                    MoveCause::Placed
                },
                restart: ct.running,
                drops_snapshots: lost,
            });
            out.node = Some(to);
            out.action = match out.action {
                Action::Fresh { .. } => Action::Migrate {
                    changes: Vec::new(),
                    secrets: Vec::new(),
                },
                Action::Update { changes, secrets } => Action::Migrate { changes, secrets },
                other => other,
            };
        }
        (None, Some(at)) => {
            out.moved_outside = recorded.filter(|r| *r != at).cloned();
        }
        _ => {}
    }
    out
}

/// The snapshots a CT loses when it moves off `from`: all of them, where its storage
/// there cannot carry snapshots to another node.
fn lost_snapshots(ct: &CtInfo, from: &str, p: &Placement) -> Vec<String> {
    let keeps = ct
        .storage
        .as_deref()
        .and_then(|s| p.cluster.node(from)?.storage(s))
        .is_none_or(|s| s.migrates_snapshots());
    if keeps {
        Vec::new()
    } else {
        ct.snapshots.iter().map(|s| s.name.clone()).collect()
    }
}

/// A clone made on `on` whose source sits on another node: made there at once when its
/// storage is shared between them (`target`), else made beside its source and moved.
fn clone_via(
    node: &Node,
    on: Option<&str>,
    p: &Placement,
    earlier: &BTreeMap<Ctid, Entry>,
) -> Option<CloneVia> {
    let source_node = earlier.get(&node.parent?)?.node.clone()?;
    let on = on?;
    if source_node == on {
        return None;
    }
    let storage = &node.spec.storage_pool;
    let shared = |n: &str| {
        p.cluster
            .node(n)
            .and_then(|n| n.storage(storage))
            .is_some_and(|s| s.shared)
    };
    Some(if shared(on) && shared(&source_node) {
        CloneVia::Target { source_node }
    } else {
        CloneVia::Migrate { source_node }
    })
}

/// One node whose parent does not stop it. `unfinished`: phoenix's build record proves
/// that its own build of this CT never reached the snapshot.
fn decide(
    node: &Node,
    hashed: &Hashed,
    ct: Option<&CtInfo>,
    rotated: &[Rotated],
    consent: &Consent,
    unfinished: bool,
) -> Action {
    let Some(ct) = ct else {
        return Action::Create;
    };
    if let Some(why) = &ct.unreadable {
        return Action::Unmanaged {
            unreadable: Some(why.clone()),
        };
    }
    if !ct.is_managed() {
        return Action::Unmanaged { unreadable: None };
    }
    let want = hashed.hash.snapshot();
    match current_build(ct) {
        Some(built) if built.name == want.as_str() => {
            match in_place_over(node, &built.description) {
                // Converged in place, and now asked to be replaced: the replace brings the
                // parent's files the convergence left out.
                Some(over) if consent.replace_all || consent.replace.contains(&node.ctid) => {
                    Action::Rebuild {
                        mode: RebuildMode::Replace,
                        cause: Cause::ParentChanged {
                            parent: over.parent,
                        },
                        consent: ConsentBy::CommandLine,
                        built: Some(built.name.clone()),
                    }
                }
                over => up_to_date(node, ct, over, rotated),
            }
        }
        None if unfinished => Action::Rebuild {
            mode: RebuildMode::Replace,
            cause: Cause::Unfinished,
            consent: ConsentBy::NotNeeded,
            built: None,
        },
        None => {
            let cause = Cause::NoBuildSnapshot {
                missing: missing_build(ct),
            };
            if node.is_template() {
                // A template holds nothing of its own: it is always replaced.
                return Action::Rebuild {
                    mode: RebuildMode::Replace,
                    cause,
                    consent: ConsentBy::NotNeeded,
                    built: None,
                };
            }
            // Without proof that phoenix's build was cut short, the CT may hold a user's
            // data (an admin deleted the snapshot): held like any destructive rebuild.
            replace_with_consent(node, cause.clone(), None, consent)
                .unwrap_or(Action::Held { cause, built: None })
        }
        Some(built) => {
            let cause = cause(&built.description, hashed);
            rebuild(node, cause, built.name.clone(), consent)
        }
    }
}

/// What a CT without a build snapshot has instead, in words: why
/// [`current_build`] finds none.
pub fn missing_build(ct: &CtInfo) -> String {
    let builds: Vec<&str> = ct
        .snapshots
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| crate::engine::snapshot::SnapshotName::parse(n).is_some())
        .collect();
    let others: Vec<&str> = ct
        .snapshots
        .iter()
        .map(|s| s.name.as_str())
        .filter(|n| crate::engine::snapshot::SnapshotName::parse(n).is_none())
        .collect();
    let list = |names: &[&str]| {
        let mut shown: Vec<String> = names.iter().take(3).map(|n| n.to_string()).collect();
        if names.len() > 3 {
            shown.push(format!("and {} more", names.len() - 3));
        }
        shown.join(", ")
    };
    match ct.parent_snapshot.as_deref() {
        Some(p) if ct.snapshot(p).is_none() => format!(
            "its config's `parent: {p}` names a snapshot that does not exist{}",
            if builds.is_empty() {
                String::new()
            } else {
                format!(" (build snapshots found: {})", list(&builds))
            }
        ),
        _ if !builds.is_empty() => format!(
            "its current state descends from no build snapshot (build snapshots found, not on its chain: {})",
            list(&builds)
        ),
        _ if !others.is_empty() => format!(
            "it has no phx-* build snapshot (other snapshots: {})",
            list(&others)
        ),
        _ => "it has no snapshots at all".to_string(),
    }
}

/// Fresh, or an update of runtime settings and secrets.
fn up_to_date(
    node: &Node,
    ct: &CtInfo,
    in_place_over: Option<InPlaceOver>,
    rotated: &[Rotated],
) -> Action {
    let changes = runtime_changes(node, ct);
    if changes.is_empty() && rotated.is_empty() {
        Action::Fresh {
            disk_kept_gb: ct.disk_gb.filter(|&gb| gb > node.spec.storage_size_gb),
            in_place_over,
        }
    } else {
        Action::Update {
            changes,
            secrets: rotated.to_vec(),
        }
    }
}

/// Did the parent change? The snapshot's description records the parent it was built on:
/// its hash, not whether it is rebuilt in this run, decides, so a parent recreated from
/// the same inputs (its CT was lost) is the same parent.
fn cause(description: &str, hashed: &Hashed) -> Cause {
    let Some(old) = BuildRecord::parse(description).parent else {
        return Cause::Unknown;
    };
    let new = &hashed.manifest.parent;
    if old.as_deref() == new.as_ref().map(|p| p.hash.as_str()) {
        Cause::OwnInputs
    } else {
        Cause::ParentChanged {
            parent: new.as_ref().map_or(0, |p| p.ctid),
        }
    }
}

/// The parent generation a CT converged in place holds instead of its parent's current
/// one, from its build record: `base` differs from `parent` only then.
fn in_place_over(node: &Node, description: &str) -> Option<InPlaceOver> {
    let record = BuildRecord::parse(description);
    let base = record.base?;
    let parent = node.parent?;
    (record.parent.flatten().as_deref() != Some(base.as_str())).then(|| InPlaceOver {
        parent,
        snapshot: crate::engine::snapshot::SnapshotName::for_hash(&base).to_string(),
    })
}

/// A built node whose hash changed: how it is rebuilt, and whether that needs consent.
fn rebuild(node: &Node, cause: Cause, built: String, consent: &Consent) -> Action {
    let rebuild = |mode, consent| Action::Rebuild {
        mode,
        cause: cause.clone(),
        consent,
        built: Some(built.clone()),
    };
    if node.is_template() {
        return rebuild(RebuildMode::Replace, ConsentBy::NotNeeded);
    }
    if cause == Cause::OwnInputs {
        // Named on the command line, it is replaced as asked: a clean build from its
        // parent's generation (with store templates, a linked clone: no data copied).
        if consent.replace.contains(&node.ctid) {
            return rebuild(RebuildMode::Replace, ConsentBy::CommandLine);
        }
        return rebuild(RebuildMode::InPlace, ConsentBy::NotNeeded);
    }
    // A standard container whose parent changed (or may have): replacing it discards
    // its data, so it happens only with consent; `"rebuild": "in-place"` converges it.
    if let Some(action) = replace_with_consent(node, cause.clone(), Some(built.clone()), consent) {
        return action;
    }
    if node.spec.rebuild == Some(RebuildPolicy::InPlace) {
        return rebuild(RebuildMode::InPlace, ConsentBy::Config);
    }
    Action::Held {
        cause,
        built: Some(built),
    }
}

/// A standard container replaced because its block or the command line says so, if one
/// of them does.
fn replace_with_consent(
    node: &Node,
    cause: Cause,
    built: Option<String>,
    consent: &Consent,
) -> Option<Action> {
    let by = if node.spec.rebuild == Some(RebuildPolicy::Replace) {
        ConsentBy::Config
    } else if consent.replace_all || consent.replace.contains(&node.ctid) {
        ConsentBy::CommandLine
    } else {
        return None;
    };
    Some(Action::Rebuild {
        mode: RebuildMode::Replace,
        cause,
        consent: by,
        built,
    })
}
