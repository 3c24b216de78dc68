//! The API's paths on the model. Slow actions run as tasks through
//! [`phoenix::host::pct::run`] on the node's [`SimHost`], so that the API and `pct` (the
//! `pct-emulator`, over SSH) share every rule and error text of the model; the checks
//! Proxmox makes before forking a worker (the CT exists on that node, a clone's source is
//! not locked, a new VMID is free, the caller's privileges, a config `digest`) answer the
//! request itself [A-LXC, A-CFG, A-SNAP, A-ST, LXC check_ct_modify_config_perm].
//!
//! Kept generations are the model's too: `POST …/vzdump` runs [`Host::keep`] in a task
//! that logs as vzdump does, a restore (`POST …/lxc` with `restore=1`) runs `pct
//! restore`, and `DELETE …/storage/<s>/content/<volume>` runs [`Host::forget`]; the
//! storage's content list shows the backups.
//!
//! [`Host::keep`]: phoenix::host::Host::keep
//! [`Host::forget`]: phoenix::host::Host::forget

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use phoenix::host::pve::conf::ConfFile;
use phoenix::host::pve::props::Features;
use phoenix::host::pve::{storage, text};
use phoenix::host::sim::cluster::{self as model, Members};
use phoenix::host::sim::{knobs, SimHost};
use serde_json::{json, Value};

use crate::auth::{Auth, Who};
use crate::http::{Request, Response};
use crate::tasks::Tasks;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Answer {
    Proxmox,
    NotJson,
    NotProxmox,
}

pub struct Cluster {
    root: PathBuf,
    /// The node the URL reaches first, then the others.
    nodes: Vec<String>,
    offline: BTreeSet<String>,
    ip: String,
    latency: Duration,
    /// Extra milliseconds for every request to a node (`PVE_API_EMULATOR_SLOW`).
    slow: BTreeMap<String, u64>,
    task_latency: knobs::Latency,
    faults: Vec<knobs::Fault>,
    answer: Answer,
    /// Task types that end with a warning (`WARNINGS: 1`).
    warn: BTreeSet<String>,
    auth: Auth,
    tasks: Arc<Tasks>,
}

/// Config keys whose values the API answers as numbers.
const INTEGER_KEYS: &[&str] = &[
    "cores",
    "cpuunits",
    "memory",
    "swap",
    "onboot",
    "unprivileged",
    "template",
    "protection",
    "tty",
    "console",
    "debug",
];

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn list(name: &str) -> Vec<String> {
    var(name)
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

fn internal(e: impl std::fmt::Display) -> Response {
    Response::error(500, &e.to_string())
}

impl Cluster {
    pub fn from_env(root: &Path) -> Result<Cluster, String> {
        // A tree with `etc/pve/.members` is a cluster of its members; otherwise the
        // nodes come from the environment.
        let members = Members::read(root);
        let local = var("PVE_EMULATOR_NODE")
            .or_else(|| members.as_ref().map(|m| m.nodename.clone()))
            .unwrap_or_else(|| "pve".into());
        let mut nodes = vec![local];
        let others = match &members {
            Some(m) => m.nodelist.keys().cloned().collect(),
            None => list("PVE_API_EMULATOR_NODES"),
        };
        for n in others {
            if !nodes.contains(&n) {
                nodes.push(n);
            }
        }
        let mut slow = BTreeMap::new();
        for entry in list("PVE_API_EMULATOR_SLOW") {
            let (n, ms) = entry
                .split_once('=')
                .and_then(|(n, ms)| Some((n.to_string(), ms.parse::<u64>().ok()?)))
                .ok_or_else(|| format!("PVE_API_EMULATOR_SLOW: `{entry}` is not NODE=MS"))?;
            slow.insert(n, ms);
        }
        let ms = |name: &str| -> Result<u64, String> {
            var(name)
                .map(|v| v.parse().map_err(|_| format!("{name}={v} is not a number")))
                .transpose()
                .map(Option::unwrap_or_default)
        };
        let task_latency =
            knobs::parse_latency(&var("PVE_API_EMULATOR_TASK_LATENCY").unwrap_or_default())
                .map_err(|e| e.replace("PHOENIX_SIM_LATENCY", "PVE_API_EMULATOR_TASK_LATENCY"))?;
        let faults = knobs::parse_faults(&var("PVE_EMULATOR_FAULTS").unwrap_or_default())
            .map_err(|e| e.replace("PHOENIX_SIM_FAULTS", "PVE_EMULATOR_FAULTS"))?;
        let answer = match var("PVE_API_EMULATOR_ANSWER").as_deref() {
            None | Some("proxmox") => Answer::Proxmox,
            Some("not-json") => Answer::NotJson,
            Some("not-proxmox") => Answer::NotProxmox,
            Some(o) => {
                return Err(format!(
                    "PVE_API_EMULATOR_ANSWER={o}: proxmox, not-json or not-proxmox"
                ))
            }
        };
        let ttl = var("PVE_API_EMULATOR_TICKET_TTL_S")
            .map(|v| {
                v.parse::<f64>()
                    .map_err(|_| format!("PVE_API_EMULATOR_TICKET_TTL_S={v} is not a number"))
            })
            .transpose()?
            .unwrap_or(7200.0);
        let tasks = Tasks::new(Duration::from_millis(ms(
            "PVE_API_EMULATOR_TASK_VISIBLE_MS",
        )?));
        let cluster = Cluster {
            root: root.to_path_buf(),
            nodes,
            offline: list("PVE_API_EMULATOR_OFFLINE").into_iter().collect(),
            ip: var("PVE_API_EMULATOR_NODE_IP").unwrap_or_else(|| "127.0.0.1".into()),
            latency: Duration::from_millis(ms("PVE_API_EMULATOR_LATENCY_MS")?),
            slow,
            task_latency,
            faults,
            answer,
            warn: list("PVE_API_EMULATOR_WARN_TASKS").into_iter().collect(),
            auth: Auth::new(Duration::from_secs_f64(ttl.max(0.0))),
            tasks: Arc::new(tasks),
        };
        // Every node's model is laid out (its config directory, storage.cfg), with the
        // host facts of a node with NVIDIA GPUs unless the tree has its own.
        for n in &cluster.nodes {
            let host = cluster.host(n)?;
            if !model::local_root(root, n).join("proc").exists() {
                phoenix::host::Host::facts(&host).map_err(|e| e.message)?;
            }
        }
        Ok(cluster)
    }

    /// Whether a node is offline now: in the environment's list, or (a cluster) in
    /// `.members`, which a test may rewrite while the emulator runs.
    fn is_offline(&self, node: &str) -> bool {
        self.offline.contains(node)
            || Members::read(&self.root).is_some_and(|m| m.has(node) && !m.online(node))
    }

    /// Whether the cluster has quorum (`.members`; a tree that is one node always has).
    fn quorate(&self) -> bool {
        Members::read(&self.root).is_none_or(|m| m.quorate())
    }

    fn host(&self, node: &str) -> Result<SimHost, String> {
        SimHost::with_knobs(
            &self.root,
            node,
            self.task_latency.clone(),
            self.faults.clone(),
        )
    }

    /// Appends the request to `api-requests.log` (`METHOD TARGET STATUS`) and, when it
    /// changes something on a node, with its parameters to `api-params.log` (one JSON
    /// line: `method`, `path`, `params`, `status`), so a test can tell what a request
    /// asked for (a clone's `full`). A login's parameters, its password, are never
    /// written.
    pub fn log_request(&self, req: &Request, status: u16) {
        let append = |file: &str, line: String| {
            if let Ok(mut f) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.root.join(file))
            {
                let _ = f.write_all(line.as_bytes());
            }
        };
        append(
            "api-requests.log",
            format!("{} {} {status}\n", req.method, req.target),
        );
        if req.method != "GET" && req.path.first().is_some_and(|p| p == "nodes") {
            let line = json!({
                "method": req.method,
                "path": format!("/{}", req.path.join("/")),
                "params": req.params,
                "status": status,
            });
            append("api-params.log", format!("{line}\n"));
        }
    }

    pub fn handle(&self, req: &Request) -> Response {
        if !self.latency.is_zero() {
            std::thread::sleep(self.latency);
        }
        match self.answer {
            Answer::Proxmox => {}
            Answer::NotJson => {
                return Response {
                    status: 200,
                    reason: "OK".into(),
                    body: "<html><body>Welcome to nginx!</body></html>\n".into(),
                    content_type: "text/html",
                }
            }
            Answer::NotProxmox => {
                return Response {
                    status: 404,
                    reason: "Not Found".into(),
                    body: "<html><body>404 Not Found</body></html>\n".into(),
                    content_type: "text/html",
                }
            }
        }
        let p: Vec<&str> = req.path.iter().map(String::as_str).collect();
        if p == ["access", "ticket"] && req.method == "POST" {
            let u = req.params.get("username").cloned().unwrap_or_default();
            let pw = req.params.get("password").cloned().unwrap_or_default();
            return match self.auth.login(&self.root, &u, &pw) {
                Ok(v) => Response::data(v),
                Err(r) => r,
            };
        }
        let who = match self.auth.authenticate(&self.root, req) {
            Ok(w) => w,
            Err(r) => return r,
        };
        // Without quorum pmxcfs is read-only: every write is refused
        // [PVE::Cluster::check_cfs_quorum].
        if req.method != "GET" && !self.quorate() {
            return Response::error(500, "cluster not ready - no quorum?");
        }
        self.route(req, &p, &who).unwrap_or_else(|r| r)
    }

    fn route(&self, req: &Request, p: &[&str], who: &Who) -> Result<Response, Response> {
        let m = req.method.as_str();
        match (m, p) {
            ("GET", ["version"]) => Ok(Response::data(
                json!({"version": "8.4.1", "release": "8.4", "repoid": "emulator"}),
            )),
            ("GET", ["cluster", "status"]) => {
                who.check("/", "Sys.Audit")?;
                Ok(Response::data(self.cluster_status()))
            }
            ("GET", ["cluster", "resources"]) => {
                Ok(Response::data(self.resources(req.params.get("type").map(String::as_str))?))
            }
            ("GET", ["nodes"]) => Ok(Response::data(Value::Array(
                self.nodes
                    .iter()
                    .map(|n| json!({"node": n, "status": if self.is_offline(n) {"offline"} else {"online"}}))
                    .collect(),
            ))),
            (_, ["nodes", node, rest @ ..]) => {
                if !self.nodes.iter().any(|n| n == node) {
                    return Err(Response::error(
                        500,
                        &format!("hostname lookup '{node}' failed - failed to get address info for: {node}: Name or service not known"),
                    ));
                }
                if self.is_offline(node) {
                    return Err(Response::error(595, "Connection refused"));
                }
                if let Some(ms) = self.slow.get(*node) {
                    std::thread::sleep(Duration::from_millis(*ms));
                }
                self.node_route(req, node, rest, who)
            }
            _ => Err(Response::error(
                501,
                &format!("Method '{m} /{}' not implemented", p.join("/")),
            )),
        }
    }

    fn node_route(
        &self,
        req: &Request,
        node: &str,
        p: &[&str],
        who: &Who,
    ) -> Result<Response, Response> {
        let m = req.method.as_str();
        let param = |k: &str| req.params.get(k).map(String::as_str);
        match (m, p) {
            ("GET", ["storage"]) => Ok(Response::data(self.storages(node)?)),
            ("GET", ["storage", s, "content"]) => {
                who.check_any(
                    &format!("/storage/{s}"),
                    &["Datastore.Audit", "Datastore.AllocateSpace"],
                )?;
                let vmid = param("vmid").and_then(|v| v.parse().ok());
                Ok(Response::data(self.content(
                    node,
                    s,
                    param("content"),
                    vmid,
                    who,
                )?))
            }
            // The volume may hold `/`: the rest of the path is its id [pve-storage
            // API2/Storage/Status.pm fragmentDelimiter].
            ("DELETE", ["storage", s, "content", volume @ ..]) if !volume.is_empty() => {
                self.free_volume(req, node, s, &volume.join("/"), who)
            }
            ("POST", ["vzdump"]) => self.vzdump(req, node, who),
            ("GET", ["tasks"]) => Ok(Response::data(self.tasks.list(
                node,
                param("vmid"),
                param("typefilter"),
                param("source").unwrap_or("archive"),
                &who.id,
                who.has("Sys.Audit"),
            ))),
            ("GET", ["tasks", upid, "status"]) => self
                .tasks
                .status(node, upid)
                .map(Response::data)
                .ok_or_else(|| Response::params(&[("upid", "no such task")])),
            ("GET", ["tasks", upid, "log"]) => self
                .tasks
                .log(node, upid)
                .map(Response::data)
                .ok_or_else(|| Response::params(&[("upid", "no such task")])),
            ("POST", ["lxc"]) if param("restore") == Some("1") => self.restore(req, node, who),
            ("POST", ["lxc"]) => self.create(req, node, who),
            (_, ["lxc", id, rest @ ..]) => {
                let vmid: u32 = id.parse().map_err(|_| {
                    Response::params(&[(
                        "vmid",
                        "invalid format - value does not look like a valid VM ID",
                    )])
                })?;
                self.ct_route(req, node, vmid, rest, who)
            }
            _ => Err(Response::error(
                501,
                &format!("Method '{m} /nodes/{node}/{}' not implemented", p.join("/")),
            )),
        }
    }

    fn conf_path(&self, node: &str, vmid: u32) -> PathBuf {
        self.root
            .join(format!("etc/pve/nodes/{node}/lxc/{vmid}.conf"))
    }

    /// The CT's config file on this node, as text, or Proxmox's 500.
    fn conf_text(&self, node: &str, vmid: u32) -> Result<String, Response> {
        std::fs::read_to_string(self.conf_path(node, vmid)).map_err(|_| {
            Response::error(
                500,
                &format!("Configuration file 'nodes/{node}/lxc/{vmid}.conf' does not exist"),
            )
        })
    }

    fn ct_route(
        &self,
        req: &Request,
        node: &str,
        vmid: u32,
        p: &[&str],
        who: &Who,
    ) -> Result<Response, Response> {
        let m = req.method.as_str();
        let vms = format!("/vms/{vmid}");
        let text = self.conf_text(node, vmid)?;
        let conf = ConfFile::parse(&text).map_err(|e| internal(format!("{e}")))?;
        let param = |k: &str| req.params.get(k).cloned();
        let id = vmid.to_string();
        match (m, p) {
            ("GET", ["config"]) => {
                who.check(&vms, "VM.Audit")?;
                let current = param("current").is_some_and(|v| v == "1");
                Ok(Response::data(config_json(&conf, &text, current)))
            }
            ("PUT", ["config"]) => self.update(req, node, vmid, &conf, &text, who),
            ("GET", ["snapshot"]) => {
                who.check(&vms, "VM.Audit")?;
                Ok(Response::data(self.snapshot_list(&conf, &text, vmid)))
            }
            ("GET", ["status", "current"]) => {
                who.check(&vms, "VM.Audit")?;
                let running = self.running(vmid);
                Ok(Response::data(json!({
                    "vmid": vmid, "status": if running {"running"} else {"stopped"},
                    "name": conf.main().get("hostname").unwrap_or(""),
                    "type": "lxc",
                })))
            }
            ("POST", ["status", verb @ ("start" | "stop" | "shutdown")]) => {
                who.check(&vms, "VM.PowerMgmt")?;
                let mut argv = vec![verb.to_string(), id.clone()];
                if *verb == "shutdown" {
                    for k in ["timeout", "forceStop"] {
                        if let Some(v) = param(k) {
                            argv.push(format!("--{k}"));
                            argv.push(v);
                        }
                    }
                }
                Ok(self.task(node, &format!("vz{verb}"), &id, who, argv))
            }
            ("POST", ["snapshot"]) => {
                who.check(&vms, "VM.Snapshot")?;
                let name = param("snapname").ok_or_else(|| {
                    Response::params(&[("snapname", "property is missing and it is not optional")])
                })?;
                let mut argv = vec!["snapshot".to_string(), id.clone(), name];
                if let Some(d) = param("description") {
                    argv.push("--description".into());
                    argv.push(d);
                }
                Ok(self.task(node, "vzsnapshot", &id, who, argv))
            }
            ("DELETE", ["snapshot", name]) => {
                who.check(&vms, "VM.Snapshot")?;
                Ok(self.task(
                    node,
                    "vzdelsnapshot",
                    &id,
                    who,
                    vec!["delsnapshot".into(), id.clone(), name.to_string()],
                ))
            }
            ("POST", ["snapshot", name, "rollback"]) => {
                who.check(&vms, "VM.Snapshot.Rollback")?;
                Ok(self.task(
                    node,
                    "vzrollback",
                    &id,
                    who,
                    vec!["rollback".into(), id.clone(), name.to_string()],
                ))
            }
            ("PUT", ["resize"]) => {
                who.check(&vms, "VM.Config.Disk")?;
                check_digest(req, &text)?;
                let disk = param("disk").unwrap_or_default();
                let size = param("size").unwrap_or_default();
                Ok(self.task(
                    node,
                    "resize",
                    &id,
                    who,
                    vec!["resize".into(), id.clone(), disk, size],
                ))
            }
            ("POST", ["clone"]) => self.clone(req, node, vmid, &conf, who),
            ("POST", ["template"]) => self.template(node, vmid, &conf, who),
            ("POST", ["migrate"]) => self.migrate(req, node, vmid, who),
            ("DELETE", []) => {
                who.check(&vms, "VM.Allocate")?;
                if let Some(l) = conf.main().get("lock") {
                    return Err(Response::error(500, &format!("CT is locked ({l})")));
                }
                let mut argv = vec!["destroy".to_string(), id.clone()];
                if let Some(v) = param("purge") {
                    argv.push("--purge".into());
                    argv.push(v);
                }
                Ok(self.task(node, "vzdestroy", &id, who, argv))
            }
            ("POST", ["exec"]) => Err(Response::error(
                501,
                &format!("Method 'POST /nodes/{node}/lxc/{vmid}/exec' not implemented"),
            )),
            _ => Err(Response::error(
                501,
                &format!(
                    "Method '{m} /nodes/{node}/lxc/{vmid}/{}' not implemented",
                    p.join("/")
                ),
            )),
        }
    }

    /// Starts `pct <argv>` as a task on the node's model; answers its UPID.
    fn task(&self, node: &str, kind: &str, id: &str, who: &Who, argv: Vec<String>) -> Response {
        let host = match self.host(node) {
            Ok(h) => h,
            Err(e) => return internal(e),
        };
        self.task_with(node, kind, id, who, move |log| {
            let mut out = Vec::new();
            let r = phoenix::host::pct::run(&host, &argv, &mut out);
            match r {
                Ok(0) => {
                    log.extend(String::from_utf8_lossy(&out).lines().map(str::to_string));
                    Ok(())
                }
                Ok(code) => Err(format!("command exited with status {code}")),
                Err(e) => Err(e),
            }
        })
    }

    /// Starts `work` as a task on the node and answers its UPID ([`Cluster::start`]).
    fn task_with(
        &self,
        node: &str,
        kind: &str,
        id: &str,
        who: &Who,
        work: impl FnOnce(&mut Vec<String>) -> Result<(), String> + Send + 'static,
    ) -> Response {
        Response::data(Value::String(self.start(node, kind, id, who, work)))
    }

    /// Starts `work` as a task on the node: it writes its log lines, and its error ends
    /// the task (a failed task's log holds only that, as the model's `pct` gives no more).
    /// Returns its UPID.
    fn start(
        &self,
        node: &str,
        kind: &str,
        id: &str,
        who: &Who,
        work: impl FnOnce(&mut Vec<String>) -> Result<(), String> + Send + 'static,
    ) -> String {
        let warn = self.warn.contains(kind);
        self.tasks.start(node, kind, id, &who.id, move || {
            let mut lines = Vec::new();
            match work(&mut lines) {
                Ok(()) => {
                    if warn {
                        lines
                            .push("WARN: an emulated warning (PVE_API_EMULATOR_WARN_TASKS)".into());
                    }
                    (lines, Ok(()))
                }
                Err(e) => (Vec::new(), Err(e)),
            }
        })
    }

    fn running(&self, vmid: u32) -> bool {
        self.root.join(format!("run/lxc/{vmid}.running")).exists()
    }

    /// Who has this VMID anywhere in the cluster: `(node, is_vm)`.
    fn owner(&self, vmid: u32) -> Option<(String, bool)> {
        let nodes = std::fs::read_dir(self.root.join("etc/pve/nodes")).ok()?;
        nodes.flatten().find_map(|n| {
            [("lxc", false), ("qemu-server", true)]
                .into_iter()
                .find(|(d, _)| n.path().join(d).join(format!("{vmid}.conf")).exists())
                .map(|(_, vm)| (n.file_name().to_string_lossy().into_owned(), vm))
        })
    }

    fn vmid_free(&self, vmid: u32) -> Result<(), Response> {
        match self.owner(vmid) {
            Some((node, true)) => Err(Response::error(
                500,
                &format!("VM {vmid} already exists on node '{node}'"),
            )),
            Some((node, false)) => Err(Response::error(
                500,
                &format!("CT {vmid} already exists on node '{node}'"),
            )),
            None => Ok(()),
        }
    }

    fn create(&self, req: &Request, node: &str, who: &Who) -> Result<Response, Response> {
        let vmid: u32 = req
            .params
            .get("vmid")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                Response::params(&[("vmid", "property is missing and it is not optional")])
            })?;
        let ostemplate = req.params.get("ostemplate").cloned().ok_or_else(|| {
            Response::params(&[("ostemplate", "property is missing and it is not optional")])
        })?;
        who.check(&format!("/vms/{vmid}"), "VM.Allocate")?;
        let storage = req
            .params
            .get("storage")
            .cloned()
            .unwrap_or_else(|| "local".into());
        who.check(&format!("/storage/{storage}"), "Datastore.AllocateSpace")?;
        if ostemplate.starts_with('/') && !who.is_root() {
            return Err(Response::error(
                403,
                "Only root can pass arbitrary filesystem paths.",
            ));
        }
        let unprivileged = req.params.get("unprivileged").is_none_or(|v| v != "0");
        let keys: Vec<(String, String)> = req
            .params
            .iter()
            .filter(|(k, _)| {
                ![
                    "vmid",
                    "ostemplate",
                    "storage",
                    "rootfs",
                    "unprivileged",
                    "start",
                ]
                .contains(&k.as_str())
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        check_config_perm(who, vmid, None, &keys, &[], unprivileged)?;
        self.vmid_free(vmid)?;
        let mut argv = vec!["create".to_string(), vmid.to_string(), ostemplate];
        for (k, v) in &req.params {
            if k != "vmid" && k != "ostemplate" {
                argv.push(format!("--{k}"));
                argv.push(v.clone());
            }
        }
        Ok(self.task(node, "vzcreate", &vmid.to_string(), who, argv))
    }

    fn clone(
        &self,
        req: &Request,
        node: &str,
        vmid: u32,
        conf: &ConfFile,
        who: &Who,
    ) -> Result<Response, Response> {
        let newid: u32 = req
            .params
            .get("newid")
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| {
                Response::params(&[("newid", "property is missing and it is not optional")])
            })?;
        who.check(&format!("/vms/{vmid}"), "VM.Clone")?;
        who.check(&format!("/vms/{newid}"), "VM.Allocate")?;
        if let Some(s) = req.params.get("storage") {
            who.check(&format!("/storage/{s}"), "Datastore.AllocateSpace")?;
        }
        if let Some(l) = conf.main().get("lock") {
            return Err(Response::error(500, &format!("CT is locked ({l})")));
        }
        self.vmid_free(newid)?;
        let mut argv = vec!["clone".to_string(), vmid.to_string(), newid.to_string()];
        for k in [
            "snapname",
            "full",
            "storage",
            "hostname",
            "description",
            "target",
        ] {
            if let Some(v) = req.params.get(k) {
                argv.push(format!("--{k}"));
                argv.push(v.clone());
            }
        }
        Ok(self.task(node, "vzclone", &vmid.to_string(), who, argv))
    }

    /// `POST …/template` [A-LXC template]: `VM.Allocate`; under the CT's config lock the
    /// CT must be unlocked, without snapshots, not a template and not running — each
    /// refusal answers the request — then a worker `vztemplate` converts it (the model's
    /// [`Host::template`](phoenix::host::Host::template): its volumes become bases) and
    /// the request answers `null`, not the worker's UPID: the conversion's own failure is
    /// only in the node's task list and that task's status.
    fn template(
        &self,
        node: &str,
        vmid: u32,
        conf: &ConfFile,
        who: &Who,
    ) -> Result<Response, Response> {
        who.check(&format!("/vms/{vmid}"), "VM.Allocate")?;
        let refused = |e: phoenix::host::HostError| Response::error(500, &e.message);
        if let Some(l) = conf.main().get("lock") {
            return Err(Response::error(500, &format!("CT is locked ({l})")));
        }
        if !conf.snapshot_names().is_empty() {
            return Err(refused(text::template_with_snapshots()));
        }
        if conf.main().get("template").is_some_and(|t| t.trim() == "1") {
            return Err(refused(text::template_of_template()));
        }
        if self.running(vmid) {
            return Err(refused(text::template_running()));
        }
        let host = self.host(node).map_err(internal)?;
        self.start(node, "vztemplate", &vmid.to_string(), who, move |_| {
            phoenix::host::Host::template(&host, vmid).map_err(|e| e.message)
        });
        Ok(Response::data(Value::Null))
    }

    /// `POST …/migrate` [A-LXC migrate_vm]: `VM.Migrate`; the target is another node of
    /// the cluster; a running CT needs `restart` (or `online`, which LXC does not
    /// have); then a task `vzmigrate` runs `pct migrate` on the model.
    fn migrate(
        &self,
        req: &Request,
        node: &str,
        vmid: u32,
        who: &Who,
    ) -> Result<Response, Response> {
        who.check(&format!("/vms/{vmid}"), "VM.Migrate")?;
        let target = req.params.get("target").cloned().ok_or_else(|| {
            Response::params(&[("target", "property is missing and it is not optional")])
        })?;
        if target == node {
            return Err(Response::params(&[("target", "target is local node.")]));
        }
        if !self.nodes.contains(&target) {
            return Err(Response::error(
                500,
                &format!("no such cluster node '{target}'"),
            ));
        }
        let flag = |k: &str| req.params.get(k).is_some_and(|v| v == "1");
        if self.running(vmid) && !flag("online") && !flag("restart") {
            return Err(Response::error(
                500,
                "can't migrate running container without --online or --restart",
            ));
        }
        if req.params.contains_key("target-storage") {
            return Err(Response::error(
                501,
                "target-storage is not emulated: the model migrates to the storage of the same name",
            ));
        }
        let mut argv = vec!["migrate".to_string(), vmid.to_string(), target];
        for k in ["restart", "online", "timeout"] {
            if let Some(v) = req.params.get(k) {
                argv.push(format!("--{k}"));
                argv.push(v.clone());
            }
        }
        Ok(self.task(node, "vzmigrate", &vmid.to_string(), who, argv))
    }

    /// `PUT …/config`: synchronous, under the config lock, refused when locked, when the
    /// file changed since the caller's `digest`, or when the caller may not [A-CFG
    /// update_vm].
    fn update(
        &self,
        req: &Request,
        node: &str,
        vmid: u32,
        conf: &ConfFile,
        text: &str,
        who: &Who,
    ) -> Result<Response, Response> {
        let host = self.host(node).map_err(internal)?;
        if let Some(l) = conf.main().get("lock") {
            return Err(Response::error(500, &format!("CT is locked ({l})")));
        }
        check_digest(req, text)?;
        let delete: Vec<String> = req
            .params
            .get("delete")
            .map(|d| {
                d.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default();
        let keys: Vec<(String, String)> = req
            .params
            .iter()
            .filter(|(k, _)| !["digest", "delete", "revert"].contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let unprivileged = conf
            .main()
            .get("unprivileged")
            .is_some_and(|v| v.trim() == "1");
        check_config_perm(who, vmid, Some(conf), &keys, &delete, unprivileged)?;
        let mut argv = vec!["set".to_string(), vmid.to_string()];
        for (k, v) in &keys {
            argv.push(format!("--{k}"));
            argv.push(v.clone());
        }
        if !delete.is_empty() {
            argv.push("--delete".into());
            argv.push(delete.join(","));
        }
        let mut out = Vec::new();
        match phoenix::host::pct::run(&host, &argv, &mut out) {
            Ok(_) => Ok(Response::data(Value::Null)),
            Err(e) if e.starts_with("400 ") => {
                Err(Response::error(400, e.trim_start_matches("400 ")))
            }
            Err(e) => Err(Response::error(500, &e)),
        }
    }

    fn snapshot_list(&self, conf: &ConfFile, text: &str, vmid: u32) -> Value {
        let mut out: Vec<Value> = conf
            .snapshot_names()
            .into_iter()
            .filter_map(|name| {
                let s = conf.snapshot(name)?;
                let mut v = json!({
                    "name": name,
                    "snaptime": s.get("snaptime").and_then(|t| t.parse::<u64>().ok()).unwrap_or(0),
                    "description": s.description(),
                });
                if let Some(p) = s.get("parent") {
                    v["parent"] = Value::String(p.to_string());
                }
                Some(v)
            })
            .collect();
        // Proxmox lists them in hash order: not by time, not by lineage.
        out.reverse();
        let mut current = json!({
            "name": "current", "description": "You are here!",
            "digest": sha1_hex(text.as_bytes()), "running": u8::from(self.running(vmid)),
        });
        if let Some(p) = conf.main().get("parent") {
            current["parent"] = Value::String(p.to_string());
        }
        out.push(current);
        Value::Array(out)
    }

    fn cluster_status(&self) -> Value {
        let mut out = vec![json!({
            "type": "cluster", "id": "cluster", "name": "emulated", "quorate": u8::from(self.quorate()),
            "nodes": self.nodes.len(), "version": 1,
        })];
        for (i, n) in self.nodes.iter().enumerate() {
            out.push(json!({
                "type": "node", "id": format!("node/{n}"), "name": n, "nodeid": i + 1,
                "ip": self.ip, "local": u8::from(i == 0),
                "online": u8::from(!self.is_offline(n)), "level": "",
            }));
        }
        Value::Array(out)
    }

    fn resources(&self, kind: Option<&str>) -> Result<Value, Response> {
        let mut out = Vec::new();
        let want = |k: &str| kind.is_none_or(|w| w == k);
        for node in &self.nodes {
            let offline = self.is_offline(node);
            if want("vm") {
                for (dir, ty) in [("lxc", "lxc"), ("qemu-server", "qemu")] {
                    let d = self.root.join(format!("etc/pve/nodes/{node}/{dir}"));
                    let mut ids: Vec<u32> = std::fs::read_dir(&d)
                        .map(|e| {
                            e.flatten()
                                .filter_map(|e| {
                                    e.file_name().to_str()?.strip_suffix(".conf")?.parse().ok()
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    ids.sort_unstable();
                    for id in ids {
                        let text = std::fs::read_to_string(d.join(format!("{id}.conf")))
                            .unwrap_or_default();
                        let conf = ConfFile::parse(&text).unwrap_or_else(|_| ConfFile::new());
                        let main = conf.main();
                        let status = if offline {
                            "unknown"
                        } else if ty == "lxc" && self.running(id) {
                            "running"
                        } else {
                            "stopped"
                        };
                        let name = main
                            .get(if ty == "lxc" { "hostname" } else { "name" })
                            .map(str::to_string)
                            .unwrap_or_else(|| {
                                format!("{}{id}", if ty == "lxc" { "CT" } else { "VM" })
                            });
                        let mut v = json!({
                            "id": format!("{ty}/{id}"), "vmid": id, "node": node, "type": ty,
                            "status": status, "name": name,
                            "template": u8::from(main.get("template").is_some_and(|t| t.trim() == "1")),
                        });
                        if let Some(t) = main.get("tags") {
                            v["tags"] = Value::String(t.to_string());
                        }
                        if let Some(l) = main.get("lock") {
                            v["lock"] = Value::String(l.to_string());
                        }
                        out.push(v);
                    }
                }
            }
            if want("node") {
                out.push(json!({
                    "id": format!("node/{node}"), "node": node, "type": "node",
                    "status": if offline {"offline"} else {"online"},
                }));
            }
            if want("storage") {
                for s in self.storages(node)?.as_array().into_iter().flatten() {
                    let id = s.get("storage").and_then(Value::as_str).unwrap_or("");
                    out.push(json!({
                        "id": format!("storage/{node}/{id}"), "storage": id, "node": node,
                        "type": "storage", "plugintype": s.get("type"), "content": s.get("content"),
                        "shared": s.get("shared"), "status": if offline {"unknown"} else {"available"},
                    }));
                }
            }
        }
        Ok(Value::Array(out))
    }

    /// Where a storage's files are on a node: the cluster's tree for a shared one, the
    /// node's own files otherwise ([`model::local_root`]).
    fn files(&self, node: &str, s: &storage::Storage) -> PathBuf {
        if model::is_shared(s) {
            self.root.clone()
        } else {
            model::local_root(&self.root, node)
        }
    }

    fn storage_cfg(&self) -> Result<BTreeMap<String, storage::Storage>, Response> {
        let text =
            std::fs::read_to_string(self.root.join("etc/pve/storage.cfg")).map_err(internal)?;
        storage::parse(&text).map_err(internal)
    }

    /// The storages enabled on a node (in a cluster, `storage.cfg`'s `nodes` limits
    /// them) [pve-storage API2/Storage/Status.pm index].
    fn storages(&self, node: &str) -> Result<Value, Response> {
        let cluster = Members::read(&self.root).is_some();
        Ok(Value::Array(
            self.storage_cfg()?
                .values()
                .filter(|s| !cluster || model::enabled_on(s, node))
                .map(|s| {
                    json!({
                        "storage": s.id, "type": s.kind, "content": s.content().join(","),
                        "active": 1, "enabled": 1,
                        "shared": u8::from(model::is_shared(s)),
                    })
                })
                .collect(),
        ))
    }

    /// `GET …/storage/<id>/content`: the OS templates and backups of a directory storage,
    /// each only where the caller may use it [pve-storage API2/Storage/Content.pm index, STOR
    /// check_volume_access].
    fn content(
        &self,
        node: &str,
        id: &str,
        content: Option<&str>,
        vmid: Option<u32>,
        who: &Who,
    ) -> Result<Value, Response> {
        let cfg = self.storage_cfg()?;
        let s = cfg
            .get(id)
            .ok_or_else(|| Response::error(500, &format!("storage '{id}' does not exist")))?;
        let Some(dir) = s.dir() else {
            return Ok(Value::Array(Vec::new()));
        };
        let dir = self
            .files(node, s)
            .join(dir.strip_prefix("/").unwrap_or(&dir));
        let files = |sub: &str| -> Vec<(String, std::fs::Metadata)> {
            let mut files: Vec<(String, std::fs::Metadata)> = std::fs::read_dir(dir.join(sub))
                .map(|e| {
                    e.flatten()
                        .filter_map(|e| {
                            Some((e.file_name().to_str()?.to_string(), e.metadata().ok()?))
                        })
                        .filter(|(_, m)| m.is_file())
                        .collect()
                })
                .unwrap_or_default();
            files.sort_by(|a, b| a.0.cmp(&b.0));
            files
        };
        let want = |c: &str| content.is_none_or(|w| w == c) && s.holds(c);
        let mut out = Vec::new();
        if want("vztmpl") && vmid.is_none() {
            for (f, _) in files("template/cache") {
                out.push(json!({"volid": format!("{id}:vztmpl/{f}"), "content": "vztmpl", "format": "tzst"}));
            }
        }
        if want("backup") {
            for (f, meta) in files("dump") {
                let Some((owner, format)) = backup_name(&f) else {
                    continue;
                };
                if vmid.is_some_and(|v| v != owner)
                    || !(who.has("Datastore.Allocate")
                        || (who.has("Datastore.AllocateSpace") && who.has("VM.Backup")))
                {
                    continue;
                }
                let mut v = json!({
                    "volid": format!("{id}:backup/{f}"), "content": "backup", "format": format,
                    "size": meta.len(), "vmid": owner, "subtype": "lxc",
                    "ctime": meta.modified().ok().and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs()),
                });
                if let Ok(notes) =
                    std::fs::read_to_string(dir.join("dump").join(format!("{f}.notes")))
                {
                    if let Some(first) = notes.lines().next() {
                        v["notes"] = Value::String(first.to_string());
                    }
                }
                out.push(v);
            }
        }
        Ok(Value::Array(out))
    }

    /// `POST /nodes/<node>/vzdump` [pve-manager API2/VZDump.pm vzdump,
    /// VZDump.pm new, exec_backup]: one guest's
    /// backup, a task `vzdump` on the guest's node (a guest on another node is answered
    /// `OK`, nothing done). `Datastore.AllocateSpace` on the storage is checked before
    /// answering, `VM.Backup` on the guest by the worker; a storage that takes no backups
    /// ends the task; the guest's own failure is logged (`ERROR: Backup of VM <vmid>
    /// failed - …`) and ends it `job errors`. The log names the archive as a node does: a
    /// path in the storage's `dump/`.
    fn vzdump(&self, req: &Request, node: &str, who: &Who) -> Result<Response, Response> {
        let param = |k: &str| req.params.get(k).cloned();
        let vmid: u32 = param("vmid").and_then(|v| v.parse().ok()).ok_or_else(|| {
            Response::params(&[("vmid", "the emulator backs up one guest: give its vmid")])
        })?;
        if !who.is_root() {
            for key in ["tmpdir", "dumpdir", "script", "job-id"] {
                if req.params.contains_key(key) {
                    return Err(Response::params(&[(key, "Only root may set this option.")]));
                }
            }
        }
        let note = param("notes-template").unwrap_or_default();
        verify_notes_template(&note).map_err(|e| Response::params(&[("notes-template", &e)]))?;
        let mode = param("mode").unwrap_or_else(|| "snapshot".into());
        if mode != "stop" {
            return Err(Response::error(
                501,
                &format!("vzdump mode '{mode}' is not emulated: the model backs up a stopped CT (mode stop)"),
            ));
        }
        let owner = self.owner(vmid);
        if owner.as_ref().is_some_and(|(n, _)| n != node) {
            return Ok(Response::data(Value::String("OK".into())));
        }
        let storage = param("storage").unwrap_or_else(|| "local".into());
        who.check(&format!("/storage/{storage}"), "Datastore.AllocateSpace")?;
        let host = self.host(node).map_err(internal)?;
        let cfg = self.storage_cfg()?;
        let mut cmdline = format!("vzdump {vmid}");
        let mut shown: Vec<(&str, &str)> = req
            .params
            .iter()
            .filter(|(k, _)| k.as_str() != "vmid")
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        shown.push(("node", node));
        shown.sort();
        for (k, v) in shown {
            if !v.is_empty() {
                cmdline.push_str(&format!(" --{k} {}", shellquote(v)));
            }
        }
        let rendered = render_notes(&note, vmid, node, &self.guest_name(node, vmid));
        let who = who.clone();
        let upid = self.tasks.start(node, "vzdump", &vmid.to_string(), &who.id.clone(), move || {
            let mut log = vec![format!("INFO: starting new backup job: {cmdline}")];
            let Some(store) = cfg.get(&storage) else {
                return (log, Err(format!(
                    "could not activate storage '{storage}': storage '{storage}' does not exist\ncould not get storage information for '{storage}': storage '{storage}' does not exist"
                )));
            };
            if !store.holds("backup") {
                return (log, Err(format!(
                    "could not get storage information for '{storage}': can't use storage '{storage}' for backups - wrong content type"
                )));
            }
            if owner.is_some() && !who.has("VM.Backup") {
                return (log, Err(crate::auth::denied(&format!("/vms/{vmid}"), &["VM.Backup"])));
            }
            log.push(format!("INFO: Starting Backup of VM {vmid} (lxc)"));
            let kept = match owner {
                None => Err(format!("unable to find VM '{vmid}'")),
                Some(_) => phoenix::host::Host::keep(&host, vmid, &storage, &rendered)
                    .map_err(|e| e.message),
            };
            match kept {
                Ok(kept) => {
                    let file = kept.location.rsplit('/').next().unwrap_or_default();
                    let target = store.dir().map_or(kept.location.clone(), |d| {
                        format!("{}/dump/{file}", d.display())
                    });
                    log.push(format!("INFO: creating vzdump archive '{target}'"));
                    if let Some(b) = kept.size_bytes {
                        log.push(format!("INFO: archive file size: {}", format_size(b)));
                    }
                    if !rendered.is_empty() {
                        log.push("INFO: adding notes to backup".into());
                    }
                    log.push(format!("INFO: Finished Backup of VM {vmid} (00:00:01)"));
                    log.push("INFO: Backup job finished successfully".into());
                    (log, Ok(()))
                }
                Err(e) => {
                    log.push(format!("ERROR: Backup of VM {vmid} failed - {e}"));
                    log.push("INFO: Backup job finished with errors".into());
                    (log, Err("job errors".into()))
                }
            }
        });
        Ok(Response::data(Value::String(upid)))
    }

    /// A guest's name for notes (`{{guestname}}`): its hostname, `CT<vmid>` unset.
    fn guest_name(&self, node: &str, vmid: u32) -> String {
        std::fs::read_to_string(self.conf_path(node, vmid))
            .ok()
            .and_then(|t| ConfFile::parse(&t).ok())
            .and_then(|c| c.main().get("hostname").map(str::to_string))
            .unwrap_or_else(|| format!("CT{vmid}"))
    }

    /// `POST /nodes/<node>/lxc` with `restore=1` [A-LXC create_vm, STOR
    /// check_volume_access]: a task `vzrestore` making the CT from a backup, replacing
    /// the CT of that id on this node when `force` is given (it must be stopped). The
    /// caller needs `VM.Allocate`, or `VM.Backup` to restore over an existing CT; access
    /// to the archive (its own guest's backup, or `Datastore.AllocateSpace` and
    /// `VM.Backup` on the backup's guest); `Datastore.AllocateSpace` on a storage that
    /// holds CT disks.
    fn restore(&self, req: &Request, node: &str, who: &Who) -> Result<Response, Response> {
        let param = |k: &str| req.params.get(k).cloned();
        let vmid: u32 = param("vmid").and_then(|v| v.parse().ok()).ok_or_else(|| {
            Response::params(&[("vmid", "property is missing and it is not optional")])
        })?;
        let archive = param("ostemplate").ok_or_else(|| {
            Response::params(&[("ostemplate", "property is missing and it is not optional")])
        })?;
        let force = param("force").is_some_and(|f| f == "1");
        let here = self.conf_path(node, vmid).exists();
        if here && force {
            if self.running(vmid) {
                return Err(Response::error(500, "can't overwrite running container"));
            }
            let conf = ConfFile::parse(&self.conf_text(node, vmid)?)
                .map_err(|e| internal(format!("{e}")))?;
            if conf
                .main()
                .get("protection")
                .is_some_and(|p| p.trim() == "1")
            {
                return Err(Response::error(
                    500,
                    &format!("unable to restore CT {vmid} - protection mode enabled"),
                ));
            }
        } else {
            self.vmid_free(vmid)?;
        }
        if !(who.has("VM.Allocate") || (here && force && who.has("VM.Backup"))) {
            return Err(Response::error(403, "Permission check failed"));
        }
        let storage = param("storage").unwrap_or_else(|| "local".into());
        let cfg = self.storage_cfg()?;
        match archive.split_once(':') {
            None => {
                if !who.is_root() {
                    return Err(Response::error(
                        500,
                        "Only root can pass arbitrary filesystem paths.",
                    ));
                }
            }
            Some((sid, name)) => {
                if !cfg.contains_key(sid) {
                    return Err(Response::error(
                        500,
                        &format!("storage '{sid}' does not exist"),
                    ));
                }
                let file = name.strip_prefix("backup/").ok_or_else(|| {
                    Response::error(
                        500,
                        &format!(
                            "unable to use volume {archive} - content type needs to be 'backup'"
                        ),
                    )
                })?;
                let owner = backup_name(file).map(|(o, _)| o);
                if !who.has("Datastore.Allocate") && owner != Some(vmid) {
                    match owner {
                        Some(o) => {
                            who.check(&format!("/storage/{sid}"), "Datastore.AllocateSpace")?;
                            who.check(&format!("/vms/{o}"), "VM.Backup")?;
                        }
                        None => {
                            return Err(Response::error(
                                500,
                                &format!("missing privileges to access {archive}"),
                            ))
                        }
                    }
                }
            }
        }
        let holds_disks = cfg.get(&storage).is_some_and(|s| s.holds("rootdir"));
        if !holds_disks {
            return Err(Response::params(&[(
                "storage",
                &format!("storage '{storage}' does not support container directories"),
            )]));
        }
        who.check(&format!("/storage/{storage}"), "Datastore.AllocateSpace")?;
        let host = self.host(node).map_err(internal)?;
        let argv = vec![
            "restore".to_string(),
            vmid.to_string(),
            archive.clone(),
            "--storage".into(),
            storage,
            "--force".into(),
            if force { "1" } else { "0" }.into(),
        ];
        Ok(
            self.task_with(node, "vzrestore", &vmid.to_string(), who, move |log| {
                log.push(format!(
                    "recovering backed-up configuration from '{archive}'"
                ));
                log.push(format!("restoring '{archive}' now.."));
                let mut out = Vec::new();
                match phoenix::host::pct::run(&host, &argv, &mut out) {
                    Ok(0) => {
                        log.push("merging backed-up and given configuration..".into());
                        Ok(())
                    }
                    Ok(code) => Err(format!("command exited with status {code}")),
                    Err(e) => Err(e),
                }
            }),
        )
    }

    /// `DELETE /nodes/<node>/storage/<storage>/content/<volume>` [pve-storage
    /// API2/Storage/Content.pm delete]: a
    /// task `imgdel` (or, with `delay`, `null` once it finished within that many
    /// seconds). A backup needs `Datastore.AllocateSpace` on the storage and `VM.Backup`
    /// on its guest, any other volume `Datastore.Allocate`. A volume that is not there
    /// is a warning, not an error [SPLUG free_image].
    fn free_volume(
        &self,
        req: &Request,
        node: &str,
        storage: &str,
        volume: &str,
        who: &Who,
    ) -> Result<Response, Response> {
        let volid = match volume.split_once(':') {
            Some((sid, _)) if sid != storage => {
                return Err(Response::params(&[(
                    "volume",
                    &format!("storage ID mismatch ({sid} != {storage})"),
                )]))
            }
            Some(_) => volume.to_string(),
            None => format!("{storage}:{volume}"),
        };
        let cfg = self.storage_cfg()?;
        let store = cfg
            .get(storage)
            .ok_or_else(|| Response::error(500, &format!("storage '{storage}' does not exist")))?;
        let name = volid.split_once(':').map_or("", |(_, n)| n);
        let owner = name
            .strip_prefix("backup/")
            .and_then(backup_name)
            .map(|(o, _)| o);
        match owner {
            Some(o) => {
                who.check(&format!("/storage/{storage}"), "Datastore.AllocateSpace")?;
                who.check(&format!("/vms/{o}"), "VM.Backup")?;
            }
            None => who.check(&format!("/storage/{storage}"), "Datastore.Allocate")?,
        }
        let host = self.host(node).map_err(internal)?;
        let path = store.dir().map(|d| {
            let rel = name
                .strip_prefix("backup/")
                .map_or(name.to_string(), |f| format!("dump/{f}"));
            (
                format!("{}/{rel}", d.display()),
                self.files(node, store)
                    .join(d.strip_prefix("/").unwrap_or(&d))
                    .join(rel),
            )
        });
        let id = owner.map_or(storage.to_string(), |o| format!("{o}@{storage}"));
        let upid = self.tasks.start(node, "imgdel", &id, &who.id, move || {
            let mut log = Vec::new();
            if let Some((shown, file)) = &path {
                if !file.exists() {
                    log.push(format!("WARN: disk image '{shown}' does not exist"));
                    return (log, Ok(()));
                }
            }
            let kept = phoenix::host::KeptCopy {
                location: volid.clone(),
                node: None,
                size_bytes: None,
            };
            match phoenix::host::Host::forget(&host, &kept) {
                Ok(()) => {
                    log.push(format!("Removed volume '{volid}'"));
                    (log, Ok(()))
                }
                Err(e) => (Vec::new(), Err(e.message)),
            }
        });
        let delay = req.params.get("delay").and_then(|d| d.parse::<u64>().ok());
        if let Some(d) = delay.filter(|d| (1..=30).contains(d)) {
            match self
                .tasks
                .finished_within(node, &upid, Duration::from_secs(d))
            {
                Some(e) if e == "OK" || e.starts_with("WARNINGS: ") => {
                    return Ok(Response::data(Value::Null))
                }
                Some(e) => return Err(Response::error(500, &e)),
                None => {}
            }
        }
        Ok(Response::data(Value::String(upid)))
    }
}

/// A backup archive's guest and format, from its name
/// (`vzdump-lxc-<vmid>-<YYYY_MM_DD-HH_MM_SS>.tar[.zst]`) [STOR archive_info]; notes and
/// logs beside it are not archives.
fn backup_name(file: &str) -> Option<(u32, String)> {
    let rest = file
        .strip_prefix("vzdump-lxc-")
        .or_else(|| file.strip_prefix("vzdump-qemu-"))?;
    let (vmid, rest) = rest.split_once('-')?;
    let (_, ext) = rest.split_once('.')?;
    if ![
        "tar", "tar.gz", "tar.zst", "tar.lzo", "vma", "vma.zst", "vma.gz", "vma.lzo",
    ]
    .contains(&ext)
    {
        return None;
    }
    Some((vmid.parse().ok()?, ext.to_string()))
}

/// vzdump's check of a notes template: one line, escapes `\\n` and `\\\\` only, variables
/// `{{cluster}}`, `{{guestname}}`, `{{node}}`, `{{vmid}}` only [pve-manager
/// VZDump.pm verify_notes_template].
fn verify_notes_template(template: &str) -> Result<(), String> {
    if template.contains('\n') {
        return Err("contains a line feed".into());
    }
    let mut problems = Vec::new();
    let chars: Vec<char> = template.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\\' {
            match chars.get(i + 1) {
                Some('n' | '\\') => {}
                Some(c) => problems.push(format!("escape sequence '\\{c}' at char {i}")),
                None => {}
            }
            i += 2;
            continue;
        }
        i += 1;
    }
    let mut rest = template;
    let mut at = 0;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        match after.find("}}") {
            Some(close)
                if !after[..close].is_empty()
                    && !after[..close]
                        .contains(|c: char| c.is_whitespace() || c == '{' || c == '}') =>
            {
                let var = &after[..close];
                if !["cluster", "guestname", "node", "vmid"].contains(&var) {
                    problems.push(format!("variable '{var}' at char {}", at + open + 2));
                }
                at += open + 2 + close + 2;
                rest = &after[close + 2..];
            }
            _ => {
                at += open + 2;
                rest = after;
            }
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(format!("found unknown: {}", problems.join(", ")))
    }
}

/// A notes template made the note [pve-manager VZDump.pm generate_notes].
fn render_notes(template: &str, vmid: u32, node: &str, guest: &str) -> String {
    let mut out = String::new();
    let mut chars = template.chars();
    while let Some(c) = chars.next() {
        match (c, chars.clone().next()) {
            ('\\', Some('n')) => {
                out.push('\n');
                chars.next();
            }
            ('\\', Some('\\')) => {
                out.push('\\');
                chars.next();
            }
            _ => out.push(c),
        }
    }
    out.replace("{{cluster}}", "emulated")
        .replace("{{guestname}}", guest)
        .replace("{{node}}", node)
        .replace("{{vmid}}", &vmid.to_string())
}

/// vzdump's command line quoting [PTOOLS shellquote].
fn shellquote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+@%".contains(&b))
    {
        word.to_string()
    } else {
        format!("'{}'", word.replace('\'', "'\"'\"'"))
    }
}

/// vzdump's sizes in its log (`12KB`, `34MB`, `1.23GB`) [pve-manager VZDump.pm format_size].
fn format_size(bytes: u64) -> String {
    let kb = bytes as f64 / 1024.0;
    if kb < 1024.0 {
        return format!("{}KB", kb as u64);
    }
    let mb = kb / 1024.0;
    if mb < 1024.0 {
        return format!("{}MB", mb as u64);
    }
    let gb = mb / 1024.0;
    if gb < 1024.0 {
        return format!("{gb:.2}GB");
    }
    format!("{:.2}TB", gb / 1024.0)
}

/// The SHA-1 of the config file: Proxmox's `digest`.
pub fn sha1_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA1_FOR_LEGACY_USE_ONLY, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// [PTOOLS assert_if_modified].
fn check_digest(req: &Request, text: &str) -> Result<(), Response> {
    match req.params.get("digest") {
        Some(d) if !d.is_empty() && *d != sha1_hex(text.as_bytes()) => Err(Response::error(
            500,
            "detected modified configuration - file changed by other user? Try again.",
        )),
        _ => Ok(()),
    }
}

/// The main section as `GET …/config` answers it: pending values merged unless
/// `current`, integers as numbers, the description decoded, `lxc` as pairs, `digest`.
fn config_json(conf: &ConfFile, text: &str, current: bool) -> Value {
    let mut main = conf.main().clone();
    if !current {
        if let Some(p) = conf.pending() {
            for (k, v) in p.keys() {
                if k != "delete" {
                    main.set(k, v);
                }
            }
        }
    }
    let mut out = serde_json::Map::new();
    for (k, v) in main.keys() {
        let value = match v.trim().parse::<u64>() {
            Ok(n) if INTEGER_KEYS.contains(&k) => json!(n),
            _ => Value::String(v.to_string()),
        };
        out.insert(k.to_string(), value);
    }
    let d = main.description();
    if !d.is_empty() {
        out.insert("description".into(), Value::String(format!("{d}\n")));
    }
    let lxc: Vec<Value> = main.lxc().map(|(k, v)| json!([k, v])).collect();
    if !lxc.is_empty() {
        out.insert("lxc".into(), Value::Array(lxc));
    }
    out.insert("digest".into(), Value::String(sha1_hex(text.as_bytes())));
    Value::Object(out)
}

/// The privileges a config change needs [LXC check_ct_modify_config_perm].
fn check_config_perm(
    who: &Who,
    vmid: u32,
    old: Option<&ConfFile>,
    keys: &[(String, String)],
    delete: &[String],
    unprivileged: bool,
) -> Result<(), Response> {
    if who.is_root() {
        return Ok(());
    }
    let vms = format!("/vms/{vmid}");
    let numbered = |k: &str, stem: &str| {
        k.strip_prefix(stem)
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    };
    let old_features = old
        .and_then(|c| c.main().get("features").map(str::to_string))
        .and_then(|f| Features::parse(&f).ok())
        .map(|f| f.to_map())
        .unwrap_or_default();
    let check = |k: &str, value: Option<&str>| -> Result<(), Response> {
        match k {
            "cores" | "cpuunits" | "cpulimit" => who.check(&vms, "VM.Config.CPU"),
            "memory" | "swap" => who.check(&vms, "VM.Config.Memory"),
            "hostname" | "nameserver" | "searchdomain" => who.check(&vms, "VM.Config.Network"),
            "rootfs" => who.check(&vms, "VM.Config.Disk"),
            k if numbered(k, "net") => who.check(&vms, "VM.Config.Network"),
            k if numbered(k, "mp") => who.check(&vms, "VM.Config.Disk"),
            k if numbered(k, "dev") => who.root_only("configuring device passthrough"),
            "hookscript" => who.root_only("changing the hookscript"),
            "features" => {
                if !unprivileged {
                    return who.root_only("changing feature flags for privileged container");
                }
                let new = value
                    .and_then(|v| Features::parse(v).ok())
                    .map(|f| f.to_map())
                    .unwrap_or_default();
                let changed: BTreeSet<&String> = old_features
                    .keys()
                    .chain(new.keys())
                    .filter(|f| old_features.get(*f) != new.get(*f))
                    .collect();
                if changed.iter().any(|f| f.as_str() != "nesting") {
                    return who.root_only("changing feature flags (except nesting)");
                }
                if !changed.is_empty() {
                    who.check(&vms, "VM.Allocate")?;
                }
                Ok(())
            }
            _ => who.check(&vms, "VM.Config.Options"),
        }
    };
    for (k, v) in keys {
        check(k, Some(v))?;
    }
    for k in delete {
        check(k, None)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_is_the_sha1_of_the_file() {
        assert_eq!(sha1_hex(b"abc"), "a9993e364706816aba3e25717850c26c9cd0d89d");
    }
}
