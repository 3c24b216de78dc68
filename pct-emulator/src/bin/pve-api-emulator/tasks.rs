//! Tasks: a slow action answers its UPID at once and runs in a worker thread on the
//! node's model, which takes the CT's config lock as Proxmox's worker does; its output and
//! `TASK OK` / `TASK ERROR: <text>` make its log, and its exit status is what
//! `…/tasks/<upid>/status` reports once it has stopped [RENV fork_worker, UPID]. The
//! node's task list (`GET /nodes/<node>/tasks`) shows them too, which is where the one
//! task whose request answers no UPID (`vztemplate`) is found.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

#[derive(Clone)]
struct Task {
    node: String,
    started: Instant,
    starttime: u64,
    user: String,
    kind: String,
    id: String,
    exit: Option<String>,
    endtime: Option<u64>,
    log: Vec<String>,
}

#[derive(Default)]
pub struct Tasks {
    all: Mutex<HashMap<String, Task>>,
    next: AtomicU32,
    /// A new task is not visible for this long (`400 no such task`).
    invisible: Duration,
}

impl Tasks {
    pub fn new(invisible: Duration) -> Tasks {
        Tasks {
            invisible,
            ..Tasks::default()
        }
    }

    /// Starts `work` as task `kind` on `id`; returns its UPID. `work` returns its output
    /// lines, and the error that ends the task if one does.
    pub fn start(
        self: &Arc<Self>,
        node: &str,
        kind: &str,
        id: &str,
        user: &str,
        work: impl FnOnce() -> (Vec<String>, Result<(), String>) + Send + 'static,
    ) -> String {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let upid = format!(
            "UPID:{node}:{:08X}:{:08X}:{:08X}:{kind}:{id}:{user}:",
            std::process::id(),
            n,
            now
        );
        let task = Task {
            node: node.to_string(),
            started: Instant::now(),
            starttime: now,
            user: user.to_string(),
            kind: kind.to_string(),
            id: id.to_string(),
            exit: None,
            endtime: None,
            log: Vec::new(),
        };
        if let Ok(mut all) = self.all.lock() {
            all.insert(upid.clone(), task);
        }
        let me = self.clone();
        let key = upid.clone();
        std::thread::spawn(move || {
            let (mut log, result) = work();
            let exit = match result {
                // A worker that warned succeeded with warnings [RENV, UPID status_is_error].
                Ok(()) => {
                    let warnings = log.iter().filter(|l| l.starts_with("WARN: ")).count();
                    if warnings == 0 {
                        "OK".to_string()
                    } else {
                        format!("WARNINGS: {warnings}")
                    }
                }
                // One line, as RENV's worker reports it.
                Err(e) => e.trim().replace('\n', " "),
            };
            log.push(if exit == "OK" {
                "TASK OK".to_string()
            } else if exit.starts_with("WARNINGS: ") {
                format!("TASK {exit}")
            } else {
                format!("TASK ERROR: {exit}")
            });
            if let Ok(mut all) = me.all.lock() {
                if let Some(t) = all.get_mut(&key) {
                    t.log = log;
                    t.exit = Some(exit);
                    t.endtime = Some(
                        SystemTime::now()
                            .duration_since(UNIX_EPOCH)
                            .map_or(0, |d| d.as_secs()),
                    );
                }
            }
        });
        upid
    }

    fn get(&self, node: &str, upid: &str) -> Option<Task> {
        let all = self.all.lock().ok()?;
        let t = all.get(upid)?;
        (t.node == node && t.started.elapsed() >= self.invisible).then(|| t.clone())
    }

    /// The task's exit status once it has stopped, waiting up to `limit` for it.
    pub fn finished_within(&self, node: &str, upid: &str, limit: Duration) -> Option<String> {
        let until = Instant::now() + limit;
        loop {
            let exit = self
                .all
                .lock()
                .ok()
                .and_then(|all| all.get(upid).filter(|t| t.node == node)?.exit.clone());
            if exit.is_some() || Instant::now() >= until {
                return exit;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// `GET …/tasks/<upid>/status`; `None`: no such task (yet).
    pub fn status(&self, node: &str, upid: &str) -> Option<Value> {
        let t = self.get(node, upid)?;
        let mut v = json!({
            "upid": upid, "node": t.node, "pid": std::process::id(), "starttime": t.starttime,
            "type": t.kind, "id": t.id, "user": t.user,
            "status": if t.exit.is_some() { "stopped" } else { "running" },
        });
        if let Some(e) = &t.exit {
            v["exitstatus"] = Value::String(e.clone());
        }
        Some(v)
    }

    /// `GET /nodes/<node>/tasks` [pve-manager Tasks.pm node_tasks]: the node's tasks the
    /// caller may see (`user`'s own, a user's tokens' too; every one for an `auditor`,
    /// who has `Sys.Audit` on the node), of one guest (`vmid`) and type (`typefilter`),
    /// newest first; `source` `archive` (Proxmox's default) lists the finished ones,
    /// `active` the running ones (status `RUNNING`), `all` both.
    pub fn list(
        &self,
        node: &str,
        vmid: Option<&str>,
        typefilter: Option<&str>,
        source: &str,
        user: &str,
        auditor: bool,
    ) -> Value {
        let Ok(all) = self.all.lock() else {
            return Value::Array(Vec::new());
        };
        let mut tasks: Vec<(&String, &Task)> = all
            .iter()
            .filter(|(_, t)| t.node == node && t.started.elapsed() >= self.invisible)
            .filter(|(_, t)| auditor || t.user == user || t.user.starts_with(&format!("{user}!")))
            .filter(|(_, t)| typefilter.is_none_or(|k| t.kind == k))
            .filter(|(_, t)| vmid.is_none_or(|v| t.id == v))
            .filter(|(_, t)| match source {
                "active" => t.exit.is_none(),
                "all" => true,
                _ => t.exit.is_some(),
            })
            .collect();
        tasks.sort_by_key(|(_, t)| std::cmp::Reverse(t.started));
        Value::Array(
            tasks
                .into_iter()
                .map(|(upid, t)| {
                    let mut v = json!({
                        "upid": upid, "node": t.node, "pid": std::process::id(),
                        "starttime": t.starttime, "type": t.kind, "id": t.id, "user": t.user,
                        "status": t.exit.as_deref().unwrap_or("RUNNING"),
                    });
                    if let Some(end) = t.endtime {
                        v["endtime"] = json!(end);
                    }
                    v
                })
                .collect(),
        )
    }

    /// `GET …/tasks/<upid>/log`: `[{n, t}]`.
    pub fn log(&self, node: &str, upid: &str) -> Option<Value> {
        let t = self.get(node, upid)?;
        Some(Value::Array(
            t.log
                .iter()
                .enumerate()
                .map(|(i, l)| json!({"n": i + 1, "t": l}))
                .collect(),
        ))
    }
}
