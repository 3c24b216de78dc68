//! What a node *is*: its manifest and its hash.
//!
//! `hash(node) = blake3(canonical-JSON(manifest))`. The [`Manifest`] is the canonical
//! pre-image: a sorted, self-describing record of every build input of the node. Two nodes
//! with equal manifests build equal containers; a node whose manifest changed must be
//! rebuilt, and so must everything cloned from it (the parent's hash is an input).
//!
//! | input | in the hash | why |
//! |---|---|---|
//! | build fields of the block: `template` (base nodes only; clones ignore it), `storage_pool`, `unprivileged`, `features`, `gpu_assignment`, `portainer_role`, `vllm_*`, `is_template`, any unknown field — a field written with its default value (`"gpu_assignment": "none"`, `"portainer_role": "none"`, `"features": ""`, `"is_template": false`, `"unprivileged": true`, `null`) counts as absent, and `features` as a set | yes | they change what is inside the container |
//! | runtime fields: `memory_mb`, `cores`, `name`, `network_config`, `mac_address`, `storage_size_gb`, `onboot`, and the labels `static_ip`, `template_snapshot_name`, `rebuild`, `keep_generations` | **no** | applied with `pct set` / `pct resize` as an in-place update; a change is an *update*, never a rebuild |
//! | placement: `node` (and the hypervisor config's `default_node`) | **no** | the same CT on another node is the same build: a changed node is a migration, never a rebuild |
//! | the CTID | yes | hooks receive it as their argument |
//! | content of the node's hook `phoenix_hypervisor_setup_<CTID>.sh` and of every file under the hooks `lib/` | yes | scripts are code |
//! | content of the built-in step scripts that apply (NVIDIA for GPU nodes, Docker for `nesting=1`) | yes | ditto |
//! | the Portainer settings of `phoenix_hypervisor_config.json` a node's role uses: the server image (role `server`); the agent image, server address and agent port (role `agent`) — only on `nesting=1` nodes | yes | the Docker step starts that container with them |
//! | NVIDIA driver version, runfile URL, repo URL — **only if the node or an ancestor has a GPU** | yes | a driver bump rebuilds exactly the GPU subtree |
//! | the parent's CTID and hash | yes | Merkle chain: a changed template rebuilds its descendants |
//! | [`RECIPE`], phoenix's recipe version | yes | bumped when a built-in step changes meaning |
//! | secrets: any field whose name contains `password`, `passwd`, `passphrase`, `secret`, `token`, `api_key`, `apikey`, `private_key` | **never** | rotate a token without rebuilding; never written to manifests or logs |
//!
//! Canonical JSON is defined in [`crate::engine::canon`]. The snapshot of a built node is
//! [`SnapshotName::for_hash`]: `phx-` + the first 32 hex digits.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::engine::canon;
use crate::engine::snapshot::SnapshotName;
pub use crate::fleet::config::is_secret_field;
use crate::fleet::config::{Ctid, Node, Nvidia, PortainerRole};
use crate::fleet::Fleet;

/// Bumped whenever a built-in step changes what it does to a container.
pub const RECIPE: u32 = 1;

/// Fields applied to a live CT without rebuilding it, or pure labels.
pub const RUNTIME_FIELDS: &[&str] = &[
    "name",
    "memory_mb",
    "cores",
    "network_config",
    "mac_address",
    "storage_size_gb",
    "onboot",
    "static_ip",
    "template_snapshot_name",
    "rebuild",
    "keep_generations",
    // Placement is not content: a CT on another node is the same CT, migrated.
    "node",
    // The edge is hashed as the parent's CTID and hash, in `parent`.
    "clone_from_template_ctid",
];

/// 64 hex digits of blake3.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct NodeHash(String);

impl NodeHash {
    pub fn of(manifest: &Manifest) -> NodeHash {
        NodeHash(
            blake3::hash(manifest.canonical().as_bytes())
                .to_hex()
                .to_string(),
        )
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn snapshot(&self) -> SnapshotName {
        SnapshotName::for_hash(&self.0)
    }
    /// Reads a hash back (from a state file); `None` unless 64 lowercase hex digits.
    pub fn parse(text: &str) -> Option<NodeHash> {
        (text.len() == 64 && text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
            .then(|| NodeHash(text.to_string()))
    }
}

impl fmt::Display for NodeHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A script input: where it came from and the blake3 of its bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScriptRef {
    pub name: String,
    pub blake3: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParentRef {
    pub ctid: Ctid,
    pub hash: NodeHash,
}

/// The canonical pre-image of a node's hash. Field order here is irrelevant: the hash is
/// taken over canonical JSON, whose keys are sorted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub recipe: u32,
    pub ctid: Ctid,
    /// Build fields of the block (runtime fields and secrets removed).
    pub build: BTreeMap<String, serde_json::Value>,
    /// The node's own hook, if it has one.
    pub hook: Option<ScriptRef>,
    /// Every file under the hooks `lib/`: relative path → blake3.
    pub lib: BTreeMap<String, String>,
    /// Built-in steps that apply to the node: `nvidia`, `docker`.
    pub steps: BTreeMap<String, ScriptRef>,
    /// NVIDIA settings, present only in GPU subtrees.
    pub nvidia: Option<Nvidia>,
    pub parent: Option<ParentRef>,
    /// Host-wide settings the node's Portainer role uses (absent when it has none).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub portainer: BTreeMap<String, String>,
}

impl Manifest {
    pub fn canonical(&self) -> String {
        canon::to_string(&serde_json::to_value(self).expect("manifest serialises"))
    }
}

/// A node's manifest and the hash of it.
#[derive(Clone, Debug, PartialEq)]
pub struct Hashed {
    pub manifest: Manifest,
    pub hash: NodeHash,
}

/// Hashes every node of a valid fleet, parents first.
pub fn hash_fleet(fleet: &Fleet) -> BTreeMap<Ctid, Hashed> {
    hash_fleet_fixed(fleet, &BTreeMap::new())
}

/// Hashes a fleet some of whose nodes are held at a generation they were built as (a
/// pinned rollback): those keep the hash given, and their descendants are hashed
/// against it, so that they are planned against the pinned generation's snapshot.
pub fn hash_fleet_fixed(fleet: &Fleet, fixed: &BTreeMap<Ctid, Hashed>) -> BTreeMap<Ctid, Hashed> {
    use rayon::prelude::*;
    let lib: BTreeMap<String, String> = fleet
        .hooks
        .lib
        .iter()
        .map(|(k, s)| (k.clone(), s.digest.clone()))
        .collect();
    // A node's hash needs its parent's, so the fleet is hashed a generation at a time;
    // the nodes of one generation are independent and hashed in parallel.
    let mut depth: BTreeMap<Ctid, usize> = BTreeMap::new();
    let mut gpu_subtree: BTreeMap<Ctid, bool> = BTreeMap::new();
    let mut generations: Vec<Vec<Ctid>> = Vec::new();
    for &ctid in &fleet.graph.order {
        let parent = fleet.graph.parent_of(ctid);
        let d = parent.map_or(0, |p| depth[&p] + 1);
        depth.insert(ctid, d);
        let in_gpu = fleet.nodes[&ctid].has_gpu() || parent.is_some_and(|p| gpu_subtree[&p]);
        gpu_subtree.insert(ctid, in_gpu);
        if generations.len() == d {
            generations.push(Vec::new());
        }
        generations[d].push(ctid);
    }
    let mut out: BTreeMap<Ctid, Hashed> = BTreeMap::new();
    for generation in generations {
        let hashed: Vec<(Ctid, Hashed)> = generation
            .par_iter()
            .map(|&ctid| {
                if let Some(h) = fixed.get(&ctid) {
                    return (ctid, h.clone());
                }
                let parent_ref = fleet.graph.parent_of(ctid).map(|p| ParentRef {
                    ctid: p,
                    hash: out[&p].hash.clone(),
                });
                let node = &fleet.nodes[&ctid];
                let manifest = manifest(fleet, node, &lib, gpu_subtree[&ctid], parent_ref);
                let hash = NodeHash::of(&manifest);
                (ctid, Hashed { manifest, hash })
            })
            .collect();
        out.extend(hashed);
    }
    out
}

fn manifest(
    fleet: &Fleet,
    node: &Node,
    lib: &BTreeMap<String, String>,
    in_gpu_subtree: bool,
    parent: Option<ParentRef>,
) -> Manifest {
    let build = node
        .block
        .iter()
        .filter(|(k, _)| !RUNTIME_FIELDS.contains(&k.as_str()) && !is_secret_field(k))
        .filter(|(k, _)| !(k.as_str() == "template" && parent.is_some()))
        .filter_map(|(k, v)| normalise(k, v).map(|v| (k.clone(), v)))
        .collect();
    let hv = &fleet.hypervisor;
    let mut portainer = BTreeMap::new();
    if node.nesting() {
        match node.portainer_role() {
            PortainerRole::Server => {
                portainer.insert(
                    "server_image".to_string(),
                    hv.portainer_server_image.clone(),
                );
            }
            PortainerRole::Agent => {
                portainer.insert("agent_image".to_string(), hv.portainer_agent_image.clone());
                portainer.insert(
                    "server_ip".to_string(),
                    hv.portainer_server_ip.clone().unwrap_or_default(),
                );
                portainer.insert(
                    "agent_port".to_string(),
                    hv.portainer_agent_port.to_string(),
                );
            }
            PortainerRole::None => {}
        }
    }
    let script_ref = |s: &crate::fleet::config::Script, name: &str| ScriptRef {
        name: name.to_string(),
        blake3: s.digest.clone(),
    };
    let mut steps = BTreeMap::new();
    if node.has_gpu() {
        steps.insert(
            "nvidia".to_string(),
            script_ref(
                &fleet.hooks.nvidia_step,
                crate::fleet::config::NVIDIA_STEP_FILE,
            ),
        );
    }
    if node.nesting() {
        steps.insert(
            "docker".to_string(),
            script_ref(
                &fleet.hooks.docker_step,
                crate::fleet::config::DOCKER_STEP_FILE,
            ),
        );
    }
    Manifest {
        recipe: RECIPE,
        ctid: node.ctid,
        build,
        hook: fleet
            .hooks
            .node_hooks
            .get(&node.ctid)
            .map(|s| script_ref(s, &crate::fleet::config::hook_file_name(node.ctid))),
        lib: lib.clone(),
        steps,
        nvidia: in_gpu_subtree.then(|| fleet.nvidia.clone()),
        parent,
        portainer,
    }
}

/// A build field as hashed: secrets removed, defaults dropped, `features` as a sorted set.
fn normalise(key: &str, v: &serde_json::Value) -> Option<serde_json::Value> {
    use serde_json::Value as V;
    let is_default = match (key, v) {
        (_, V::Null) => true,
        ("gpu_assignment" | "portainer_role", V::String(s)) => s == "none",
        ("features", V::String(s)) => s.is_empty(),
        ("is_template", V::Bool(b)) => !b,
        ("unprivileged", V::Bool(b)) => *b,
        _ => false,
    };
    if is_default {
        return None;
    }
    if let ("features", V::String(s)) = (key, v) {
        let mut parts: Vec<&str> = s
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .collect();
        parts.sort_unstable();
        parts.dedup();
        return Some(V::String(parts.join(",")));
    }
    Some(strip_secrets(v))
}

/// Removes secret-named members at any depth of a build field.
fn strip_secrets(v: &serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => serde_json::Value::Object(
            m.iter()
                .filter(|(k, _)| !is_secret_field(k))
                .map(|(k, v)| (k.clone(), strip_secrets(v)))
                .collect(),
        ),
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.iter().map(strip_secrets).collect())
        }
        other => other.clone(),
    }
}
