//! [`ApiHost`]: the `pve` backend over the REST API and SSH.
//!
//! | Host call | how |
//! |---|---|
//! | inventory | `GET /cluster/resources` (the guests, and every node's storages for [`Host::cluster`]); for each of phoenix's CTs (tag `phoenix`) its config and snapshot list, read concurrently: 2 requests per CT |
//! | cluster | `/cluster/status` (at open: the nodes, online or not) and the storages `/cluster/resources` listed |
//! | migrate | `POST …/<vmid>/migrate` (`target`, `restart` for a running CT), a task on the CT's node |
//! | ct, config_file | the same two reads for one CT |
//! | create | `POST /nodes/<node>/lxc` on the CT's node (placed, else the one new CTs go to), a task |
//! | clone | `POST …/<source>/clone` (`newid`, `snapname`, `full`, `hostname`, `description`, `storage`, and `target` to make it on another node at once: shared storage only) on the source's node, a task; a linked clone of a store template is `full=0` without `storage` |
//! | template | `POST …/<vmid>/template`, which answers `null` while Proxmox converts the CT in a task (`vztemplate`): that task, found in the node's task list, is waited for, then the config until it shows `template: 1` and no lock |
//! | links_clones_on | the storage's `plugintype` from `/cluster/resources` (`storage.cfg` is the cluster's) |
//! | set, set_devices | `PUT …/config` with the `digest` of phoenix's read: a config changed since is refused by Proxmox, never overwritten |
//! | resize | `PUT …/resize`, a task |
//! | start, shutdown, stop | `POST …/status/<verb>`, a task |
//! | snapshot, delete, rollback | `POST …/snapshot`, `DELETE …/snapshot/<name>`, `POST …/snapshot/<name>/rollback`, tasks |
//! | destroy | `DELETE …/<vmid>?purge=1`, a task |
//! | keep | `POST /nodes/<node>/vzdump` (`vmid`, `storage`, `mode=stop`, `notes-template`) on the CT's node, a task whose log names the archive; its size from `GET …/storage/<storage>/content` |
//! | restore | `POST /nodes/<node>/lxc` (`vmid`, `ostemplate` = the archive, `restore=1`, `force=1`, `storage`) on the node that holds the archive, a task |
//! | forget | `DELETE /nodes/<node>/storage/<storage>/content/<volume>`, a task (or `null`) |
//! | exec, push, pull, unlock, enter | `pct` on the CT's node over SSH |
//! | facts | `/proc/driver/nvidia/version`, `/proc/devices`, `/dev/nvidia*`, the pve-container version, over SSH from each node a GPU CT is built on |
//!
//! A task's log lines go to the node's log ([`Host::take_log`]); its failure is the error,
//! in Proxmox's words, classified as `pct`'s are (a lock collision is retried). Foreign
//! guests (no `phoenix` tag) and VMs are never read in detail nor written.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::{segment, Api, ApiError, Method, PRIVILEGE_HELP};
use super::config::{self, ApiConfig};
use super::ssh::{Address, Input, Ssh};
use super::tls::Trust;
use super::{task, ApiOptions, Credential};
use crate::host::facts::{self, version_at_least};
use crate::host::pve::conf::ConfFile;
use crate::host::pve::props::Tags;
use crate::host::pve::storage::LINKED_CLONE_TYPES;
use crate::host::pve::{map, text, vzdump};
use crate::host::{
    CloneRequest, CloneSpec, ClusterView, CreateSpec, CtInfo, Ctid, ErrorKind, Host, HostError,
    HostFacts, HostResult, KeptCopy, Network, NodeStatus, Passthrough, Privileges, Settings,
    StorageInfo, Verb, MANAGED_TAG,
};

/// A cluster node as `/cluster/status` reports it.
#[derive(Clone, Debug)]
struct NodeInfo {
    ip: Option<String>,
    online: bool,
}

/// What phoenix last read of one of its CTs.
#[derive(Clone, Debug)]
struct Known {
    node: String,
    /// The config as read, and its digest; `None` once phoenix wrote it since.
    read: Option<(ConfFile, Option<String>)>,
}

/// phoenix's private directory for one run (0700): SSH control sockets, the `pct` link
/// and the credential a hook's `pct` uses. Removed at the end of the run.
struct RunDir(PathBuf);

impl RunDir {
    fn make() -> Result<RunDir, String> {
        use std::os::unix::fs::DirBuilderExt;
        let base = std::env::temp_dir();
        for attempt in 0..100u32 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos());
            // Short: a control socket's path must fit in 108 bytes.
            let dir = base.join(format!("phx-{}-{:x}", std::process::id(), nanos ^ attempt));
            match std::fs::DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => {
                    std::fs::DirBuilder::new()
                        .mode(0o700)
                        .create(dir.join("ssh"))
                        .map_err(|e| format!("cannot make {}: {e}", dir.join("ssh").display()))?;
                    return Ok(RunDir(dir));
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(format!(
                        "cannot make a private directory in {}: {e}",
                        base.display()
                    ))
                }
            }
        }
        Err(format!(
            "cannot make a private directory in {}",
            base.display()
        ))
    }
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub struct ApiHost {
    api: std::sync::Arc<Api>,
    opts: ApiOptions,
    nodes: BTreeMap<String, NodeInfo>,
    /// Where new CTs are created.
    node: String,
    known: Mutex<BTreeMap<Ctid, Known>>,
    facts: Mutex<BTreeMap<String, HostFacts>>,
    storages: Mutex<BTreeMap<String, Vec<Value>>>,
    templates: Mutex<BTreeMap<(String, String), Vec<String>>>,
    ssh_ok: Mutex<BTreeMap<String, Result<(), String>>>,
    /// Nodes found not to answer during this run (`/cluster/status` said online, but
    /// requests to them fail): why.
    down: Mutex<BTreeMap<String, String>>,
    /// The storages `/cluster/resources` listed, read once.
    cluster_storages: Mutex<Option<Vec<Value>>>,
    /// The guests of a `/cluster/resources` read for [`Host::cluster`] before any
    /// inventory: the next inventory takes them instead of asking again.
    prefetched: Mutex<Option<Vec<Value>>>,
    log: Mutex<BTreeMap<Ctid, Vec<String>>>,
    pct_dir: OnceLock<Option<PathBuf>>,
    pass_stdin: bool,
    /// Declared last: dropped after `ssh` has closed its connections.
    ssh: Ssh,
    run_dir: Option<RunDir>,
}

/// How many CTs are read at once.
const READERS: usize = 16;

/// `sh -c` scripts run on a node (their arguments follow, each quoted once).
/// The node's root is `$PHOENIX_PVE_ROOT` there (`/` on a real node; a test's tree).
const FACTS_SCRIPT: &str = r#"cd "${PHOENIX_PVE_ROOT:-/}" || exit 1
echo '== nvidia'; cat proc/driver/nvidia/version 2>/dev/null
echo '== devices'; cat proc/devices 2>/dev/null
echo '== dev'; for f in dev/nvidia*; do [ -e "$f" ] && echo "/$f"; done
echo '== pve-container'; awk '/^Package: pve-container$/{p=1} p&&/^Version:/{print $2; exit} /^$/{p=0}' var/lib/dpkg/status 2>/dev/null
true"#;
const PUSH_SCRIPT: &str = r#"t=$(mktemp) || exit 1
trap 'rm -f "$t"' EXIT
cat > "$t" || exit 1
pct push "$1" "$t" "$2" --perms "$3""#;
const PULL_SCRIPT: &str = r#"t=$(mktemp) || exit 1
trap 'rm -f "$t"' EXIT
pct pull "$1" "$2" "$t" >&2 || exit $?
cat "$t""#;
const FILE_SCRIPT: &str = r#"cd "${PHOENIX_PVE_ROOT:-/}" && test -f "./$1""#;

impl ApiHost {
    /// Connects: reads `/cluster/status` (the nodes, their addresses, the quorum), so that
    /// a wrong URL, certificate or credential is said before anything else. `owner`: this
    /// process runs the build (it makes the private run directory); a hook's `pct` uses
    /// the build's.
    pub fn open(opts: ApiOptions, owner: bool) -> Result<ApiHost, String> {
        let api = std::sync::Arc::new(Api::new(&opts)?);
        let status = api.get("/cluster/status", &[]).map_err(|e| e.message())?;
        let entries = status.as_array().ok_or_else(|| {
            format!(
                "{} does not answer as a Proxmox VE API: GET /cluster/status gave no list",
                opts.base
            )
        })?;
        let mut nodes = BTreeMap::new();
        let mut local = None;
        for e in entries {
            let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_string);
            let n = |k: &str| e.get(k).and_then(Value::as_u64).unwrap_or(0);
            match s("type").as_deref() {
                Some("cluster") if e.get("quorate").is_some() && n("quorate") == 0 => {
                    return Err(format!(
                        "cluster '{}' has lost quorum: Proxmox refuses every change until its nodes see each other again (`pvecm status` on a node)",
                        s("name").unwrap_or_default()
                    ));
                }
                Some("node") => {
                    let Some(name) = s("name") else { continue };
                    if n("local") == 1 {
                        local = Some(name.clone());
                    }
                    nodes.insert(
                        name,
                        NodeInfo {
                            ip: s("ip"),
                            online: n("online") == 1,
                        },
                    );
                }
                _ => {}
            }
        }
        let node = match (&opts.node, local) {
            (Some(n), _) if nodes.contains_key(n) => n.clone(),
            (Some(n), _) => {
                return Err(format!(
                    "--pve-node {n} is not a node of this cluster (it has: {})",
                    nodes.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            }
            (None, Some(l)) => l,
            (None, None) if nodes.len() == 1 => nodes.keys().next().cloned().unwrap_or_default(),
            (None, None) => {
                return Err(format!(
                    "the cluster does not say which node {} is: name the node for new CTs with --pve-node (one of {})",
                    opts.base,
                    nodes.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            }
        };
        let (run_dir, control_dir) = if owner {
            let d = RunDir::make()?;
            let c = d.0.join("ssh");
            (Some(d), c)
        } else {
            let c = opts.ssh.control_dir.clone().unwrap_or_else(|| {
                std::env::temp_dir().join(format!("phx-{}-ssh", std::process::id()))
            });
            (None, c)
        };
        let ssh = Ssh::new(opts.ssh.clone(), control_dir, owner);
        if let Some(d) = &run_dir {
            match &opts.credential {
                Credential::Password { .. } => {
                    api.keep_ticket_in(d.0.join("ticket"))?;
                    Api::keep_ticket_fresh(&api);
                }
                Credential::Token { id, secret } => {
                    crate::os::write_private(
                        &d.0.join("token"),
                        format!("{id}={secret}\n").as_bytes(),
                    )
                    .map_err(|e| format!("cannot write {}: {e}", d.0.join("token").display()))?;
                }
                Credential::Ticket { .. } => {}
            }
        }
        Ok(ApiHost {
            api,
            opts,
            nodes,
            node,
            known: Mutex::new(BTreeMap::new()),
            facts: Mutex::new(BTreeMap::new()),
            storages: Mutex::new(BTreeMap::new()),
            templates: Mutex::new(BTreeMap::new()),
            ssh_ok: Mutex::new(BTreeMap::new()),
            down: Mutex::new(BTreeMap::new()),
            cluster_storages: Mutex::new(None),
            prefetched: Mutex::new(None),
            log: Mutex::new(BTreeMap::new()),
            pct_dir: OnceLock::new(),
            pass_stdin: !owner,
            ssh,
            run_dir,
        })
    }

    fn ct_path(&self, node: &str, ctid: Ctid) -> String {
        format!("/nodes/{}/lxc/{ctid}", segment(node))
    }

    /// The node a CT is on: as last read, else from `/cluster/resources`.
    fn node_of(&self, ctid: Ctid) -> HostResult<String> {
        if let Some(k) = self.known.lock().ok().and_then(|k| k.get(&ctid).cloned()) {
            return Ok(k.node);
        }
        self.locate(ctid)?
            .ok_or_else(|| text::config_missing(&self.node, ctid))
    }

    /// Where the cluster says a guest is: `(node, type)`.
    fn locate(&self, ctid: Ctid) -> HostResult<Option<String>> {
        let list = self.resources()?;
        Ok(list.iter().find_map(|r| {
            (r.get("vmid").and_then(Value::as_u64) == Some(u64::from(ctid))
                && r.get("type").and_then(Value::as_str) == Some("lxc"))
            .then(|| r.get("node").and_then(Value::as_str).map(str::to_string))
            .flatten()
        }))
    }

    /// The cluster's guests from `/cluster/resources`, read whole: its storages come in
    /// the same answer and are kept for [`Host::cluster`] (one request for both).
    fn resources(&self) -> HostResult<Vec<Value>> {
        match self.api.get("/cluster/resources", &[]) {
            Ok(Value::Array(a)) => {
                let (storages, rest): (Vec<Value>, Vec<Value>) = a
                    .into_iter()
                    .partition(|r| r.get("type").and_then(Value::as_str) == Some("storage"));
                if let Ok(mut s) = self.cluster_storages.lock() {
                    *s = Some(storages);
                }
                Ok(rest
                    .into_iter()
                    .filter(|r| {
                        matches!(r.get("type").and_then(Value::as_str), Some("lxc" | "qemu"))
                    })
                    .collect())
            }
            Ok(other) => Err(HostError::failed(format!(
                "GET /cluster/resources gave {}, not a list",
                crate::os::excerpt(&other.to_string(), 60)
            ))),
            Err(e) => Err(e.into_host()),
        }
    }

    /// One CT's config and snapshots (two requests); `None` when it is not on `node`.
    fn read(&self, node: &str, ctid: Ctid) -> HostResult<Option<(CtInfo, ApiConfig)>> {
        let path = self.ct_path(node, ctid);
        let config = match self.api.get(&format!("{path}/config"), &[]) {
            Ok(v) => v,
            Err(e) if unanswered(&e) => return Err(self.mark_down(node, &e)),
            Err(e) => {
                let e = e.into_host();
                return if e.kind == ErrorKind::NotFound {
                    Ok(None)
                } else {
                    Err(e)
                };
            }
        };
        let snaps = self
            .api
            .get(&format!("{path}/snapshot"), &[])
            .map_err(ApiError::into_host)?;
        let cfg = config::from_api(&config, Some(&snaps)).map_err(|e| {
            HostError::failed(format!(
                "the config of CT {ctid} on node '{node}' does not read: {e}"
            ))
        })?;
        let ct = map::ct_info(ctid, &cfg.conf, cfg.running == Some(true));
        if let Ok(mut k) = self.known.lock() {
            k.insert(
                ctid,
                Known {
                    node: node.to_string(),
                    read: Some((cfg.conf.clone(), cfg.digest.clone())),
                },
            );
        }
        Ok(Some((ct, cfg)))
    }

    /// Forgets the read config of a CT phoenix just changed (its digest is stale).
    fn wrote(&self, ctid: Ctid, node: &str) {
        if let Ok(mut k) = self.known.lock() {
            k.insert(
                ctid,
                Known {
                    node: node.to_string(),
                    read: None,
                },
            );
        }
    }

    /// The config as last read, with its digest, reading it when phoenix has not since
    /// its last write.
    fn current(&self, ctid: Ctid) -> HostResult<(String, ConfFile, Option<String>)> {
        let node = self.node_of(ctid)?;
        let cached = self
            .known
            .lock()
            .ok()
            .and_then(|k| k.get(&ctid).and_then(|k| k.read.clone()));
        match cached {
            Some((conf, digest)) => Ok((node, conf, digest)),
            None => {
                let (_, cfg) = self
                    .read(&node, ctid)?
                    .ok_or_else(|| text::config_missing(&node, ctid))?;
                Ok((node, cfg.conf, cfg.digest))
            }
        }
    }

    /// A request that starts a task on the CT's node; waits for it.
    fn task(
        &self,
        ctid: Ctid,
        method: Method,
        path: &str,
        params: &[(&str, &str)],
    ) -> HostResult<()> {
        let data = self.send(method, path, params)?;
        self.wait(Some(ctid), &data).map(|_| ()).map_err(|(e, _)| e)
    }

    /// One request to a node's path; a node that does not answer is marked down.
    fn send(&self, method: Method, path: &str, params: &[(&str, &str)]) -> HostResult<Value> {
        self.api.request(method, path, params).map_err(|e| {
            match path
                .strip_prefix("/nodes/")
                .and_then(|p| p.split('/').next())
            {
                Some(node) if unanswered(&e) => self.mark_down(node, &e),
                _ => e.into_host(),
            }
        })
    }

    /// The UPIDs of a CT's `vztemplate` tasks on its node, running or done (`GET
    /// /nodes/<node>/tasks`, `source=all`: the default lists finished tasks only)
    /// [pve-manager Tasks.pm node_tasks]. Everyone sees their own tasks.
    fn template_tasks(&self, node: &str, ctid: Ctid) -> Result<Vec<String>, ApiError> {
        let vmid = ctid.to_string();
        let list = self.api.get(
            &format!("/nodes/{}/tasks", segment(node)),
            &[
                ("vmid", &vmid),
                ("typefilter", "vztemplate"),
                ("source", "all"),
            ],
        )?;
        Ok(list
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|t| t.get("upid").and_then(Value::as_str).map(str::to_string))
            .collect())
    }

    /// Whether the CT is a template now, and free: `template: 1` and no lock.
    fn is_template_now(&self, node: &str, ctid: Ctid) -> HostResult<bool> {
        let (ct, _) = self
            .read(node, ctid)?
            .ok_or_else(|| text::config_missing(node, ctid))?;
        Ok(ct.template && ct.lock.is_none())
    }

    /// Waits for the task a request answered (none when it answered `null`: done before
    /// answering). Its log lines go to the CT's log and come back, with its error when it
    /// failed.
    fn wait(
        &self,
        ctid: Option<Ctid>,
        data: &Value,
    ) -> Result<Vec<String>, (HostError, Vec<String>)> {
        let Some(upid) = task::started(data).map_err(|e| (e, Vec::new()))? else {
            return Ok(Vec::new());
        };
        let r = task::wait(&self.api, &upid, self.opts.task_timeout);
        if let Some(ctid) = ctid {
            self.log_line(ctid, &format!("task {}", upid.raw));
            let (Ok(lines) | Err((_, lines))) = &r;
            for l in lines {
                self.log_line(ctid, &format!("  {l}"));
            }
        }
        r
    }

    fn log_line(&self, ctid: Ctid, line: &str) {
        if let Ok(mut log) = self.log.lock() {
            log.entry(ctid).or_default().push(line.to_string());
        }
    }

    /// `PUT …/config` with the digest of phoenix's read; a changed config is refused.
    fn put_config(
        &self,
        ctid: Ctid,
        node: &str,
        digest: Option<&str>,
        params: &[(String, String)],
        delete: &[String],
    ) -> HostResult<()> {
        let joined = delete.join(",");
        let mut p: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        if !delete.is_empty() {
            p.push(("delete", &joined));
        }
        if let Some(d) = digest {
            p.push(("digest", d));
        }
        let path = format!("{}/config", self.ct_path(node, ctid));
        let r = self.api.request(Method::Put, &path, &p);
        self.wrote(ctid, node);
        match r {
            Ok(_) => Ok(()),
            Err(e) => {
                let mut e = e.into_host();
                if e.message.contains("detected modified configuration") {
                    e.message = format!(
                        "{}: CT {ctid}'s config was changed on node '{node}' after phoenix read it, so Proxmox refused the write and nothing was overwritten; run the build again to plan from the config as it is now",
                        e.message
                    );
                }
                Err(e)
            }
        }
    }

    fn address(&self, node: &str) -> HostResult<Address> {
        let reported = self.nodes.get(node).and_then(|n| n.ip.as_deref());
        self.ssh.address(node, reported).map_err(HostError::failed)
    }

    /// Runs `argv` on a node over SSH; `ssh`'s own failure is an error, the remote
    /// program's exit status and output are the answer.
    fn on_node<S: AsRef<std::ffi::OsStr>>(
        &self,
        node: &str,
        argv: &[S],
        input: Input,
        stdout: Option<Stdio>,
    ) -> HostResult<std::process::Output> {
        let addr = self.address(node)?;
        let out = self.ssh.run(&addr, argv, input, stdout).map_err(|e| {
            HostError::failed(format!(
                "cannot run {} (PHOENIX_SSH) to reach node '{node}': {e}",
                self.opts.ssh.program.display()
            ))
        })?;
        if let Some(m) = self.ssh.ssh_error(node, &addr, &out) {
            return Err(HostError::failed(m));
        }
        Ok(out)
    }

    fn check_online(&self, node: &str) -> Result<(), String> {
        match self.down_reason(node) {
            Some(why) => Err(why),
            None => Ok(()),
        }
    }

    /// Why a node cannot be used, if it cannot: not a node of the cluster, offline as
    /// `/cluster/status` says, or not answering requests in this run.
    fn down_reason(&self, node: &str) -> Option<String> {
        let Some(info) = self.nodes.get(node) else {
            return Some(format!(
                "'{node}' is not a node of this cluster (it has: {})",
                self.nodes.keys().cloned().collect::<Vec<_>>().join(", ")
            ));
        };
        if !info.online {
            let what = if node == self.node {
                format!("node '{node}', where new CTs go,")
            } else {
                format!("node '{node}'")
            };
            return Some(format!(
                "{what} is offline (GET /cluster/status): the CTs that live there or would be built there cannot be touched; bring it back, or place them on another node (`node` in their blocks, `default_node`, --pve-node)"
            ));
        }
        self.down.lock().ok().and_then(|d| d.get(node).cloned())
    }

    /// Records that a node does not answer (HTTP 595/596 from the endpoint's proxy) and
    /// says so.
    fn mark_down(&self, node: &str, e: &ApiError) -> HostError {
        let why = format!(
            "node '{node}' does not answer ({}): the CTs that live there or would be built there cannot be touched; bring it back and run again",
            e.message()
        );
        if let Ok(mut d) = self.down.lock() {
            d.entry(node.to_string()).or_insert_with(|| why.clone());
        }
        HostError::failed(why)
    }

    /// Every storage of every node, from `/cluster/resources` (read once; the guests of
    /// that read are kept for the next inventory).
    fn all_storages(&self) -> HostResult<Vec<Value>> {
        if let Some(s) = self.cluster_storages.lock().ok().and_then(|s| s.clone()) {
            return Ok(s);
        }
        let guests = self.resources()?;
        if let Ok(mut p) = self.prefetched.lock() {
            *p = Some(guests);
        }
        Ok(self
            .cluster_storages
            .lock()
            .ok()
            .and_then(|s| s.clone())
            .unwrap_or_default())
    }

    /// Whether SSH to the node works (once per run): a build needs it for every CT.
    fn check_ssh(&self, node: &str) -> Result<(), String> {
        if let Some(r) = self.ssh_ok.lock().ok().and_then(|m| m.get(node).cloned()) {
            return r;
        }
        let r = self
            .on_node(node, &["true"], Input::Null, None)
            .map(|_| ())
            .map_err(|e| e.message);
        if let Ok(mut m) = self.ssh_ok.lock() {
            m.insert(node.to_string(), r.clone());
        }
        r
    }

    /// The facts of one node, read over SSH once.
    fn node_facts(&self, node: &str) -> HostResult<HostFacts> {
        if let Some(f) = self.facts.lock().ok().and_then(|f| f.get(node).cloned()) {
            return Ok(f);
        }
        let out = self.on_node(node, &["sh", "-c", FACTS_SCRIPT], Input::Null, None)?;
        if !out.status.success() {
            return Err(HostError::failed(format!(
                "reading the host facts of node '{node}' over SSH failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        let text = String::from_utf8_lossy(&out.stdout);
        let mut parts: BTreeMap<&str, String> = BTreeMap::new();
        let mut current = "";
        for line in text.lines() {
            if let Some(name) = line.strip_prefix("== ") {
                current = match name {
                    "nvidia" => "nvidia",
                    "devices" => "devices",
                    "dev" => "dev",
                    "pve-container" => "pve-container",
                    _ => "",
                };
                continue;
            }
            let p = parts.entry(current).or_default();
            p.push_str(line);
            p.push('\n');
        }
        let f = HostFacts {
            nvidia_driver: parts
                .get("nvidia")
                .and_then(|t| facts::parse_nvidia_version(t)),
            char_majors: parts
                .get("devices")
                .map(|t| facts::parse_char_majors(t))
                .unwrap_or_default(),
            nvidia_devices: parts
                .get("dev")
                .map(|t| {
                    t.lines()
                        .filter(|l| !l.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
            pve_container: parts
                .get("pve-container")
                .map(|t| t.trim().to_string())
                .filter(|v| !v.is_empty()),
        };
        if let Ok(mut m) = self.facts.lock() {
            m.insert(node.to_string(), f.clone());
        }
        Ok(f)
    }

    fn node_storages(&self, node: &str) -> Result<Vec<Value>, String> {
        if let Some(s) = self.storages.lock().ok().and_then(|m| m.get(node).cloned()) {
            return Ok(s);
        }
        let list = match self
            .api
            .get(&format!("/nodes/{}/storage", segment(node)), &[])
        {
            Ok(Value::Array(a)) => a,
            Ok(_) => return Err(format!("GET /nodes/{node}/storage gave no list")),
            Err(e) => return Err(e.message()),
        };
        if let Ok(mut m) = self.storages.lock() {
            m.insert(node.to_string(), list.clone());
        }
        Ok(list)
    }

    fn node_templates(&self, node: &str, storage: &str) -> Result<Vec<String>, String> {
        let key = (node.to_string(), storage.to_string());
        if let Some(t) = self
            .templates
            .lock()
            .ok()
            .and_then(|m| m.get(&key).cloned())
        {
            return Ok(t);
        }
        let path = format!(
            "/nodes/{}/storage/{}/content",
            segment(node),
            segment(storage)
        );
        let list = match self.api.get(&path, &[("content", "vztmpl")]) {
            Ok(Value::Array(a)) => a
                .iter()
                .filter_map(|v| v.get("volid").and_then(Value::as_str).map(str::to_string))
                .collect::<Vec<_>>(),
            Ok(_) => return Err(format!("GET {path} gave no list")),
            Err(e) => return Err(e.message()),
        };
        if let Ok(mut m) = self.templates.lock() {
            m.insert(key, list.clone());
        }
        Ok(list)
    }

    fn not_root_pam(&self) -> Option<String> {
        let c = self.api.credential();
        (!c.is_root_pam()).then(|| match c {
            Credential::Token { id, .. } => format!("the API token {id}"),
            other => format!("the user {}", other.identity()),
        })
    }

    /// A backup volume's size, from its storage's content list; `None` when that cannot
    /// be read (the size is for display only).
    fn backup_size(&self, node: &str, storage: &str, ctid: Ctid, volid: &str) -> Option<u64> {
        let path = format!(
            "/nodes/{}/storage/{}/content",
            segment(node),
            segment(storage)
        );
        let vmid = ctid.to_string();
        let list = match self
            .api
            .get(&path, &[("content", "backup"), ("vmid", &vmid)])
        {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(%e, "the size of {volid} is not known");
                return None;
            }
        };
        list.as_array()?
            .iter()
            .find(|v| v.get("volid").and_then(Value::as_str) == Some(volid))?
            .get("size")?
            .as_u64()
    }

    /// The facts of the node a CT is on must allow `devN` entries (pve-container 5.0.7,
    /// Proxmox VE 8.1): the API cannot write raw `lxc.*` lines.
    fn check_devn(&self, node: &str) -> HostResult<()> {
        let f = self.node_facts(node)?;
        match f.pve_container {
            Some(v) if !version_at_least(&v, crate::host::pve::backend::DEVN_SINCE) => Err(HostError::failed(format!(
                "node '{node}' runs pve-container {v}, older than 5.0.7 (Proxmox VE 8.1), which brought device entries (devN): the API cannot write the raw lxc.* lines GPU passthrough needs there. Upgrade the node, or run phoenix on it (--backend pve without --pve-url)"
            ))),
            _ => Ok(()),
        }
    }
}

impl ApiHost {
    /// Why a CT cannot get its root disk on `storage` of the API node, or be created from
    /// `ostemplate`, if it cannot.
    fn storage_problem(
        &self,
        node: &str,
        storage: &str,
        ostemplate: Option<&str>,
    ) -> Result<(), String> {
        self.check_online(node)?;
        let list = self.node_storages(node)?;
        let find = |id: &str| {
            list.iter()
                .find(|s| s.get("storage").and_then(Value::as_str) == Some(id))
        };
        let Some(s) = find(storage) else {
            let known: Vec<&str> = list
                .iter()
                .filter_map(|s| s.get("storage").and_then(Value::as_str))
                .collect();
            return Err(format!(
                "storage '{storage}' is not available on node '{node}' (it has: {}): set storage_pool to one of them, or add it with `pvesm add`",
                known.join(", ")
            ));
        };
        let content = s.get("content").and_then(Value::as_str).unwrap_or("");
        if !content.split(',').any(|c| c.trim() == "rootdir") {
            return Err(format!(
                "storage '{storage}' does not hold container disks (content: {content}): pick a storage_pool with `rootdir` content, or add it with `pvesm set {storage} --content {content},rootdir`"
            ));
        }
        if let Some(t) = ostemplate {
            match t.split_once(':') {
                Some((store, volume)) if !t.starts_with('/') => {
                    if find(store).is_none() {
                        return Err(format!(
                            "the OS template {t} names storage '{store}', which node '{node}' does not have"
                        ));
                    }
                    let have = self.node_templates(node, store)?;
                    if !have.iter().any(|v| v == t) {
                        let file = volume.rsplit('/').next().unwrap_or(volume);
                        return Err(format!(
                            "the OS template {t} is not on node '{node}': download it there with `pveam download {store} {file}`"
                        ));
                    }
                }
                _ => {
                    if let Some(who) = self.not_root_pam() {
                        return Err(format!(
                            "the OS template {t} is a path on the node, and Proxmox lets only root@pam create from a path (\"Only root can pass arbitrary filesystem paths.\"), not {who}: name it as a volume (`local:vztmpl/<file>`), or log in as root@pam with PHOENIX_PVE_USER and PHOENIX_PVE_PASSWORD"
                        ));
                    }
                    let rel = t.trim_start_matches('/');
                    let out = self
                        .on_node(
                            node,
                            &["sh", "-c", FILE_SCRIPT, "sh", rel],
                            Input::Null,
                            None,
                        )
                        .map_err(|e| e.message)?;
                    if !out.status.success() {
                        return Err(format!(
                            "the OS template {t} is not a file on node '{node}': put it there, or name a template with `pveam list local`"
                        ));
                    }
                }
            }
        }
        Ok(())
    }

    /// The CT's own node must have what its passthrough names: the devices were chosen
    /// from the facts of the node new CTs go to, and a CT may live elsewhere (moved by an
    /// admin or HA). Its node's facts are read over SSH (once).
    fn check_gpu_node(&self, node: &str, devices: &Passthrough) -> HostResult<()> {
        // The driver itself is checked by the preflight, against each CT's own node.
        let here = self.node_facts(node)?;
        let missing: Vec<&str> = devices
            .nodes
            .iter()
            .filter(|d| !here.nvidia_devices.contains(d))
            .map(String::as_str)
            .collect();
        if !missing.is_empty() {
            return Err(HostError::failed(format!(
                "node '{node}' has no {} (its /dev, over SSH): load the driver there (`nvidia-smi`, `modprobe nvidia-uvm`)",
                missing.join(", ")
            )));
        }
        Ok(())
    }
}

/// A backup's failure in Proxmox's words, with what to do: vzdump's own line for the guest
/// rather than the task's `job errors`, the privilege a task refused (vzdump checks
/// `VM.Backup` in its worker, not before answering), a storage that takes no backups.
fn backup_failed(ctid: Ctid, storage: &str, mut e: HostError, lines: &[String]) -> HostError {
    if let Some(why) = vzdump::failure(lines.iter().map(String::as_str)) {
        e.message = why.to_string();
    }
    if e.message.contains("Permission check failed") && !e.message.contains("HTTP 403") {
        e.message = format!("{} ({PRIVILEGE_HELP})", e.message);
    } else if e.message.contains("wrong content type")
        || e.message
            .contains(&format!("storage '{storage}' does not exist"))
    {
        e.message = format!(
            "{}: CT {ctid}'s generation is kept as a backup to proxmox_defaults.backup_storage ('{storage}'), which must be a storage with `backup` content on the CT's node; set it to one (`pvesm status --content backup` lists them), or give '{storage}' that content (`pvesm set {storage} --content <its content>,backup`)",
            e.message
        );
    }
    e
}

/// The endpoint's proxy could not reach the node a request was for (pveproxy's 595
/// `Connection refused` / `No route to host`, 596 `Connection timed out`).
fn unanswered(e: &ApiError) -> bool {
    matches!(e.status(), Some(595 | 596))
}

/// A guest phoenix does not read in detail: somebody else's.
fn foreign(vmid: Ctid, r: &Value) -> CtInfo {
    let s = |k: &str| r.get(k).and_then(Value::as_str).unwrap_or("");
    let mut ct = map::ct_info(vmid, &ConfFile::new(), s("status") == "running");
    ct.settings.managed = Some(false);
    ct.template = r.get("template").and_then(Value::as_u64) == Some(1);
    let kind = if s("type") == "qemu" { "VM" } else { "CT" };
    ct.settings.description = Some(format!("{kind} {vmid} on node '{}'", s("node")));
    if !s("name").is_empty() {
        ct.settings.hostname = Some(s("name").to_string());
    }
    ct
}

fn tagged(r: &Value) -> bool {
    r.get("tags")
        .and_then(Value::as_str)
        .is_some_and(|t| Tags::parse(t).contains(MANAGED_TAG))
}

/// pct's failure in its stderr (task errors are one line, pct-spec §0).
fn pct_error(stderr: &[u8], code: Option<i32>) -> HostError {
    let stderr = String::from_utf8_lossy(stderr);
    let line = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty() && !l.starts_with("trying to acquire lock"))
        .map(str::trim)
        .unwrap_or("");
    let message = if line.is_empty() {
        format!("pct failed with exit code {}", code.unwrap_or(-1))
    } else {
        line.to_string()
    };
    HostError::new(text::classify(&stderr), message)
}

impl Host for ApiHost {
    fn name(&self) -> &'static str {
        "pve"
    }

    /// One lock per API endpoint on this machine: two runs from here never build on one
    /// cluster at once.
    fn lock_path(&self) -> Option<PathBuf> {
        let authority = self
            .api
            .base()
            .trim_start_matches("https://")
            .split('/')
            .next()
            .unwrap_or("")
            .replace([':', '[', ']'], "_");
        let dir = Path::new("/run/lock");
        let dir = if crate::os::probe_writable(dir).is_ok() {
            dir.to_path_buf()
        } else {
            std::env::temp_dir()
        };
        Some(dir.join(format!("phoenix-api-{authority}.lock")))
    }

    fn describe(&self) -> String {
        format!(
            "{} (new CTs on node {})",
            self.api.base().trim_end_matches("/api2/json"),
            self.node
        )
    }

    fn inventory(&self) -> HostResult<BTreeMap<Ctid, CtInfo>> {
        let prefetched = self.prefetched.lock().ok().and_then(|mut p| p.take());
        let list = match prefetched {
            Some(l) => l,
            None => self.resources()?,
        };
        let mut out = BTreeMap::new();
        let mut ours: Vec<(Ctid, String)> = Vec::new();
        for r in &list {
            let Some(vmid) = r
                .get("vmid")
                .and_then(Value::as_u64)
                .and_then(|v| u32::try_from(v).ok())
            else {
                continue;
            };
            let node = r
                .get("node")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string();
            let lxc = r.get("type").and_then(Value::as_str) == Some("lxc");
            if lxc && tagged(r) {
                let online = self.nodes.get(&node).is_none_or(|n| n.online)
                    && r.get("status").and_then(Value::as_str) != Some("unknown");
                if online {
                    ours.push((vmid, node));
                } else {
                    let why = self
                        .down_reason(&node)
                        .unwrap_or_else(|| format!("its node '{node}' is offline"));
                    out.insert(vmid, map::unreachable_ct(vmid, &node, &why));
                }
            } else {
                out.insert(vmid, foreign(vmid, r));
            }
        }
        // Each of phoenix's CTs: its config and snapshots, several CTs at once.
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<(Ctid, HostResult<Option<CtInfo>>)>> = Mutex::new(Vec::new());
        std::thread::scope(|s| {
            for _ in 0..READERS.min(ours.len()) {
                s.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some((ctid, node)) = ours.get(i) else {
                        break;
                    };
                    let r = self.read(node, *ctid).map(|o| {
                        o.map(|(mut ct, _)| {
                            ct.node = Some(node.clone());
                            ct
                        })
                    });
                    let r = match r {
                        // Its node stopped answering: this CT cannot be read, the others can.
                        Err(_) if self.down_reason(node).is_some() => {
                            let why = self.down_reason(node).unwrap_or_default();
                            Ok(Some(map::unreachable_ct(*ctid, node, &why)))
                        }
                        other => other,
                    };
                    if let Ok(mut v) = results.lock() {
                        v.push((*ctid, r));
                    }
                });
            }
        });
        for (ctid, r) in results.into_inner().unwrap_or_default() {
            match r {
                Ok(Some(ct)) => {
                    out.insert(ctid, ct);
                }
                // Gone between the list and the read.
                Ok(None) => {}
                Err(e) if e.kind == ErrorKind::Failed && e.message.contains("does not read") => {
                    out.insert(ctid, map::unreadable_ct(ctid, &e.message));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(out)
    }

    fn ct(&self, ctid: Ctid) -> HostResult<Option<CtInfo>> {
        let node = match self.node_of(ctid) {
            Ok(n) => n,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let at = |n: &str, ct: CtInfo| CtInfo {
            node: Some(n.to_string()),
            ..ct
        };
        match self.read(&node, ctid)? {
            Some((ct, _)) => Ok(Some(at(&node, ct))),
            // Moved (migration, HA) since phoenix last saw it?
            None => match self.locate(ctid)? {
                Some(n) if n != node => Ok(self.read(&n, ctid)?.map(|(ct, _)| at(&n, ct))),
                _ => {
                    if let Ok(mut k) = self.known.lock() {
                        k.remove(&ctid);
                    }
                    Ok(None)
                }
            },
        }
    }

    fn config_file(&self, ctid: Ctid) -> HostResult<Option<String>> {
        let node = match self.node_of(ctid) {
            Ok(n) => n,
            Err(e) if e.kind == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        Ok(self.read(&node, ctid)?.map(|(_, cfg)| cfg.conf.to_text()))
    }

    fn not_found(&self, ctid: Ctid) -> HostError {
        let node = self
            .known
            .lock()
            .ok()
            .and_then(|k| k.get(&ctid).map(|k| k.node.clone()))
            .unwrap_or_else(|| self.node.clone());
        text::config_missing(&node, ctid)
    }

    fn facts(&self) -> HostResult<HostFacts> {
        self.node_facts(&self.node)
    }

    fn facts_on(&self, node: &str) -> HostResult<HostFacts> {
        self.node_facts(node)
    }

    /// `/cluster/status` (read at open: the nodes and whether each is online) with what
    /// this run found since (a node that stopped answering), and each node's storages from
    /// `/cluster/resources?type=storage`.
    fn cluster(&self) -> HostResult<Option<ClusterView>> {
        let storages = self.all_storages()?;
        let nodes = self
            .nodes
            .keys()
            .map(|name| {
                let down = self.down_reason(name);
                NodeStatus {
                    online: down.is_none(),
                    down,
                    storages: storages
                        .iter()
                        .filter(|s| s.get("node").and_then(Value::as_str) == Some(name))
                        .filter_map(|s| {
                            let text = |k: &str| s.get(k).and_then(Value::as_str).unwrap_or("");
                            Some(StorageInfo {
                                id: s.get("storage").and_then(Value::as_str)?.to_string(),
                                kind: text("plugintype").to_string(),
                                shared: s.get("shared").and_then(Value::as_u64) == Some(1),
                                content: text("content")
                                    .split(',')
                                    .map(str::trim)
                                    .filter(|c| !c.is_empty())
                                    .map(str::to_string)
                                    .collect(),
                            })
                        })
                        .collect(),
                    name: name.clone(),
                }
            })
            .collect();
        Ok(Some(ClusterView {
            nodes,
            home: self.node.clone(),
        }))
    }

    fn check_storage(&self, storage: &str, ostemplate: Option<&str>) -> Vec<String> {
        self.check_storage_on(&self.node, storage, ostemplate)
    }

    fn check_storage_on(&self, node: &str, storage: &str, ostemplate: Option<&str>) -> Vec<String> {
        self.storage_problem(node, storage, ostemplate)
            .err()
            .into_iter()
            .collect()
    }

    fn check_runtime(&self, unprivileged: bool, network: Option<&Network>) -> Vec<String> {
        self.check_runtime_on(&self.node, unprivileged, network)
    }

    /// The node answers: online, and SSH reaches it (every build needs exec there).
    fn check_runtime_on(
        &self,
        node: &str,
        _unprivileged: bool,
        _network: Option<&Network>,
    ) -> Vec<String> {
        self.check_online(node)
            .and_then(|()| self.check_ssh(node))
            .err()
            .into_iter()
            .collect()
    }

    /// `POST …/<vmid>/migrate` (`target`, `restart` for a running CT), a task
    /// (`vzmigrate`) on the CT's node.
    fn migrate(&self, ctid: Ctid, node: &str, restart: bool) -> HostResult<()> {
        let from = self.node_of(ctid)?;
        let path = format!("{}/migrate", self.ct_path(&from, ctid));
        let mut p = vec![("target", node)];
        if restart {
            p.push(("restart", "1"));
        }
        let r = self.task(ctid, Method::Post, &path, &p);
        match &r {
            Ok(()) => self.wrote(ctid, node),
            Err(_) => self.wrote(ctid, &from),
        }
        r.map_err(|mut e| {
            if e.message.contains("VM.Migrate") {
                e.message = format!(
                    "{}: moving CTs between nodes needs VM.Migrate (add it to phoenix's role: `pveum role modify PhoenixBuilder --append 1 --privs VM.Migrate`)",
                    e.message
                );
            }
            e
        })
    }

    fn check_privileges(&self, needs: &Privileges) -> Result<(), String> {
        let Some(who) = self.not_root_pam() else {
            return Ok(());
        };
        let fix = "log in as root@pam itself (PHOENIX_PVE_USER=root@pam with PHOENIX_PVE_PASSWORD or --pve-password-file)";
        if needs.devices {
            return Err(format!(
                "GPU passthrough writes device entries (devN), and Proxmox lets only root@pam itself configure device passthrough (\"configuring device passthrough is only allowed for root@pam\"), not {who}: {fix}, or leave GPU nodes out with --skip-gpu"
            ));
        }
        let others: Vec<&str> = needs
            .features
            .keys()
            .map(String::as_str)
            .filter(|f| *f != "nesting")
            .collect();
        if !needs.unprivileged && !needs.features.is_empty() {
            return Err(format!(
                "the CT is privileged and has features ({}), and Proxmox lets only root@pam change the features of a privileged container, not {who}: {fix}",
                needs.features.keys().cloned().collect::<Vec<_>>().join(",")
            ));
        }
        if !others.is_empty() {
            return Err(format!(
                "the features {} are reserved to root@pam (\"changing feature flags (except nesting) is only allowed for root@pam\"), and phoenix is authenticated as {who}: {fix}, or keep only nesting=1 in features",
                others.join(",")
            ));
        }
        Ok(())
    }

    fn create(&self, ctid: Ctid, spec: &CreateSpec) -> HostResult<()> {
        let node = spec.node.clone().unwrap_or_else(|| self.node.clone());
        let (settings, delete) = map::setting_params(&spec.settings, None);
        let vmid = ctid.to_string();
        let rootfs = format!("{}:{}", spec.storage, spec.disk_gb);
        let mut p: Vec<(&str, &str)> = vec![
            ("vmid", &vmid),
            ("ostemplate", &spec.ostemplate),
            ("storage", &spec.storage),
            ("rootfs", &rootfs),
            ("unprivileged", if spec.unprivileged { "1" } else { "0" }),
        ];
        // A new CT has nothing to delete.
        let _ = delete;
        p.extend(settings.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        let r = self.task(
            ctid,
            Method::Post,
            &format!("/nodes/{}/lxc", segment(&node)),
            &p,
        );
        self.wrote(ctid, &node);
        r
    }

    fn keeps_copies(&self) -> bool {
        true
    }

    /// `POST /nodes/<node>/vzdump` on the CT's node (`vmid`, `storage`, `mode=stop`,
    /// `notes-template`), a task; the archive is the one its log names, a volume of
    /// `storage` on that node.
    fn keep(&self, ctid: Ctid, storage: &str, note: &str) -> HostResult<KeptCopy> {
        let node = self.node_of(ctid)?;
        let vmid = ctid.to_string();
        let path = format!("/nodes/{}/vzdump", segment(&node));
        let params = [
            ("vmid", vmid.as_str()),
            ("storage", storage),
            ("mode", "stop"),
            ("notes-template", note),
        ];
        let data = self
            .api
            .request(Method::Post, &path, &params)
            .map_err(|e| backup_failed(ctid, storage, e.into_host(), &[]))?;
        // A guest on another node is no error to vzdump: it answers `OK`, backing up nothing.
        if data.as_str() == Some("OK") {
            return Err(HostError::new(
                ErrorKind::NotFound,
                format!(
                    "node '{node}' made no backup of CT {ctid}: vzdump answered OK without a task, as Proxmox does for a guest on another node, so the CT moved after phoenix read it; run the build again"
                ),
            ));
        }
        let lines = self
            .wait(Some(ctid), &data)
            .map_err(|(e, lines)| backup_failed(ctid, storage, e, &lines))?;
        self.wrote(ctid, &node);
        let archive = vzdump::archive(lines.iter().map(String::as_str), storage).ok_or_else(|| {
            HostError::failed(format!(
                "the backup of CT {ctid} on node '{node}' did not say which archive it made (its task log has no `creating vzdump archive` line), so phoenix cannot restore it: find it among CT {ctid}'s backups on storage '{storage}' and remove it there if it is not wanted"
            ))
        })?;
        let size_bytes = self.backup_size(&node, storage, ctid, &archive.volid);
        Ok(KeptCopy {
            location: archive.volid,
            node: Some(node),
            size_bytes,
        })
    }

    /// `POST /nodes/<node>/lxc` with `vmid`, `ostemplate` (the archive), `restore=1`,
    /// `force=1` and `storage`, a task (`vzrestore`), on the node whose storage holds the
    /// archive (the CT's own node when that storage is shared): the CT of that id there,
    /// stopped, is replaced.
    fn restore(&self, ctid: Ctid, kept: &KeptCopy, storage: &str) -> HostResult<()> {
        let here = match self.node_of(ctid) {
            Ok(n) => Some(n),
            Err(e) if e.kind == ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let shared = |node: &str| {
            let store = kept.location.split_once(':').map_or("", |(s, _)| s);
            self.node_storages(node).is_ok_and(|list| {
                list.iter().any(|s| {
                    s.get("storage").and_then(Value::as_str) == Some(store)
                        && s.get("shared").and_then(Value::as_u64) == Some(1)
                })
            })
        };
        let node = match (&kept.node, here) {
            (Some(at), Some(here)) if *at != here && shared(&here) => here,
            (Some(at), _) => at.clone(),
            (None, Some(here)) => here,
            (None, None) => self.node.clone(),
        };
        let vmid = ctid.to_string();
        let params = [
            ("vmid", vmid.as_str()),
            ("ostemplate", kept.location.as_str()),
            ("restore", "1"),
            ("force", "1"),
            ("storage", storage),
        ];
        let path = format!("/nodes/{}/lxc", segment(&node));
        let r = self.task(ctid, Method::Post, &path, &params);
        self.wrote(ctid, &node);
        r.map_err(|mut e| {
            // The CT is on another node than its backup (migrated since it was kept).
            if e.kind == ErrorKind::Exists && !e.message.contains(&format!("node '{node}'")) {
                e.message = format!(
                    "{}: its kept copy {} is on node '{node}', and Proxmox restores a CT on the node that holds the backup; migrate CT {ctid} back to node '{node}' (`pct migrate {ctid} {node}` on its node) and run it again",
                    e.message, kept.location
                );
            }
            e
        })
    }

    /// `DELETE /nodes/<node>/storage/<storage>/content/<volume>` on the node that holds
    /// it: a task (`imgdel`), or `null` when Proxmox finished before answering. A volume
    /// already gone is only a warning to Proxmox, so no error here either.
    fn forget(&self, kept: &KeptCopy) -> HostResult<()> {
        let Some((storage, _)) = kept.location.split_once(':') else {
            return Err(HostError::new(
                ErrorKind::Invalid,
                format!(
                    "{} is not a Proxmox volume (<storage>:<volume>), so Proxmox's API cannot remove it: remove it where it is",
                    kept.location
                ),
            ));
        };
        let node = kept.node.clone().unwrap_or_else(|| self.node.clone());
        let path = format!(
            "/nodes/{}/storage/{}/content/{}",
            segment(&node),
            segment(storage),
            segment(&kept.location)
        );
        let data = self
            .api
            .request(Method::Delete, &path, &[])
            .map_err(ApiError::into_host)?;
        self.wait(None, &data).map(|_| ()).map_err(|(e, _)| e)
    }

    fn clone_ct(&self, spec: &CloneSpec) -> HostResult<()> {
        self.clone_with(&spec.request())
    }

    /// `POST …/<source>/clone` with the request's options, as given, on the source's
    /// node: a task. phoenix's linked clone of a store template is `full=0` with no
    /// `storage` (Proxmox refuses one: `parameter 'storage' not allowed for linked
    /// clones`) nor `snapname` (a template has no snapshots).
    fn clone_with(&self, req: &CloneRequest) -> HostResult<()> {
        let node = self.node_of(req.source)?;
        let newid = req.target.to_string();
        let mut p: Vec<(&str, &str)> = vec![("newid", &newid)];
        let options = [
            ("snapname", req.snapname.as_deref()),
            ("hostname", req.hostname.as_deref()),
            ("description", req.description.as_deref()),
            ("full", req.full.map(|f| if f { "1" } else { "0" })),
            ("storage", req.storage.as_deref()),
        ];
        p.extend(options.into_iter().filter_map(|(k, v)| Some((k, v?))));
        // Made on another node at once (`target`): Proxmox allows it into shared storage.
        let lands = match req.node.as_deref().filter(|n| *n != node) {
            Some(target) => {
                p.push(("target", target));
                target.to_string()
            }
            None => node.clone(),
        };
        let path = format!("{}/clone", self.ct_path(&node, req.source));
        let r = self.task(req.target, Method::Post, &path, &p);
        self.wrote(req.target, &lands);
        r
    }

    /// Whether a storage links clones: its type, as `/cluster/resources` lists it
    /// (`plugintype`; `storage.cfg` is the cluster's, so one node's entry says it). A
    /// storage the cluster does not have does not (the preflight names it), nor does one
    /// when the list cannot be read (the inventory then fails on the same read).
    fn links_clones_on(&self, storage: &str) -> Option<bool> {
        let list = match self.all_storages() {
            Ok(l) => l,
            Err(e) => {
                tracing::debug!(%e, "the storages cannot be read: every clone is full");
                return Some(false);
            }
        };
        let kind = list
            .iter()
            .find(|s| s.get("storage").and_then(Value::as_str) == Some(storage))
            .and_then(|s| s.get("plugintype").and_then(Value::as_str));
        Some(kind.is_some_and(|k| LINKED_CLONE_TYPES.contains(&k)))
    }

    /// `POST …/<vmid>/template`. Proxmox checks the CT under its config lock (not
    /// locked, no snapshots, not a template, not running: a refusal answers the request
    /// in its words), forks the conversion as a task `vztemplate`, and answers `null`,
    /// not that task's UPID [A-LXC template]; the conversion writes `template: 1` when
    /// done, and its failure (`Template feature is not available for '<volume>'`) is only
    /// in the task. So phoenix lists the CT's `vztemplate` tasks before the request,
    /// finds the new one in the node's task list after it and waits for it, and reads
    /// the config until it shows `template: 1` and no lock — within
    /// `PHOENIX_PVE_TASK_TIMEOUT`. Where the task list cannot be read, the config alone
    /// says when it is done.
    fn template(&self, ctid: Ctid) -> HostResult<()> {
        let node = self.node_of(ctid)?;
        let before = match self.template_tasks(&node, ctid) {
            Ok(upids) => Some(upids),
            Err(e) => {
                tracing::debug!(%e, "the task list of node '{node}' cannot be read: the config alone says when CT {ctid} is a template");
                None
            }
        };
        let path = format!("{}/template", self.ct_path(&node, ctid));
        let data = self.send(Method::Post, &path, &[]);
        self.wrote(ctid, &node);
        // Should a Proxmox answer the conversion's UPID, that is the task to wait for.
        let mut answered = task::started(&data?)?.map(|u| u.raw);
        let deadline = Instant::now() + self.opts.task_timeout;
        let mut delay = Duration::from_millis(50);
        loop {
            if self.is_template_now(&node, ctid)? {
                return Ok(());
            }
            let started = answered.take().or_else(|| {
                let before = before.as_ref()?;
                self.template_tasks(&node, ctid)
                    .ok()?
                    .into_iter()
                    .find(|u| !before.contains(u))
            });
            if let Some(upid) = started {
                self.wait(Some(ctid), &Value::String(upid.clone()))
                    .map_err(|(e, _)| e)?;
                if self.is_template_now(&node, ctid)? {
                    return Ok(());
                }
                return Err(HostError::failed(format!(
                    "task {upid} ended OK, yet CT {ctid} on node '{node}' is no template (its config lacks `template: 1`, or holds a lock): look at the CT in the web UI"
                )));
            }
            if Instant::now() >= deadline {
                return Err(HostError::failed(format!(
                    "CT {ctid} on node '{node}' is not a template {} s after `POST {path}` (PHOENIX_PVE_TASK_TIMEOUT), and no vztemplate task of it was found: follow it under Tasks in the web UI",
                    self.opts.task_timeout.as_secs()
                )));
            }
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(1));
        }
    }

    fn set(&self, ctid: Ctid, settings: &Settings) -> HostResult<()> {
        let (node, conf, digest) = self.current(ctid)?;
        let (params, delete) = map::setting_params(settings, Some(conf.main()));
        if params.is_empty() && delete.is_empty() {
            return Err(text::no_options());
        }
        self.put_config(ctid, &node, digest.as_deref(), &params, &delete)
    }

    fn resize(&self, ctid: Ctid, disk_gb: u64) -> HostResult<()> {
        let node = self.node_of(ctid)?;
        let size = format!("{disk_gb}G");
        let path = format!("{}/resize", self.ct_path(&node, ctid));
        let r = self.task(
            ctid,
            Method::Put,
            &path,
            &[("disk", "rootfs"), ("size", &size)],
        );
        self.wrote(ctid, &node);
        r
    }

    fn set_devices(&self, ctid: Ctid, devices: &Passthrough) -> HostResult<()> {
        let node = self.node_of(ctid)?;
        if !devices.nodes.is_empty() {
            self.check_devn(&node)?;
            self.check_gpu_node(&node, devices)?;
        }
        let (_, cfg) = self
            .read(&node, ctid)?
            .ok_or_else(|| text::config_missing(&node, ctid))?;
        let (add, stale) = map::dev_changes(cfg.conf.main(), devices);
        if add.is_empty() && stale.is_empty() {
            return Ok(());
        }
        self.put_config(ctid, &node, cfg.digest.as_deref(), &add, &stale)
    }

    fn start(&self, ctid: Ctid) -> HostResult<()> {
        let node = self.node_of(ctid)?;
        let path = format!("{}/status/start", self.ct_path(&node, ctid));
        let r = self.task(ctid, Method::Post, &path, &[]);
        self.wrote(ctid, &node);
        r
    }

    fn shutdown(&self, ctid: Ctid, timeout_s: u64) -> HostResult<()> {
        let node = self.node_of(ctid)?;
        let path = format!("{}/status/shutdown", self.ct_path(&node, ctid));
        let t = timeout_s.to_string();
        let r = self.task(
            ctid,
            Method::Post,
            &path,
            &[("timeout", &t), ("forceStop", "1")],
        );
        self.wrote(ctid, &node);
        r
    }

    fn stop(&self, ctid: Ctid) -> HostResult<()> {
        let node = self.node_of(ctid)?;
        let path = format!("{}/status/stop", self.ct_path(&node, ctid));
        let r = self.task(ctid, Method::Post, &path, &[]);
        self.wrote(ctid, &node);
        r
    }

    fn exec(&self, ctid: Ctid, argv: &[String], out: &mut dyn Write) -> HostResult<i32> {
        let node = self.node_of(ctid)?;
        let mut remote = vec![
            "pct".to_string(),
            "exec".into(),
            ctid.to_string(),
            "--".into(),
        ];
        remote.extend(argv.iter().cloned());
        let input = if self.pass_stdin {
            Input::Inherit
        } else {
            Input::Null
        };
        let o = self.on_node(&node, &remote, input, None)?;
        let _ = out.write_all(&o.stdout);
        let _ = out.write_all(&o.stderr);
        let code = o.status.code().unwrap_or(-1);
        // pct's own failure (not running, no such CT) is 255 with its error; otherwise the
        // code is the command's.
        if code == 255 && text::classify(&String::from_utf8_lossy(&o.stderr)) != ErrorKind::Failed {
            return Err(pct_error(&o.stderr, Some(code)));
        }
        Ok(code)
    }

    fn push(&self, ctid: Ctid, local: &Path, dest: &str, perms: u32) -> HostResult<()> {
        let node = self.node_of(ctid)?;
        let file = std::fs::File::open(local).map_err(|e| {
            HostError::failed(format!(
                "failed to open {} for reading: {e}",
                local.display()
            ))
        })?;
        let ctid_s = ctid.to_string();
        let perms_s = format!("{perms:o}");
        let o = self.on_node(
            &node,
            &["sh", "-c", PUSH_SCRIPT, "sh", &ctid_s, dest, &perms_s],
            Input::File(file),
            None,
        )?;
        // `pct push` exits 0 even when its worker failed: an error line is the failure.
        if !o.status.success() || !o.stderr.iter().all(u8::is_ascii_whitespace) {
            return Err(pct_error(&o.stderr, o.status.code()));
        }
        Ok(())
    }

    fn pull(&self, ctid: Ctid, path: &str, local: &Path) -> HostResult<()> {
        let node = self.node_of(ctid)?;
        let file = std::fs::File::create(local).map_err(|e| {
            HostError::failed(format!("failed to create file: {}: {e}", local.display()))
        })?;
        let ctid_s = ctid.to_string();
        let o = self.on_node(
            &node,
            &["sh", "-c", PULL_SCRIPT, "sh", &ctid_s, path],
            Input::Null,
            Some(Stdio::from(file)),
        )?;
        if !o.status.success() || !o.stderr.iter().all(u8::is_ascii_whitespace) {
            return Err(pct_error(&o.stderr, o.status.code()));
        }
        Ok(())
    }

    fn snapshot(&self, ctid: Ctid, name: &str, description: &str) -> HostResult<()> {
        let node = self.node_of(ctid)?;
        let path = format!("{}/snapshot", self.ct_path(&node, ctid));
        let r = self.task(
            ctid,
            Method::Post,
            &path,
            &[("snapname", name), ("description", description)],
        );
        self.wrote(ctid, &node);
        r
    }

    fn delete_snapshot(&self, ctid: Ctid, name: &str) -> HostResult<()> {
        let node = self.node_of(ctid)?;
        let path = format!("{}/snapshot/{}", self.ct_path(&node, ctid), segment(name));
        let r = self.task(ctid, Method::Delete, &path, &[]);
        self.wrote(ctid, &node);
        r
    }

    fn rollback(&self, ctid: Ctid, name: &str) -> HostResult<()> {
        let node = self.node_of(ctid)?;
        let path = format!(
            "{}/snapshot/{}/rollback",
            self.ct_path(&node, ctid),
            segment(name)
        );
        let r = self.task(ctid, Method::Post, &path, &[]);
        self.wrote(ctid, &node);
        r
    }

    fn destroy(&self, ctid: Ctid) -> HostResult<()> {
        let node = self.node_of(ctid)?;
        let r = self.task(
            ctid,
            Method::Delete,
            &self.ct_path(&node, ctid),
            &[("purge", "1")],
        );
        if r.is_ok() {
            if let Ok(mut k) = self.known.lock() {
                k.remove(&ctid);
            }
        }
        r
    }

    /// The API has no unlock: `pct unlock` on the node.
    fn unlock(&self, ctid: Ctid) -> HostResult<()> {
        let node = self.node_of(ctid)?;
        let o = self.on_node(
            &node,
            &["pct", "unlock", &ctid.to_string()],
            Input::Null,
            None,
        )?;
        self.wrote(ctid, &node);
        if !o.status.success() {
            return Err(pct_error(&o.stderr, o.status.code()));
        }
        Ok(())
    }

    fn enter(&self, ctid: Ctid) -> HostResult<i32> {
        let node = self.node_of(ctid)?;
        let addr = self.address(&node)?;
        let status = self
            .ssh
            .command(&addr, &["pct", "enter", &ctid.to_string()], true)
            .status()
            .map_err(|e| HostError::failed(format!("cannot run ssh: {e}")))?;
        Ok(status.code().unwrap_or(255))
    }

    fn take_log(&self, ctid: Ctid) -> Vec<String> {
        self.log
            .lock()
            .ok()
            .and_then(|mut l| l.remove(&ctid))
            .unwrap_or_default()
    }

    fn pct_dir(&self) -> Option<PathBuf> {
        self.pct_dir
            .get_or_init(|| {
                let dir = self.run_dir.as_ref()?.0.join("bin");
                crate::host::pct::link_into(&dir)
            })
            .clone()
    }

    /// What a hook's `pct` needs to reach the same cluster: the options, the run's SSH
    /// connections, and the credential as a private file (never a secret in the
    /// environment).
    fn hook_env(&self) -> Vec<(String, String)> {
        let mut env = vec![
            ("PHOENIX_BACKEND".to_string(), "pve".to_string()),
            ("PHOENIX_PVE_URL".into(), self.api.base().to_string()),
            ("PHOENIX_PVE_NODE".into(), self.node.clone()),
            ("PHOENIX_PVE_SSH_USER".into(), self.ssh.user().to_string()),
            (
                "PHOENIX_SSH_CONTROL_DIR".into(),
                self.ssh.control_dir().display().to_string(),
            ),
            ("PHOENIX_PVE_CA".into(), String::new()),
            ("PHOENIX_PVE_FINGERPRINT".into(), String::new()),
            ("PHOENIX_PVE_INSECURE".into(), String::new()),
            ("PHOENIX_PVE_TOKEN_FILE".into(), String::new()),
            ("PHOENIX_PVE_PASSWORD_FILE".into(), String::new()),
            ("PHOENIX_PVE_TICKET_FILE".into(), String::new()),
        ];
        let hosts: Vec<String> = self
            .opts
            .ssh
            .hosts
            .iter()
            .map(|(n, a)| format!("{n}={a}"))
            .collect();
        env.push(("PHOENIX_PVE_SSH_HOSTS".into(), hosts.join(",")));
        let mut set = |k: &str, v: String| {
            if let Some(e) = env.iter_mut().find(|(key, _)| key == k) {
                e.1 = v;
            }
        };
        match &self.opts.trust {
            Trust::Ca(p) => set("PHOENIX_PVE_CA", p.display().to_string()),
            Trust::Pinned(fp) => set(
                "PHOENIX_PVE_FINGERPRINT",
                super::tls::format_fingerprint(fp),
            ),
            Trust::Insecure => set("PHOENIX_PVE_INSECURE", "1".into()),
            Trust::System => {}
        }
        if let Some(d) = &self.run_dir {
            match self.api.credential() {
                Credential::Token { .. } => set(
                    "PHOENIX_PVE_TOKEN_FILE",
                    d.0.join("token").display().to_string(),
                ),
                Credential::Password { user, .. } | Credential::Ticket { user, .. } => {
                    set(
                        "PHOENIX_PVE_TICKET_FILE",
                        d.0.join("ticket").display().to_string(),
                    );
                    env.push(("PHOENIX_PVE_USER".into(), user.clone()));
                }
            }
        }
        env
    }

    fn speaks_pct(&self) -> bool {
        false
    }

    fn enter_hint(&self, ctid: Ctid) -> String {
        let node = self
            .known
            .lock()
            .ok()
            .and_then(|k| k.get(&ctid).map(|k| k.node.clone()))
            .unwrap_or_else(|| self.node.clone());
        match self.address(&node) {
            Ok(a) => {
                let port = a.port.map(|p| format!(" -p {p}")).unwrap_or_default();
                format!(
                    "ssh -t{port} {}@{} pct enter {ctid}",
                    self.ssh.user(),
                    a.host
                )
            }
            Err(_) => format!("pct enter {ctid} (on node {node})"),
        }
    }

    fn estimate_ms(&self, verb: Verb) -> u64 {
        match verb {
            Verb::Create => 30_000,
            Verb::Clone => 20_000,
            Verb::Start | Verb::Shutdown | Verb::Stop | Verb::Destroy => 3_000,
            Verb::Exec => 1_000,
            Verb::Inventory | Verb::Config | Verb::Facts => 100,
            _ => 500,
        }
    }
}
