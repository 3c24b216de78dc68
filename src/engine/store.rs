//! Store templates (DESIGN §12): each built template generation kept once as an immutable
//! Proxmox template named by its hash, which the template's children are linked clones
//! of — the Nix store's shape on Proxmox, where a clone of a snapshot is a full copy and
//! only a template's disk can be cloned linked. Pure decisions from the fleet, its hashes,
//! the plan and one read of the host; [`crate::build::steps`] carries them out.
//!
//! | term | what |
//! |---|---|
//! | store template | a CT phoenix made (`phoenix` tag) whose description is a [`StoreRecord`]: the template node's build record of that generation |
//! | trusted | in `store_vmid_range`, a Proxmox template (`template: 1`), no lock, tagged `phoenix-store`, its record says `store: complete` (written last): children link only to such a one |
//! | untrusted | any other store template: what a creation cut short leaves (a clone still locked, not yet a template, not yet marked); redone when its generation is needed, removed by `gc` |
//! | wanted | a template node whose generation this run leaves built, on a storage that links clones, with a child on the same storage: it gets a store template of that generation on each node that needs one |
//!
//! A child that is cloned (created or replaced) is a linked clone of its parent's store
//! template when there is one (or the run makes it) on the child's own storage; else a
//! full clone of the parent's snapshot, as without store templates, with the reason
//! ([`FullClone`]). Nothing here is used without `store_vmid_range`, nor on a host that
//! makes no store templates ([`crate::host::Host::links_clones_on`]).
//!
//! On a cluster a linked clone stays on its template's node unless its storage is shared
//! (then it is linked with `target`). A generation gets a store template on its own node
//! for children there (or on shared storage), and one on each other node that a child on
//! local storage is placed on, made beside the template node and migrated there before
//! it becomes a Proxmox template: children on every node link locally.
//!
//! `gc` keeps a store template while a CT links to it (Proxmox refuses to remove a base
//! volume in use; phoenix never tries), while a kept generation's record names it, and
//! while its generation is its node's wanted, live or pinned one; the others go.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::engine::hash::Hashed;
use crate::engine::plan::{Action, Change, CloneVia, Entry, RebuildMode};
use crate::engine::snapshot::{current_build, BuildRecord, SnapshotName};
use crate::fleet::config::{Ctid, VmidRange};
use crate::fleet::Fleet;
use crate::host::CtInfo;

/// What a store template's description records: the build record of the generation it
/// holds, when it was made, and, written last, that it is complete.
///
/// ```text
/// phoenix 0.1.0 store template of CT 920 (BaseTemplateVLLM)
/// hash: <64 hex>
/// parent: <the parent's 64 hex, or ->
/// built: <when the generation was built>
/// made: <when the store template was made>
/// store: complete
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StoreRecord {
    /// The generation's build record (node, hash, parent, built, label).
    pub build: BuildRecord,
    /// Seconds since the epoch.
    pub made: Option<u64>,
    /// The last step of its creation is done: it may be linked to.
    pub complete: bool,
}

const FIRST_LINE: &str = " store template of CT ";
const BUILD_LINE: &str = " build of CT ";

impl StoreRecord {
    pub fn description(&self) -> String {
        let build = self.build.description();
        let mut d = build.replacen(BUILD_LINE, FIRST_LINE, 1);
        if let Some(t) = self.made {
            d.push_str(&format!("made: {t}\n"));
        }
        if self.complete {
            d.push_str("store: complete\n");
        }
        d
    }

    /// `None` unless the description is a store template's.
    pub fn parse(description: &str) -> Option<StoreRecord> {
        let first = description.lines().next()?;
        if !(first.starts_with("phoenix ") && first.contains(FIRST_LINE)) {
            return None;
        }
        let build = BuildRecord::parse(&description.replacen(FIRST_LINE, BUILD_LINE, 1));
        let mut r = StoreRecord {
            build,
            ..StoreRecord::default()
        };
        for line in description.lines().skip(1) {
            match line.split_once(": ") {
                Some(("made", v)) => r.made = v.trim().parse().ok(),
                Some(("store", v)) => r.complete = v.trim() == "complete",
                _ => {}
            }
        }
        Some(r)
    }
}

/// Whether a CT is one of phoenix's store templates, trusted or not: phoenix's tag, and a
/// description that is a [`StoreRecord`]. Such a CT is never a node's or an orphan.
pub fn is_store_template(ct: &CtInfo) -> bool {
    ct.is_managed() && record_of(ct).is_some()
}

fn record_of(ct: &CtInfo) -> Option<StoreRecord> {
    StoreRecord::parse(ct.settings.description.as_deref().unwrap_or(""))
}

/// A store template on the host.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Found {
    pub vmid: Ctid,
    /// The template node whose generation it holds.
    pub ctid: Option<Ctid>,
    /// That generation: `phx-…`, and its full hash.
    pub snapshot: Option<String>,
    pub hash: Option<String>,
    /// The cluster node it is on (`None` on a host that is one machine).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub node: Option<String>,
    /// When it was made (RFC 3339 in JSON).
    #[serde(
        with = "crate::os::rfc3339_secs_opt",
        skip_serializing_if = "Option::is_none",
        default
    )]
    pub made_at: Option<u64>,
    /// Why it is not trusted, when it is not.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub untrusted: Option<String>,
    /// The CTs whose disks are linked clones of it.
    pub linked: Vec<Ctid>,
}

impl Found {
    pub fn trusted(&self) -> bool {
        self.untrusted.is_none()
    }
}

/// Every store template on the host, by VMID, and which CTs link to each.
pub fn found(inventory: &BTreeMap<Ctid, CtInfo>, range: Option<VmidRange>) -> Vec<Found> {
    inventory
        .values()
        .filter(|ct| ct.is_managed())
        .filter_map(|ct| {
            let record = record_of(ct)?;
            let hash = record.build.hash.clone();
            let untrusted = if !range.is_some_and(|r| r.contains(ct.ctid)) {
                Some(match range {
                    Some(r) => format!("VMID {} is outside store_vmid_range {r}", ct.ctid),
                    None => "store_vmid_range is not set".to_string(),
                })
            } else if let Some(lock) = &ct.lock {
                Some(format!("it is locked ({lock}): its making was cut short"))
            } else if !ct.template {
                Some("it is not a Proxmox template: its making was cut short".to_string())
            } else if !record.complete {
                Some("its record lacks `store: complete`: its making was cut short".to_string())
            } else if ct.settings.store_template != Some(true) {
                Some(format!("it lacks the `{}` tag", crate::host::STORE_TAG))
            } else if record.build.ctid.is_none() || hash.as_deref().and_then(hash_ok).is_none() {
                Some("its record names no node and hash".to_string())
            } else {
                None
            };
            Some(Found {
                vmid: ct.ctid,
                ctid: record.build.ctid,
                snapshot: hash
                    .as_deref()
                    .and_then(hash_ok)
                    .map(|h| SnapshotName::for_hash(h).to_string()),
                hash,
                node: ct.node.clone(),
                made_at: record.made,
                untrusted,
                linked: inventory
                    .values()
                    .filter(|c| c.linked_to() == Some(ct.ctid))
                    .map(|c| c.ctid)
                    .collect(),
            })
        })
        .collect()
}

fn hash_ok(h: &str) -> Option<&str> {
    (h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit())).then_some(h)
}

/// A generation `(template node, hash)` on a cluster node.
type Where = (Ctid, String, Option<String>);

/// The trusted store template of each generation on each cluster node: the lowest VMID.
fn trusted_by_generation(found: &[Found]) -> BTreeMap<Where, Ctid> {
    let mut out = BTreeMap::new();
    for f in found.iter().filter(|f| f.trusted()) {
        if let (Some(c), Some(h)) = (f.ctid, &f.hash) {
            out.entry((c, h.clone(), f.node.clone())).or_insert(f.vmid);
        }
    }
    out
}

/// What the plan needs to decide on store templates: the range, and which of the fleet's
/// storages link clones on this host.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    pub range: VmidRange,
    pub links: BTreeMap<String, bool>,
    /// The storages shared by the cluster's nodes: one store template on them serves
    /// every node.
    pub shared: BTreeSet<String>,
}

/// Where a cloned node's disk comes from, when store templates are on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CloneFrom {
    /// A linked clone of the parent's store template: no data copied.
    Linked { store_template: Ctid },
    /// A full clone of the parent's snapshot, and why.
    Full {
        #[serde(flatten)]
        reason: FullClone,
    },
}

/// Why a clone is a full copy although store templates are on.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "because", rename_all = "snake_case")]
pub enum FullClone {
    /// The node's storage makes no linked clones (a `dir` storage).
    NoLinkedClones { storage: String },
    /// The node's storage is not its parent's: a linked clone stays on its template's.
    OtherStorage {
        storage: String,
        template_storage: String,
    },
    /// The parent has no store template of the generation cloned, and this run makes none
    /// (the parent is pinned, held or not built).
    NoStoreTemplate,
}

/// The store template a run makes of a node's generation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreMake {
    pub vmid: Ctid,
    /// An untrusted store template of this generation sits at `vmid`: it is destroyed
    /// first (its making was cut short).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub redo: bool,
    /// Made for another cluster node than the template node's own: cloned beside it,
    /// migrated there, made a Proxmox template there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// The key of the plan's change for a store template to make.
pub const STORE_CHANGE: &str = "store_template";

/// Whether a template node keeps store templates of its generations: its storage links
/// clones, and a child of it is on that storage.
pub fn wanted_for(fleet: &Fleet, setup: &Setup, ctid: Ctid) -> bool {
    let node = &fleet.nodes[&ctid];
    let storage = &node.spec.storage_pool;
    node.is_template()
        && setup.links.get(storage) == Some(&true)
        && fleet
            .graph
            .children_of(ctid)
            .iter()
            .any(|c| fleet.nodes[c].spec.storage_pool == *storage)
}

/// The cluster nodes a template node's generation needs a store template on: its own (as
/// the plan places it) for children there or on shared storage, and the node of each
/// child placed elsewhere on local storage. On a host that is one machine, one.
fn wanted_on(
    fleet: &Fleet,
    setup: &Setup,
    entries: &BTreeMap<Ctid, Entry>,
    ctid: Ctid,
) -> BTreeSet<Option<String>> {
    let storage = &fleet.nodes[&ctid].spec.storage_pool;
    let home = entries.get(&ctid).and_then(|e| e.node.clone());
    fleet
        .graph
        .children_of(ctid)
        .iter()
        .filter(|c| fleet.nodes[c].spec.storage_pool == *storage)
        .map(|c| {
            let at = entries.get(c).and_then(|e| e.node.clone());
            if at.is_some() && at != home && !setup.shared.contains(storage) {
                at
            } else {
                home.clone()
            }
        })
        .collect()
}

/// Decides the store templates of a plan: which generations get one in this run (and at
/// which VMID), how each cloned node is cloned, and what stops it (a guest in the range
/// that is not phoenix's, no free VMID left). Entries are changed in place: a fresh
/// template whose store template is missing becomes an `update`.
pub fn decide(
    fleet: &Fleet,
    hashes: &BTreeMap<Ctid, Hashed>,
    inventory: &BTreeMap<Ctid, CtInfo>,
    entries: &mut BTreeMap<Ctid, Entry>,
    setup: &Setup,
) -> Vec<String> {
    let range = setup.range;
    let mut problems = Vec::new();
    let found = found(inventory, Some(range));
    let where_set = format!(
        "proxmox_defaults.store_vmid_range in {}",
        fleet.hypervisor.file.path.display()
    );
    for ct in inventory.values().filter(|c| range.contains(c.ctid)) {
        if is_store_template(ct) {
            continue;
        }
        let who = match (&ct.settings.managed, &ct.settings.description) {
            // A VMID of another node or a VM: the inventory says whose.
            (Some(false), Some(d)) if d.contains(" on node '") => d.clone(),
            _ => format!("CT {} ({})", ct.ctid, ct.hostname()),
        };
        problems.push(format!(
            "VMID {} of store_vmid_range {range} is taken by {who}, which is not one of phoenix's store templates: move the range ({where_set}) past the cluster's guests, or move that guest",
            ct.ctid
        ));
    }
    let trusted = trusted_by_generation(&found);
    // An untrusted one a CT still links to cannot be destroyed (Proxmox refuses): the
    // generation gets a new VMID instead, and gc removes the old one once unlinked.
    let untrusted: BTreeMap<Where, Ctid> = found
        .iter()
        .filter(|f| !f.trusted() && f.linked.is_empty())
        .filter_map(|f| Some(((f.ctid?, f.hash.clone()?, f.node.clone()), f.vmid)))
        .collect();
    let mut taken: BTreeSet<Ctid> = inventory.keys().copied().collect();
    taken.extend(fleet.nodes.keys().copied());
    let mut making: BTreeMap<(Ctid, Option<String>), Ctid> = BTreeMap::new();
    for &ctid in &fleet.graph.order {
        let Some(entry) = entries.get(&ctid) else {
            continue;
        };
        if !wanted_for(fleet, setup, ctid) {
            continue;
        }
        let leaves_built = matches!(
            entry.action,
            Action::Create | Action::Rebuild { .. } | Action::Fresh { .. } | Action::Update { .. }
        );
        if !leaves_built {
            continue;
        }
        let hash = hashes[&ctid].hash.to_string();
        let home = entry.node.clone();
        let mut makes = Vec::new();
        for at in wanted_on(fleet, setup, entries, ctid) {
            let here = (ctid, hash.clone(), at.clone());
            if trusted.contains_key(&here) {
                continue;
            }
            let node = at.clone().filter(|_| at != home);
            let make = match untrusted.get(&here) {
                Some(&vmid) => StoreMake {
                    vmid,
                    redo: true,
                    node,
                },
                None => match range.iter().find(|v| !taken.contains(v)) {
                    Some(vmid) => {
                        taken.insert(vmid);
                        StoreMake {
                            vmid,
                            redo: false,
                            node,
                        }
                    }
                    None => {
                        let ours = found.len();
                        let others =
                            inventory.keys().filter(|c| range.contains(**c)).count() - ours;
                        problems.push(format!(
                            "no free VMID left in store_vmid_range {range} for the store template of CT {ctid} {} ({}): {ours} hold store templates (`phoenix gc` removes those no CT links to), {others} other guests; widen the range ({where_set})",
                            entry.name,
                            entry.snapshot
                        ));
                        continue;
                    }
                },
            };
            making.insert((ctid, at), make.vmid);
            makes.push(make);
        }
        if makes.is_empty() {
            continue;
        }
        let Some(entry) = entries.get_mut(&ctid) else {
            continue;
        };
        if let Action::Fresh { .. } = entry.action {
            entry.action = Action::Update {
                changes: Vec::new(),
                secrets: Vec::new(),
            };
        }
        if let Action::Update { changes, .. } = &mut entry.action {
            for m in &makes {
                changes.push(Change {
                    key: STORE_CHANGE.to_string(),
                    old: None,
                    new: match &m.node {
                        Some(n) => format!("{} ({}) on node {n}", m.vmid, entry.snapshot),
                        None => format!("{} ({})", m.vmid, entry.snapshot),
                    },
                });
            }
        }
        for m in makes {
            if m.node.is_some() {
                entry.remote_store_templates.push(m);
            } else {
                entry.store_template = Some(m);
            }
        }
    }
    let cloned: Vec<Ctid> = entries
        .values()
        .filter(|e| {
            e.parent.is_some()
                && matches!(
                    e.action,
                    Action::Create
                        | Action::Rebuild {
                            mode: RebuildMode::Replace,
                            ..
                        }
                )
        })
        .map(|e| e.ctid)
        .collect();
    for ctid in cloned {
        let parent = fleet.nodes[&ctid].parent.unwrap_or(0);
        let storage = fleet.nodes[&ctid].spec.storage_pool.clone();
        let template_storage = fleet.nodes[&parent].spec.storage_pool.clone();
        // A clone that would be made beside its parent and moved links, instead, to the
        // store template on its own node.
        let crosses = entries
            .get(&ctid)
            .is_some_and(|e| matches!(e.clone_via, Some(CloneVia::Migrate { .. })));
        let at = if crosses {
            entries.get(&ctid).and_then(|e| e.node.clone())
        } else {
            entries.get(&parent).and_then(|e| e.node.clone())
        };
        let store = trusted
            .get(&(parent, hashes[&parent].hash.to_string(), at.clone()))
            .or_else(|| making.get(&(parent, at)))
            .copied();
        let from = if setup.links.get(&storage) != Some(&true) {
            CloneFrom::Full {
                reason: FullClone::NoLinkedClones { storage },
            }
        } else if storage != template_storage {
            CloneFrom::Full {
                reason: FullClone::OtherStorage {
                    storage,
                    template_storage,
                },
            }
        } else {
            match store {
                Some(vmid) => CloneFrom::Linked {
                    store_template: vmid,
                },
                None => CloneFrom::Full {
                    reason: FullClone::NoStoreTemplate,
                },
            }
        };
        if let Some(e) = entries.get_mut(&ctid) {
            if crosses && matches!(from, CloneFrom::Linked { .. }) {
                e.clone_via = None;
            }
            e.clone = Some(from);
        }
    }
    problems
}

/// Why `gc` keeps a store template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StoreKeep {
    /// CTs' disks are linked clones of it: Proxmox refuses to remove it.
    Linked { ctids: Vec<Ctid> },
    /// Kept generations (replaced CTs) were linked clones of it.
    KeptLinked { ctids: Vec<Ctid> },
    /// Its generation is what today's config builds: the next clones link to it.
    Wanted,
    /// Its generation is the one its node's live CT holds.
    Current,
    /// Its node is pinned at its generation (`phoenix rollback`).
    Pinned,
}

/// Why `gc` removes a store template.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum StoreDrop {
    /// No CT links to it, and its generation is no longer wanted.
    Unneeded,
    /// Not trusted (its making was cut short), and no CT links to it.
    Untrusted { why: String },
    /// Another store template of the same generation is the one clones link to.
    Duplicate { of: Ctid },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "decision", rename_all = "snake_case")]
pub enum StoreDecision {
    Keep {
        #[serde(flatten)]
        reason: StoreKeep,
    },
    Delete {
        #[serde(flatten)]
        reason: StoreDrop,
    },
}

/// One store template's fate in `gc`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoreVerdict {
    #[serde(flatten)]
    pub found: Found,
    #[serde(flatten)]
    pub decision: StoreDecision,
}

/// What `gc` does with each store template: `kept_links` maps a store template's VMID to
/// the CTs whose kept generations were linked to it; `pinned` the CTs held at a generation.
pub fn gc(
    found: &[Found],
    hashes: &BTreeMap<Ctid, Hashed>,
    inventory: &BTreeMap<Ctid, CtInfo>,
    kept_links: &BTreeMap<Ctid, Vec<Ctid>>,
    pinned: &BTreeMap<Ctid, String>,
) -> Vec<StoreVerdict> {
    let first = trusted_by_generation(found);
    found
        .iter()
        .map(|f| {
            let generation = f
                .ctid
                .zip(f.hash.clone())
                .map(|(c, h)| (c, h, f.node.clone()));
            let is =
                |want: Option<String>| want.is_some() && want.as_deref() == f.snapshot.as_deref();
            let decision = if !f.linked.is_empty() {
                StoreDecision::Keep {
                    reason: StoreKeep::Linked {
                        ctids: f.linked.clone(),
                    },
                }
            } else if let Some(ctids) = kept_links.get(&f.vmid).filter(|c| !c.is_empty()) {
                StoreDecision::Keep {
                    reason: StoreKeep::KeptLinked {
                        ctids: ctids.clone(),
                    },
                }
            } else if let Some(why) = &f.untrusted {
                StoreDecision::Delete {
                    reason: StoreDrop::Untrusted { why: why.clone() },
                }
            } else if let Some(of) = generation
                .as_ref()
                .and_then(|g| first.get(g))
                .filter(|&&v| v != f.vmid)
            {
                StoreDecision::Delete {
                    reason: StoreDrop::Duplicate { of: *of },
                }
            } else if f
                .ctid
                .is_some_and(|c| hashes.get(&c).map(|h| h.hash.to_string()) == f.hash)
            {
                StoreDecision::Keep {
                    reason: StoreKeep::Wanted,
                }
            } else if is(f.ctid.and_then(|c| pinned.get(&c).cloned())) {
                StoreDecision::Keep {
                    reason: StoreKeep::Pinned,
                }
            } else if is(f
                .ctid
                .and_then(|c| inventory.get(&c))
                .and_then(current_build)
                .map(|s| s.name.clone()))
            {
                StoreDecision::Keep {
                    reason: StoreKeep::Current,
                }
            } else {
                StoreDecision::Delete {
                    reason: StoreDrop::Unneeded,
                }
            };
            StoreVerdict {
                found: f.clone(),
                decision,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_records_read_back_and_say_when_complete() {
        let mut r = StoreRecord {
            build: BuildRecord {
                version: "0.1.0".into(),
                ctid: Some(920),
                name: "BaseTemplateVLLM".into(),
                hash: Some("ab".repeat(32)),
                parent: Some(Some("cd".repeat(32))),
                built: Some(1_700_000_000),
                ..BuildRecord::default()
            },
            made: Some(1_700_000_100),
            complete: false,
        };
        let d = r.description();
        assert!(
            d.starts_with("phoenix 0.1.0 store template of CT 920 (BaseTemplateVLLM)\n"),
            "{d}"
        );
        assert!(!d.contains("store: complete"));
        assert_eq!(StoreRecord::parse(&d), Some(r.clone()));
        r.complete = true;
        assert!(r.description().ends_with("store: complete\n"));
        assert_eq!(StoreRecord::parse(&r.description()), Some(r.clone()));
        // A build record is not a store record.
        assert_eq!(StoreRecord::parse(&r.build.description()), None);
    }
}
