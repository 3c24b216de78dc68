//! A `pct` for hooks on the `sim` backend: the phoenix binary invoked under the name `pct`
//! (a symlink in `<state>/sim/bin`, put first on a hook's `PATH`) acts on the simulated
//! host, with `pct`'s syntax, output formats, stdout/stderr split and exit codes
//! (`pct-spec.md`): 255 on failure, `exec` returns the command's code.
//!
//! Verbs: status, list, config, exec, push, pull, set, start, shutdown, stop, snapshot,
//! listsnapshot, delsnapshot.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;

use crate::fleet::config::Ctid;
use crate::host::sim::SimHost;
use crate::host::{CtInfo, Host, HostError, SnapshotInfo};

const FAIL: i32 = 255;

struct Args {
    positional: Vec<String>,
    options: BTreeMap<String, String>,
    /// Everything after `--`.
    rest: Vec<String>,
}

fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args {
        positional: Vec::new(),
        options: BTreeMap::new(),
        rest: Vec::new(),
    };
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            a.rest = args[i + 1..].to_vec();
            break;
        }
        if let Some(opt) = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-').filter(|o| !o.is_empty()))
        {
            match opt.split_once('=') {
                Some((k, v)) => {
                    a.options.insert(k.to_string(), v.to_string());
                }
                None => {
                    let value = args
                        .get(i + 1)
                        .cloned()
                        .ok_or_else(|| "400 unable to parse option".to_string())?;
                    a.options.insert(opt.to_string(), value);
                    i += 1;
                }
            }
        } else {
            a.positional.push(arg.clone());
        }
        i += 1;
    }
    Ok(a)
}

fn vmid(a: &Args, usage: &str) -> Result<Ctid, String> {
    let v = a
        .positional
        .first()
        .ok_or_else(|| format!("400 not enough arguments\n{usage}"))?;
    crate::fleet::config::parse_ctid(v).ok_or_else(|| {
        format!("400 Parameter verification failed.\nvmid: invalid format - value does not look like a valid VM ID\n\n{usage}")
    })
}

/// Runs `pct <args>`; returns the exit code.
pub fn main(args: &[String]) -> i32 {
    let state = std::env::var_os("PHOENIX_STATE_DIR")
        .unwrap_or_else(|| crate::state::DEFAULT_STATE_DIR.into());
    let host = match SimHost::open(Path::new(&state)) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{e}");
            return FAIL;
        }
    };
    match run(&host, args) {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("{msg}");
            FAIL
        }
    }
}

fn host_err(e: HostError) -> String {
    e.message
}

fn run(host: &SimHost, args: &[String]) -> Result<i32, String> {
    let Some(cmd) = args.first() else {
        return Err("ERROR: no command specified".into());
    };
    let a = parse(&args[1..])?;
    let out = &mut std::io::stdout().lock();
    match cmd.as_str() {
        "status" => {
            let ct = host
                .ct_info(vmid(&a, "pct status <vmid> [OPTIONS]")?)
                .map_err(host_err)?;
            let _ = writeln!(
                out,
                "status: {}",
                if ct.running { "running" } else { "stopped" }
            );
        }
        "list" => {
            let inv = host.inventory().map_err(host_err)?;
            if !inv.is_empty() {
                let _ = writeln!(
                    out,
                    "{:<10} {:<10} {:<12} {:<20}",
                    "VMID", "Status", "Lock", "Name"
                );
                for ct in inv.values() {
                    let name = ct
                        .config
                        .get("hostname")
                        .cloned()
                        .unwrap_or_else(|| format!("CT{}", ct.ctid));
                    let _ = writeln!(
                        out,
                        "{:<10} {:<10} {:<12} {:<20}",
                        ct.ctid,
                        if ct.running { "running" } else { "stopped" },
                        ct.lock.as_deref().unwrap_or(""),
                        name
                    );
                }
            }
        }
        "config" => {
            let ct = host
                .ct_info(vmid(&a, "pct config <vmid> [OPTIONS]")?)
                .map_err(host_err)?;
            let _ = write!(out, "{}", render_config(&ct));
        }
        "exec" => {
            let id = vmid(&a, "pct exec <vmid> [<extra-args>] [OPTIONS]")?;
            let mut command: Vec<String> = a.positional[1..].to_vec();
            command.extend(a.rest.iter().cloned());
            if command.is_empty() {
                return Err("missing command".into());
            }
            let mut sink = std::io::stderr();
            return host.exec(id, &command, &mut sink).map_err(host_err);
        }
        "push" => {
            let id = vmid(&a, "pct push <vmid> <file> <destination> [OPTIONS]")?;
            let (Some(file), Some(dest)) = (a.positional.get(1), a.positional.get(2)) else {
                return Err(
                    "400 not enough arguments\npct push <vmid> <file> <destination> [OPTIONS]"
                        .into(),
                );
            };
            host.push(id, Path::new(file), dest, 0o644)
                .map_err(host_err)?;
        }
        "pull" => {
            let id = vmid(&a, "pct pull <vmid> <path> <destination> [OPTIONS]")?;
            let (Some(path), Some(dest)) = (a.positional.get(1), a.positional.get(2)) else {
                return Err(
                    "400 not enough arguments\npct pull <vmid> <path> <destination> [OPTIONS]"
                        .into(),
                );
            };
            let content = host.pull(id, path).map_err(host_err)?;
            std::fs::write(dest, content)
                .map_err(|e| format!("failed to create file: {dest}: {e}"))?;
        }
        "set" => {
            let id = vmid(&a, "pct set <vmid> [OPTIONS]")?;
            let opts: Vec<(String, String)> = a.options.clone().into_iter().collect();
            host.set(id, &opts).map_err(host_err)?;
        }
        "start" => host
            .start(vmid(&a, "pct start <vmid> [OPTIONS]")?)
            .map_err(host_err)?,
        "shutdown" | "stop" => host
            .shutdown(vmid(&a, "pct shutdown <vmid> [OPTIONS]")?, 60)
            .map_err(host_err)?,
        "snapshot" => {
            let id = vmid(&a, "pct snapshot <vmid> <snapname> [OPTIONS]")?;
            let name = a
                .positional
                .get(1)
                .ok_or("400 not enough arguments\npct snapshot <vmid> <snapname> [OPTIONS]")?;
            let desc = a.options.get("description").cloned().unwrap_or_default();
            host.snapshot(id, name, &desc).map_err(host_err)?;
        }
        "delsnapshot" => {
            let id = vmid(&a, "pct delsnapshot <vmid> <snapname> [OPTIONS]")?;
            let name = a
                .positional
                .get(1)
                .ok_or("400 not enough arguments\npct delsnapshot <vmid> <snapname> [OPTIONS]")?;
            host.delete_snapshot(id, name).map_err(host_err)?;
        }
        "listsnapshot" => {
            let ct = host
                .ct_info(vmid(&a, "pct listsnapshot <vmid>")?)
                .map_err(host_err)?;
            let _ = write!(out, "{}", render_snapshot_tree(&ct));
        }
        other => {
            return Err(format!(
                "ERROR: unknown command 'pct {other}'\nUSAGE: pct <COMMAND> [ARGS] [OPTIONS]"
            ))
        }
    }
    Ok(0)
}

/// `pct config`: sorted `key: value`, description URI-escaped, `parent:` when snapshots
/// exist, then raw `lxc.*` lines in file order.
pub fn render_config(ct: &CtInfo) -> String {
    let mut keys = ct.config.clone();
    if let Some(p) = &ct.parent_snapshot {
        keys.insert("parent".into(), p.clone());
    }
    if let Some(l) = &ct.lock {
        keys.insert("lock".into(), l.clone());
    }
    let mut out = String::new();
    for (k, v) in &keys {
        let v = if k == "description" {
            escape_text(v)
        } else {
            v.clone()
        };
        out.push_str(&format!("{k}: {v}\n"));
    }
    for l in &ct.raw_lxc {
        out.push_str(l);
        out.push('\n');
    }
    out
}

fn escape_text(v: &str) -> String {
    v.chars()
        .map(|c| match c {
            ':' | '%' => format!("%{:02X}", c as u32),
            c if c.is_control() => format!("%{:02X}", c as u32),
            c => c.to_string(),
        })
        .collect()
}

/// `pct listsnapshot`: the tree of snapshots with `current` under its parent.
pub fn render_snapshot_tree(ct: &CtInfo) -> String {
    let mut out = String::new();
    let mut children: BTreeMap<Option<String>, Vec<&SnapshotInfo>> = BTreeMap::new();
    for s in &ct.snapshots {
        children.entry(s.parent.clone()).or_default().push(s);
    }
    fn walk(
        out: &mut String,
        parent: Option<String>,
        depth: usize,
        children: &BTreeMap<Option<String>, Vec<&SnapshotInfo>>,
        ct: &CtInfo,
        time: &dyn Fn(u64) -> String,
    ) {
        let mut kids = children.get(&parent).cloned().unwrap_or_default();
        kids.sort_by_key(|s| s.snaptime);
        for s in kids {
            let prefix = format!("{}`->", " ".repeat(depth));
            let width = 30usize.saturating_sub(prefix.len());
            let desc = s
                .description
                .lines()
                .next()
                .filter(|l| !l.is_empty())
                .unwrap_or("no-description");
            out.push_str(&format!(
                "{prefix} {:<width$} {:<23} {desc}\n",
                s.name,
                time(s.snaptime)
            ));
            walk(out, Some(s.name.clone()), depth + 1, children, ct, time);
        }
        if parent == ct.parent_snapshot {
            let prefix = format!("{}`->", " ".repeat(depth));
            let width = 30usize.saturating_sub(prefix.len());
            out.push_str(&format!(
                "{prefix} {:<width$} {:<23} You are here!\n",
                "current", ""
            ));
        }
    }
    walk(&mut out, None, 0, &children, ct, &crate::state::utc);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ct(snaps: &[(&str, Option<&str>, u64, &str)], parent: Option<&str>) -> CtInfo {
        CtInfo {
            ctid: 100,
            running: false,
            lock: None,
            config: [
                ("hostname".to_string(), "web01".to_string()),
                ("description".to_string(), "a: 50%\nb".to_string()),
            ]
            .into_iter()
            .collect(),
            raw_lxc: vec!["lxc.cgroup2.devices.allow: c 195:* rwm".into()],
            snapshots: snaps
                .iter()
                .map(|(n, p, t, d)| SnapshotInfo {
                    name: n.to_string(),
                    parent: p.map(str::to_string),
                    snaptime: *t,
                    description: d.to_string(),
                })
                .collect(),
            parent_snapshot: parent.map(str::to_string),
        }
    }

    #[test]
    fn listsnapshot_prints_pves_tree() {
        // pct-spec §1 listsnapshot: `printf("%s %-Ls %-23s %s\n")` with L = 30 - len(prefix).
        let c = ct(
            &[
                ("s1", None, 1_704_103_200, ""),
                ("s2", Some("s1"), 1_704_106_800, "before upgrade\nmore"),
            ],
            Some("s2"),
        );
        assert_eq!(
            render_snapshot_tree(&c),
            "`-> s1                          2024-01-01 10:00:00     no-description\n \
             `-> s2                         2024-01-01 11:00:00     before upgrade\n  \
             `-> current                                           You are here!\n"
        );
        let empty = ct(&[], None);
        assert_eq!(
            render_snapshot_tree(&empty),
            format!("`-> {:<27} {:<23} You are here!\n", "current", "")
        );
    }

    #[test]
    fn config_is_sorted_with_escaped_description_then_raw_lines() {
        let c = ct(&[("s1", None, 0, "")], Some("s1"));
        assert_eq!(
            render_config(&c),
            "description: a%3A 50%25%0Ab\nhostname: web01\nparent: s1\nlxc.cgroup2.devices.allow: c 195:* rwm\n"
        );
    }

    #[test]
    fn options_parse_like_pct() {
        let a = parse(&[
            "100".into(),
            "--perms=0644".into(),
            "-user".into(),
            "root".into(),
            "--".into(),
            "ls".into(),
            "-la".into(),
        ])
        .unwrap();
        assert_eq!(a.positional, vec!["100"]);
        assert_eq!(a.options["perms"], "0644");
        assert_eq!(a.options["user"], "root");
        assert_eq!(a.rest, vec!["ls", "-la"]);
        assert!(parse(&["--description".into()]).is_err());
    }
}
