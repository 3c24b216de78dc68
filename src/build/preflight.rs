//! Preflight: what the host must have before a node's first change, checked for every
//! node the plan builds, shown by `plan` and enforced by `build` (a node that fails it
//! is not touched; its descendants are blocked).
//!
//! | check | nodes | what |
//! |---|---|---|
//! | [`Check::Node`] | every node built, in a cluster | the cluster node it lives on, is built on, moves to or is cloned from answers (its API, and SSH where the host needs it) |
//! | [`Check::Storage`] | created or replaced | `storage_pool` is in `storage.cfg`, enabled on its node (and on its source's node, for a clone made there and moved) and holds CT disks; a base node's OS template is on its node |
//! | [`Check::Runtime`] | every node built | the host can run it: an unprivileged base CT has an id map, its network's bridge exists and leads somewhere (`lxc`) |
//! | [`Check::NvidiaDriver`] | with a GPU | the host's kernel driver equals `nvidia_driver_version` (both named) |
//! | [`Check::GpuDevice`] | with a GPU, on a host with a driver | every assigned GPU's `/dev/nvidiaN`, and the driver's majors in `/proc/devices` |
//! | [`Check::Privilege`] | every node built | phoenix's identity may write what the node needs (over Proxmox's API, device entries and most features are root@pam's) |
//!
//! Every problem of a node is reported, not the first: whoever fixes the host learns all
//! of it from one `plan`. Only a consequence is left out: on a host without an NVIDIA
//! driver the missing devices follow from it. `pct` being there is the backend's own
//! check, when it opens.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::gpu;
use crate::engine::plan::{Action, CloneVia, Entry, RebuildMode};
use crate::fleet::config::Ctid;
use crate::fleet::Fleet;
use crate::host::{Host, HostFacts};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    Node,
    Storage,
    Runtime,
    NvidiaDriver,
    GpuDevice,
    Privilege,
}

/// A node the host cannot build, and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub ctid: Ctid,
    pub check: Check,
    pub message: String,
}

/// The host facts of the nodes GPU CTs are built on, each read once (`None`: the host
/// is one machine); a node whose facts cannot be read says why.
#[derive(Clone, Debug, Default)]
pub struct Facts(pub BTreeMap<Option<String>, Result<HostFacts, String>>);

impl Facts {
    /// Reads the facts of every node a GPU CT is built on (none when no GPU CT builds).
    pub fn read(fleet: &Fleet, entries: &[Entry], host: &dyn Host) -> Facts {
        let mut out = BTreeMap::new();
        for e in entries.iter().filter(|e| e.action.builds()) {
            if !fleet.nodes[&e.ctid].has_gpu() || matches!(e.action, Action::Unreachable { .. }) {
                continue;
            }
            out.entry(e.node.clone()).or_insert_with(|| {
                match &e.node {
                    Some(n) => host.facts_on(n),
                    None => host.facts(),
                }
                .map_err(|err| match &e.node {
                    Some(n) => format!("cannot read the host facts of node '{n}': {}", err.message),
                    None => format!("cannot read the host facts: {}", err.message),
                })
            });
        }
        Facts(out)
    }

    /// The facts of one node (empty where they were not read).
    pub fn of(&self, node: Option<&str>) -> Result<&HostFacts, &str> {
        static NONE: std::sync::OnceLock<HostFacts> = std::sync::OnceLock::new();
        match self.0.get(&node.map(str::to_string)) {
            Some(Ok(f)) => Ok(f),
            Some(Err(e)) => Err(e),
            None => Ok(NONE.get_or_init(HostFacts::default)),
        }
    }
}

/// Every problem of each node that builds, in the order of the table above; a node
/// without any is not in the map.
pub fn check(
    fleet: &Fleet,
    entries: &[Entry],
    host: &dyn Host,
    facts: &Facts,
    cluster: Option<&crate::host::ClusterView>,
) -> BTreeMap<Ctid, Vec<Problem>> {
    // Messages name the node where there is more than one.
    let several = cluster.is_some_and(|c| c.nodes.len() > 1);
    let mut out = BTreeMap::new();
    for e in entries.iter().filter(|e| e.action.builds()) {
        let node = &fleet.nodes[&e.ctid];
        let mut found: Vec<(Check, String)> = Vec::new();
        if let Action::Unreachable { why, .. } = &e.action {
            out.insert(
                e.ctid,
                vec![Problem {
                    ctid: e.ctid,
                    check: Check::Node,
                    message: why.clone(),
                }],
            );
            continue;
        }
        let on = e.node.as_deref();
        let source_node = e.clone_via.as_ref().map(CloneVia::source_node);
        // Every cluster node the build uses answers: its own, the one it moves from,
        // the one its clone is made on.
        let network = crate::engine::plan::runtime_settings(node).network;
        let mut used: Vec<&str> = on.into_iter().collect();
        used.extend(e.moves.as_ref().map(|m| m.from.as_str()));
        used.extend(source_node);
        used.dedup();
        for n in &used {
            found.extend(
                host.check_runtime_on(n, unprivileged(fleet, e.ctid), network.as_ref())
                    .into_iter()
                    .map(|m| (Check::Node, m)),
            );
        }
        let provisions = matches!(
            e.action,
            Action::Create
                | Action::Rebuild {
                    mode: RebuildMode::Replace,
                    ..
                }
        );
        if provisions {
            let ostemplate = match e.parent {
                None => node.spec.template.as_deref(),
                Some(_) => None,
            };
            let storage = match on {
                Some(n) => host.check_storage_on(n, &node.spec.storage_pool, ostemplate),
                None => host.check_storage(&node.spec.storage_pool, ostemplate),
            };
            found.extend(storage.into_iter().map(|m| (Check::Storage, m)));
            // Made beside its source, then moved: the storage must be there too.
            if let Some(CloneVia::Migrate { source_node }) = &e.clone_via {
                found.extend(
                    host.check_storage_on(source_node, &node.spec.storage_pool, None)
                        .into_iter()
                        .map(|m| {
                            (
                                Check::Storage,
                                format!("{m} (CT {} is cloned there, beside its source, then moved to node '{}')", e.ctid, on.unwrap_or("?")),
                            )
                        }),
                );
            }
        }
        if used.is_empty() {
            let runtime = host.check_runtime(unprivileged(fleet, e.ctid), network.as_ref());
            found.extend(runtime.into_iter().map(|m| (Check::Runtime, m)));
        }
        let needs = crate::host::Privileges {
            devices: node.has_gpu(),
            features: node.feature_set(),
            unprivileged: unprivileged(fleet, e.ctid),
        };
        found.extend(
            host.check_privileges(&needs)
                .err()
                .map(|m| (Check::Privilege, m)),
        );
        if node.has_gpu() {
            match facts.of(on) {
                Err(m) => found.push((Check::Node, m.to_string())),
                Ok(facts) => {
                    let driver = driver_mismatch(fleet, facts, on.filter(|_| several));
                    found.extend(driver.map(|m| (Check::NvidiaDriver, m)));
                    // Without a driver, missing devices are its consequence, not news.
                    if facts.nvidia_driver.is_some() {
                        found.extend(
                            gpu::passthrough(node, facts)
                                .err()
                                .map(|m| (Check::GpuDevice, m)),
                        );
                    }
                }
            }
        }
        // One cause found by two checks (a node offline) is said once.
        let mut said = std::collections::BTreeSet::new();
        found.retain(|(_, m)| said.insert(m.clone()));
        if !found.is_empty() {
            let problems = found
                .into_iter()
                .map(|(check, message)| Problem {
                    ctid: e.ctid,
                    check,
                    message,
                })
                .collect();
            out.insert(e.ctid, problems);
        }
    }
    out
}

/// A node's problems as the one message of its failure: the problem itself, or each of
/// them numbered.
pub fn failure(problems: &[Problem]) -> String {
    match problems {
        [one] => one.message.clone(),
        many => {
            let listed: Vec<String> = many
                .iter()
                .enumerate()
                .map(|(i, p)| format!("({}) {}", i + 1, p.message))
                .collect();
            format!("{} problems: {}", many.len(), listed.join("; "))
        }
    }
}

/// Whether a node's CT is unprivileged: set when its base CT is made, inherited by
/// clones.
fn unprivileged(fleet: &Fleet, mut ctid: Ctid) -> bool {
    while let Some(parent) = fleet.nodes[&ctid].parent {
        ctid = parent;
    }
    fleet.nodes[&ctid].spec.unprivileged.unwrap_or(true)
}

/// Why GPU nodes cannot be built on this host's driver, if they cannot (DESIGN §5 step 4).
/// `on`: the cluster node the GPU CT is built on, named in the message.
pub fn driver_mismatch(fleet: &Fleet, facts: &HostFacts, on: Option<&str>) -> Option<String> {
    let want = fleet.nvidia.driver_version.as_deref();
    let (host, hosts) = match on {
        Some(n) => (
            format!("node '{n}'"),
            format!("the NVIDIA kernel driver of node '{n}'"),
        ),
        None => (
            "the host".to_string(),
            "the host's NVIDIA kernel driver".to_string(),
        ),
    };
    match (&facts.nvidia_driver, want) {
        (_, None) => Some(format!(
            "GPU nodes need nvidia_driver_version in {}",
            fleet.lxc_path().display()
        )),
        (None, Some(w)) => Some(format!(
            "{host} has no NVIDIA kernel driver (/proc/driver/nvidia/version is missing), but GPU nodes need {w}: the GPU subtree is not built{}",
            if on.is_some() { "; place GPU CTs on a node with the driver (`node` in their blocks)" } else { "" }
        )),
        (Some(have), Some(w)) if have != w => Some(format!(
            "{hosts} is {have} (/proc/driver/nvidia/version) but nvidia_driver_version is {w}: the userspace driver must equal the kernel's, so the GPU subtree is not built. Set nvidia_driver_version (and the runfile URL) to {have}, or upgrade the host driver"
        )),
        _ => None,
    }
}
