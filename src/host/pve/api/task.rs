//! Tasks: every slow action answers a UPID,
//! `UPID:<node>:<pid>:<pstart>:<starttime>:<type>:<id>:<user>:` [UPID encode/decode], and
//! runs on in the background. phoenix waits for it: `GET
//! /nodes/<node>/tasks/<upid>/status` until `status` is `stopped`, then `exitstatus` is
//! the outcome — `OK`, or `WARNINGS: <n>` (a success with warnings), or anything else,
//! which is the error in Proxmox's words [UPID read_status, pve-manager Tasks.pm]. Just
//! after dispatch the task may not be visible yet (`400 no such task`): that is retried.
//! The task's own limit is much longer than one request's (`PHOENIX_PVE_TASK_TIMEOUT`,
//! 30 minutes: a full clone of a large disk takes that).

use std::time::{Duration, Instant};

use serde_json::Value;

use super::client::{segment, Api, ApiError};
use crate::host::pve::text;
use crate::host::{HostError, HostResult};

/// A task id, and the node it runs on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Upid {
    pub raw: String,
    pub node: String,
    /// `vzcreate`, `vzclone`, `vzstart`...
    pub kind: String,
    pub id: String,
}

impl Upid {
    pub fn parse(text: &str) -> Option<Upid> {
        let rest = text.strip_prefix("UPID:")?.strip_suffix(':')?;
        let parts: Vec<&str> = rest.split(':').collect();
        if parts.len() != 7 || parts[0].is_empty() {
            return None;
        }
        Some(Upid {
            raw: text.to_string(),
            node: parts[0].to_string(),
            kind: parts[4].to_string(),
            id: parts[5].to_string(),
        })
    }
}

/// How long a task may stay invisible after dispatch before phoenix gives up on it.
const INVISIBLE_FOR: Duration = Duration::from_secs(30);

/// Waits for the task; returns its log lines, or its error (Proxmox's exit status) with
/// the log lines before it.
pub fn wait(
    api: &Api,
    upid: &Upid,
    timeout: Duration,
) -> Result<Vec<String>, (HostError, Vec<String>)> {
    let started = Instant::now();
    let path = format!(
        "/nodes/{}/tasks/{}",
        segment(&upid.node),
        segment(&upid.raw)
    );
    let mut delay = Duration::from_millis(50);
    let exit = loop {
        match api.get(&format!("{path}/status"), &[]) {
            Ok(v) if v.get("status").and_then(Value::as_str) == Some("stopped") => {
                break v
                    .get("exitstatus")
                    .and_then(Value::as_str)
                    .unwrap_or("unknown")
                    .to_string();
            }
            Ok(_) => {}
            Err(ApiError::Status { status: 400, .. }) if started.elapsed() < INVISIBLE_FOR => {}
            // The endpoint's proxy cannot reach the task's node: it went down meanwhile.
            Err(e @ ApiError::Status { status: 595 | 596, .. }) => {
                return Err((
                    HostError::failed(format!(
                        "node '{}' stopped answering while its task {} ran ({}): what the task did is unknown until the node is back; run the build again then",
                        upid.node,
                        upid.raw,
                        e.message()
                    )),
                    Vec::new(),
                ))
            }
            Err(e) => return Err((e.into_host(), Vec::new())),
        }
        if started.elapsed() > timeout {
            return Err((
                HostError::failed(format!(
                    "task {} is still running after {} s (PHOENIX_PVE_TASK_TIMEOUT): it goes on on node {}; follow it under Tasks in the web UI",
                    upid.raw,
                    timeout.as_secs(),
                    upid.node
                )),
                Vec::new(),
            ));
        }
        std::thread::sleep(delay);
        delay = (delay * 2).min(Duration::from_secs(1));
    };
    let log = read_log(api, &path);
    if exit == "OK" || exit.starts_with("WARNINGS:") {
        Ok(log)
    } else {
        Err((HostError::new(text::classify(&exit), exit), log))
    }
}

/// The task's log lines (`[{n, t}]`); none when they cannot be read.
fn read_log(api: &Api, path: &str) -> Vec<String> {
    match api.get(&format!("{path}/log"), &[("start", "0"), ("limit", "5000")]) {
        Ok(Value::Array(lines)) => lines
            .iter()
            .filter_map(|l| l.get("t").and_then(Value::as_str))
            .filter(|t| *t != "no content")
            .map(str::to_string)
            .collect(),
        _ => Vec::new(),
    }
}

/// What a request that starts a task answered: the UPID, or `null` for the calls that
/// finish before answering (`resize` before PVE 7, `template`).
pub fn started(data: &Value) -> HostResult<Option<Upid>> {
    match data {
        Value::Null => Ok(None),
        Value::String(s) => Upid::parse(s)
            .map(Some)
            .ok_or_else(|| HostError::failed(format!("Proxmox answered `{s}`, not a task id"))),
        other => Err(HostError::failed(format!(
            "Proxmox answered {}, not a task id",
            crate::os::excerpt(&other.to_string(), 80)
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_upid_names_its_node() {
        let u = Upid::parse("UPID:pve1:003A1B2C:0C5F1234:66A0B1C2:vzclone:901:root@pam:").unwrap();
        assert_eq!(
            (u.node.as_str(), u.kind.as_str(), u.id.as_str()),
            ("pve1", "vzclone", "901")
        );
        let t = Upid::parse("UPID:pve1:003A1B2C:0C5F1234:66A0B1C2:vzstart:901:root@pam!phoenix:")
            .unwrap();
        assert_eq!(t.kind, "vzstart");
        assert!(
            Upid::parse("UPID:pve1:1:2:3:vzstart:901:root@pam").is_none(),
            "the trailing colon"
        );
        assert!(Upid::parse("OK").is_none());
    }
}
