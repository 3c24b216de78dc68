//! A run's work as walker tasks: each node that builds is one `finish` task, preceded by a
//! `provision` task when its CT is created, cloned or replaced. A clone's provision task
//! holds its source's resource (`clone-source:<ctid>`), so clones of one source take turns
//! on that step only. Costs are the host calls a task makes, each at the host's estimate
//! for its [`Verb`]: they rank tasks, longest remaining path first.

use std::collections::BTreeMap;

use crate::engine::plan::{Action, Entry, RebuildMode};
use crate::engine::walker::Task;
use crate::fleet::config::Ctid;
use crate::fleet::Fleet;
use crate::host::{Host, Verb};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    Provision,
    Finish,
}

/// The walker's tasks, and which node and part each one is.
pub struct Tasks {
    pub tasks: Vec<Task>,
    pub parts: Vec<(Ctid, Part)>,
}

impl Tasks {
    /// Whether task `i` is the first of its node (where the node starts).
    pub fn starts_node(&self, i: usize) -> bool {
        let (ctid, part) = self.parts[i];
        part == Part::Provision
            || !matches!(i.checked_sub(1).map(|j| self.parts[j]), Some((c, Part::Provision)) if c == ctid)
    }
}

/// The host calls of `Executor::finish` for a node (see steps.rs), by the host's estimate.
fn finish_cost(fleet: &Fleet, ctid: Ctid, host: &dyn Host) -> u64 {
    let est = |v: Verb| host.estimate_ms(v);
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
    };
    let mut finish_task: BTreeMap<Ctid, usize> = BTreeMap::new();
    for &ctid in building {
        let entry = entries[&ctid];
        // A parent that takes a new snapshot (or makes its store template) in this run
        // must finish first.
        let parent_dep: Vec<usize> = entry
            .parent
            .filter(|p| {
                entries
                    .get(p)
                    .is_some_and(|e| e.action.snapshots() || e.store_template.is_some())
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
            out.tasks.push(Task {
                deps: parent_dep,
                resource,
                cost: host.estimate_ms(verb),
            });
            out.parts.push((ctid, Part::Provision));
            vec![out.tasks.len() - 1]
        } else {
            parent_dep
        };
        let store = if entry.store_template.is_some() {
            host.estimate_ms(Verb::Clone)
                + host.estimate_ms(Verb::Template)
                + host.estimate_ms(Verb::Set)
        } else {
            0
        };
        let cost = match entry.action {
            // Only the store template is missing.
            Action::Update { ref changes, .. }
                if changes
                    .iter()
                    .all(|c| c.key == crate::engine::store::STORE_CHANGE) =>
            {
                store
            }
            _ => finish_cost(fleet, ctid, host) + store,
        };
        out.tasks.push(Task {
            deps: finish_deps,
            resource: None,
            cost,
        });
        out.parts.push((ctid, Part::Finish));
        finish_task.insert(ctid, out.tasks.len() - 1);
    }
    out
}
