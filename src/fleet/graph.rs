//! The build graph: an edge parent → child for every `clone_from_template_ctid`.
//!
//! Owns the topological order (ties broken by CTID, so output is stable), descendants and
//! depths, and the graph rules: unknown parent, parent that is not a template, cycles
//! (reported with their full path). Numeric CTID order means nothing here.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use crate::fleet::config::{Ctid, Node};
use crate::fleet::diag::{Problem, Problems, SourceFile};
use crate::fleet::json;

#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Every node, parents before children; among ready nodes, lowest CTID first.
    pub order: Vec<Ctid>,
    pub parent: BTreeMap<Ctid, Ctid>,
    pub children: BTreeMap<Ctid, Vec<Ctid>>,
}

impl Graph {
    /// Builds the graph of valid edges, reporting every broken one. Nodes on a cycle or
    /// under a broken edge are left out of `order` (the fleet is invalid anyway).
    pub fn build(
        nodes: &BTreeMap<Ctid, Node>,
        file: &Arc<SourceFile>,
        tree: &json::Value,
        problems: &mut Problems,
    ) -> Graph {
        let mut g: DiGraph<Ctid, ()> = DiGraph::with_capacity(nodes.len(), nodes.len());
        let index: BTreeMap<Ctid, NodeIndex> = nodes.keys().map(|&c| (c, g.add_node(c))).collect();
        let mut graph = Graph::default();
        for node in nodes.values() {
            let Some(p) = node.parent else { continue };
            let at = format!("{}/clone_from_template_ctid", node.pointer);
            // Located only when reported: a lookup walks the whole fleet map.
            let span = || tree.locate(&at, false);
            match nodes.get(&p) {
                // Defined, but its block has its own problem (already reported).
                None if tree
                    .get("lxc_configs")
                    .and_then(|c| c.get(&p.to_string()))
                    .is_some() => {}
                None => problems.push(
                    Problem::error("graph::unknown-parent", file, span(), &at)
                        .message(format!(
                            "CT {} clones from {p}, which is not defined in this file",
                            node.ctid
                        ))
                        .label("no such CTID")
                        .help(format!(
                            "define {p} under lxc_configs, or name an existing template"
                        )),
                ),
                Some(parent) if !parent.is_template() => problems.push(
                    Problem::error("graph::parent-not-template", file, span(), &at)
                        .message(format!(
                            "CT {} clones from {p} ({}), which is not a template",
                            node.ctid,
                            parent.name()
                        ))
                        .label("not a template")
                        .related(
                            parent.key_span,
                            "defined here without \"is_template\": true",
                        )
                        .help(format!(
                            "set \"is_template\": true on {p}, or clone from a template"
                        )),
                ),
                Some(_) => {
                    g.add_edge(index[&p], index[&node.ctid], ());
                    graph.parent.insert(node.ctid, p);
                    graph.children.entry(p).or_default().push(node.ctid);
                }
            }
        }
        // Cycles: every strongly connected component with more than one node, or a self-loop.
        let mut on_cycle = BTreeSet::new();
        for scc in tarjan_scc(&g) {
            let cyclic = scc.len() > 1 || g.contains_edge(scc[0], scc[0]);
            if !cyclic {
                continue;
            }
            let members: BTreeSet<Ctid> = scc.iter().map(|&i| g[i]).collect();
            on_cycle.extend(members.iter().copied());
            // Walk parent links from the lowest CTID to spell the whole loop.
            let start = *members.iter().next().expect("non-empty component");
            let mut path = vec![start];
            let mut cur = start;
            while let Some(&p) = graph.parent.get(&cur) {
                if p == start {
                    break;
                }
                path.push(p);
                cur = p;
            }
            path.push(start);
            path.reverse();
            let text = path
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(" → ");
            let node = &nodes[&start];
            let at = format!("{}/clone_from_template_ctid", node.pointer);
            let mut problem = Problem::error("graph::cycle", file, tree.locate(&at, false), &at)
                .message(format!("clone cycle: {text}"))
                .label("starts the cycle")
                .help("a template cannot descend from itself: make one of these a base template (remove its clone_from_template_ctid and give it a `template`)");
            for m in members.iter().skip(1) {
                let at = format!("{}/clone_from_template_ctid", nodes[m].pointer);
                problem = problem.related(tree.locate(&at, false), format!("{m} is on the cycle"));
            }
            problems.push(problem);
        }
        // Kahn's algorithm with a sorted ready set gives a stable order.
        let mut pending: BTreeMap<Ctid, usize> = BTreeMap::new();
        let mut ready = BTreeSet::new();
        for &c in nodes.keys() {
            if on_cycle.contains(&c) {
                continue;
            }
            if graph.parent.contains_key(&c) {
                pending.insert(c, 1);
            } else {
                ready.insert(c);
            }
        }
        while let Some(c) = ready.pop_first() {
            graph.order.push(c);
            for &child in graph.children.get(&c).map_or(&[][..], Vec::as_slice) {
                if let Some(n) = pending.get_mut(&child) {
                    *n -= 1;
                    if *n == 0 {
                        pending.remove(&child);
                        ready.insert(child);
                    }
                }
            }
        }
        graph
    }

    pub fn parent_of(&self, ctid: Ctid) -> Option<Ctid> {
        self.parent.get(&ctid).copied()
    }

    pub fn children_of(&self, ctid: Ctid) -> &[Ctid] {
        self.children.get(&ctid).map_or(&[], Vec::as_slice)
    }

    /// The chain from the root template down to `ctid`, inclusive.
    pub fn ancestry(&self, ctid: Ctid) -> Vec<Ctid> {
        let mut chain = vec![ctid];
        let mut cur = ctid;
        while let Some(p) = self.parent_of(cur) {
            chain.push(p);
            cur = p;
        }
        chain.reverse();
        chain
    }

    /// Every node below `ctid` (not including it), parents before children.
    pub fn descendants(&self, ctid: Ctid) -> Vec<Ctid> {
        let mut out = Vec::new();
        let mut stack: Vec<Ctid> = self.children_of(ctid).iter().rev().copied().collect();
        while let Some(c) = stack.pop() {
            out.push(c);
            stack.extend(self.children_of(c).iter().rev());
        }
        out
    }
}
