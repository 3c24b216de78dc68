//! Preflight: what the host must have before a node's first change, checked for every
//! node the plan builds, shown by `plan` and enforced by `build` (a node that fails it
//! is not touched; its descendants are blocked).
//!
//! | check | nodes | what |
//! |---|---|---|
//! | [`Check::Storage`] | created or replaced | `storage_pool` is in `storage.cfg` and holds CT disks; a base node's OS template is on the host |
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
use crate::engine::plan::{Action, Entry, RebuildMode};
use crate::fleet::config::Ctid;
use crate::fleet::Fleet;
use crate::host::{Host, HostFacts};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
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

/// Whether the host needs to report its facts for this plan: a GPU node builds.
pub fn needs_facts(fleet: &Fleet, entries: &[Entry]) -> bool {
    entries
        .iter()
        .any(|e| e.action.builds() && fleet.nodes[&e.ctid].has_gpu())
}

/// Every problem of each node that builds, in the order of the table above; a node
/// without any is not in the map.
pub fn check(
    fleet: &Fleet,
    entries: &[Entry],
    host: &dyn Host,
    facts: &HostFacts,
) -> BTreeMap<Ctid, Vec<Problem>> {
    let driver = driver_mismatch(fleet, facts);
    let mut out = BTreeMap::new();
    for e in entries.iter().filter(|e| e.action.builds()) {
        let node = &fleet.nodes[&e.ctid];
        let mut found: Vec<(Check, String)> = Vec::new();
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
            let storage = host.check_storage(&node.spec.storage_pool, ostemplate);
            found.extend(storage.into_iter().map(|m| (Check::Storage, m)));
        }
        let network = crate::engine::plan::runtime_settings(node).network;
        let runtime = host.check_runtime(unprivileged(fleet, e.ctid), network.as_ref());
        found.extend(runtime.into_iter().map(|m| (Check::Runtime, m)));
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
            found.extend(driver.clone().map(|m| (Check::NvidiaDriver, m)));
            // Without a driver, missing devices are its consequence, not news.
            if facts.nvidia_driver.is_some() {
                found.extend(
                    gpu::passthrough(node, facts)
                        .err()
                        .map(|m| (Check::GpuDevice, m)),
                );
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
pub fn driver_mismatch(fleet: &Fleet, facts: &HostFacts) -> Option<String> {
    let want = fleet.nvidia.driver_version.as_deref();
    match (&facts.nvidia_driver, want) {
        (_, None) => Some(format!(
            "GPU nodes need nvidia_driver_version in {}",
            fleet.lxc_path().display()
        )),
        (None, Some(w)) => Some(format!(
            "the host has no NVIDIA kernel driver (/proc/driver/nvidia/version is missing), but GPU nodes need {w}: the GPU subtree is not built"
        )),
        (Some(have), Some(w)) if have != w => Some(format!(
            "the host's NVIDIA kernel driver is {have} (/proc/driver/nvidia/version) but nvidia_driver_version is {w}: the userspace driver must equal the kernel's, so the GPU subtree is not built. Set nvidia_driver_version (and the runfile URL) to {have}, or upgrade the host driver"
        )),
        _ => None,
    }
}
