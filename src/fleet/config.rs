//! The fleet's typed model: nodes with their blocks, the host-wide settings, the hook
//! scripts, and the names and rules every layer shares (CTIDs, snapshot names, secret
//! fields). Read by [`crate::fleet::load`]; nothing here reads a file's JSON or touches a
//! host.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::fleet::diag::SourceFile;
use crate::fleet::json::{self, Span};

/// A Proxmox VMID.
pub type Ctid = u32;

pub const LXC_FILE: &str = "phoenix_lxc_configs.json";
pub const HYPERVISOR_FILE: &str = "phoenix_hypervisor_config.json";
pub const LXC_SCHEMA_FILE: &str = "phoenix_lxc_configs.schema.json";
pub const HYPERVISOR_SCHEMA_FILE: &str = "phoenix_hypervisor_config.schema.json";
pub const DEFAULT_CONFIG_DIR: &str = "/usr/local/phoenix_hypervisor/etc";
pub const DEFAULT_HOOKS_DIR: &str = "/usr/local/phoenix_hypervisor/bin";

/// Config files larger than this are refused: a fleet of 10,000 nodes is about 6 MiB.
pub const MAX_CONFIG_BYTES: u64 = 32 * 1024 * 1024;
/// The secret string values in a config block, at any depth (four characters or more:
/// shorter ones would mask ordinary words).
pub fn secret_values(block: &serde_json::Map<String, serde_json::Value>) -> Vec<String> {
    fn walk(key: &str, v: &serde_json::Value, out: &mut Vec<String>) {
        match v {
            serde_json::Value::String(s) if is_secret_field(key) && s.chars().count() >= 4 => {
                out.push(s.clone())
            }
            serde_json::Value::Object(m) => m.iter().for_each(|(k, v)| walk(k, v, out)),
            serde_json::Value::Array(a) => a.iter().for_each(|v| walk(key, v, out)),
            _ => {}
        }
    }
    let mut out = Vec::new();
    block.iter().for_each(|(k, v)| walk(k, v, &mut out));
    out.sort_by_key(|s| std::cmp::Reverse(s.len()));
    out.dedup();
    out
}
/// Hooks, lib files and step scripts are read up to this size (a script this large is not
/// a script).
pub const MAX_SCRIPT_BYTES: u64 = 16 * 1024 * 1024;

/// The node's own hook: `phoenix_hypervisor_setup_<CTID>.sh`.
pub fn hook_file_name(ctid: Ctid) -> String {
    format!("phoenix_hypervisor_setup_{ctid}.sh")
}
pub const NVIDIA_STEP_FILE: &str = "phoenix_hypervisor_lxc_nvidia.sh";
pub const DOCKER_STEP_FILE: &str = "phoenix_hypervisor_lxc_docker.sh";
/// The original's host set-up, run before the nodes of every build that has work.
pub const INITIAL_SETUP_FILE: &str = "phoenix_hypervisor_initial_setup.sh";
#[derive(Clone, Debug)]
pub struct Paths {
    pub config_dir: PathBuf,
    pub hooks_dir: PathBuf,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PortainerRole {
    Server,
    Agent,
    None,
}

/// Consent for replacing a standard container whose parent changed (DESIGN §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RebuildPolicy {
    Replace,
    InPlace,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetworkConfig {
    pub name: String,
    pub bridge: String,
    pub ip: String,
    #[serde(default)]
    pub gw: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub(crate) enum CtidRef {
    Text(String),
    Number(u64),
}

/// The fields of a block that phoenix itself acts on; the schema guarantees their types.
#[derive(Clone, Debug, Deserialize)]
pub struct Block {
    pub name: String,
    pub memory_mb: u64,
    pub cores: u64,
    #[serde(default)]
    pub template: Option<String>,
    pub storage_pool: String,
    pub storage_size_gb: u64,
    #[serde(default)]
    pub network_config: Option<NetworkConfig>,
    #[serde(default)]
    pub features: Option<String>,
    #[serde(default)]
    pub mac_address: Option<String>,
    #[serde(default)]
    pub gpu_assignment: Option<String>,
    #[serde(default)]
    pub portainer_role: Option<PortainerRole>,
    #[serde(default)]
    pub unprivileged: Option<bool>,
    #[serde(default)]
    pub is_template: Option<bool>,
    #[serde(default)]
    pub template_snapshot_name: Option<String>,
    #[serde(default)]
    pub(crate) clone_from_template_ctid: Option<CtidRef>,
    #[serde(default)]
    pub rebuild: Option<RebuildPolicy>,
    #[serde(default)]
    pub onboot: Option<bool>,
    /// Keep the generation a replaced CT held (default: containers yes, templates no).
    #[serde(default)]
    pub keep_generations: Option<bool>,
    /// The cluster node the CT lives on (placement, not content: out of the hash).
    #[serde(default)]
    pub node: Option<String>,
}

/// One template or container of the fleet: a build node.
#[derive(Clone, Debug)]
pub struct Node {
    pub ctid: Ctid,
    /// JSON pointer of the block: `/lxc_configs/950`.
    pub pointer: String,
    pub key_span: Span,
    /// The block as written (types checked by the schema).
    pub block: serde_json::Map<String, serde_json::Value>,
    pub spec: Block,
    pub parent: Option<Ctid>,
}

impl Node {
    pub fn is_template(&self) -> bool {
        self.spec.is_template == Some(true)
    }
    /// GPU indices assigned to the node (`"0,1"` → `[0, 1]`); empty for `none`.
    /// Its `features` as a set (`nesting=1,keyctl=1` → `nesting` → `1`, `keyctl` → `1`).
    pub fn feature_set(&self) -> std::collections::BTreeMap<String, String> {
        self.spec
            .features
            .as_deref()
            .unwrap_or("")
            .split(',')
            .filter_map(|kv| kv.trim().split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect()
    }

    /// Whether the generation a replaced CT held is kept (`keep_generations`; containers
    /// by default, templates only when asked).
    pub fn keeps_generations(&self) -> bool {
        self.spec.keep_generations.unwrap_or(!self.is_template())
    }

    pub fn gpus(&self) -> Vec<u32> {
        match self.spec.gpu_assignment.as_deref() {
            None | Some("none") => Vec::new(),
            Some(list) => list.split(',').filter_map(|g| g.parse().ok()).collect(),
        }
    }
    pub fn has_gpu(&self) -> bool {
        !self.gpus().is_empty()
    }
    /// `features` contains `nesting=1`: the Docker step applies.
    pub fn nesting(&self) -> bool {
        self.spec
            .features
            .as_deref()
            .is_some_and(|f| f.split(',').any(|kv| kv.trim() == "nesting=1"))
    }
    pub fn portainer_role(&self) -> PortainerRole {
        self.spec.portainer_role.unwrap_or(PortainerRole::None)
    }
    pub fn name(&self) -> &str {
        &self.spec.name
    }
    /// The node the fleet places this CT on: its block's `node`, else the hypervisor
    /// config's `default_node`; `None` when neither says (it stays where it is, and a new
    /// one goes where the host puts new CTs).
    pub fn placed_on<'a>(&'a self, hypervisor: &'a Hypervisor) -> Option<&'a str> {
        self.spec
            .node
            .as_deref()
            .or(hypervisor.default_node.as_deref())
    }
}

/// Top-level NVIDIA settings of `phoenix_lxc_configs.json`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Nvidia {
    pub driver_version: Option<String>,
    pub runfile_url: Option<String>,
    pub repo_url: Option<String>,
}

/// What phoenix reads from `phoenix_hypervisor_config.json`. The rest is kept, untouched.
#[derive(Clone, Debug)]
pub struct Hypervisor {
    pub file: Arc<SourceFile>,
    pub tree: json::Value,
    pub portainer_server_ip: Option<String>,
    pub portainer_agent_port: u16,
    pub portainer_server_image: String,
    pub portainer_agent_image: String,
    /// `behavior.debug_mode`: run as with `-v`; hooks get `PHOENIX_DEBUG=1`.
    pub debug_mode: bool,
    /// `behavior.rollback_on_failure`.
    pub rollback_on_failure: bool,
    /// `proxmox_defaults.backup_storage`: where replaced generations are kept.
    pub backup_storage: String,
    /// `proxmox_defaults.store_vmid_range`: the VMIDs of phoenix's store templates; `None`
    /// leaves store templates off (every clone a full clone).
    pub store_range: Option<VmidRange>,
    /// `proxmox_defaults.default_node`: the cluster node of every CT whose block names
    /// none.
    pub default_node: Option<String>,
}

/// A range of Proxmox VMIDs, `first-last` inclusive (`9000-9099`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct VmidRange {
    pub first: Ctid,
    pub last: Ctid,
}

impl VmidRange {
    /// Reads `first-last`; `Err` says what is wrong with it.
    pub fn parse(text: &str) -> Result<VmidRange, String> {
        let (a, b) = text.split_once('-').ok_or_else(|| {
            format!("`{text}` is not a range of VMIDs: write `first-last`, e.g. `9000-9099`")
        })?;
        let id = |t: &str| {
            parse_ctid(t.trim()).ok_or_else(|| {
                format!(
                    "`{t}` is not a VMID (an integer from 100 to 999999999, without leading zeros)"
                )
            })
        };
        let (first, last) = (id(a)?, id(b)?);
        if first > last {
            return Err(format!(
                "the range {text} is empty: its first VMID is above its last (write `{last}-{first}`)"
            ));
        }
        Ok(VmidRange { first, last })
    }
    pub fn contains(&self, vmid: Ctid) -> bool {
        (self.first..=self.last).contains(&vmid)
    }
    pub fn iter(&self) -> impl Iterator<Item = Ctid> {
        self.first..=self.last
    }
}

impl std::fmt::Display for VmidRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

/// A script phoenix hashes: a node's hook, a `lib/` file, or a built-in step script.
#[derive(Clone, Debug)]
pub struct Script {
    /// Where it was read from; `builtin:<name>` when the binary's own copy is used.
    pub origin: String,
    pub path: Option<PathBuf>,
    pub bytes: Arc<Vec<u8>>,
    pub digest: String,
    pub mode: u32,
}

impl Script {
    /// Reads a hook, lib file or step script: a regular file of at most
    /// [`MAX_SCRIPT_BYTES`].
    pub(crate) fn read(path: &Path) -> Result<Script, crate::os::FileError> {
        let bytes = crate::os::read_regular(path, MAX_SCRIPT_BYTES)?;
        let mode = fs::metadata(path).map_or(0, |m| m.permissions().mode());
        Ok(Script {
            origin: path.display().to_string(),
            path: Some(path.to_path_buf()),
            digest: blake3::hash(&bytes).to_hex().to_string(),
            bytes: Arc::new(bytes),
            mode,
        })
    }
    pub(crate) fn builtin(name: &str, bytes: &[u8]) -> Script {
        Script {
            origin: format!("builtin:{name}"),
            path: None,
            digest: blake3::hash(bytes).to_hex().to_string(),
            bytes: Arc::new(bytes.to_vec()),
            mode: 0o755,
        }
    }
}

/// The hooks directory, scanned once.
#[derive(Clone, Debug)]
pub struct Hooks {
    pub dir: PathBuf,
    pub node_hooks: BTreeMap<Ctid, Script>,
    /// Every file under `lib/`, by path relative to `lib/`.
    pub lib: BTreeMap<String, Script>,
    pub nvidia_step: Script,
    pub docker_step: Script,
    /// Scripts named like the original orchestrator's per-container scripts
    /// (`phoenix_hypervisor_lxc_<CTID>.sh`), which phoenix does not run: CTID → path.
    pub original_names: BTreeMap<Ctid, PathBuf>,
    /// `phoenix_hypervisor_initial_setup.sh`: host set-up, not a node input (not hashed).
    pub initial_setup: Option<PathBuf>,
    /// The original's create and clone scripts, which phoenix never runs (it creates and
    /// clones itself, because it owns the snapshot names).
    pub not_run: Vec<PathBuf>,
}

/// The original orchestrator's scripts that phoenix replaces and does not run.
pub const NOT_RUN_FILES: [&str; 2] = [
    "phoenix_hypervisor_create_lxc.sh",
    "phoenix_hypervisor_clone_lxc.sh",
];

/// `^[1-9][0-9]{2,8}$`: Proxmox's VMID rule (100 to 999999999).
pub fn parse_ctid(text: &str) -> Option<Ctid> {
    let ok = (3..=9).contains(&text.len())
        && text.bytes().all(|b| b.is_ascii_digit())
        && !text.starts_with('0');
    if ok {
        text.parse().ok()
    } else {
        None
    }
}

/// Proxmox's rule for snapshot names (`pve-snapshot-name`, pct-spec §2), reserved names
/// included: 2–40 characters, a letter first, then letters, digits, `_`, `-`.
pub fn is_valid_snapshot_name(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    (2..=40).contains(&name.len())
        && first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && name != "current"
        && name != "vzdump"
}

pub const SECRET_MARKERS: &[&str] = &[
    "password",
    "passwd",
    "passphrase",
    "secret",
    "token",
    "api_key",
    "apikey",
    "private_key",
];

/// A field whose value must never be hashed, stored or printed (diagnostics mask it, hook
/// output written to logs has it replaced by `***`).
pub fn is_secret_field(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|m| lower.contains(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmid_ranges() {
        let r = VmidRange::parse("9000-9099").unwrap();
        assert!(r.contains(9000) && r.contains(9099) && !r.contains(9100));
        assert_eq!(r.to_string(), "9000-9099");
        assert_eq!(r.iter().count(), 100);
        assert_eq!(VmidRange::parse("9000-9000").unwrap().iter().count(), 1);
        assert!(VmidRange::parse("9099-9000")
            .unwrap_err()
            .contains("is empty"));
        assert!(VmidRange::parse("99-200")
            .unwrap_err()
            .contains("`99` is not a VMID"));
        assert!(VmidRange::parse("9000").unwrap_err().contains("first-last"));
    }

    #[test]
    fn ctid_follows_the_vmid_rule() {
        assert_eq!(parse_ctid("100"), Some(100));
        assert_eq!(parse_ctid("999999999"), Some(999_999_999));
        for bad in ["99", "0100", "1000000000", "abc", "", "9 0", "-100"] {
            assert_eq!(parse_ctid(bad), None, "{bad}");
        }
    }
}
