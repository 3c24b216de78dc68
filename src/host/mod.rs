//! The host: one trait, [`Host`], in phoenix's own terms, and the values it speaks.
//!
//! Everything phoenix does to a machine goes through [`Host`]. Settings are values
//! ([`Settings`], [`Network`], [`Passthrough`]) written and read back as such; every call
//! is one [`Verb`] (the single definition that call counting, latencies, injected faults
//! and the scheduler's cost model use); failures carry an [`ErrorKind`] that callers match
//! on, and the host's own words for people. Reads of the whole host are one bulk call
//! ([`Host::inventory`]), so a no-op build costs O(1) host calls.
//!
//! | module | role |
//! |---|---|
//! | [`facts`] | host facts (NVIDIA driver, device majors) parsed from real `/proc` texts |
//! | [`pve`] | everything that knows Proxmox's formats: the CT config file, property strings, `pct` arguments, output and error texts |
//! | [`sim`] | a model of a Proxmox node whose state is real PVE files: `--backend sim`, and the engine behind the `pct` front-end |
//! | [`lxc`] | plain LXC: real containers with the `lxc-*` tools, snapshots on btrfs |
//! | [`pct`] | the `pct` command-line front-end over any [`Host`], put first on a hook's `PATH` |
//!
//! Backends: [`sim`], [`pve::backend`] (Proxmox through `pct`) and [`lxc`], behind the
//! same trait.

pub mod facts;
pub mod lxc;
pub mod pct;
pub mod pve;
pub mod sim;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use crate::fleet::config::Ctid;
pub use facts::HostFacts;

/// The tag phoenix puts on every CT it creates; it never touches a CT without it.
pub const MANAGED_TAG: &str = "phoenix";
/// The tag phoenix puts besides [`MANAGED_TAG`] on a store template: the immutable
/// Proxmox template of one built template generation, which children are linked clones
/// of ([`crate::engine::store`]).
pub const STORE_TAG: &str = "phoenix-store";

/// Every call a [`Host`] answers. Its name is what `calls.log`, the `host_calls` of a
/// run, `PHOENIX_SIM_LATENCY` and `PHOENIX_SIM_FAULTS` use.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verb {
    Inventory,
    Config,
    Facts,
    Create,
    Clone,
    Set,
    Resize,
    Devices,
    Start,
    Shutdown,
    Stop,
    Exec,
    Push,
    Pull,
    Snapshot,
    Delsnapshot,
    Rollback,
    Destroy,
    Unlock,
    /// `pct template`: makes a CT a template (the last conversion of a store template).
    Template,
    /// Keeps a CT's state beyond its life (`vzdump` on Proxmox).
    Backup,
    /// Makes a CT again from what [`Verb::Backup`] kept (`pct restore`).
    Restore,
    /// Removes what [`Verb::Backup`] kept (`pvesm free`).
    Forget,
    /// Moves a CT to another node of its cluster (`pct migrate`).
    Migrate,
}

impl Verb {
    pub const ALL: [Verb; 24] = [
        Verb::Inventory,
        Verb::Config,
        Verb::Facts,
        Verb::Create,
        Verb::Clone,
        Verb::Set,
        Verb::Resize,
        Verb::Devices,
        Verb::Start,
        Verb::Shutdown,
        Verb::Stop,
        Verb::Exec,
        Verb::Push,
        Verb::Pull,
        Verb::Snapshot,
        Verb::Delsnapshot,
        Verb::Rollback,
        Verb::Destroy,
        Verb::Unlock,
        Verb::Template,
        Verb::Backup,
        Verb::Restore,
        Verb::Forget,
        Verb::Migrate,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Verb::Inventory => "inventory",
            Verb::Config => "config",
            Verb::Facts => "facts",
            Verb::Create => "create",
            Verb::Clone => "clone",
            Verb::Set => "set",
            Verb::Resize => "resize",
            Verb::Devices => "devices",
            Verb::Start => "start",
            Verb::Shutdown => "shutdown",
            Verb::Stop => "stop",
            Verb::Exec => "exec",
            Verb::Push => "push",
            Verb::Pull => "pull",
            Verb::Snapshot => "snapshot",
            Verb::Delsnapshot => "delsnapshot",
            Verb::Rollback => "rollback",
            Verb::Destroy => "destroy",
            Verb::Unlock => "unlock",
            Verb::Template => "template",
            Verb::Backup => "backup",
            Verb::Restore => "restore",
            Verb::Forget => "forget",
            Verb::Migrate => "migrate",
        }
    }

    pub fn parse(name: &str) -> Option<Verb> {
        Verb::ALL.into_iter().find(|v| v.name() == name)
    }

    /// Changes the host (reads are `inventory`, `config`, `facts` and `pull`).
    pub fn is_mutating(self) -> bool {
        !matches!(
            self,
            Verb::Inventory | Verb::Config | Verb::Facts | Verb::Pull
        )
    }
}

impl fmt::Display for Verb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a host call failed: what callers decide on. The words are in [`HostError`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The CT carries a lock (`CT is locked (disk)`): another task holds it.
    Locked,
    /// The CT's config file lock could not be taken in time.
    LockTimeout,
    /// The CT does not exist.
    NotFound,
    /// The CT must be running and is not.
    NotRunning,
    /// The CT must be stopped and is not.
    Running,
    /// Something of that name or id exists already.
    Exists,
    /// The request itself is wrong (a bad name, an option the host refuses).
    Invalid,
    /// Anything else.
    Failed,
}

impl ErrorKind {
    /// Worth retrying with backoff: the obstacle is another task that will finish.
    pub fn is_transient(self) -> bool {
        matches!(self, ErrorKind::Locked | ErrorKind::LockTimeout)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct HostError {
    pub kind: ErrorKind,
    /// The host's own words (for Proxmox, pct's stderr line).
    pub message: String,
}

impl HostError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        HostError {
            kind,
            message: message.into(),
        }
    }
    pub fn failed(message: impl Into<String>) -> Self {
        HostError::new(ErrorKind::Failed, message)
    }
}

pub type HostResult<T> = Result<T, HostError>;

/// A CT's network interface (`net0`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Network {
    /// Interface name inside the CT (`eth0`).
    pub name: String,
    pub bridge: String,
    /// CIDR, `dhcp` or `manual`.
    pub ip: String,
    pub gw: Option<String>,
    /// `None` when writing: the host picks one.
    pub mac: Option<String>,
}

impl Network {
    /// Whether a live interface satisfies this wanted one: a MAC left open is whatever
    /// the host assigned, and MACs compare without case.
    pub fn satisfied_by(&self, have: &Network) -> bool {
        self.name == have.name
            && self.bridge == have.bridge
            && self.ip == have.ip
            && self.gw == have.gw
            && self.mac.as_ref().is_none_or(|want| {
                have.mac
                    .as_ref()
                    .is_some_and(|h| h.eq_ignore_ascii_case(want))
            })
    }
}

/// CT settings as values. Writing, `None` leaves a setting as it is; reading back, `None`
/// means the host does not have it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub hostname: Option<String>,
    pub memory_mb: Option<u64>,
    pub cores: Option<u64>,
    pub network: Option<Network>,
    pub onboot: Option<bool>,
    /// Container features as a set (`nesting` → `1`); the empty set clears them.
    pub features: Option<BTreeMap<String, String>>,
    /// phoenix's marker: its tag on the CT.
    pub managed: Option<bool>,
    /// phoenix's store-template marker: the [`STORE_TAG`] on the CT.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_template: Option<bool>,
    pub description: Option<String>,
    /// Host-specific options phoenix does not model, passed through verbatim (`pct set
    /// --swap 0` from a hook).
    pub extra: BTreeMap<String, String>,
    /// Host-specific options to remove.
    pub delete: Vec<String>,
}

impl Settings {
    pub fn is_empty(&self) -> bool {
        *self == Settings::default()
    }

    /// The part of these wanted settings that `have` (read back from the host) does not
    /// already satisfy: what a `pct set` still has to write. Pass-through options are
    /// always kept (phoenix cannot read them back).
    pub fn unmet_by(&self, have: &Settings) -> Settings {
        fn unmet<T: PartialEq + Clone>(want: &Option<T>, have: &Option<T>) -> Option<T> {
            want.as_ref().filter(|w| have.as_ref() != Some(*w)).cloned()
        }
        Settings {
            hostname: unmet(&self.hostname, &have.hostname),
            memory_mb: unmet(&self.memory_mb, &have.memory_mb),
            cores: unmet(&self.cores, &have.cores),
            network: self
                .network
                .as_ref()
                .filter(|w| !have.network.as_ref().is_some_and(|h| w.satisfied_by(h)))
                .cloned(),
            onboot: unmet(&self.onboot, &Some(have.onboot.unwrap_or(false))),
            features: unmet(
                &self.features,
                &Some(have.features.clone().unwrap_or_default()),
            ),
            managed: unmet(&self.managed, &Some(have.managed.unwrap_or(false))),
            store_template: unmet(
                &self.store_template,
                &Some(have.store_template.unwrap_or(false)),
            ),
            description: unmet(&self.description, &have.description),
            extra: self.extra.clone(),
            delete: self.delete.clone(),
        }
    }
}

/// Host devices passed into a CT: character-device majors it may use, and device nodes
/// bind-mounted at the same path inside.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Passthrough {
    pub char_majors: Vec<u32>,
    pub nodes: Vec<String>,
}

/// A new CT from an OS template.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreateSpec {
    /// A path or a storage volume (`local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst`).
    pub ostemplate: String,
    pub storage: String,
    pub disk_gb: u64,
    pub unprivileged: bool,
    pub settings: Settings,
    /// The cluster node to create it on (`None`: where the host puts new CTs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A full clone of a CT at one of its snapshots.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloneSpec {
    pub source: Ctid,
    pub snapshot: String,
    pub target: Ctid,
    pub hostname: String,
    pub storage: String,
    /// Make the clone on this other node of the cluster at once (Proxmox's `target`,
    /// which needs `storage` to be shared); `None`: on the source's node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// `pct clone` with its own options (pct-spec §1 clone, §3): what is not given is
/// Proxmox's default (`full`: 1 unless the source is a template; the source's storage,
/// hostname and description; its current state).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CloneRequest {
    pub source: Ctid,
    pub target: Ctid,
    pub snapname: Option<String>,
    pub full: Option<bool>,
    pub storage: Option<String>,
    pub hostname: Option<String>,
    pub description: Option<String>,
    /// `--target`: the node the clone is made on (the source's node when `None`).
    pub node: Option<String>,
}

impl CloneSpec {
    /// The same clone as a request: a full clone of the snapshot onto `storage`.
    pub fn request(&self) -> CloneRequest {
        CloneRequest {
            source: self.source,
            target: self.target,
            snapname: Some(self.snapshot.clone()),
            full: Some(true),
            storage: Some(self.storage.clone()),
            hostname: Some(self.hostname.clone()),
            description: None,
            node: self.node.clone(),
        }
    }
}

/// A generation kept beyond its CT's life, as the host holds it: a backup archive on
/// Proxmox (`vzdump`), a snapshot subvolume on `lxc`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptCopy {
    /// A volume id (`local:backup/vzdump-lxc-910-2026_12_04-15_00_00.tar`) or a path.
    pub location: String,
    /// The cluster node whose storage holds it, where the host is a cluster reached
    /// through one endpoint (Proxmox over the API: a volume of `local` is one node's);
    /// `None` on a host that is one node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Its size, where the host can tell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size_bytes: Option<u64>,
}

/// What a node's build asks of the host beyond the storage: device passthrough, container
/// features, privilege. Some of it is reserved to an administrator (on Proxmox, `root@pam`
/// itself: [`Host::check_privileges`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Privileges {
    /// Device entries are written (GPU passthrough).
    pub devices: bool,
    /// The container features set (`nesting` → `1`).
    pub features: BTreeMap<String, String>,
    pub unprivileged: bool,
}

/// A storage as one cluster node has it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageInfo {
    pub id: String,
    /// Its plugin type (`zfspool`, `dir`, `lvmthin`, `rbd`, ...).
    pub kind: String,
    /// The same storage on every node that has it (Proxmox's `shared`): a volume on it
    /// is seen by all of them, so nothing is copied to move a CT.
    pub shared: bool,
    /// Its content types (`rootdir`, `images`, `vztmpl`, `backup`, ...).
    pub content: Vec<String>,
}

impl StorageInfo {
    pub fn holds(&self, content: &str) -> bool {
        self.content.iter().any(|c| c == content)
    }
    /// Whether a CT's snapshots on this storage go with it to another node: on shared
    /// storage nothing moves, and of local storages only ZFS and btrfs send snapshots
    /// along [pve-container Migrate.pm phase1: `non-migratable snapshot exists`].
    pub fn migrates_snapshots(&self) -> bool {
        self.shared || matches!(self.kind.as_str(), "zfspool" | "btrfs")
    }
}

/// One node of a cluster, as the host sees it now.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeStatus {
    pub name: String,
    /// It answers: the cluster says it is online, and phoenix's requests reach it.
    pub online: bool,
    /// Why it cannot be used, in the host's words, when it cannot (offline, unreachable).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub down: Option<String>,
    /// The storages enabled on this node.
    pub storages: Vec<StorageInfo>,
}

impl NodeStatus {
    pub fn storage(&self, id: &str) -> Option<&StorageInfo> {
        self.storages.iter().find(|s| s.id == id)
    }
}

/// The cluster a host belongs to: its nodes, and where new CTs go unless placed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterView {
    pub nodes: Vec<NodeStatus>,
    /// The node new CTs go to when nothing places them (the API endpoint's node, or
    /// `--pve-node`).
    pub home: String,
}

impl ClusterView {
    pub fn node(&self, name: &str) -> Option<&NodeStatus> {
        self.nodes.iter().find(|n| n.name == name)
    }
    pub fn names(&self) -> Vec<&str> {
        self.nodes.iter().map(|n| n.name.as_str()).collect()
    }
}

/// One snapshot of a CT.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotInfo {
    pub name: String,
    pub description: String,
    /// Seconds since the epoch.
    pub snaptime: u64,
    /// The snapshot this one was taken on top of.
    pub parent: Option<String>,
}

/// What the host knows of one CT, read in bulk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CtInfo {
    pub ctid: Ctid,
    pub running: bool,
    /// A task's lock on the CT (`create`, `disk`, `snapshot`, ...).
    pub lock: Option<String>,
    pub template: bool,
    pub unprivileged: bool,
    /// The settings as the CT has them now.
    pub settings: Settings,
    /// Root disk size, GiB rounded up.
    pub disk_gb: Option<u64>,
    pub passthrough: Passthrough,
    pub snapshots: Vec<SnapshotInfo>,
    /// The snapshot the current state descends from (Proxmox's `parent:`).
    pub parent_snapshot: Option<String>,
    /// The root disk's volume id (`local-zfs:basevol-9000-disk-0/subvol-950-disk-0`), on a
    /// host that names volumes so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_volume: Option<String>,
    /// Why the CT's config could not be read, when it could not: such a CT is never
    /// touched, and is reported as unreadable rather than as somebody else's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// The cluster node the CT lives on, where the host is a cluster.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// The storage of its root disk (`local-zfs`), where the host has storages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub storage: Option<String>,
}

impl CtInfo {
    pub fn is_managed(&self) -> bool {
        self.settings.managed == Some(true)
    }
    pub fn snapshot(&self, name: &str) -> Option<&SnapshotInfo> {
        self.snapshots.iter().find(|s| s.name == name)
    }
    /// The template whose base volume the root disk is a linked clone of
    /// (`basevol-9000-disk-0/subvol-950-disk-0`: 9000), if it is one.
    pub fn linked_to(&self) -> Option<Ctid> {
        self.root_volume.as_deref().and_then(linked_base)
    }
    pub fn hostname(&self) -> String {
        self.settings
            .hostname
            .clone()
            .unwrap_or_else(|| format!("CT{}", self.ctid))
    }
}

/// The VMID of the base volume a volume id is a linked clone of: Proxmox names a linked
/// clone `<base volume>/<own volume>` with the base `basevol-<vmid>-disk-<n>` (ZFS) or
/// `base-<vmid>-disk-<n>` (LVM-thin, Ceph RBD, btrfs) [STOR parse_volname].
pub fn linked_base(volid: &str) -> Option<Ctid> {
    let name = volid.split_once(':').map_or(volid, |(_, n)| n);
    let mut parts: Vec<&str> = name.split('/').collect();
    parts.pop(); // the volume itself
    parts.into_iter().find_map(|p| {
        let rest = p
            .strip_prefix("basevol-")
            .or_else(|| p.strip_prefix("base-"))?;
        let (vmid, disk) = rest.split_once("-disk-")?;
        disk.trim_end_matches(".subvol")
            .parse::<u32>()
            .ok()
            .and(crate::fleet::config::parse_ctid(vmid))
    })
}

impl fmt::Display for CtInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CT {} ({})",
            self.ctid,
            if self.running { "running" } else { "stopped" }
        )
    }
}

/// The host verbs (DESIGN §7). Every call that names a CT takes its id first.
pub trait Host: Send + Sync {
    /// Backend name, as given to hooks in `PHOENIX_BACKEND`.
    fn name(&self) -> &'static str;
    /// Every CT on the host, in one bulk read.
    fn inventory(&self) -> HostResult<BTreeMap<Ctid, CtInfo>>;
    /// One CT, or `None` when it does not exist.
    fn ct(&self, ctid: Ctid) -> HostResult<Option<CtInfo>>;
    /// The CT's config in the host's own format (for Proxmox, its `.conf` file), when the
    /// host keeps one; `None` otherwise. For display (`pct config`): phoenix decides from
    /// [`CtInfo`].
    fn config_file(&self, ctid: Ctid) -> HostResult<Option<String>> {
        let _ = ctid;
        Ok(None)
    }
    /// The host's words for a CT that does not exist.
    fn not_found(&self, ctid: Ctid) -> HostError {
        HostError::new(ErrorKind::NotFound, format!("CT {ctid} does not exist"))
    }
    /// The host facts steps rely on (NVIDIA driver, device majors).
    fn facts(&self) -> HostResult<HostFacts>;
    /// The facts of one node of the cluster ([`Host::facts`] on a host that is one node).
    fn facts_on(&self, node: &str) -> HostResult<HostFacts> {
        let _ = node;
        self.facts()
    }
    /// The cluster this host is a node of, as it is now: the nodes, whether each
    /// answers, their storages, and where new CTs go. `None`: a host that is one machine
    /// and places nothing (`lxc`, Proxmox through the local `pct`).
    fn cluster(&self) -> HostResult<Option<ClusterView>> {
        Ok(None)
    }
    /// Moves a stopped CT to another node of the cluster, its volumes and (where the
    /// storage can) its snapshots with it; `restart`: a running CT is shut down, moved
    /// and started there (Proxmox's restart migration).
    fn migrate(&self, ctid: Ctid, node: &str, restart: bool) -> HostResult<()> {
        let _ = (ctid, node, restart);
        Err(HostError::new(
            ErrorKind::Invalid,
            format!(
                "the {} host is one machine: it has no nodes to migrate CTs to",
                self.name()
            ),
        ))
    }
    /// Every reason a CT cannot get its root disk on `storage`, or be created from
    /// `ostemplate` (the storage is unknown or holds no CT disks, the OS template is not
    /// on the host); none when it can. A read, made before any change (the build's
    /// preflight).
    fn check_storage(&self, storage: &str, ostemplate: Option<&str>) -> Vec<String>;
    /// [`Host::check_storage`] on one node of the cluster.
    fn check_storage_on(&self, node: &str, storage: &str, ostemplate: Option<&str>) -> Vec<String> {
        let _ = node;
        self.check_storage(storage, ostemplate)
    }
    /// Every reason a CT with these needs cannot run here (an unprivileged CT without an
    /// id map, a network whose bridge the host lacks or that leads nowhere); none when it
    /// can. A read, like [`Host::check_storage`].
    fn check_runtime(&self, unprivileged: bool, network: Option<&Network>) -> Vec<String> {
        let _ = (unprivileged, network);
        Vec::new()
    }
    /// [`Host::check_runtime`] on one node of the cluster: it must answer (its API, and
    /// SSH where the host needs it).
    fn check_runtime_on(
        &self,
        node: &str,
        unprivileged: bool,
        network: Option<&Network>,
    ) -> Vec<String> {
        let _ = node;
        self.check_runtime(unprivileged, network)
    }
    /// Why phoenix may not make a CT with these needs here, if it may not: a Proxmox API
    /// token cannot write device entries. A read, like [`Host::check_storage`].
    fn check_privileges(&self, needs: &Privileges) -> Result<(), String> {
        let _ = needs;
        Ok(())
    }
    fn create(&self, ctid: Ctid, spec: &CreateSpec) -> HostResult<()>;
    /// A full clone; the new CT is stopped, with fresh MAC addresses.
    fn clone_ct(&self, spec: &CloneSpec) -> HostResult<()>;
    /// `pct clone` as an admin types it. A host that models only phoenix's clone takes
    /// the requests that are one: full, from a snapshot, hostname and storage given.
    fn clone_with(&self, req: &CloneRequest) -> HostResult<()> {
        match (&req.snapname, &req.hostname, &req.storage, req.full) {
            (Some(snapshot), Some(hostname), Some(storage), None | Some(true)) => {
                self.clone_ct(&CloneSpec {
                    source: req.source,
                    snapshot: snapshot.clone(),
                    target: req.target,
                    hostname: hostname.clone(),
                    storage: storage.clone(),
                    node: req.node.clone(),
                })
            }
            _ => Err(HostError::new(
                ErrorKind::Invalid,
                format!(
                    "the {} host clones in full from a snapshot only: pass --snapname, --hostname and --storage",
                    self.name()
                ),
            )),
        }
    }
    /// Whether a template's disk on `storage` can be cloned linked (Proxmox: ZFS, LVM-thin,
    /// Ceph RBD, btrfs). `None`: this host makes no store templates at all (plain LXC,
    /// whose clones are btrfs snapshots already).
    fn links_clones_on(&self, storage: &str) -> Option<bool> {
        let _ = storage;
        None
    }
    /// `pct template`: makes a stopped CT without snapshots a template (its volumes
    /// become read-only bases for linked clones).
    fn template(&self, ctid: Ctid) -> HostResult<()> {
        let _ = ctid;
        Err(HostError::new(
            ErrorKind::Invalid,
            format!("the {} host does not convert CTs to templates", self.name()),
        ))
    }
    /// Whether [`Host::keep`] keeps anything on this host.
    fn keeps_copies(&self) -> bool {
        false
    }
    /// Keeps the CT as it is now beyond its life, before phoenix destroys it to rebuild it
    /// (on Proxmox a backup to `storage`, a storage with `backup` content; `note` goes
    /// with it for an admin). The CT must be stopped.
    fn keep(&self, ctid: Ctid, storage: &str, note: &str) -> HostResult<KeptCopy> {
        let _ = (ctid, storage, note);
        Err(HostError::new(
            ErrorKind::Invalid,
            format!("the {} host keeps no copies of CTs", self.name()),
        ))
    }
    /// Makes CT `ctid` again from a kept copy, on `storage`, replacing the CT of that id
    /// (which must be stopped) if there is one. The CT comes back without snapshots.
    fn restore(&self, ctid: Ctid, kept: &KeptCopy, storage: &str) -> HostResult<()> {
        let _ = (ctid, kept, storage);
        Err(HostError::new(
            ErrorKind::Invalid,
            format!("the {} host keeps no copies of CTs", self.name()),
        ))
    }
    /// Removes a kept copy.
    fn forget(&self, kept: &KeptCopy) -> HostResult<()> {
        let _ = kept;
        Err(HostError::new(
            ErrorKind::Invalid,
            format!("the {} host keeps no copies of CTs", self.name()),
        ))
    }
    fn set(&self, ctid: Ctid, settings: &Settings) -> HostResult<()>;
    /// Grows the root disk to `disk_gb` (disks never shrink).
    fn resize(&self, ctid: Ctid, disk_gb: u64) -> HostResult<()>;
    /// Replaces the CT's device passthrough.
    fn set_devices(&self, ctid: Ctid, devices: &Passthrough) -> HostResult<()>;
    fn start(&self, ctid: Ctid) -> HostResult<()>;
    /// A clean shutdown, forced after `timeout_s`.
    fn shutdown(&self, ctid: Ctid, timeout_s: u64) -> HostResult<()>;
    /// An immediate stop.
    fn stop(&self, ctid: Ctid) -> HostResult<()>;
    /// Stops the CT where it still runs: one seen running that stopped meanwhile (a
    /// shutdown a killed run had started, an admin, HA) is what the caller wanted, not an
    /// error.
    fn ensure_stopped(&self, ctid: Ctid) -> HostResult<()> {
        match self.stop(ctid) {
            Err(e) if e.kind == ErrorKind::NotRunning => Ok(()),
            other => other,
        }
    }
    /// Runs `argv` inside the CT (no shell); its output goes to `out`. Returns the exit
    /// code.
    fn exec(&self, ctid: Ctid, argv: &[String], out: &mut dyn Write) -> HostResult<i32>;
    /// Copies a host file into the CT.
    fn push(&self, ctid: Ctid, local: &Path, dest: &str, perms: u32) -> HostResult<()>;
    /// Copies a file of the CT to the host.
    fn pull(&self, ctid: Ctid, path: &str, local: &Path) -> HostResult<()>;
    fn snapshot(&self, ctid: Ctid, name: &str, description: &str) -> HostResult<()>;
    fn delete_snapshot(&self, ctid: Ctid, name: &str) -> HostResult<()>;
    /// Puts the CT back to a snapshot (stopping it if it runs).
    fn rollback(&self, ctid: Ctid, name: &str) -> HostResult<()>;
    fn destroy(&self, ctid: Ctid) -> HostResult<()>;
    /// Removes a lock left behind by an interrupted task.
    fn unlock(&self, ctid: Ctid) -> HostResult<()>;
    /// `pct enter`: a shell in the CT on this terminal, when the host can give one;
    /// returns the shell's exit code.
    fn enter(&self, ctid: Ctid) -> HostResult<i32> {
        let _ = ctid;
        Err(HostError::new(
            ErrorKind::Invalid,
            format!("the {} host gives no shell through this pct", self.name()),
        ))
    }
    /// The lines the host logged for the CT since the last call (a Proxmox task's log),
    /// for the node's log.
    fn take_log(&self, ctid: Ctid) -> Vec<String> {
        let _ = ctid;
        Vec::new()
    }
    /// A directory to put first on a hook's `PATH`: it holds a `pct` that acts on this
    /// host. `None` when the real `pct` is already on `PATH`.
    fn pct_dir(&self) -> Option<PathBuf>;
    /// Environment a hook needs for that `pct` to find this host.
    fn hook_env(&self) -> Vec<(String, String)>;
    /// The lock file that keeps two phoenix runs from building on this host at once,
    /// whatever their state directories (`None`: the state directory's lock is the
    /// host's, as for the sim, which lives in it).
    fn lock_path(&self) -> Option<PathBuf> {
        None
    }
    /// Where this host is, for messages: the LXC path, the Proxmox node.
    fn describe(&self) -> String {
        self.name().to_string()
    }
    /// Whether a rollback to an older snapshot keeps the newer ones (btrfs); Proxmox on
    /// ZFS rolls back only to the most recent snapshot (`pct-spec.md`).
    fn rollback_keeps_newer(&self) -> bool {
        false
    }
    /// Whether this host is driven through `pct`, so that a node's log can show each
    /// operation as the `pct` command it is.
    fn speaks_pct(&self) -> bool {
        true
    }
    /// The command an admin types to look inside a CT on this host.
    fn enter_hint(&self, ctid: Ctid) -> String {
        format!("pct enter {ctid}")
    }
    /// Expected duration of a verb, for scheduling priorities (any consistent unit).
    fn estimate_ms(&self, verb: Verb) -> u64 {
        let _ = verb;
        1
    }
}

/// Where phoenix keeps its state (and the sim its node) unless told otherwise.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/phoenix";

/// The backends phoenix can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// Proxmox VE, through `pct`.
    Pve,
    /// Plain LXC (`lxc-*` tools).
    Lxc,
    /// The embedded simulated Proxmox node under the state directory.
    Sim,
}

impl Backend {
    pub fn name(self) -> &'static str {
        match self {
            Backend::Pve => "pve",
            Backend::Lxc => "lxc",
            Backend::Sim => "sim",
        }
    }

    /// Opens this backend. `state_dir` is phoenix's state directory (the sim lives in it);
    /// the others take their places from the environment (`PHOENIX_PVE_*`,
    /// `PHOENIX_LXC_*`).
    pub fn open(self, state_dir: &Path) -> Result<Box<dyn Host>, String> {
        match self {
            Backend::Sim => match sim::cluster::SimCluster::for_state_dir(state_dir)? {
                Some(cluster) => Ok(Box::new(cluster)),
                None => Ok(Box::new(sim::SimHost::for_state_dir(state_dir)?)),
            },
            // A hook's `pct` under a build over the API: the build's options, from the
            // environment it was given.
            Backend::Pve if std::env::var_os("PHOENIX_PVE_URL").is_some_and(|u| !u.is_empty()) => {
                let opts = pve::api::ApiOptions::new(&pve::api::ApiArgs::from_env())?;
                Ok(Box::new(pve::api::host::ApiHost::open(opts, false)?))
            }
            Backend::Pve => Ok(Box::new(pve::backend::PveHost::from_env()?)),
            Backend::Lxc => Ok(Box::new(lxc::LxcHost::from_env(state_dir)?)),
        }
    }
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Backend::Pve, Backend::Lxc, Backend::Sim]
            .into_iter()
            .find(|b| b.name() == s)
            .ok_or_else(|| format!("unknown backend `{s}` (pve, lxc, sim)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_have_one_name_each() {
        for v in Verb::ALL {
            assert_eq!(Verb::parse(v.name()), Some(v));
        }
        assert!(!Verb::Inventory.is_mutating());
        assert!(Verb::Clone.is_mutating());
    }

    #[test]
    fn settings_a_host_already_has_are_not_written_again() {
        let want = Settings {
            hostname: Some("web".into()),
            memory_mb: Some(2048),
            cores: Some(2),
            onboot: Some(false),
            features: Some(BTreeMap::new()),
            managed: Some(true),
            ..Settings::default()
        };
        let mut have = Settings {
            hostname: Some("web".into()),
            memory_mb: Some(2048),
            cores: Some(4),
            managed: Some(true),
            ..Settings::default()
        };
        assert_eq!(
            want.unmet_by(&have),
            Settings {
                cores: Some(2),
                ..Settings::default()
            },
            "onboot and features absent are their defaults"
        );
        have.cores = Some(2);
        assert!(want.unmet_by(&have).is_empty());
        have.managed = None;
        assert_eq!(want.unmet_by(&have).managed, Some(true));
    }

    #[test]
    fn a_linked_clone_names_its_base() {
        assert_eq!(
            linked_base("local-zfs:basevol-9000-disk-0/subvol-950-disk-0"),
            Some(9000)
        );
        assert_eq!(
            linked_base("thin:base-9001-disk-1/vm-951-disk-0"),
            Some(9001)
        );
        assert_eq!(linked_base("local-zfs:subvol-950-disk-0"), None);
        assert_eq!(
            linked_base("local-zfs:basevol-9000-disk-0"),
            None,
            "the base itself"
        );
        assert_eq!(linked_base("local:950/subvol-950-disk-0.subvol"), None);
    }

    #[test]
    fn an_open_mac_accepts_any() {
        let want = Network {
            name: "eth0".into(),
            bridge: "vmbr0".into(),
            ip: "dhcp".into(),
            gw: None,
            mac: None,
        };
        let have = Network {
            mac: Some("BC:24:11:00:00:01".into()),
            ..want.clone()
        };
        assert!(want.satisfied_by(&have));
        let pinned = Network {
            mac: Some("bc:24:11:00:00:01".into()),
            ..want.clone()
        };
        assert!(pinned.satisfied_by(&have));
        assert!(!Network {
            mac: Some("bc:24:11:00:00:02".into()),
            ..want
        }
        .satisfied_by(&have));
    }
}
