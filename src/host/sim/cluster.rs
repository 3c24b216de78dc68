//! The model as a cluster: several nodes sharing one `etc/pve` (pmxcfs), each with its own
//! files, as Proxmox VE's nodes are.
//!
//! A tree holding `etc/pve/.members` (the file pmxcfs keeps: the nodes, whether each is
//! online, their addresses, and whether the cluster has quorum) is a cluster. Each node
//! keeps what is its own under `local/<node>/`: the volumes of storages that are not
//! shared (`rpool/data`, `var/lib/vz` with its OS templates and backups), and its host
//! facts (`proc/`, `dev/`). Shared storages (`shared 1`, or a kind that is shared by
//! nature such as `rbd`) keep their volumes under the tree's root, seen by every node.
//! Without `.members` the tree is one node and everything is under its root, as before.
//!
//! | path | what |
//! |---|---|
//! | `etc/pve/.members` | the cluster: `nodename`, `cluster.quorate`, `nodelist.<node>.online`, `.ip` |
//! | `etc/pve/nodes/<node>/lxc/<vmid>.conf` | each node's CTs (a migration moves the file) |
//! | `local/<node>/rpool/data/…`, `local/<node>/var/lib/vz/…` | a node's local storages |
//! | `local/<node>/proc/…`, `local/<node>/dev/…` | a node's host facts |
//! | `ceph/<pool>/vm-<vmid>-disk-N/` | an `rbd` volume, shared |
//!
//! Migration is Proxmox's offline one [pve-container Migrate.pm]: local volumes are copied
//! to the target node's storage of the same name, snapshots with them where the storage
//! sends them (ZFS, btrfs; other local storages refuse a CT with snapshots), volumes on
//! shared storage stay, and the config file moves between the node directories.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::SimHost;
use crate::host::pve::props::MountPoint;
use crate::host::pve::storage::Storage;
use crate::host::pve::text;
use crate::host::{ClusterView, Ctid, HostError, HostResult, NodeStatus, StorageInfo, Verb};

/// Where pmxcfs keeps the cluster's membership.
pub const MEMBERS: &str = "etc/pve/.members";

/// `etc/pve/.members` as pmxcfs writes it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Members {
    /// The node this file was read on (the API endpoint's).
    pub nodename: String,
    pub version: u64,
    pub cluster: ClusterInfo,
    pub nodelist: BTreeMap<String, Member>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    pub name: String,
    pub version: u64,
    pub nodes: usize,
    pub quorate: u8,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Member {
    pub id: u32,
    pub online: u8,
    pub ip: String,
}

impl Members {
    /// A cluster of these nodes, all online, with quorum; the first is `nodename`.
    pub fn new(name: &str, nodes: &[&str], ip: &str) -> Members {
        Members {
            nodename: nodes.first().copied().unwrap_or("pve").to_string(),
            version: 1,
            cluster: ClusterInfo {
                name: name.to_string(),
                version: 1,
                nodes: nodes.len(),
                quorate: 1,
            },
            nodelist: nodes
                .iter()
                .enumerate()
                .map(|(i, n)| {
                    (
                        n.to_string(),
                        Member {
                            id: i as u32 + 1,
                            online: 1,
                            ip: ip.to_string(),
                        },
                    )
                })
                .collect(),
        }
    }

    /// The tree's membership, when it is a cluster.
    pub fn read(root: &Path) -> Option<Members> {
        let bytes = crate::os::read_if_any(&root.join(MEMBERS), 1 << 20).ok()??;
        serde_json::from_slice(&bytes).ok()
    }

    pub fn write(&self, root: &Path) -> std::io::Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        crate::os::write_atomic(&root.join(MEMBERS), text.as_bytes())
    }

    pub fn quorate(&self) -> bool {
        self.cluster.quorate == 1
    }

    pub fn has(&self, node: &str) -> bool {
        self.nodelist.contains_key(node)
    }

    pub fn online(&self, node: &str) -> bool {
        self.nodelist.get(node).is_some_and(|m| m.online == 1)
    }

    /// Marks a node online or offline (a test's fault), keeping the rest.
    pub fn set_online(root: &Path, node: &str, online: bool) -> std::io::Result<()> {
        let mut m = Members::read(root)
            .ok_or_else(|| std::io::Error::other(format!("{} is not a cluster", root.display())))?;
        if let Some(n) = m.nodelist.get_mut(node) {
            n.online = u8::from(online);
        }
        m.version += 1;
        m.write(root)
    }

    /// Gives or takes the cluster's quorum (a test's fault).
    pub fn set_quorate(root: &Path, quorate: bool) -> std::io::Result<()> {
        let mut m = Members::read(root)
            .ok_or_else(|| std::io::Error::other(format!("{} is not a cluster", root.display())))?;
        m.cluster.quorate = u8::from(quorate);
        m.version += 1;
        m.write(root)
    }
}

/// Where node `node` of the tree at `root` keeps its own files: `local/<node>` in a
/// cluster, the root itself on a tree that is one node.
pub fn local_root(root: &Path, node: &str) -> PathBuf {
    if root.join(MEMBERS).exists() {
        root.join("local").join(node)
    } else {
        root.to_path_buf()
    }
}

/// Whether a storage is the same on every node: `shared 1` in `storage.cfg`, or a kind
/// that is shared by nature.
pub fn is_shared(s: &Storage) -> bool {
    s.properties.get("shared").is_some_and(|v| v.trim() == "1")
        || matches!(
            s.kind.as_str(),
            "rbd" | "cephfs" | "nfs" | "cifs" | "glusterfs" | "iscsi" | "pbs"
        )
}

/// Whether a storage is enabled on a node: not `disable`d, and `nodes` (when given)
/// names it [STOR storage_check_enabled].
pub fn enabled_on(s: &Storage, node: &str) -> bool {
    let disabled = s.properties.get("disable").is_some_and(|v| v.trim() == "1");
    let listed = s
        .properties
        .get("nodes")
        .is_none_or(|n| n.split(',').any(|x| x.trim() == node));
    !disabled && listed
}

impl SimHost {
    /// The same model, acting as another node of its cluster.
    pub fn on_node(&self, node: &str) -> HostResult<SimHost> {
        SimHost::with_knobs(&self.root, node, self.latency.clone(), self.faults.clone())
            .map(|mut h| {
                h.env = self.env.clone();
                h
            })
            .map_err(HostError::failed)
    }

    /// Whether a node is a member of this tree's cluster (a tree that is one node has
    /// only itself).
    pub(super) fn is_member(&self, node: &str) -> bool {
        match Members::read(&self.root) {
            Some(m) => m.has(node),
            None => node == self.node,
        }
    }

    /// A `pct clone --target <node>`'s checks [A-LXC clone_vm]: the node exists, the
    /// clone's storage is enabled there and shared; without `--storage`, every volume of
    /// the source must be on shared storage.
    pub(super) fn check_clone_target(
        &self,
        node: &str,
        storage: Option<&str>,
        source_volumes: &[String],
    ) -> HostResult<()> {
        if !self.is_member(node) {
            return Err(text::no_such_node(node));
        }
        if let Some(s) = storage {
            let store = self.storage(s)?;
            if !enabled_on(&store, node) {
                return Err(text::storage_unavailable(s, node));
            }
            if !is_shared(&store) {
                return Err(text::clone_target_not_shared(s));
            }
            return Ok(());
        }
        for volid in source_volumes {
            let id = volid.split_once(':').map_or("", |(s, _)| s);
            if !self.storages()?.get(id).is_some_and(is_shared) {
                return Err(text::clone_target_local(node));
            }
        }
        Ok(())
    }

    /// [`Host::check_storage`](crate::host::Host::check_storage) on a node of a
    /// cluster: the storage is enabled on this node, holds CT disks, and the OS template
    /// is in this node's own files.
    pub(super) fn check_storage_here(
        &self,
        storage: &str,
        ostemplate: Option<&str>,
    ) -> Vec<String> {
        let storages = match crate::host::pve::storage::read(&self.root) {
            Ok(s) => s,
            Err(e) => return vec![e],
        };
        let mut problems = Vec::new();
        match storages.get(storage) {
            Some(s) if !enabled_on(s, &self.node) => problems.push(format!(
                "storage '{storage}' is not available on node '{}' (storage.cfg limits it to: {}): set storage_pool to a storage this node has, or add the node with `pvesm set {storage} --nodes <nodes>`",
                self.node,
                s.properties.get("nodes").map_or("none", String::as_str)
            )),
            _ => problems.extend(crate::host::pve::storage::check_rootdir(&storages, storage).err()),
        }
        if let Some(t) = ostemplate {
            problems.extend(
                crate::host::pve::storage::check_ostemplate(&storages, &self.local, t)
                    .err()
                    .map(|e| format!("{e} (on node '{}')", self.node)),
            );
        }
        problems
    }

    /// The cluster as the model has it: every member (or this node alone), online or
    /// not, with the storages enabled on it.
    pub(super) fn cluster_view(&self) -> HostResult<ClusterView> {
        let storages = self.storages()?;
        let members = Members::read(&self.root);
        let names: Vec<String> = match &members {
            Some(m) => m.nodelist.keys().cloned().collect(),
            None => vec![self.node.clone()],
        };
        let nodes = names
            .into_iter()
            .map(|name| {
                let down = self.node_down(&name);
                NodeStatus {
                    online: down.is_none(),
                    down,
                    storages: storages
                        .values()
                        .filter(|s| members.is_none() || enabled_on(s, &name))
                        .map(|s| StorageInfo {
                            id: s.id.clone(),
                            kind: s.kind.clone(),
                            shared: is_shared(s),
                            content: s.content().iter().map(|c| c.to_string()).collect(),
                        })
                        .collect(),
                    name,
                }
            })
            .collect();
        Ok(ClusterView {
            nodes,
            home: self.node.clone(),
        })
    }

    /// Why a node of the model cannot be used, if it cannot: it is not a member, or
    /// `.members` says it is offline.
    pub(super) fn node_down(&self, node: &str) -> Option<String> {
        match Members::read(&self.root) {
            Some(m) if !m.has(node) => Some(format!("node '{node}' is not a member of the cluster")),
            Some(m) if !m.online(node) => Some(format!(
                "node '{node}' is offline (etc/pve/.members): bring it back, or place its CTs on another node"
            )),
            Some(_) => None,
            None if node != self.node => Some(format!("no such cluster node '{node}'")),
            None => None,
        }
    }

    /// Moves a CT's config file to another node's directory (pmxcfs' rename).
    pub(super) fn move_conf(&self, ctid: Ctid, node: &str) -> HostResult<()> {
        let to = self
            .root
            .join("etc/pve/nodes")
            .join(node)
            .join("lxc")
            .join(format!("{ctid}.conf"));
        if let Some(dir) = to.parent() {
            crate::os::create_dir_all(dir).map_err(|e| super::io_err("create", dir, e))?;
        }
        let from = self.conf_path(ctid);
        fs::rename(&from, &to).map_err(|e| super::io_err("move", &from, e))
    }

    /// `pct migrate <vmid> <target> [--restart]`: offline migration [A-LXC migrate_vm,
    /// LXC Migrate.pm prepare, phase1, final_cleanup].
    pub(super) fn migrate_ct(&self, ctid: Ctid, target: &str, restart: bool) -> HostResult<()> {
        self.call(Verb::Migrate, Some(ctid))?;
        if target == self.node {
            return Err(text::migrate_local());
        }
        let members = Members::read(&self.root);
        if !self.is_member(target) {
            return Err(text::no_such_node(target));
        }
        let mut conf = self.get(ctid)?;
        Self::check_lock(conf.main())?;
        let running = self.is_running(ctid);
        if running && !restart {
            return Err(text::migrate_running());
        }
        if members.as_ref().is_some_and(|m| !m.online(target)) {
            return Err(HostError::failed(format!(
                "migration aborted: Can't connect to destination address using public key (node '{target}' is offline)"
            )));
        }
        let storages = self.storages()?;
        // Every volume the CT and its snapshots use, and whether snapshots refer to it.
        let mut volumes: BTreeMap<String, bool> = BTreeMap::new();
        let mut add = |section: &crate::host::pve::conf::Section, snapshot: bool| {
            for volume in self::volumes(section) {
                *volumes.entry(volume).or_insert(false) |= snapshot;
            }
        };
        for name in conf.snapshot_names() {
            if let Some(s) = conf.snapshot(name) {
                add(s, true);
            }
        }
        add(conf.main(), false);
        let mut reasons = Vec::new();
        let mut local = Vec::new();
        for (volid, in_snapshot) in &volumes {
            let sid = volid.split_once(':').map_or("", |(s, _)| s);
            let Some(store) = storages.get(sid) else {
                reasons.push(format!("'{volid}': storage '{sid}' does not exist"));
                continue;
            };
            if is_shared(store) {
                continue;
            }
            if !enabled_on(store, target) {
                return Err(text::storage_unavailable(sid, target));
            }
            if *in_snapshot && !matches!(store.kind.as_str(), "zfspool" | "btrfs") {
                reasons.push(format!("'{volid}': non-migratable snapshot exists"));
                continue;
            }
            if let Some(base) = volid
                .split_once(':')
                .and_then(|(_, n)| n.split_once('/'))
                .map(|(b, _)| b)
                .filter(|b| b.starts_with("base"))
            {
                reasons.push(format!("'{volid}': clone of '{base}'"));
                continue;
            }
            local.push(volid.clone());
        }
        if !reasons.is_empty() {
            return Err(text::migrate_aborted(&reasons));
        }
        // Restart mode: shut down first [Migrate.pm prepare].
        if running {
            self.set_running(ctid, false)?;
        }
        self.locked(&[ctid], || {
            conf = self.get(ctid)?;
            conf.main_mut().set("lock", "migrate");
            self.write_conf(ctid, &conf)
        })?;
        let there = self.on_node(target)?;
        let moved = (|| -> HostResult<()> {
            for volid in &local {
                let (from, _) = self.volume(volid)?;
                let (to, _) = there.volume(volid)?;
                if to.exists() {
                    return Err(HostError::failed(format!(
                        "storage migration for '{volid}' to storage '{}' failed - volume already exists on node '{target}'",
                        volid.split_once(':').map_or("", |(s, _)| s)
                    )));
                }
                // `zfs send -R`: the volume with its snapshots.
                copy_all(&from, &to).map_err(|e| super::io_err("copy", &from, e))?;
            }
            Ok(())
        })();
        if let Err(e) = moved {
            // Nothing moved: the copies go, the CT stays, unlocked, and runs again.
            for volid in &local {
                if let Ok((to, _)) = there.volume(volid) {
                    let _ = fs::remove_dir_all(to);
                }
            }
            self.locked(&[ctid], || {
                let mut c = self.get(ctid)?;
                c.main_mut().remove("lock");
                self.write_conf(ctid, &c)
            })?;
            if running {
                self.set_running(ctid, true)?;
            }
            return Err(e);
        }
        // The config moves (with its lock), then the local copies go, then the target
        // unlocks it and starts it again.
        self.locked(&[ctid], || self.move_conf(ctid, target))?;
        for volid in &local {
            if let Ok((from, _)) = self.volume(volid) {
                let _ = fs::remove_dir_all(from);
            }
        }
        there.locked(&[ctid], || {
            let mut c = there.get(ctid)?;
            c.main_mut().remove("lock");
            there.write_conf(ctid, &c)
        })?;
        if running {
            there.set_running(ctid, true)?;
        }
        Ok(())
    }
}

/// Copies a directory tree whole (a volume with its `.zfs` snapshots).
fn copy_all(from: &Path, to: &Path) -> std::io::Result<()> {
    fs::create_dir_all(to)?;
    for e in fs::read_dir(from)? {
        let e = e?;
        let target = to.join(e.file_name());
        if e.file_type()?.is_dir() {
            copy_all(&e.path(), &target)?;
        } else {
            fs::copy(e.path(), &target)?;
        }
    }
    Ok(())
}

/// The volumes a config section uses (`rootfs`, `mpN`).
pub(super) fn volumes(section: &crate::host::pve::conf::Section) -> Vec<String> {
    section
        .keys()
        .filter(|(k, _)| {
            *k == "rootfs"
                || k.strip_prefix("mp")
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        })
        .filter_map(|(_, v)| MountPoint::parse(v).ok().map(|m| m.volume))
        .collect()
}

/// `--backend sim` as a cluster (`PHOENIX_SIM_NODES=pve1,pve2,pve3`, or a model tree that
/// has `etc/pve/.members`): one model per node, each CT acted on through the node whose
/// directory holds its config, as Proxmox proxies a request to the CT's node. New CTs go
/// to the first node (`nodename`) unless placed.
pub struct SimCluster {
    home: SimHost,
    nodes: BTreeMap<String, SimHost>,
}

impl SimCluster {
    /// The model under `<state_dir>/sim`: a cluster of `PHOENIX_SIM_NODES` (written to
    /// `.members` the first time), or of the members already there.
    pub fn for_state_dir(state_dir: &Path) -> Result<Option<SimCluster>, String> {
        let root = state_dir.join("sim");
        let wanted: Vec<String> = std::env::var("PHOENIX_SIM_NODES")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        if Members::read(&root).is_none() {
            if wanted.is_empty() {
                return Ok(None);
            }
            let names: Vec<&str> = wanted.iter().map(String::as_str).collect();
            crate::os::create_dir_all(&root.join("etc/pve"))
                .and_then(|()| Members::new("sim", &names, "127.0.0.1").write(&root))
                .map_err(|e| {
                    format!(
                        "cannot make the simulated cluster in {}: {e}",
                        root.display()
                    )
                })?;
        }
        let members = Members::read(&root)
            .ok_or_else(|| format!("{} does not read", root.join(MEMBERS).display()))?;
        let mut nodes = BTreeMap::new();
        for name in members.nodelist.keys() {
            let mut h = SimHost::open(&root, name)?;
            h.env = vec![
                ("PHOENIX_BACKEND".into(), "sim".into()),
                ("PHOENIX_STATE_DIR".into(), state_dir.display().to_string()),
            ];
            nodes.insert(name.clone(), h);
        }
        let home = nodes
            .get(&members.nodename)
            .or_else(|| nodes.values().next())
            .ok_or("the simulated cluster has no nodes")?;
        let home = home.on_node(&home.node.clone()).map_err(|e| e.message)?;
        Ok(Some(SimCluster { home, nodes }))
    }

    /// The model of the node a CT lives on (its config's directory), if it exists.
    fn holder(&self, ctid: Ctid) -> Option<&SimHost> {
        self.nodes.values().find(|h| h.conf_path(ctid).exists())
    }

    /// The model of a CT's node; a node that is down refuses, as Proxmox's proxy does.
    fn on(&self, ctid: Ctid) -> HostResult<&SimHost> {
        let h = self.holder(ctid).unwrap_or(&self.home);
        match self.home.node_down(&h.node) {
            Some(why) => Err(HostError::failed(why)),
            None => Ok(h),
        }
    }

    fn node(&self, name: &str) -> HostResult<&SimHost> {
        let h = self
            .nodes
            .get(name)
            .ok_or_else(|| text::no_such_node(name))?;
        match self.home.node_down(name) {
            Some(why) => Err(HostError::failed(why)),
            None => Ok(h),
        }
    }
}

impl crate::host::Host for SimCluster {
    fn name(&self) -> &'static str {
        "sim"
    }
    fn describe(&self) -> String {
        format!(
            "the simulated cluster {} (new CTs on node {})",
            self.nodes.keys().cloned().collect::<Vec<_>>().join(", "),
            self.home.node
        )
    }
    fn inventory(&self) -> HostResult<BTreeMap<Ctid, crate::host::CtInfo>> {
        self.home.call(Verb::Inventory, None)?;
        let mut out = BTreeMap::new();
        for (name, h) in &self.nodes {
            let down = self.home.node_down(name);
            for (ctid, ct) in h.observe_all()? {
                let ct = match &down {
                    // A node that is down answers nothing about its CTs.
                    Some(why) => crate::host::pve::map::unreachable_ct(ctid, name, why),
                    None => ct,
                };
                out.insert(ctid, ct);
            }
        }
        Ok(out)
    }
    fn ct(&self, ctid: Ctid) -> HostResult<Option<crate::host::CtInfo>> {
        match self.holder(ctid) {
            Some(_) => self.on(ctid)?.ct(ctid),
            None => {
                self.home.call(Verb::Config, Some(ctid))?;
                Ok(None)
            }
        }
    }
    fn config_file(&self, ctid: Ctid) -> HostResult<Option<String>> {
        self.on(ctid)?.config_file(ctid)
    }
    fn not_found(&self, ctid: Ctid) -> HostError {
        self.holder(ctid).unwrap_or(&self.home).not_found(ctid)
    }
    fn facts(&self) -> HostResult<crate::host::HostFacts> {
        self.home.facts()
    }
    fn facts_on(&self, node: &str) -> HostResult<crate::host::HostFacts> {
        self.node(node)?.facts()
    }
    fn cluster(&self) -> HostResult<Option<ClusterView>> {
        self.home.cluster_view().map(Some)
    }
    fn check_storage(&self, storage: &str, ostemplate: Option<&str>) -> Vec<String> {
        self.home.check_storage(storage, ostemplate)
    }
    fn check_storage_on(&self, node: &str, storage: &str, ostemplate: Option<&str>) -> Vec<String> {
        match self.nodes.get(node) {
            Some(h) => h.check_storage(storage, ostemplate),
            None => vec![text::no_such_node(node).message],
        }
    }
    fn check_runtime_on(
        &self,
        node: &str,
        _unprivileged: bool,
        _network: Option<&crate::host::Network>,
    ) -> Vec<String> {
        self.home.node_down(node).into_iter().collect()
    }
    fn migrate(&self, ctid: Ctid, node: &str, restart: bool) -> HostResult<()> {
        self.node(node)?;
        self.on(ctid)?.migrate_ct(ctid, node, restart)
    }
    fn create(&self, ctid: Ctid, spec: &crate::host::CreateSpec) -> HostResult<()> {
        match &spec.node {
            Some(n) => self.node(n)?.create(ctid, spec),
            None => self.home.create(ctid, spec),
        }
    }
    fn clone_ct(&self, spec: &crate::host::CloneSpec) -> HostResult<()> {
        if let Some(n) = &spec.node {
            self.node(n)?;
        }
        self.on(spec.source)?.clone_ct(spec)
    }
    fn clone_with(&self, req: &crate::host::CloneRequest) -> HostResult<()> {
        self.on(req.source)?.clone_with(req)
    }
    fn template(&self, ctid: Ctid) -> HostResult<()> {
        self.on(ctid)?.template(ctid)
    }
    fn links_clones_on(&self, storage: &str) -> Option<bool> {
        // `storage.cfg` is the cluster's: what a storage is, it is on every node.
        self.home.links_clones_on(storage)
    }
    fn keeps_copies(&self) -> bool {
        true
    }
    fn keep(&self, ctid: Ctid, storage: &str, note: &str) -> HostResult<crate::host::KeptCopy> {
        let h = self.on(ctid)?;
        let mut kept = h.keep(ctid, storage, note)?;
        kept.node = Some(h.node.clone());
        Ok(kept)
    }
    fn restore(&self, ctid: Ctid, kept: &crate::host::KeptCopy, storage: &str) -> HostResult<()> {
        match &kept.node {
            Some(n) => self.node(n)?.restore(ctid, kept, storage),
            None => self.on(ctid)?.restore(ctid, kept, storage),
        }
    }
    fn forget(&self, kept: &crate::host::KeptCopy) -> HostResult<()> {
        match &kept.node {
            Some(n) => self.node(n)?.forget(kept),
            None => self.home.forget(kept),
        }
    }
    fn set(&self, ctid: Ctid, settings: &crate::host::Settings) -> HostResult<()> {
        self.on(ctid)?.set(ctid, settings)
    }
    fn resize(&self, ctid: Ctid, disk_gb: u64) -> HostResult<()> {
        self.on(ctid)?.resize(ctid, disk_gb)
    }
    fn set_devices(&self, ctid: Ctid, devices: &crate::host::Passthrough) -> HostResult<()> {
        self.on(ctid)?.set_devices(ctid, devices)
    }
    fn start(&self, ctid: Ctid) -> HostResult<()> {
        self.on(ctid)?.start(ctid)
    }
    fn shutdown(&self, ctid: Ctid, timeout_s: u64) -> HostResult<()> {
        self.on(ctid)?.shutdown(ctid, timeout_s)
    }
    fn stop(&self, ctid: Ctid) -> HostResult<()> {
        self.on(ctid)?.stop(ctid)
    }
    fn exec(&self, ctid: Ctid, argv: &[String], out: &mut dyn std::io::Write) -> HostResult<i32> {
        self.on(ctid)?.exec(ctid, argv, out)
    }
    fn push(&self, ctid: Ctid, local: &Path, dest: &str, perms: u32) -> HostResult<()> {
        self.on(ctid)?.push(ctid, local, dest, perms)
    }
    fn pull(&self, ctid: Ctid, path: &str, local: &Path) -> HostResult<()> {
        self.on(ctid)?.pull(ctid, path, local)
    }
    fn snapshot(&self, ctid: Ctid, name: &str, description: &str) -> HostResult<()> {
        self.on(ctid)?.snapshot(ctid, name, description)
    }
    fn delete_snapshot(&self, ctid: Ctid, name: &str) -> HostResult<()> {
        self.on(ctid)?.delete_snapshot(ctid, name)
    }
    fn rollback(&self, ctid: Ctid, name: &str) -> HostResult<()> {
        self.on(ctid)?.rollback(ctid, name)
    }
    fn destroy(&self, ctid: Ctid) -> HostResult<()> {
        self.on(ctid)?.destroy(ctid)
    }
    fn unlock(&self, ctid: Ctid) -> HostResult<()> {
        self.on(ctid)?.unlock(ctid)
    }
    fn pct_dir(&self) -> Option<PathBuf> {
        self.home.pct_dir()
    }
    fn hook_env(&self) -> Vec<(String, String)> {
        self.home.hook_env()
    }
    fn estimate_ms(&self, verb: Verb) -> u64 {
        self.home.estimate_ms(verb)
    }
}
