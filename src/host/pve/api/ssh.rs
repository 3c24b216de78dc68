//! SSH to a node: what the API cannot do (exec, push and pull in a CT, host facts,
//! unlock) runs as `pct` or a fixed script on the CT's node.
//!
//! - The program is `PHOENIX_SSH` (default `ssh`), with the user's own configuration,
//!   keys and `known_hosts`. `BatchMode=yes`: never a password or host-key prompt, and
//!   phoenix never turns host-key checking off.
//! - One connection per node for the whole run: `ControlMaster=auto` with a
//!   `ControlPath` in phoenix's private run directory (0700), shared by the `pct` of its
//!   hooks, closed when the run ends (`-O exit`).
//! - A remote command is an argument vector, each word single-quoted once for the remote
//!   shell ([`remote_command`]): spaces, quotes, `$`, `;`, newlines and bytes that are
//!   not UTF-8 reach the remote program exactly.
//! - A failure of `ssh` itself (exit 255 with its own message) is told apart from the
//!   remote program's, and said with what to fix ([`ssh_error`]).

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{OsStr, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::Mutex;

/// Where a node's sshd is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Address {
    pub host: String,
    pub port: Option<u16>,
}

impl Address {
    /// `10.0.0.5`, `10.0.0.5:2222`, `pve1.example`, `[fd00::5]:22`, `fd00::5`.
    pub fn parse(text: &str) -> Result<Address, String> {
        let bad = || format!("`{text}` is not an SSH address (host, host:port, [v6]:port)");
        if text.is_empty() || text.starts_with('-') || text.contains(char::is_whitespace) {
            return Err(bad());
        }
        if let Some(rest) = text.strip_prefix('[') {
            let (host, after) = rest.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => Some(p.parse().map_err(|_| bad())?),
                None if after.is_empty() => None,
                None => return Err(bad()),
            };
            return Ok(Address {
                host: host.to_string(),
                port,
            });
        }
        match text.rsplit_once(':') {
            // One colon: host:port; more: a bare IPv6 address.
            Some((host, port)) if !host.contains(':') => Ok(Address {
                host: host.to_string(),
                port: Some(port.parse().map_err(|_| bad())?),
            }),
            _ => Ok(Address {
                host: text.to_string(),
                port: None,
            }),
        }
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.host.contains(':'), self.port) {
            (true, Some(p)) => write!(f, "[{}]:{p}", self.host),
            (false, Some(p)) => write!(f, "{}:{p}", self.host),
            (_, None) => f.write_str(&self.host),
        }
    }
}

#[derive(Clone, Debug, Default)]
pub struct SshOptions {
    pub program: PathBuf,
    pub user: String,
    /// Per node, an address that replaces the one in `/cluster/status`.
    pub hosts: BTreeMap<String, Address>,
    /// The run's control directory when phoenix's build made it (a hook's `pct`).
    pub control_dir: Option<PathBuf>,
}

/// One word for a POSIX shell: single-quoted, a `'` inside closed, escaped and reopened.
/// Bytes pass as they are (a shell reads single quotes byte by byte).
pub fn quote(word: &OsStr) -> Vec<u8> {
    let mut out = Vec::with_capacity(word.len() + 2);
    out.push(b'\'');
    for &b in word.as_bytes() {
        if b == b'\'' {
            out.extend_from_slice(b"'\\''");
        } else {
            out.push(b);
        }
    }
    out.push(b'\'');
    out
}

/// The command line the remote shell runs: every word quoted once, joined by spaces.
pub fn remote_command<S: AsRef<OsStr>>(argv: &[S]) -> OsString {
    let mut out = Vec::new();
    for (i, w) in argv.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.extend(quote(w.as_ref()));
    }
    OsString::from_vec(out)
}

/// What the remote command reads.
pub enum Input {
    Null,
    /// phoenix's own stdin (a hook's `pct exec`).
    Inherit,
    File(std::fs::File),
}

pub struct Ssh {
    opts: SshOptions,
    control_dir: PathBuf,
    /// Made by this process: its masters are closed and it is removed at the end.
    owned: bool,
    used: Mutex<BTreeSet<String>>,
}

impl Ssh {
    /// SSH with connections shared in `control_dir` (made 0700 by the caller when
    /// `owned`).
    pub fn new(opts: SshOptions, control_dir: PathBuf, owned: bool) -> Ssh {
        Ssh {
            opts,
            control_dir,
            owned,
            used: Mutex::new(BTreeSet::new()),
        }
    }

    pub fn control_dir(&self) -> &std::path::Path {
        &self.control_dir
    }

    pub fn user(&self) -> &str {
        &self.opts.user
    }

    /// The node's address: the override, else the one the cluster reports.
    pub fn address(&self, node: &str, reported: Option<&str>) -> Result<Address, String> {
        if let Some(a) = self.opts.hosts.get(node) {
            return Ok(a.clone());
        }
        match reported {
            Some(ip) if !ip.is_empty() => Ok(Address {
                host: ip.to_string(),
                port: None,
            }),
            _ => Err(format!(
                "the cluster reports no address for node '{node}' (GET /cluster/status): give one with --pve-ssh-host {node}=ADDR"
            )),
        }
    }

    /// `ssh` set up to run `argv` on `addr`; `tty` for an interactive `pct enter`.
    pub fn command<S: AsRef<OsStr>>(&self, addr: &Address, argv: &[S], tty: bool) -> Command {
        let mut cmd = if tty {
            // An admin's session stays in the terminal's process group.
            Command::new(&self.opts.program)
        } else {
            crate::os::host_command(&self.opts.program)
        };
        let mut opt = |o: String| {
            cmd.arg("-o").arg(o);
        };
        opt("BatchMode=yes".into());
        opt("ConnectTimeout=15".into());
        opt("ServerAliveInterval=30".into());
        opt("ControlMaster=auto".into());
        opt("ControlPersist=60".into());
        opt(format!("ControlPath={}/%C", self.control_dir.display()));
        cmd.arg("-l").arg(&self.opts.user);
        if let Some(p) = addr.port {
            cmd.arg("-p").arg(p.to_string());
        }
        cmd.arg(if tty { "-t" } else { "-T" });
        cmd.arg("--").arg(&addr.host).arg(remote_command(argv));
        if let Ok(mut used) = self.used.lock() {
            used.insert(addr.to_string());
        }
        cmd
    }

    /// Runs `argv` on `addr`; stdout is captured unless `stdout` is given.
    pub fn run<S: AsRef<OsStr>>(
        &self,
        addr: &Address,
        argv: &[S],
        input: Input,
        stdout: Option<Stdio>,
    ) -> std::io::Result<Output> {
        let mut cmd = self.command(addr, argv, false);
        cmd.stdin(match input {
            Input::Null => Stdio::null(),
            Input::Inherit => Stdio::inherit(),
            Input::File(f) => Stdio::from(f),
        });
        cmd.stdout(stdout.unwrap_or_else(Stdio::piped));
        cmd.stderr(Stdio::piped());
        tracing::debug!(to = %addr, argv = ?argv.iter().map(|a| a.as_ref().to_string_lossy().into_owned()).collect::<Vec<_>>(), "ssh");
        cmd.output()
    }

    /// Why `ssh` itself failed, when it did (exit 255 with its own words), said with
    /// what to fix; `None` when the remote program answered.
    pub fn ssh_error(&self, node: &str, addr: &Address, out: &Output) -> Option<String> {
        if out.status.code() != Some(255) && out.status.code().is_some() {
            return None;
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        ssh_error(node, &format!("{}@{addr}", self.opts.user), &stderr)
    }
}

/// `ssh`'s own failure in its stderr, said with what to fix; `None` when the text is
/// not ssh's.
pub fn ssh_error(node: &str, dest: &str, stderr: &str) -> Option<String> {
    let last = stderr
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    let host = dest.rsplit('@').next().unwrap_or(dest);
    let host_only = host.split(':').next().unwrap_or(host);
    let msg = if stderr.contains("REMOTE HOST IDENTIFICATION HAS CHANGED") {
        format!(
            "the SSH host key of node '{node}' ({dest}) does not match your known_hosts: phoenix never turns host-key checking off. If the node was reinstalled, compare the key on its console (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub`), then replace the entry (`ssh-keygen -R {host_only}`)"
        )
    } else if stderr.contains("Host key verification failed")
        || stderr.contains("host key is known for")
    {
        format!(
            "node '{node}' ({dest}) is not in your known_hosts, and phoenix never accepts a host key unseen (BatchMode): log in once with `ssh {dest}` and check the key against the node's (`ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on its console)"
        )
    } else if stderr.contains("Permission denied (") {
        format!(
            "node '{node}' refused your SSH key ({dest}: {last}): add your public key to the node's /etc/pve/priv/authorized_keys (root@pam on a cluster) or load the right key in ssh-agent; phoenix never asks for a password"
        )
    } else if stderr.contains("Connection refused") {
        format!(
            "node '{node}' refused SSH at {dest}: is sshd running there, and is that its address (--pve-ssh-host {node}=ADDR)?"
        )
    } else if stderr.contains("Could not resolve hostname") {
        format!("cannot resolve node '{node}''s SSH address {dest}: give one with --pve-ssh-host {node}=ADDR")
    } else if stderr.contains("timed out") || stderr.contains("No route to host") {
        format!(
            "node '{node}' did not answer SSH at {dest} ({last}): check that it is reachable from here, or give its address with --pve-ssh-host {node}=ADDR"
        )
    } else if last.starts_with("ssh:")
        || last.contains("kex_exchange_identification")
        || last.starts_with("Connection closed by")
        || last.starts_with("Control socket")
        || last.contains("mux_client")
    {
        format!("SSH to node '{node}' ({dest}) failed: {last}")
    } else {
        return None;
    };
    Some(msg)
}

impl Drop for Ssh {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        // The masters end with the run; then the private directory goes.
        let sockets: Vec<PathBuf> = std::fs::read_dir(&self.control_dir)
            .map(|d| d.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        for socket in sockets {
            let _ = crate::os::host_command(&self.opts.program)
                .arg("-o")
                .arg(format!("ControlPath={}", socket.display()))
                .args(["-O", "exit", "phoenix-control"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_single_quoted_once() {
        let w = |s: &str| String::from_utf8(quote(OsStr::new(s))).unwrap();
        assert_eq!(w("a b"), "'a b'");
        assert_eq!(w("it's"), r"'it'\''s'");
        assert_eq!(w("$HOME;rm -rf /"), "'$HOME;rm -rf /'");
        assert_eq!(w(""), "''");
        let raw = OsStr::from_bytes(b"\xff\xfe\n");
        assert_eq!(quote(raw), b"'\xff\xfe\n'");
        assert_eq!(
            remote_command(&["pct", "exec", "900", "--", "echo", "a b"]),
            OsString::from("'pct' 'exec' '900' '--' 'echo' 'a b'")
        );
    }

    #[test]
    fn addresses_with_and_without_ports() {
        let a = Address::parse("10.0.0.5:2222").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("10.0.0.5", Some(2222)));
        assert_eq!(Address::parse("pve1").unwrap().port, None);
        let v6 = Address::parse("[fd00::5]:22").unwrap();
        assert_eq!((v6.host.as_str(), v6.port), ("fd00::5", Some(22)));
        assert_eq!(Address::parse("fd00::5").unwrap().host, "fd00::5");
        assert!(Address::parse("-oProxyCommand=x").is_err());
        assert_eq!(v6.to_string(), "[fd00::5]:22");
    }

    #[test]
    fn ssh_failures_are_told_from_the_remote_programs() {
        let e = ssh_error("pve", "root@10.0.0.5", "@@@@\n@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @\nHost key verification failed.\n").unwrap();
        assert!(
            e.contains("does not match your known_hosts") && e.contains("ssh-keygen -R 10.0.0.5"),
            "{e}"
        );
        let e = ssh_error(
            "pve",
            "root@10.0.0.5",
            "root@10.0.0.5: Permission denied (publickey).\n",
        )
        .unwrap();
        assert!(e.contains("refused your SSH key"), "{e}");
        assert!(ssh_error("pve", "root@h", "CT 900 not running\n").is_none());
    }
}
