//! Semantic rules of a fleet (DESIGN §2) beyond what a schema can say. Each rule returns
//! located problems; all rules run, none stops at the first. Graph rules (unknown parent,
//! cycle, parent that is not a template) live in [`crate::fleet::graph`].

use std::collections::BTreeMap;

use crate::fleet::config::is_valid_snapshot_name;
use crate::fleet::config::{Ctid, Node, PortainerRole};
use crate::fleet::diag::Problem;
use crate::fleet::Fleet;

pub fn check(fleet: &Fleet) -> Vec<Problem> {
    let mut out = Vec::new();
    for node in fleet.nodes.values() {
        base_needs_os_template(fleet, node, &mut out);
        privilege_matches_parent(fleet, node, &mut out);
        disk_does_not_shrink(fleet, node, &mut out);
        template_snapshot_name(fleet, node, &mut out);
        agent_needs_server(fleet, node, &mut out);
        hook_permissions(fleet, node, &mut out);
        rebuild_policy(fleet, node, &mut out);
    }
    unique_addresses(fleet, &mut out);
    stray_hooks(fleet, &mut out);
    runfile_matches_driver(fleet, &mut out);
    gpus_need_nvidia_settings(fleet, &mut out);
    store_range(fleet, &mut out);
    out
}

/// `proxmox_defaults.store_vmid_range` reads as a range, and none of the fleet's CTIDs is
/// in it: phoenix gives every VMID of the range to its store templates, so a node there
/// would be taken for one (or collide with one).
fn store_range(fleet: &Fleet, out: &mut Vec<Problem>) {
    let hv = &fleet.hypervisor;
    let pointer = "/proxmox_defaults/store_vmid_range";
    let Some(text) = hv
        .tree
        .get("proxmox_defaults")
        .and_then(|d| d.get("store_vmid_range"))
        .and_then(|v| v.as_str())
    else {
        return;
    };
    let problem = || {
        Problem::error(
            "config::store-range",
            &hv.file,
            hv.tree.locate(pointer, false),
            pointer,
        )
    };
    let range = match crate::fleet::config::VmidRange::parse(text) {
        Ok(r) => r,
        Err(e) => {
            out.push(problem().message(e).label("store templates' VMIDs").help(
                "give a range of VMIDs no CT or VM of the cluster uses, e.g. \"9000-9099\", or remove the key to clone in full",
            ));
            return;
        }
    };
    let inside: Vec<Ctid> = fleet
        .nodes
        .keys()
        .copied()
        .filter(|&c| range.contains(c))
        .collect();
    if !inside.is_empty() {
        let listed: Vec<String> = inside.iter().map(|c| c.to_string()).collect();
        let above = fleet.nodes.keys().max().copied().unwrap_or(0) + 1;
        let first = range.first.max(above);
        out.push(
            problem()
                .message(format!(
                    "store_vmid_range {range} holds the fleet's CTID{} {} ({}): phoenix gives every VMID of the range to its store templates",
                    if inside.len() == 1 { "" } else { "s" },
                    listed.join(", "),
                    fleet.lxc_path().display()
                ))
                .label("overlaps the fleet")
                .help(format!(
                    "move the range past the fleet's CTIDs (e.g. \"{first}-{}\"), or give those nodes other CTIDs",
                    first + (range.last - range.first)
                )),
        );
    }
}

/// GPU nodes install the NVIDIA userspace driver from the runfile URL at the driver
/// version: a GPU fleet without them validates nowhere else and would fail on the host.
fn gpus_need_nvidia_settings(fleet: &Fleet, out: &mut Vec<Problem>) {
    let Some(first) = fleet.nodes.values().find(|n| n.has_gpu()) else {
        return;
    };
    let missing: Vec<&str> = [
        (
            "nvidia_driver_version",
            fleet.nvidia.driver_version.is_none(),
        ),
        ("nvidia_runfile_url", fleet.nvidia.runfile_url.is_none()),
    ]
    .into_iter()
    .filter_map(|(k, gone)| gone.then_some(k))
    .collect();
    if missing.is_empty() {
        return;
    }
    out.push(
        at(fleet, first, "gpu_assignment", "config::gpu-needs-nvidia")
            .message(format!(
                "CT {} is assigned GPUs, but the file has no {}: GPU nodes install the NVIDIA userspace driver from them",
                first.ctid,
                missing.join(" and ")
            ))
            .label("GPUs assigned here")
            .help("add \"nvidia_driver_version\" (the host's kernel driver, /proc/driver/nvidia/version) and \"nvidia_runfile_url\" (https://us.download.nvidia.com/XFree86/Linux-x86_64/<version>/NVIDIA-Linux-x86_64-<version>.run) at the top of the file"),
    );
}

fn at(fleet: &Fleet, node: &Node, field: &str, code: &'static str) -> Problem {
    let pointer = format!("{}/{field}", node.pointer);
    // `field` may be nested (`network_config/ip`); a missing one is located at the block's key.
    let mut parts = field.split('/');
    let exists = parts
        .next()
        .and_then(|first| node.block.get(first))
        .is_some_and(|v| parts.try_fold(v, |v, k| v.get(k)).is_some());
    let span = if exists {
        fleet.lxc_tree.locate(&pointer, false)
    } else {
        node.key_span
    };
    Problem::error(code, &fleet.lxc_file, span, &pointer)
}

fn base_needs_os_template(fleet: &Fleet, node: &Node, out: &mut Vec<Problem>) {
    if node.parent.is_none() && node.spec.template.is_none() {
        out.push(
            at(fleet, node, "template", "config::missing-os-template")
                .message(format!("CT {} has no parent and no `template` to create it from", node.ctid))
                .label("base node")
                .help("add \"template\": \"local:vztmpl/<os template>.tar.zst\" (or a path), or clone it from a template with clone_from_template_ctid"),
        );
    }
}

/// Clones keep their source's privilege: PVE cannot change it on clone.
fn privilege_matches_parent(fleet: &Fleet, node: &Node, out: &mut Vec<Problem>) {
    let Some(parent) = node.parent.and_then(|p| fleet.node(p)) else {
        return;
    };
    let (Some(mine), theirs) = (
        node.spec.unprivileged,
        parent.spec.unprivileged.unwrap_or(true),
    ) else {
        return;
    };
    if mine != theirs {
        let word = |u: bool| if u { "unprivileged" } else { "privileged" };
        out.push(
            at(fleet, node, "unprivileged", "config::privilege-mismatch")
                .message(format!(
                    "CT {} is declared {} but clones {} {}, which is {}",
                    node.ctid,
                    word(mine),
                    parent.ctid,
                    parent.name(),
                    word(theirs)
                ))
                .label("differs from the parent")
                .related(parent.key_span, "parent defined here")
                .help(format!(
                    "Proxmox cannot change privilege on clone: set \"unprivileged\": {theirs} here, or give the parent template \"unprivileged\": {mine}"
                )),
        );
    }
}

fn disk_does_not_shrink(fleet: &Fleet, node: &Node, out: &mut Vec<Problem>) {
    let Some(parent) = node.parent.and_then(|p| fleet.node(p)) else {
        return;
    };
    if node.spec.storage_size_gb < parent.spec.storage_size_gb {
        out.push(
            at(fleet, node, "storage_size_gb", "config::disk-shrink")
                .message(format!(
                    "CT {} asks for {} GB but its parent {} has {} GB; a clone's disk can grow, never shrink",
                    node.ctid, node.spec.storage_size_gb, parent.ctid, parent.spec.storage_size_gb
                ))
                .label("smaller than the parent's disk")
                .help(format!("use at least {}", parent.spec.storage_size_gb)),
        );
    }
}

/// Every `node` of a block, and the hypervisor config's `default_node`, names a node of
/// the cluster the host is: `nodes`, the cluster's nodes as the host lists them (`None`:
/// a host that is one machine, where nothing can be placed; `host` names it). The host
/// is known only to the command line, so this runs there, before anything changes.
pub fn placement(fleet: &Fleet, nodes: Option<&[&str]>, host: &str) -> Vec<Problem> {
    let mut out = Vec::new();
    let listed = |nodes: &[&str]| nodes.join(", ");
    let wrong = |name: &str| match nodes {
        Some(n) => !n.contains(&name),
        None => true,
    };
    for node in fleet.nodes.values() {
        let Some(name) = node.spec.node.as_deref().filter(|n| wrong(n)) else {
            continue;
        };
        let p = at(fleet, node, "node", "config::unknown-node");
        out.push(match nodes {
            Some(known) => p
                .message(format!(
                    "CT {} is placed on node '{name}', which is not a node of the cluster (it has: {})",
                    node.ctid,
                    listed(known)
                ))
                .label("not a node of this cluster")
                .help(format!(
                    "set \"node\" to one of {}, or leave it out (the CT then stays where it is, and a new one goes where new CTs go)",
                    listed(known)
                )),
            None => p
                .message(format!(
                    "CT {} is placed on node '{name}', but {host} is one machine: placing CTs on nodes needs a Proxmox cluster reached over its API",
                    node.ctid
                ))
                .label("no nodes to place on")
                .help("leave \"node\" out, or run with --backend pve --pve-url https://<node>:8006"),
        });
    }
    if let Some(name) = fleet
        .hypervisor
        .default_node
        .as_deref()
        .filter(|n| wrong(n))
    {
        let hv = &fleet.hypervisor;
        let pointer = "/proxmox_defaults/default_node";
        let p = Problem::error(
            "config::unknown-node",
            &hv.file,
            hv.tree.locate(pointer, false),
            pointer,
        );
        out.push(match nodes {
            Some(known) => p
                .message(format!(
                    "default_node '{name}' is not a node of the cluster (it has: {})",
                    listed(known)
                ))
                .label("not a node of this cluster")
                .help(format!("set it to one of {}, or leave it out", listed(known))),
            None => p
                .message(format!(
                    "default_node '{name}' names a node, but {host} is one machine"
                ))
                .label("no nodes to place on")
                .help("leave default_node out, or run with --backend pve --pve-url https://<node>:8006"),
        });
    }
    out
}

/// Nodes asking for more cores than the host has `cpus`: Proxmox takes it (`cores` is a
/// limit), but the CT never gets more than the host's CPUs, so the number says something
/// untrue. Warnings; the host is known only to the command line (`cli`), not to the
/// fleet's own rules.
pub fn cores_above_the_host(fleet: &Fleet, cpus: u64) -> Vec<Problem> {
    fleet
        .nodes
        .values()
        .filter(|node| node.spec.cores > cpus)
        .map(|node| {
            at(fleet, node, "cores", "config::cores-above-host")
                .message(format!(
                    "CT {} asks for {} cores, but the host has {cpus} CPUs: it never gets more than {cpus}",
                    node.ctid, node.spec.cores
                ))
                .label("more than the host's CPUs")
                .help(format!(
                    "use at most {cpus} (PHOENIX_HOST_CPUS names the CPUs of the host to check against)"
                ))
                .warning()
        })
        .collect()
}

/// The original cloned from the source's `template_snapshot_name`; a template that has
/// clones keeps needing one, and it must be a name Proxmox accepts.
fn template_snapshot_name(fleet: &Fleet, node: &Node, out: &mut Vec<Problem>) {
    match &node.spec.template_snapshot_name {
        Some(name) if !is_valid_snapshot_name(name) => out.push(
            at(fleet, node, "template_snapshot_name", "config::bad-snapshot-name")
                .message(format!("`{name}` is not a valid Proxmox snapshot name"))
                .label("invalid name")
                .help("2 to 40 characters: a letter first, then letters, digits, `_` or `-`"),
        ),
        Some(name) if name.starts_with("phx-") => out.push(
            at(fleet, node, "template_snapshot_name", "config::bad-snapshot-name")
                .message(format!("`{name}` uses the `phx-` prefix, which phoenix reserves for its build snapshots"))
                .label("reserved prefix")
                .help("choose another name"),
        ),
        None if node.is_template() && !fleet.graph.children_of(node.ctid).is_empty() => out.push(
            at(fleet, node, "template_snapshot_name", "config::missing-snapshot-name")
                .message(format!("template {} has clones but no template_snapshot_name", node.ctid))
                .label("template with clones")
                .help("add \"template_snapshot_name\": \"<name>\" (phoenix records it in the snapshot description; the original format requires it)"),
        ),
        _ => {}
    }
}

fn agent_needs_server(fleet: &Fleet, node: &Node, out: &mut Vec<Problem>) {
    if node.portainer_role() == PortainerRole::Agent
        && fleet.hypervisor.portainer_server_ip.is_none()
    {
        out.push(
            at(
                fleet,
                node,
                "portainer_role",
                "config::agent-without-server",
            )
            .message(format!(
                "CT {} is a Portainer agent but no server address is configured",
                node.ctid
            ))
            .label("agent")
            .help(format!(
                "set network.portainer_server_ip (and portainer_agent_port) in {}",
                fleet.hypervisor.file.path.display()
            )),
        );
    }
}

fn hook_permissions(fleet: &Fleet, node: &Node, out: &mut Vec<Problem>) {
    let Some(hook) = fleet.hooks.node_hooks.get(&node.ctid) else {
        return;
    };
    let path = hook
        .path
        .as_ref()
        .map_or_else(String::new, |p| p.display().to_string());
    if hook.mode & 0o111 == 0 {
        out.push(
            Problem::error(
                "hooks::not-executable",
                &fleet.lxc_file,
                node.key_span,
                &node.pointer,
            )
            .message(format!("hook {path} of CT {} is not executable", node.ctid))
            .label("this node's hook")
            .help(format!("chmod 755 {path}")),
        );
    }
    if hook.mode & 0o002 != 0 {
        out.push(
            Problem::error(
                "hooks::world-writable",
                &fleet.lxc_file,
                node.key_span,
                &node.pointer,
            )
            .message(format!(
                "hook {path} of CT {} is writable by any user, and phoenix runs it as root",
                node.ctid
            ))
            .label("this node's hook")
            .help(format!("chmod o-w {path}")),
        );
    }
}

fn rebuild_policy(fleet: &Fleet, node: &Node, out: &mut Vec<Problem>) {
    if node.is_template() && node.spec.rebuild.is_some() {
        out.push(
            at(fleet, node, "rebuild", "config::rebuild-on-template")
                .message(format!(
                    "template {} sets `rebuild`, but templates are always replaced",
                    node.ctid
                ))
                .label("ignored on a template")
                .help("remove `rebuild`: it is the consent of a standard container"),
        );
    }
}

/// Hooks that will never run: for a CTID the config does not define, or under the name the
/// original orchestrator's code used. Warnings: the fleet still builds.
fn stray_hooks(fleet: &Fleet, out: &mut Vec<Problem>) {
    // Blocks that failed to load are still defined: look at the file, not the nodes.
    let configs = fleet.lxc_tree.get("lxc_configs");
    for (ctid, hook) in &fleet.hooks.node_hooks {
        if configs.and_then(|c| c.get(&ctid.to_string())).is_none() {
            let path = hook.path.clone().unwrap_or_default();
            out.push(
                Problem::file(
                    "hooks::no-such-node",
                    &path,
                    format!(
                        "hook for CT {ctid}, which {} does not define: it never runs",
                        fleet.lxc_path().display()
                    ),
                    "remove it, or fix the CTID in its name",
                )
                .warning(),
            );
        }
    }
    for path in &fleet.hooks.not_run {
        out.push(
            Problem::file(
                "hooks::not-run",
                path,
                "the original orchestrator's create/clone script: phoenix creates and clones CTs itself (it names their snapshots), so this never runs".to_string(),
                "move what it does beyond pct create/clone into the node's setup hook, phoenix_hypervisor_setup_<CTID>.sh, then remove it",
            )
            .warning(),
        );
    }
    for (ctid, path) in &fleet.hooks.original_names {
        let wanted = crate::fleet::config::hook_file_name(*ctid);
        let help = if fleet.hooks.node_hooks.contains_key(ctid) {
            format!("{wanted} exists too and is the one phoenix runs; remove this one")
        } else {
            format!("rename it to {wanted} if it is CT {ctid}'s setup")
        };
        out.push(
            Problem::file(
                "hooks::original-name",
                path,
                "this is the original orchestrator's per-container script name; phoenix does not run it".to_string(),
                &help,
            )
            .warning(),
        );
    }
}

fn unique_addresses(fleet: &Fleet, out: &mut Vec<Problem>) {
    let mut macs: BTreeMap<String, Ctid> = BTreeMap::new();
    let mut ips: BTreeMap<String, Ctid> = BTreeMap::new();
    for node in fleet.nodes.values() {
        if let Some(mac) = &node.spec.mac_address {
            let key = mac.to_ascii_lowercase();
            match macs.get(&key) {
                Some(&first) => out.push(duplicate(
                    fleet,
                    node,
                    first,
                    "mac_address",
                    "config::duplicate-mac",
                    mac,
                )),
                None => {
                    macs.insert(key, node.ctid);
                }
            }
        }
        if let Some(net) = &node.spec.network_config {
            if net.ip == "dhcp" || net.ip == "manual" {
                continue;
            }
            let addr = net.ip.split('/').next().unwrap_or(&net.ip).to_string();
            match ips.get(&addr) {
                Some(&first) => out.push(duplicate(
                    fleet,
                    node,
                    first,
                    "network_config/ip",
                    "config::duplicate-ip",
                    &addr,
                )),
                None => {
                    ips.insert(addr, node.ctid);
                }
            }
        }
    }
}

fn duplicate(
    fleet: &Fleet,
    node: &Node,
    first: Ctid,
    field: &str,
    code: &'static str,
    value: &str,
) -> Problem {
    let first_ptr = format!("{}/{field}", fleet.nodes[&first].pointer);
    at(fleet, node, field, code)
        .message(format!(
            "CT {} uses {value}, already used by CT {first}",
            node.ctid
        ))
        .label("duplicate")
        .related(
            fleet.lxc_tree.locate(&first_ptr, false),
            format!("used by {first}"),
        )
        .help("every container needs its own address; change one of them")
}

/// Version-looking path segments of the runfile URL must equal the driver version.
fn runfile_matches_driver(fleet: &Fleet, out: &mut Vec<Problem>) {
    let (Some(version), Some(url)) = (&fleet.nvidia.driver_version, &fleet.nvidia.runfile_url)
    else {
        return;
    };
    let named: Vec<&str> = url
        .split(['/', '-'])
        .map(|s| s.strip_suffix(".run").unwrap_or(s))
        .filter(|s| {
            s.split('.').count() >= 2
                && s.split('.')
                    .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        })
        .collect();
    if let Some(other) = named.iter().find(|v| *v != version) {
        let span = fleet.lxc_tree.locate("/nvidia_runfile_url", false);
        out.push(
            Problem::error("config::runfile-version", &fleet.lxc_file, span, "/nvidia_runfile_url")
                .message(format!("runfile URL names driver {other}, but nvidia_driver_version is {version}"))
                .label("other version")
                .related(fleet.lxc_tree.locate("/nvidia_driver_version", false), "driver version")
                .help("the userspace driver must equal the host's kernel driver: make both name the same version"),
        );
    }
}
