//! A run's work as walker tasks: each node that builds is one `finish` task, preceded by a
//! `provision` task when its CT is created, cloned or replaced, and, for a clone made
//! beside its source on another node, a `relocate` task that moves it to its own. A
//! clone's provision task holds its source's resource (`clone-source:<ctid>`), so clones
//! of one source take turns on that step only, whichever nodes they land on; the move
//! after it holds nothing. Each task runs in the pool of the cluster node its host
//! operations go to (a clone and its move: the source's node, where Proxmox runs them;
//! everything else: the CT's own node), so that `-j` is per node. Costs are the host
//! calls a task makes, each at the host's estimate for its [`Verb`]: they rank tasks,
//! longest remaining path first.

use std::collections::BTreeMap;

use crate::engine::plan::{Action, CloneVia, Entry, RebuildMode};
use crate::engine::walker::{Pools, Task};
use crate::fleet::config::Ctid;
use crate::fleet::Fleet;
use crate::host::{Host, Verb};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Provision,
    /// A clone made on its source's node moves to its own.
    Relocate,
    Finish,
}

/// The walker's tasks, and which node and part each one is.
pub struct Tasks {
    pub tasks: Vec<Task>,
    pub parts: Vec<(Ctid, Part)>,
    /// The cluster node of each pool (`None`: a host that is one machine).
    pub pools: Vec<Option<String>>,
}

impl Tasks {
    /// Whether task `i` is the first of its node (where the node starts).
    pub fn starts_node(&self, i: usize) -> bool {
        let (ctid, part) = self.parts[i];
        part == Part::Provision
            || (part == Part::Finish
                && !matches!(i.checked_sub(1).map(|j| self.parts[j]), Some((c, Part::Provision | Part::Relocate)) if c == ctid))
    }

    /// `jobs` per pool (cluster node), `max_jobs` in all.
    pub fn pools(&self, jobs: usize, max_jobs: Option<usize>) -> Pools {
        Pools::per_pool(self.pools.len(), jobs, max_jobs)
    }
}

/// The host calls of `Executor::finish` for a node (see steps.rs), by the host's estimate.
fn finish_cost(fleet: &Fleet, entry: &Entry, host: &dyn Host) -> u64 {
    let est = |v: Verb| host.estimate_ms(v);
    let ctid = entry.ctid;
    let node = &fleet.nodes[&ctid];
    let mut cost = 2 * est(Verb::Config)
        + est(Verb::Set)
        + est(Verb::Start)
        + est(Verb::Exec)
        + est(Verb::Shutdown)
        + est(Verb::Snapshot);
    if node.has_gpu() {
        cost += est(Verb::Devices) + 2 * est(Verb::Exec) + est(Verb::Push);
    }
    if fleet.hooks.node_hooks.contains_key(&ctid) {
        cost += est(Verb::Exec);
    }
    if node.nesting() {
        cost += est(Verb::Exec) + est(Verb::Push);
    }
    if !node.is_template() {
        cost += est(Verb::Start);
    }
    match &entry.action {
        // A move and what it applies, not a build.
        Action::Migrate { .. } => return est(Verb::Migrate) + est(Verb::Set),
        Action::Unreachable { .. } => return 1,
        _ => {}
    }
    if entry.moves.is_some() {
        cost += est(Verb::Migrate);
    }
    cost
}

/// The tasks of the nodes that build, in build order.
pub fn tasks(
    fleet: &Fleet,
    entries: &BTreeMap<Ctid, &Entry>,
    building: &[Ctid],
    host: &dyn Host,
) -> Tasks {
    let mut out = Tasks {
        tasks: Vec::new(),
        parts: Vec::new(),
        pools: Vec::new(),
    };
    let pool = |node: Option<&str>, pools: &mut Vec<Option<String>>| {
        let node = node.map(str::to_string);
        match pools.iter().position(|p| *p == node) {
            Some(i) => i,
            None => {
                pools.push(node);
                pools.len() - 1
            }
        }
    };
    let mut finish_task: BTreeMap<Ctid, usize> = BTreeMap::new();
    for &ctid in building {
        let entry = entries[&ctid];
        let own = pool(entry.node.as_deref(), &mut out.pools);
        // A parent that takes a new snapshot (or makes its store template) in this run
        // must finish first.
        let parent_dep: Vec<usize> = entry
            .parent
            .filter(|p| {
                entries.get(p).is_some_and(|e| {
                    e.action.snapshots()
                        || e.store_template.is_some()
                        || !e.remote_store_templates.is_empty()
                })
            })
            .and_then(|p| finish_task.get(&p).copied())
            .into_iter()
            .collect();
        let provisioned = matches!(
            entry.action,
            Action::Create
                | Action::Rebuild {
                    mode: RebuildMode::Replace,
                    ..
                }
        );
        let finish_deps = if provisioned {
            let (verb, resource) = match entry.parent {
                Some(p) => (Verb::Clone, Some(format!("clone-source:{p}"))),
                None => (Verb::Create, None),
            };
            // A clone runs on its source's node (with `target` too: Proxmox's task is
            // the source's).
            let source = entry.clone_via.as_ref().map(CloneVia::source_node);
            let runs_on = match source {
                Some(s) => pool(Some(s), &mut out.pools),
                None => own,
            };
            out.tasks.push(Task {
                deps: parent_dep,
                resource,
                cost: host.estimate_ms(verb),
                pool: runs_on,
            });
            out.parts.push((ctid, Part::Provision));
            if let Some(CloneVia::Migrate { .. }) = &entry.clone_via {
                out.tasks.push(Task {
                    deps: vec![out.tasks.len() - 1],
                    resource: None,
                    cost: host.estimate_ms(Verb::Migrate),
                    pool: runs_on,
                });
                out.parts.push((ctid, Part::Relocate));
            }
            vec![out.tasks.len() - 1]
        } else {
            parent_dep
        };
        let store: u64 = entry
            .store_template
            .iter()
            .chain(&entry.remote_store_templates)
            .map(|m| {
                host.estimate_ms(Verb::Clone)
                    + host.estimate_ms(Verb::Template)
                    + host.estimate_ms(Verb::Set)
                    + if m.node.is_some() {
                        host.estimate_ms(Verb::Migrate)
                    } else {
                        0
                    }
            })
            .sum();
        let cost = match entry.action {
            // Only the store template is missing.
            Action::Update { ref changes, .. }
                if changes
                    .iter()
                    .all(|c| c.key == crate::engine::store::STORE_CHANGE) =>
            {
                store
            }
            _ => finish_cost(fleet, entry, host) + store,
        };
        out.tasks.push(Task {
            deps: finish_deps,
            resource: None,
            cost,
            pool: own,
        });
        out.parts.push((ctid, Part::Finish));
        finish_task.insert(ctid, out.tasks.len() - 1);
    }
    if out.pools.is_empty() {
        out.pools.push(None);
    }
    out
}
