//! Runs a node's hook on the host: in its own process group and, where the host has one,
//! its own cgroup ([`super::cgroup`]), with a time limit, its output in the node's log.
//! When the hook ends, however it ends, what is left of its process group and cgroup is
//! killed: nothing it started in the background outlives it, `setsid` or not.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::cgroup::{self, HookCgroup};
use super::log::NodeLog;

/// What a hook runs with: where its record goes, and the secret values its output must
/// not carry into the log.
pub struct Guard<'a> {
    pub record: &'a Path,
    pub secrets: &'a [String],
}

/// Removes the hook's record however `run` returns.
struct Forget<'a>(&'a Path);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.0);
    }
}

/// Runs `path <args>` in `dir` with `env` added; `Err` says why the hook failed. While it
/// runs, `guard.record` holds its cgroup, process group and start time, so that a run
/// killed with SIGKILL leaves behind what the next one needs to end it
/// ([`end_leftovers`]).
pub fn run(
    path: &Path,
    args: &[&str],
    dir: &Path,
    env: &[(String, String)],
    timeout: Duration,
    guard: &Guard,
    log: &mut NodeLog,
) -> Result<(), String> {
    let _forget = Forget(guard.record);
    let record = guard.record;
    if !runnable_by_the_kernel(path) {
        return Err(format!(
            "cannot run hook {}: it has no `#!` line naming its interpreter: add `#!/bin/bash` as its first line",
            path.display()
        ));
    }
    let masked = !guard.secrets.is_empty();
    let mut cmd = Command::new(path);
    let (out, err) = if masked {
        (Stdio::piped(), Stdio::piped())
    } else {
        (log.stdio(), log.stdio())
    };
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .envs(env.iter().map(|(k, v)| (k, v)));
    // Its own process group, so that a hook that outlives the time limit is stopped
    // together with whatever it started; and its own cgroup, joined before exec, for
    // what leaves the group.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let group = into_cgroup(&mut cmd, record);
    log.line(&format!("$ {} {}", path.display(), args.join(" ")));
    // ETXTBSY: another thread's child, forked while a script was being written, still
    // holds it open for a moment (until its own exec closes it): try again.
    let mut tries = 0;
    let mut child = loop {
        match cmd.spawn() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) && tries < 20 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            other => {
                break other.map_err(|e| {
                    format!(
                        "cannot run hook {}: {}",
                        path.display(),
                        spawn_error(path, &e)
                    )
                })?
            }
        }
    };
    // A second signal kills it before phoenix exits (the file outlives the registration).
    let kill_file = group.as_ref().and_then(HookCgroup::kill_file);
    let tracked = super::cancel::track(child.id(), kill_file.as_ref());
    // Names only: the environment may carry secrets.
    tracing::debug!(hook = %path.display(), ?args, pid = child.id(), env = ?env.iter().map(|(k, _)| k).collect::<Vec<_>>(), "hook started");
    // With secrets to hide, the output passes through phoenix line by line.
    let copiers: Vec<std::thread::JoinHandle<()>> = if masked {
        [
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        .map(|pipe| {
            let mut sink = log.writer();
            let secrets = guard.secrets.to_vec();
            std::thread::spawn(move || copy_masked(pipe, &mut sink, &secrets))
        })
        .collect()
    } else {
        Vec::new()
    };
    let result = wait(
        &mut child,
        path,
        timeout,
        record,
        group.as_ref().map(HookCgroup::dir),
        log,
    );
    // What left the process group goes with the cgroup; only then may a second signal
    // no longer find it.
    drop(group);
    drop(tracked);
    drop(kill_file);
    // The copiers end when the pipes close; a process that escaped the group may hold
    // them open, so they get a moment, not a wait without end.
    let until = Instant::now() + Duration::from_secs(1);
    while copiers.iter().any(|c| !c.is_finished()) && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    result
}

/// Whether the kernel itself can run `path`: a `#!` line or an ELF binary. The C library
/// would run a script without `#!` under /bin/sh, which is not what its author may have
/// meant: phoenix says so instead of guessing.
fn runnable_by_the_kernel(path: &Path) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return true; // the spawn says why it cannot run
    };
    let mut head = [0u8; 4];
    let n = std::io::Read::read(&mut file, &mut head).unwrap_or(0);
    head[..n].starts_with(b"#!") || &head[..n] == b"\x7fELF"
}

/// Makes the hook's cgroup (where the host has one) and has `cmd` join it between fork
/// and exec. The cgroup is recorded in `record` before it exists, and so before the hook
/// starts: a hook may kill phoenix before its pid is written, and its cgroup alone lets
/// the next run find what it left.
fn into_cgroup(cmd: &mut Command, record: &Path) -> Option<HookCgroup> {
    let name = record
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let group = HookCgroup::create(&name, |dir| {
        let _ = crate::os::write_atomic(record, format!("0 0 {}\n", dir.display()).as_bytes());
    })?;
    if let Some(procs) = group.procs() {
        // SAFETY: the closure only calls `cgroup::join`, which makes async-signal-safe
        // system calls on memory allocated before the fork.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(cmd, move || {
                cgroup::join(&procs);
                Ok(())
            });
        }
    }
    Some(group)
}

/// Copies a hook's output into its log line by line, every secret value replaced by `***`.
fn copy_masked(
    pipe: Box<dyn std::io::Read + Send>,
    sink: &mut dyn std::io::Write,
    secrets: &[String],
) {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::new(pipe);
    let mut line = Vec::new();
    while reader.read_until(b'\n', &mut line).is_ok_and(|n| n > 0) {
        let mut text = String::from_utf8_lossy(&line).into_owned();
        for s in secrets {
            text = text.replace(s.as_str(), "***");
        }
        let _ = sink.write_all(text.as_bytes());
        line.clear();
    }
}

fn wait(
    child: &mut std::process::Child,
    path: &Path,
    timeout: Duration,
    record: &Path,
    group: Option<&Path>,
    log: &mut NodeLog,
) -> Result<(), String> {
    if let Some(start) = start_time(child.id()) {
        let mut line = format!("{} {start}", child.id());
        if let Some(dir) = group {
            line.push_str(&format!(" {}", dir.display()));
        }
        line.push('\n');
        let _ = crate::os::write_atomic(record, line.as_bytes());
    }
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    let status = loop {
        if let Some(sig) = super::cancel::requested() {
            kill_group(child.id());
            let _ = child.kill();
            let _ = child.wait();
            let name = super::cancel::name(sig);
            log.line(&format!(
                "  hook stopped: the run was interrupted by {name}"
            ));
            return Err(format!(
                "hook {} was stopped: the run was interrupted by {name}",
                path.display()
            ));
        }
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Ok(None) => {
                kill_group(child.id());
                let _ = child.kill();
                let _ = child.wait();
                let limit = timeout.as_secs();
                log.line(&format!("  hook killed after {limit} s (--hook-timeout)"));
                return Err(format!(
                    "hook {} ran longer than --hook-timeout {limit} s and was killed",
                    path.display()
                ));
            }
            Err(e) => return Err(format!("cannot wait for hook {}: {e}", path.display())),
        }
    };
    // What the hook left running in its group goes with it.
    kill_group(child.id());
    if status.success() {
        return Ok(());
    }
    let how = match (status.code(), status.signal()) {
        (Some(c), _) => format!("exited with code {c}"),
        (None, Some(sig)) => format!("was killed by signal {sig} ({})", signal_name(sig)),
        (None, None) => "ended abnormally".to_string(),
    };
    log.line(&format!("  hook {how}"));
    Err(format!("hook {} {how}", path.display()))
}

/// Kills every process left in the process group `pgid` (the hook's own group). Never
/// 0 or 1 (kill(2) reads -1 as "every process") and never phoenix's own group, whatever
/// a record says.
fn kill_group(pgid: u32) {
    let Ok(pgid) = libc::pid_t::try_from(pgid) else {
        return;
    };
    // SAFETY: getpgrp(2) has no preconditions.
    if pgid <= 1 || pgid == unsafe { libc::getpgrp() } {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals that process group; no memory is
    // touched. A group already gone is ESRCH, which is fine.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

fn signal_name(sig: i32) -> &'static str {
    match sig {
        libc::SIGHUP => "SIGHUP",
        libc::SIGINT => "SIGINT",
        libc::SIGQUIT => "SIGQUIT",
        libc::SIGILL => "SIGILL",
        libc::SIGABRT => "SIGABRT",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGKILL => "SIGKILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGPIPE => "SIGPIPE",
        libc::SIGALRM => "SIGALRM",
        libc::SIGTERM => "SIGTERM",
        _ => "a signal",
    }
}

/// Why the kernel would not start a hook, in words that say what to fix.
fn spawn_error(path: &Path, e: &std::io::Error) -> String {
    let first_line = crate::os::read_regular(path, 4096).ok().map(|b| {
        let end = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
        String::from_utf8_lossy(&b[..end]).into_owned()
    });
    match (e.kind(), first_line) {
        (std::io::ErrorKind::NotFound, Some(line)) if line.starts_with("#!") && line.ends_with('\r') => {
            "its first line ends with a carriage return (Windows line endings), so the kernel looks for an interpreter whose name ends in \\r: convert it with `sed -i 's/\\r$//'` or dos2unix".to_string()
        }
        (std::io::ErrorKind::NotFound, Some(line)) if line.starts_with("#!") => format!(
            "its interpreter `{}` does not exist on this host",
            line[2..].split_whitespace().next().unwrap_or("")
        ),
        (std::io::ErrorKind::PermissionDenied, _) => {
            "it is not executable: `chmod +x` it".to_string()
        }
        _ if e.raw_os_error() == Some(libc::ENOEXEC) => {
            "it has no `#!` line naming its interpreter: add `#!/bin/bash` as its first line".to_string()
        }
        _ => e.to_string(),
    }
}

/// Fields of `/proc/<pid>/stat` after the command name (which is in parentheses and may
/// hold spaces): `[0]` is field 3, the state.
fn stat_fields(pid: u32) -> Option<Vec<String>> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    Some(after.split_whitespace().map(str::to_string).collect())
}

/// A process's start time (clock ticks since boot, field 22): with the pid, it names one
/// process even after the pid is reused.
fn start_time(pid: u32) -> Option<u64> {
    stat_fields(pid)?.get(19)?.parse().ok()
}

/// Whether `pid` is still the leader of its own process group (field 5), as a hook is.
fn leads_its_group(pid: u32) -> bool {
    stat_fields(pid)
        .and_then(|f| f.get(2)?.parse::<u32>().ok())
        .is_some_and(|pgrp| pgrp == pid)
}

/// Ends the hooks that a killed run left running, as recorded in `dir` (one file per
/// hook, named by its CTID: its process group, start time and cgroup). A process group
/// is killed only if its leader is still the process recorded (not a reused pid); the
/// hook's cgroup, named for that run alone, is emptied and removed whatever is in it.
/// Returns the CTIDs whose hook was ended.
pub fn end_leftovers(dir: &Path) -> Vec<String> {
    let mut ended = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return ended;
    };
    for e in entries.flatten() {
        let path = e.path();
        let text = crate::os::read_regular(&path, 4096)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default();
        let mut words = text.split_whitespace();
        let pid: Option<u32> = words.next().and_then(|w| w.parse().ok());
        let start: Option<u64> = words.next().and_then(|w| w.parse().ok());
        let group: Option<PathBuf> = text
            .lines()
            .next()
            .and_then(|l| l.splitn(3, ' ').nth(2))
            .map(PathBuf::from);
        let had_group = group.as_deref().is_some_and(cgroup::end);
        if let (Some(pid), Some(start)) = (pid, start) {
            let leader = start_time(pid) == Some(start) && leads_its_group(pid);
            if leader {
                kill_group(pid);
            }
            if leader || had_group {
                let ctid = path
                    .file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default();
                tracing::warn!(ctid, pid, "ended the hook a killed run left running");
                ended.push(ctid);
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    ended
}
