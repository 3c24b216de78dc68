//! When a started CT is ready for the steps and the hook: when its init has finished
//! starting, not when it first runs a command. A CT answers `exec` a moment after it
//! starts, while systemd is still mounting `/tmp`, starting the network and running
//! `apt-daily`; an `apt-get` then fails (`Unknown error executing apt-key`) or races them.
//!
//! One probe, on every backend, bounded by the ready timeout (`--ready-timeout`):
//! `timeout <seconds left> systemctl is-system-running --wait`, which returns when
//! systemd's boot is over, and says how it ended:
//!
//! | answer | the CT is |
//! |---|---|
//! | exit 0 (`running`) | ready |
//! | `degraded` (exit 1: some unit failed) | ready; the failed units go to the node's log |
//! | exit 127 (no `systemctl`, or no `timeout`) | another init: ready now that it runs commands — phoenix cannot tell when another init is done |
//! | `offline`, and PID 1 (`/proc/1/comm`) is not `systemd` | another init, as above |
//! | `offline`, PID 1 is `systemd` | not yet (systemd says `offline` until it has made `/run/systemd/system`): asked again |
//! | exit 124 (`timeout` ended it) | not ready: the node fails, with systemd's state |
//! | `maintenance`, `stopping` | not booting: the node fails |
//! | anything else (`unknown`, an `exec` that cannot attach yet) | asked again every half second until the timeout |
//!
//! A systemd older than 240 has no `--wait`: its error switches the probe to asking
//! without it, every half second. Then each assigned GPU's `/dev/nvidiaN` must exist
//! inside.

use std::time::{Duration, Instant};

use crate::fleet::config::Ctid;
use crate::host::{ErrorKind, Host};

/// What one answer of `systemctl is-system-running` means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Booted: `running`, or `degraded` (`true`).
    Booted { degraded: bool },
    /// Not systemd, or no way to ask it: why.
    OtherInit(String),
    /// `offline`: systemd is not PID 1, or has not yet said it is.
    Offline,
    /// `timeout` ended the wait.
    TimedOut,
    /// A state that booting does not leave (`maintenance`, `stopping`), or a probe that
    /// cannot run.
    Stuck(String),
    /// This systemd does not know `--wait`.
    NoWait,
    /// Not yet: ask again.
    Again(String),
}

/// Reads one answer: the exit code and the output (stdout and stderr together).
pub fn verdict(code: i32, output: &str) -> Verdict {
    let state = output
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("");
    match (code, state) {
        (0, _) => Verdict::Booted { degraded: false },
        (_, "degraded") => Verdict::Booted { degraded: true },
        (127, _) => Verdict::OtherInit(format!(
            "`systemctl` or `timeout` is not in the CT (exit code 127: {})",
            if state.is_empty() { "not found" } else { state }
        )),
        (_, "offline") => Verdict::Offline,
        (124, _) => Verdict::TimedOut,
        (_, "maintenance" | "stopping") => Verdict::Stuck(format!("systemd is `{state}`")),
        (126, _) => Verdict::Stuck(format!(
            "the probe cannot run in it (exit code 126: {state})"
        )),
        _ if output.contains("--wait") => Verdict::NoWait,
        _ => Verdict::Again(if state.is_empty() {
            format!("exit code {code}")
        } else {
            state.to_string()
        }),
    }
}

/// What [`wait`] found, for the node's log.
pub enum Ready {
    Booted { degraded: bool },
    OtherInit(String),
}

/// Waits until CT `ctid` has booted and, for GPU nodes, its devices are there.
/// `Err` says why it is not ready; `note` takes lines for the node's log.
pub fn wait(
    host: &dyn Host,
    ctid: Ctid,
    gpus: &[u32],
    timeout: Duration,
    note: &mut dyn FnMut(&str),
) -> Result<Ready, String> {
    let deadline = Instant::now() + timeout;
    let ready = booted(host, ctid, timeout, deadline)?;
    match &ready {
        Ready::Booted { degraded: false } => note("  ready: systemd is running"),
        Ready::Booted { degraded: true } => {
            note("  ready: systemd is degraded (booted, with failed units):");
            let mut out = Vec::new();
            let argv = strings(&[
                "systemctl",
                "--failed",
                "--plain",
                "--no-legend",
                "--no-pager",
            ]);
            let _ = host.exec(ctid, &argv, &mut out);
            for l in String::from_utf8_lossy(&out).lines() {
                note(&format!("    {l}"));
            }
        }
        Ready::OtherInit(why) => note(&format!(
            "  ready: it runs commands; {why}, so phoenix does not wait for another init"
        )),
    }
    for g in gpus {
        let probe = strings(&["test", "-e", &format!("/dev/nvidia{g}")]);
        until(host, ctid, &probe, timeout, deadline)?;
        note(&format!("  ready: {}", probe.join(" ")));
    }
    Ok(ready)
}

fn strings(argv: &[&str]) -> Vec<String> {
    argv.iter().map(|s| s.to_string()).collect()
}

/// Errors that waiting cannot fix: the CT is gone or stopped, or cannot take commands.
fn permanent(kind: ErrorKind) -> bool {
    matches!(
        kind,
        ErrorKind::NotFound | ErrorKind::NotRunning | ErrorKind::Invalid
    )
}

fn booted(
    host: &dyn Host,
    ctid: Ctid,
    timeout: Duration,
    deadline: Instant,
) -> Result<Ready, String> {
    let mut wait_flag = true;
    let not_ready =
        |why: String| format!("CT {ctid} not ready after {} s: {why}", timeout.as_secs());
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut argv = vec![
            "timeout".to_string(),
            // Whole seconds, rounded up (the first probe asks for the whole timeout), at
            // least one: `timeout 0` would never end.
            left.as_millis().div_ceil(1000).max(1).to_string(),
            "systemctl".into(),
            "is-system-running".into(),
        ];
        if wait_flag {
            argv.push("--wait".into());
        }
        let mut out = Vec::new();
        let last = match host.exec(ctid, &argv, &mut out) {
            Err(e) if permanent(e.kind) => {
                return Err(format!(
                    "CT {ctid}: `{}` failed ({})",
                    argv.join(" "),
                    e.message
                ))
            }
            Err(e) => e.message,
            Ok(code) => match verdict(code, &String::from_utf8_lossy(&out)) {
                Verdict::Booted { degraded } => return Ok(Ready::Booted { degraded }),
                Verdict::OtherInit(why) => return Ok(Ready::OtherInit(why)),
                Verdict::Offline => {
                    let mut comm = Vec::new();
                    let argv = strings(&["cat", "/proc/1/comm"]);
                    match host.exec(ctid, &argv, &mut comm) {
                        Ok(0) if String::from_utf8_lossy(&comm).trim() == "systemd" => {
                            "offline (systemd has not said it runs yet)".to_string()
                        }
                        Ok(0) => {
                            return Ok(Ready::OtherInit(format!(
                                "its init is `{}`, not systemd",
                                String::from_utf8_lossy(&comm).trim()
                            )))
                        }
                        _ => {
                            return Ok(Ready::OtherInit(
                                "systemd says `offline` and /proc/1/comm cannot be read".into(),
                            ))
                        }
                    }
                }
                Verdict::TimedOut => {
                    let mut state = Vec::new();
                    let argv = strings(&["systemctl", "is-system-running"]);
                    let _ = host.exec(ctid, &argv, &mut state);
                    let state = String::from_utf8_lossy(&state).trim().to_string();
                    return Err(not_ready(format!(
                        "systemd has not finished starting (`systemctl is-system-running`: {}); `systemctl list-jobs` in the CT shows what it waits for, or give it longer with --ready-timeout",
                        if state.is_empty() { "no answer" } else { &state }
                    )));
                }
                Verdict::Stuck(why) => return Err(format!("CT {ctid} did not boot: {why}")),
                Verdict::NoWait => {
                    wait_flag = false;
                    continue;
                }
                Verdict::Again(what) => what,
            },
        };
        if Instant::now() >= deadline {
            return Err(not_ready(format!("`{}` answered {last}", argv.join(" "))));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Runs `probe` until it exits 0, up to the deadline.
fn until(
    host: &dyn Host,
    ctid: Ctid,
    probe: &[String],
    timeout: Duration,
    deadline: Instant,
) -> Result<(), String> {
    loop {
        let r = host.exec(ctid, probe, &mut Vec::new());
        let what = match r {
            Ok(0) => return Ok(()),
            Err(e) if permanent(e.kind) => {
                return Err(format!(
                    "CT {ctid}: `{}` failed ({})",
                    probe.join(" "),
                    e.message
                ))
            }
            Ok(code @ (126 | 127)) => {
                return Err(format!(
                    "CT {ctid}: `{}` failed (exit code {code}: it cannot run in the CT)",
                    probe.join(" ")
                ))
            }
            Ok(code) => format!("exit code {code}"),
            Err(e) => e.message,
        };
        if Instant::now() >= deadline {
            return Err(format!(
                "CT {ctid} not ready after {} s: `{}` failed ({what})",
                timeout.as_secs(),
                probe.join(" ")
            ));
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_answer_of_systemd_has_a_meaning() {
        assert_eq!(verdict(0, "running\n"), Verdict::Booted { degraded: false });
        // The sim and the pct emulator run nothing: exit 0, no output.
        assert_eq!(verdict(0, ""), Verdict::Booted { degraded: false });
        assert_eq!(verdict(1, "degraded\n"), Verdict::Booted { degraded: true });
        assert!(matches!(
            verdict(127, "timeout: failed to run command 'systemctl': No such file or directory\n"),
            Verdict::OtherInit(w) if w.contains("exit code 127")
        ));
        assert_eq!(verdict(1, "offline\n"), Verdict::Offline);
        assert_eq!(verdict(124, ""), Verdict::TimedOut);
        assert_eq!(
            verdict(1, "maintenance\n"),
            Verdict::Stuck("systemd is `maintenance`".into())
        );
        assert!(matches!(verdict(1, "stopping"), Verdict::Stuck(_)));
        assert!(matches!(
            verdict(126, "Permission denied"),
            Verdict::Stuck(_)
        ));
        assert_eq!(
            verdict(1, "systemctl: unrecognized option '--wait'\n"),
            Verdict::NoWait
        );
        assert_eq!(verdict(1, "starting\n"), Verdict::Again("starting".into()));
        assert_eq!(verdict(1, "unknown\n"), Verdict::Again("unknown".into()));
        assert_eq!(verdict(255, ""), Verdict::Again("exit code 255".into()));
    }
}
