//! Runs a node's hook on the host: in its own process group and, where the host has one,
//! its own cgroup ([`super::cgroup`]), with a time limit, its output in the node's log.
//! When the hook ends, however it ends, what is left of its process group and cgroup is
//! killed: nothing it started in the background outlives it, `setsid` or not.

use std::io::Read;
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

/// Why a hook failed, and the last lines it printed (secrets masked): what a failure's
/// summary shows besides the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    pub message: String,
    pub output: Vec<String>,
}

impl Failure {
    fn new(message: String) -> Failure {
        Failure {
            message,
            output: Vec::new(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// How many of a failed hook's last lines its summary shows.
const LAST_LINES: usize = 5;
/// A line of a hook's output is cut there in a summary.
const LINE_CHARS: usize = 300;

/// The last non-empty lines of a script's output.
#[derive(Default)]
struct LastLines {
    lines: std::collections::VecDeque<String>,
    partial: Vec<u8>,
}

impl LastLines {
    fn push(&mut self, bytes: &[u8]) {
        for &b in bytes {
            if b == b'\n' {
                self.end_line();
            } else if self.partial.len() < 4 * LINE_CHARS {
                self.partial.push(b);
            }
        }
    }

    fn end_line(&mut self) {
        let text = String::from_utf8_lossy(&self.partial);
        let text = crate::os::excerpt(text.trim_end_matches('\r').trim(), LINE_CHARS);
        self.partial.clear();
        if !text.is_empty() {
            self.lines.push_back(text);
            if self.lines.len() > LAST_LINES {
                self.lines.pop_front();
            }
        }
    }

    fn take(&mut self) -> Vec<String> {
        if !self.partial.is_empty() {
            self.end_line();
        }
        self.lines.drain(..).collect()
    }
}

/// Masks secret values in a stream: whatever could still be the start of a secret stays
/// buffered until the next bytes say whether it is one, so a secret split between two
/// reads is masked all the same, and a long line without a newline never grows the buffer
/// past the longest secret.
struct Masker {
    secrets: Vec<String>,
    held: Vec<u8>,
}

impl Masker {
    fn new(secrets: &[String]) -> Masker {
        Masker {
            secrets: secrets.iter().filter(|s| !s.is_empty()).cloned().collect(),
            held: Vec::new(),
        }
    }

    fn longest(&self) -> usize {
        self.secrets.iter().map(String::len).max().unwrap_or(0)
    }

    /// Takes bytes in; returns what can be passed on, masked.
    fn feed(&mut self, bytes: &[u8]) -> Vec<u8> {
        self.held.extend_from_slice(bytes);
        let masked = self.mask(&self.held);
        let keep = self.longest().saturating_sub(1).min(masked.len());
        // What is kept is cut from the end of the masked text: any occurrence not wholly
        // in the buffer starts in those last bytes.
        let (out, rest) = masked.split_at(masked.len() - keep);
        self.held = rest.to_vec();
        out.to_vec()
    }

    fn finish(&mut self) -> Vec<u8> {
        let out = self.mask(&self.held);
        self.held.clear();
        out
    }

    fn mask(&self, bytes: &[u8]) -> Vec<u8> {
        let mut out = bytes.to_vec();
        for s in &self.secrets {
            out = replace_all(&out, s.as_bytes(), b"***");
        }
        out
    }
}

fn replace_all(hay: &[u8], needle: &[u8], with: &[u8]) -> Vec<u8> {
    if needle.is_empty() || hay.len() < needle.len() {
        return hay.to_vec();
    }
    let mut out = Vec::with_capacity(hay.len());
    let mut i = 0;
    while i < hay.len() {
        if hay[i..].starts_with(needle) {
            out.extend_from_slice(with);
            i += needle.len();
        } else {
            out.push(hay[i]);
            i += 1;
        }
    }
    out
}

/// Runs `path <args>` in `dir` with `env` added; `Err` says why the hook failed. While it
/// runs, `guard.record` holds its cgroup, process group and start time, so that a run
/// killed with SIGKILL leaves behind what the next one needs to end it
/// ([`end_leftovers`]). Its output passes through phoenix into the node's log: secret
/// values masked, bounded by the log's limit, its last lines kept for a failure.
pub fn run(
    path: &Path,
    args: &[&str],
    dir: &Path,
    env: &[(String, String)],
    timeout: Duration,
    guard: &Guard,
    log: &mut NodeLog,
) -> Result<(), Failure> {
    let _forget = Forget(guard.record);
    let record = guard.record;
    if !runnable_by_the_kernel(path) {
        return Err(Failure::new(format!(
            "cannot run hook {}: it has no `#!` line naming its interpreter: add `#!/bin/bash` as its first line",
            path.display()
        )));
    }
    // One pipe for stdout and stderr, as `2>&1`: the log keeps the order the hook wrote
    // its lines in.
    let (output, out_end) = std::io::pipe()
        .map_err(|e| Failure::new(format!("cannot run hook {}: {e}", path.display())))?;
    let err_end = out_end
        .try_clone()
        .map_err(|e| Failure::new(format!("cannot run hook {}: {e}", path.display())))?;
    let mut cmd = Command::new(path);
    cmd.args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(out_end)
        .stderr(err_end)
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
                    Failure::new(format!(
                        "cannot run hook {}: {}",
                        path.display(),
                        spawn_error(path, &e)
                    ))
                })?
            }
        }
    };
    // A second signal kills it before phoenix exits (the file outlives the registration).
    let kill_file = group.as_ref().and_then(HookCgroup::kill_file);
    let tracked = super::cancel::track(child.id(), kill_file.as_ref());
    // Names only: the environment may carry secrets.
    tracing::debug!(hook = %path.display(), ?args, pid = child.id(), env = ?env.iter().map(|(k, _)| k).collect::<Vec<_>>(), "hook started");
    // The write ends are the hook's alone now: the pipe ends when the hook (and what it
    // left running) has closed them.
    drop(cmd);
    let last = std::sync::Arc::new(std::sync::Mutex::new(LastLines::default()));
    let copier = {
        let sink = log.clone();
        let last = last.clone();
        let masker = Masker::new(guard.secrets);
        std::thread::spawn(move || copy(Box::new(output), &sink, masker, &last))
    };
    // What `wait` has to say goes in the log after the output, which the copiers may
    // still be passing on when the hook has exited.
    let mut said = Vec::new();
    let result = wait(
        &mut child,
        path,
        timeout,
        record,
        group.as_ref().map(HookCgroup::dir),
        &mut said,
    );
    // What left the process group goes with the cgroup; only then may a second signal
    // no longer find it.
    drop(group);
    drop(tracked);
    drop(kill_file);
    // The copier ends when the pipe closes; a process that escaped the group may hold it
    // open, so it gets a moment, not a wait without end.
    let until = Instant::now() + Duration::from_secs(1);
    while !copier.is_finished() && Instant::now() < until {
        std::thread::sleep(Duration::from_millis(5));
    }
    log.end_output();
    for line in said {
        log.line(&line);
    }
    result.map_err(|message| Failure {
        message,
        output: last.lock().map(|mut l| l.take()).unwrap_or_default(),
    })
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

/// Copies a hook's output into its log as it comes, every secret value replaced by `***`,
/// keeping its last lines.
fn copy(
    mut pipe: Box<dyn std::io::Read + Send>,
    sink: &NodeLog,
    mut masker: Masker,
    last: &std::sync::Mutex<LastLines>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    let pass = |bytes: &[u8]| {
        if !bytes.is_empty() {
            sink.output(bytes);
            if let Ok(mut l) = last.lock() {
                l.push(bytes);
            }
        }
    };
    loop {
        match pipe.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => pass(&masker.feed(&buf[..n])),
        }
    }
    pass(&masker.finish());
}

fn wait(
    child: &mut std::process::Child,
    path: &Path,
    timeout: Duration,
    record: &Path,
    group: Option<&Path>,
    said: &mut Vec<String>,
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
            said.push(format!("  hook stopped: the run was interrupted by {name}"));
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
                said.push(format!("  hook killed after {limit} s (--hook-timeout)"));
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
    said.push(format!("  hook {how}"));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_split_between_reads_is_masked() {
        let secrets = vec!["hf_SECRETVALUE".to_string(), "pw".to_string()];
        let text = b"token=hf_SECRETVALUE and pw, again hf_SECRETVALUE\n";
        for cut in 1..text.len() {
            let mut m = Masker::new(&secrets);
            let mut out = m.feed(&text[..cut]);
            out.extend(m.feed(&text[cut..]));
            out.extend(m.finish());
            assert_eq!(
                String::from_utf8(out).unwrap(),
                "token=*** and ***, again ***\n",
                "cut at {cut}"
            );
        }
        // Without secrets nothing is held back.
        let mut m = Masker::new(&[]);
        assert_eq!(m.feed(b"abc"), b"abc");
    }

    #[test]
    fn the_last_lines_are_kept_short_and_printable() {
        let mut l = LastLines::default();
        l.push(b"one\n\n two \nthree\r\nfour\nfive\nsix\x00\x1b[31m\nseven");
        assert_eq!(
            l.take(),
            ["three", "four", "five", "six\\0\\x1b[31m", "seven"]
        );
        l.push(&vec![b'x'; 10_000]);
        let long = l.take();
        assert_eq!(long[0].chars().count(), LINE_CHARS + 1, "cut with …");
    }
}
