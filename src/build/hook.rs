//! Runs a node's hook on the host: in its own process group, with a time limit, its
//! output in the node's log.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::log::NodeLog;

/// Runs `path <arg>` in `dir` with `env` added; `Err` says why the hook failed.
pub fn run(
    path: &Path,
    arg: &str,
    dir: &Path,
    env: &[(String, String)],
    timeout: Duration,
    log: &mut NodeLog,
) -> Result<(), String> {
    let mut cmd = Command::new(path);
    cmd.arg(arg)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(log.stdio())
        .stderr(log.stdio())
        .envs(env.iter().map(|(k, v)| (k, v)));
    // Its own process group, so that a hook that outlives the time limit is stopped
    // together with whatever it started.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    log.line(&format!("$ {} {arg}", path.display()));
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot run hook {}: {e}", path.display()))?;
    // Names only: the environment may carry secrets.
    tracing::debug!(hook = %path.display(), arg, pid = child.id(), env = ?env.iter().map(|(k, _)| k).collect::<Vec<_>>(), "hook started");
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_millis(2);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(100));
            }
            Ok(None) => {
                let group = format!("-{}", child.id());
                let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
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
    if status.success() {
        return Ok(());
    }
    let code = status
        .code()
        .map_or_else(|| "a signal".to_string(), |c| format!("code {c}"));
    log.line(&format!("  hook exited with {code}"));
    Err(format!("hook {} exited with {code}", path.display()))
}
