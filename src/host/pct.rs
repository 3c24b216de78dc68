//! `pct` over any [`Host`]: the phoenix binary invoked under the name `pct` (a link put
//! first on a hook's `PATH`) acts on the backend that runs the build, with `pct`'s syntax,
//! output, stdout/stderr split and exit codes (`pct-spec.md` §0–§2): 255 on failure,
//! `exec` returns the command's code, and — as in Proxmox — `push`/`pull` failures past
//! their running-state check print their error but exit 0.
//!
//! Commands: status, list, config, exec, push, pull, set, start, shutdown, stop, snapshot,
//! listsnapshot, delsnapshot, rollback, and (for the `pct-emulator`, where phoenix's `pve`
//! backend is the caller) create, clone, resize, destroy, unlock. The backend comes from `PHOENIX_BACKEND` and its
//! place from `PHOENIX_STATE_DIR`, both set for hooks ([`Host::hook_env`]). On Proxmox
//! the real `pct` is on `PATH` instead.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::host::pve::args::{self, Args};
use crate::host::pve::conf::ConfFile;
use crate::host::pve::{map, output, props};
use crate::host::{Backend, CloneSpec, CreateSpec, Ctid, ErrorKind, Host, HostError, Settings};

const FAIL: i32 = 255;

/// Runs `pct <args>` on the backend named in the environment; returns the exit code.
pub fn main(argv: &[String]) -> i32 {
    let backend = std::env::var("PHOENIX_BACKEND").unwrap_or_else(|_| "sim".into());
    let state = std::env::var_os("PHOENIX_STATE_DIR")
        .unwrap_or_else(|| crate::host::DEFAULT_STATE_DIR.into());
    let host = match backend
        .parse::<Backend>()
        .and_then(|b| b.open(Path::new(&state)))
    {
        Ok(h) => h,
        Err(e) => {
            eprintln!("{e}");
            return FAIL;
        }
    };
    let out = &mut std::io::stdout().lock();
    match run(host.as_ref(), argv, out) {
        Ok(code) => code,
        Err(msg) => {
            let _ = out.flush();
            eprintln!("{msg}");
            FAIL
        }
    }
}

/// Makes `<bin>/pct` a link to this binary; `None` if that cannot be done.
pub fn link_into(bin: &Path) -> Option<PathBuf> {
    let exe = std::env::current_exe().ok()?;
    // A binary replaced while it runs (an upgrade) reads as "<path> (deleted)".
    let exe = match exe.to_str().and_then(|s| s.strip_suffix(" (deleted)")) {
        Some(s) => PathBuf::from(s),
        None => exe,
    };
    std::fs::create_dir_all(bin).ok()?;
    let link = bin.join("pct");
    if std::fs::read_link(&link).ok().as_deref() != Some(exe.as_path()) {
        let tmp = bin.join(format!(".pct.{}", std::process::id()));
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(&exe, &tmp).ok()?;
        std::fs::rename(&tmp, &link).ok()?;
    }
    Some(bin.to_path_buf())
}

fn vmid(a: &Args, usage: &str) -> Result<Ctid, String> {
    let v = a
        .positional
        .first()
        .ok_or_else(|| args::not_enough(usage))?;
    crate::fleet::config::parse_ctid(v).ok_or_else(|| {
        args::bad_param(
            "vmid",
            "invalid format - value does not look like a valid VM ID",
            usage,
        )
    })
}

fn nth<'a>(a: &'a Args, i: usize, usage: &str) -> Result<&'a str, String> {
    a.positional
        .get(i)
        .map(String::as_str)
        .ok_or_else(|| args::not_enough(usage))
}

fn host_err(e: HostError) -> String {
    e.message
}

/// The CT's config as Proxmox would hold it: the host's own file when it is one,
/// otherwise written from what the host reports.
fn conf_of(host: &dyn Host, ctid: Ctid) -> Result<ConfFile, String> {
    if let Some(text) = host.config_file(ctid).map_err(host_err)? {
        if let Ok(conf) = ConfFile::parse(&text) {
            return Ok(conf);
        }
    }
    let ct = host
        .ct(ctid)
        .map_err(host_err)?
        .ok_or_else(|| missing(host, ctid))?;
    Ok(map::conf_of(&ct))
}

fn missing(host: &dyn Host, ctid: Ctid) -> String {
    host.not_found(ctid).message
}

fn ct(host: &dyn Host, ctid: Ctid) -> Result<crate::host::CtInfo, String> {
    host.ct(ctid)
        .map_err(host_err)?
        .ok_or_else(|| missing(host, ctid))
}

/// `pct set` options as settings: the keys phoenix models as values, the rest verbatim.
fn settings_of(a: &Args) -> Result<Settings, String> {
    let mut s = Settings::default();
    let usage = "pct set <vmid> [OPTIONS]";
    for (k, v) in &a.options {
        let bad = |msg: &str| args::bad_param(k, msg, usage);
        match k.as_str() {
            "hostname" => s.hostname = Some(v.clone()),
            "memory" => {
                let m: u64 = v
                    .parse()
                    .map_err(|_| bad(&format!("type check ('integer') failed - got '{v}'")))?;
                if m < 16 {
                    return Err(bad("value must have a minimum value of 16"));
                }
                s.memory_mb = Some(m);
            }
            "cores" => {
                s.cores = Some(
                    v.parse()
                        .map_err(|_| bad(&format!("type check ('integer') failed - got '{v}'")))?,
                )
            }
            "onboot" => {
                s.onboot =
                    Some(args::parse_bool(v).ok_or_else(|| {
                        bad(&format!("type check ('boolean') failed - got '{v}'"))
                    })?)
            }
            "features" => {
                let f = props::Features::parse(v).map_err(|e| bad(&e.to_string()))?;
                s.features = Some(f.to_map());
            }
            "net0" => {
                s.network = Some(
                    map::read_network(v)
                        .ok_or_else(|| bad(&format!("invalid format - unable to parse '{v}'")))?,
                )
            }
            "description" => s.description = Some(v.clone()),
            "delete" => s.delete.extend(v.split(',').map(|d| d.trim().to_string())),
            "digest" => {}
            _ => {
                s.extra.insert(k.clone(), v.clone());
            }
        }
    }
    Ok(s)
}

/// `pct create` options: `--storage` (default `local`), `--rootfs <storage>:<GiB>`,
/// `--unprivileged` (default 1), and the settings.
fn create_spec(a: &Args, ostemplate: &str) -> Result<CreateSpec, String> {
    let usage = "pct create <vmid> <ostemplate> [OPTIONS]";
    let mut rest = a.clone();
    let mut take = |k: &str| rest.options.remove(k);
    let mut storage = take("storage").unwrap_or_else(|| "local".to_string());
    let mut disk_gb = 4;
    if let Some(rootfs) = take("rootfs") {
        let (volume, _) = rootfs.split_once(',').unwrap_or((&rootfs, ""));
        let (s, size) = props::new_disk_request(volume).ok_or_else(|| {
            args::bad_param(
                "rootfs",
                "only a new volume (<storage>:<GiB>) is modelled",
                usage,
            )
        })?;
        storage = s.to_string();
        disk_gb = props::size_gib_ceil(size);
    }
    let unprivileged = match take("unprivileged") {
        Some(v) => args::parse_bool(&v).ok_or_else(|| {
            args::bad_param(
                "unprivileged",
                &format!("type check ('boolean') failed - got '{v}'"),
                usage,
            )
        })?,
        None => true,
    };
    for ignored in [
        "start",
        "password",
        "ssh-public-keys",
        "pool",
        "force",
        "unique",
    ] {
        take(ignored);
    }
    Ok(CreateSpec {
        ostemplate: ostemplate.to_string(),
        storage,
        disk_gb,
        unprivileged,
        settings: settings_of(&rest)?,
    })
}

/// `pct clone` options. The model clones from a snapshot (`--snapname`), as phoenix does;
/// the hostname defaults to the source's and the storage to its rootfs's.
fn clone_spec(host: &dyn Host, a: &Args) -> Result<CloneSpec, String> {
    let usage = "pct clone <vmid> <newid> [OPTIONS]";
    let source = vmid(a, usage)?;
    let target = crate::fleet::config::parse_ctid(nth(a, 1, usage)?).ok_or_else(|| {
        args::bad_param(
            "newid",
            "invalid format - value does not look like a valid VM ID",
            usage,
        )
    })?;
    let snapshot = a
        .options
        .get("snapname")
        .cloned()
        .ok_or_else(|| "the emulator clones from a snapshot: pass --snapname".to_string())?;
    let conf = conf_of(host, source)?;
    let main = conf.snapshot(&snapshot).unwrap_or(conf.main());
    let hostname = a
        .options
        .get("hostname")
        .cloned()
        .or_else(|| main.get("hostname").map(str::to_string))
        .unwrap_or_else(|| format!("CT{target}"));
    let storage = match a.options.get("storage") {
        Some(s) => s.clone(),
        None => main
            .get("rootfs")
            .and_then(|r| r.split([':', ',']).next())
            .unwrap_or("local")
            .to_string(),
    };
    Ok(CloneSpec {
        source,
        snapshot,
        target,
        hostname,
        storage,
    })
}

/// `pct resize <vmid> rootfs <size>`: `8G` sets the size, `+2G` grows it.
fn resize_to(host: &dyn Host, a: &Args, id: Ctid) -> Result<u64, String> {
    let usage = "pct resize <vmid> <disk> <size> [OPTIONS]";
    let disk = nth(a, 1, usage)?;
    if disk != "rootfs" {
        return Err(format!("the emulator resizes rootfs only, not '{disk}'"));
    }
    let size = nth(a, 2, usage)?;
    let bad = || {
        args::bad_param(
            "size",
            &format!("value '{size}' does not match the regex pattern"),
            usage,
        )
    };
    let (grow, amount) = match size.strip_prefix('+') {
        Some(rest) => (true, rest),
        None => (false, size),
    };
    let bytes = props::parse_size(amount).ok_or_else(bad)?;
    let gb = props::size_gib_ceil(bytes);
    if grow {
        Ok(ct(host, id)?.disk_gb.unwrap_or(0) + gb)
    } else {
        Ok(gb)
    }
}

/// Runs one `pct` command on `host`; stdout goes to `out`. `Err` is pct's stderr text.
pub fn run(host: &dyn Host, argv: &[String], out: &mut dyn Write) -> Result<i32, String> {
    let Some(word) = argv.first() else {
        return Err("ERROR: no command specified\nUSAGE: pct <COMMAND> [ARGS] [OPTIONS]".into());
    };
    let Some(cmd) = args::resolve_command(word) else {
        return Err(format!(
            "ERROR: unknown command 'pct {word}'\nUSAGE: pct <COMMAND> [ARGS] [OPTIONS]"
        ));
    };
    let a = args::parse(&argv[1..])?;
    let w = |out: &mut dyn Write, s: &str| {
        let _ = out.write_all(s.as_bytes());
    };
    match cmd {
        "status" => {
            let id = vmid(&a, "pct status <vmid> [OPTIONS]")?;
            w(out, &output::status(&ct(host, id)?));
        }
        "list" => {
            let inv = host.inventory().map_err(host_err)?;
            w(out, &output::list(inv.values()));
        }
        "config" => {
            let id = vmid(&a, "pct config <vmid> [OPTIONS]")?;
            let current = a.options.get("current").is_some_and(|v| v == "1");
            let snapshot = a.options.get("snapshot");
            if current && snapshot.is_some() {
                return Err("400 Parameter verification failed.\ncurrent: option conflicts with option 'snapshot'\n\npct config <vmid> [OPTIONS]".into());
            }
            let conf = conf_of(host, id)?;
            w(
                out,
                &output::config_of(&conf, current, snapshot.map(String::as_str))?,
            );
        }
        "exec" => {
            let id = vmid(&a, "pct exec <vmid> [<extra-args>] [OPTIONS]")?;
            let mut command: Vec<String> = a.positional[1..].to_vec();
            command.extend(a.rest.iter().cloned());
            if command.is_empty() {
                return Err("missing command".into());
            }
            return host.exec(id, &command, out).map_err(host_err);
        }
        "push" | "pull" => {
            let usage = if cmd == "push" {
                "pct push <vmid> <file> <destination> [OPTIONS]"
            } else {
                "pct pull <vmid> <path> <destination> [OPTIONS]"
            };
            let id = vmid(&a, usage)?;
            let (from, to) = (nth(&a, 1, usage)?, nth(&a, 2, usage)?);
            let r = if cmd == "push" {
                let perms = match a.options.get("perms") {
                    Some(p) => u32::from_str_radix(p.trim_start_matches("0o"), 8)
                        .map_err(|_| format!("invalid mode: '{p}'"))?,
                    None => 0o644,
                };
                host.push(id, Path::new(from), to, perms)
            } else {
                host.pull(id, from, Path::new(to))
            };
            match r {
                Err(e) if e.kind == ErrorKind::NotRunning || e.kind == ErrorKind::NotFound => {
                    return Err(e.message)
                }
                // The worker's failure: printed, yet exit 0 (pct-spec §0, no $upid_exit).
                Err(e) => eprintln!("{}", e.message),
                Ok(()) => {}
            }
        }
        "set" => {
            let id = vmid(&a, "pct set <vmid> [OPTIONS]")?;
            host.set(id, &settings_of(&a)?).map_err(host_err)?;
        }
        "start" => host
            .start(vmid(&a, "pct start <vmid> [OPTIONS]")?)
            .map_err(host_err)?,
        "shutdown" => {
            let id = vmid(&a, "pct shutdown <vmid> [OPTIONS]")?;
            let timeout = a
                .options
                .get("timeout")
                .and_then(|t| t.parse().ok())
                .unwrap_or(60);
            host.shutdown(id, timeout).map_err(host_err)?;
        }
        "stop" => host
            .stop(vmid(&a, "pct stop <vmid> [OPTIONS]")?)
            .map_err(host_err)?,
        "snapshot" => {
            let usage = "pct snapshot <vmid> <snapname> [OPTIONS]";
            let id = vmid(&a, usage)?;
            let name = nth(&a, 1, usage)?;
            let desc = a.options.get("description").cloned().unwrap_or_default();
            host.snapshot(id, name, &desc).map_err(host_err)?;
        }
        "delsnapshot" => {
            let usage = "pct delsnapshot <vmid> <snapname> [OPTIONS]";
            let id = vmid(&a, usage)?;
            host.delete_snapshot(id, nth(&a, 1, usage)?)
                .map_err(host_err)?;
        }
        "rollback" => {
            let usage = "pct rollback <vmid> <snapname> [OPTIONS]";
            let id = vmid(&a, usage)?;
            host.rollback(id, nth(&a, 1, usage)?).map_err(host_err)?;
            if a.options.get("start").is_some_and(|v| v == "1") {
                host.start(id).map_err(host_err)?;
            }
        }
        "listsnapshot" => {
            let id = vmid(&a, "pct listsnapshot <vmid>")?;
            w(out, &output::snapshot_tree(&ct(host, id)?, &crate::os::utc));
        }
        "create" => {
            let usage = "pct create <vmid> <ostemplate> [OPTIONS]";
            let id = vmid(&a, usage)?;
            let spec = create_spec(&a, nth(&a, 1, usage)?)?;
            host.create(id, &spec)
                .map_err(|e| format!("unable to create CT {id} - {}", e.message))?;
        }
        "clone" => {
            let spec = clone_spec(host, &a)?;
            host.clone_ct(&spec).map_err(host_err)?;
        }
        "resize" => {
            let id = vmid(&a, "pct resize <vmid> <disk> <size> [OPTIONS]")?;
            let gb = resize_to(host, &a, id)?;
            host.resize(id, gb).map_err(host_err)?;
        }
        "destroy" => host
            .destroy(vmid(&a, "pct destroy <vmid> [OPTIONS]")?)
            .map_err(host_err)?,
        "unlock" => host
            .unlock(vmid(&a, "pct unlock <vmid>")?)
            .map_err(host_err)?,
        other => unreachable!("resolve_command returned {other}"),
    }
    Ok(0)
}
