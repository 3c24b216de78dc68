//! `pct` over any [`Host`]: the phoenix binary invoked under the name `pct` (a link put
//! first on a hook's `PATH`) acts on the backend that runs the build, with `pct`'s syntax,
//! output, stdout/stderr split and exit codes (`pct-spec.md` §0–§2): 255 on failure,
//! `exec` returns the command's code, and — as in Proxmox — `push`/`pull` failures past
//! their running-state check print their error but exit 0.
//!
//! Commands: status, list, config, exec, push, pull, set, start, shutdown, stop, snapshot,
//! listsnapshot, delsnapshot, rollback, enter (where the host gives a shell: over the
//! API, SSH to the CT's node), and (for the `pct-emulator`, where phoenix's `pve`
//! backend is the caller) create, clone, resize, destroy, unlock, template. Each takes
//! its own options only (`syntax`). The backend comes from `PHOENIX_BACKEND` and its
//! place from `PHOENIX_STATE_DIR`, both set for hooks ([`Host::hook_env`]). On Proxmox
//! the real `pct` is on `PATH` instead.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::host::pve::args::{self, Args};
use crate::host::pve::conf::ConfFile;
use crate::host::pve::{map, output, props};
use crate::host::{Backend, CloneRequest, CreateSpec, Ctid, ErrorKind, Host, HostError, Settings};

const FAIL: i32 = 255;

/// Runs `pct <args>` on the backend named in the environment; returns the exit code.
pub fn main(argv: &[String]) -> i32 {
    let backend = std::env::var("PHOENIX_BACKEND").unwrap_or_else(|_| "sim".into());
    let state = std::env::var_os("PHOENIX_STATE_DIR")
        .unwrap_or_else(|| crate::host::DEFAULT_STATE_DIR.into());
    let state = Path::new(&state);
    let host = match backend.parse::<Backend>().and_then(|b| match b {
        // `pct exec` hands its stdin to the command, as Proxmox's does.
        Backend::Lxc => crate::host::lxc::LxcHost::from_env(state)
            .map(|h| Box::new(h.passing_stdin()) as Box<dyn Host>),
        b => b.open(state),
    }) {
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

/// `vzdump <vmid> --storage <storage> [--mode stop] [--notes-template <text>]` on `host`:
/// keeps the CT (the model's `vzdump`; Proxmox's own on a node). Prints the archive as
/// vzdump does (`INFO: creating vzdump archive '<archive>'`).
pub fn vzdump(host: &dyn Host, argv: &[String], out: &mut dyn Write) -> Result<i32, String> {
    const USAGE: &str = "vzdump <vmid> [OPTIONS]";
    let a = args::parse(argv)?;
    let unknown: Vec<&str> = a
        .options
        .keys()
        .map(String::as_str)
        .filter(|k| !["storage", "mode", "notes-template", "compress", "remove"].contains(k))
        .collect();
    if !unknown.is_empty() {
        return Err(args::unknown_options(&unknown, USAGE));
    }
    let id = vmid(&a, USAGE)?;
    if a.options.get("mode").is_some_and(|m| m != "stop") {
        return Err("the model of vzdump takes --mode stop only".to_string());
    }
    let storage = a.options.get("storage").map_or("local", String::as_str);
    let note = a.options.get("notes-template").map_or("", String::as_str);
    let kept = host
        .keep(id, storage, note)
        .map_err(|e| format!("ERROR: Backup of VM {id} failed - {}", e.message))?;
    let _ = writeln!(out, "INFO: creating vzdump archive '{}'", kept.location);
    let _ = writeln!(out, "INFO: Finished Backup of VM {id}");
    Ok(0)
}

/// `pvesm free <volid>` on `host`: removes a kept copy.
pub fn pvesm(host: &dyn Host, argv: &[String], _out: &mut dyn Write) -> Result<i32, String> {
    match argv {
        [cmd, volid] if cmd == "free" => {
            let kept = crate::host::KeptCopy {
                location: volid.clone(),
                node: None,
                size_bytes: None,
            };
            host.forget(&kept).map_err(|e| e.message)?;
            Ok(0)
        }
        _ => Err("USAGE: pvesm free <volume> (the model answers `free` only)".to_string()),
    }
}

/// Makes `<bin>/pct` a link to this binary (or to `PHOENIX_PCT_EXE`, a `phoenix` binary,
/// when phoenix runs inside another program such as a benchmark); `None` if that cannot
/// be done.
pub fn link_into(bin: &Path) -> Option<PathBuf> {
    let exe = match std::env::var_os("PHOENIX_PCT_EXE") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().ok()?;
            // Only a binary that answers to the name `pct` may be linked as one: another
            // program embedding phoenix would run itself again from every hook.
            let name = exe.file_name()?.to_string_lossy().into_owned();
            let name = name.strip_suffix(" (deleted)").unwrap_or(&name);
            if !["phoenix", "pct", "pct-emulator"].contains(&name) {
                tracing::warn!(exe = %exe.display(), "not linking `pct` to a binary that is not phoenix: set PHOENIX_PCT_EXE");
                return None;
            }
            exe
        }
    };
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

/// The config keys `pct create` and `pct set` take as options [LCFG $confdesc]; the
/// numbered ones (`net0`, `mp1`, ...) by their stem.
const CONFIG_KEYS: &[&str] = &[
    "arch",
    "cmode",
    "console",
    "cores",
    "cpulimit",
    "cpuunits",
    "debug",
    "description",
    "entrypoint",
    "env",
    "features",
    "hookscript",
    "hostname",
    "lock",
    "memory",
    "nameserver",
    "onboot",
    "ostype",
    "protection",
    "rootfs",
    "searchdomain",
    "startup",
    "swap",
    "tags",
    "template",
    "timezone",
    "tty",
    "unprivileged",
];
const NUMBERED_KEYS: &[&str] = &["dev", "mp", "net", "unused"];

/// One command's command line [PCT cmddef, the API methods' parameters].
struct Syntax {
    usage: &'static str,
    /// Positional arguments it takes; `None` for any number (`exec`'s command).
    args: Option<usize>,
    /// Its options, beside the config keys for `create` and `set`.
    options: &'static [&'static str],
    config_keys: bool,
}

impl Syntax {
    fn takes(&self, option: &str) -> bool {
        let numbered = |stem: &&str| {
            option
                .strip_prefix(*stem)
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        };
        self.options.contains(&option)
            || (self.config_keys
                && (CONFIG_KEYS.contains(&option) || NUMBERED_KEYS.iter().any(numbered)))
    }
}

/// The command line of a command [`args::resolve_command`] returns.
fn syntax(cmd: &str) -> Syntax {
    let s = |usage, args, options| Syntax {
        usage,
        args,
        options,
        config_keys: false,
    };
    match cmd {
        "status" => s("pct status <vmid> [OPTIONS]", Some(1), &["verbose"]),
        "list" => s("pct list", Some(0), &[]),
        "config" => s(
            "pct config <vmid> [OPTIONS]",
            Some(1),
            &["current", "snapshot"],
        ),
        "exec" => s(
            "pct exec <vmid> [<extra-args>] [OPTIONS]",
            None,
            &["keep-env"],
        ),
        "push" => s(
            "pct push <vmid> <file> <destination> [OPTIONS]",
            Some(3),
            &["user", "group", "perms"],
        ),
        "pull" => s(
            "pct pull <vmid> <path> <destination> [OPTIONS]",
            Some(3),
            &["user", "group", "perms"],
        ),
        "set" => Syntax {
            config_keys: true,
            ..s(
                "pct set <vmid> [OPTIONS]",
                Some(1),
                &["delete", "revert", "digest"],
            )
        },
        "start" => s(
            "pct start <vmid> [OPTIONS]",
            Some(1),
            &["skiplock", "debug"],
        ),
        "shutdown" => s(
            "pct shutdown <vmid> [OPTIONS]",
            Some(1),
            &["timeout", "forceStop"],
        ),
        "stop" => s(
            "pct stop <vmid> [OPTIONS]",
            Some(1),
            &["skiplock", "overrule-shutdown"],
        ),
        "snapshot" => s(
            "pct snapshot <vmid> <snapname> [OPTIONS]",
            Some(2),
            &["description"],
        ),
        "listsnapshot" => s("pct listsnapshot <vmid>", Some(1), &[]),
        "delsnapshot" => s(
            "pct delsnapshot <vmid> <snapname> [OPTIONS]",
            Some(2),
            &["force"],
        ),
        "rollback" => s(
            "pct rollback <vmid> <snapname> [OPTIONS]",
            Some(2),
            &["start"],
        ),
        "create" => Syntax {
            config_keys: true,
            ..s(
                "pct create <vmid> <ostemplate> [OPTIONS]",
                Some(2),
                &[
                    "storage",
                    "password",
                    "ssh-public-keys",
                    "start",
                    "pool",
                    "force",
                    "restore",
                    "unique",
                    "ignore-unpack-errors",
                    "bwlimit",
                    "ha-managed",
                ],
            )
        },
        "clone" => s(
            "pct clone <vmid> <newid> [OPTIONS]",
            Some(2),
            &[
                "full",
                "snapname",
                "storage",
                "hostname",
                "description",
                "pool",
                "target",
                "bwlimit",
            ],
        ),
        "resize" => s(
            "pct resize <vmid> <disk> <size> [OPTIONS]",
            Some(3),
            &["digest"],
        ),
        "destroy" => s(
            "pct destroy <vmid> [OPTIONS]",
            Some(1),
            &["purge", "force", "destroy-unreferenced-disks"],
        ),
        "unlock" => s("pct unlock <vmid>", Some(1), &[]),
        "restore" => s(
            "pct restore <vmid> <ostemplate> [OPTIONS]",
            Some(2),
            &[
                "storage",
                "force",
                "unique",
                "unprivileged",
                "bwlimit",
                "pool",
            ],
        ),
        "template" => s("pct template <vmid>", Some(1), &[]),
        "migrate" => s(
            "pct migrate <vmid> <target> [OPTIONS]",
            Some(2),
            &["restart", "timeout", "online", "target-storage", "bwlimit"],
        ),
        "enter" => s("pct enter <vmid> [OPTIONS]", Some(1), &["keep-env"]),
        _ => s("pct <COMMAND> [ARGS] [OPTIONS]", None, &[]),
    }
}

/// A boolean option: absent is `None`; a value that is not one is a 400.
fn flag(a: &Args, key: &str, usage: &str) -> Result<Option<bool>, String> {
    a.options
        .get(key)
        .map(|v| {
            args::parse_bool(v).ok_or_else(|| {
                args::bad_param(
                    key,
                    &format!("type check ('boolean') failed - got '{v}'"),
                    usage,
                )
            })
        })
        .transpose()
}

/// A host's error as pct prints it: a parameter error gets the usage line, as pct's
/// own parameter checks do [REST cli_handler].
fn with_usage(e: HostError, usage: &str) -> String {
    if e.message.starts_with("400 ") {
        format!("{}\n\n{usage}", e.message)
    } else {
        e.message
    }
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
    let usage = syntax("set").usage;
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
    let usage = syntax("create").usage;
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
        "restore",
        "ignore-unpack-errors",
        "bwlimit",
        "ha-managed",
    ] {
        take(ignored);
    }
    Ok(CreateSpec {
        ostemplate: ostemplate.to_string(),
        storage,
        disk_gb,
        unprivileged,
        settings: settings_of(&rest)?,
        node: None,
    })
}

/// `pct clone` options as a request; what is not given is left to the host (Proxmox's
/// defaults, pct-spec §1 clone).
fn clone_request(a: &Args) -> Result<CloneRequest, String> {
    let usage = syntax("clone").usage;
    let source = vmid(a, usage)?;
    let target = crate::fleet::config::parse_ctid(nth(a, 1, usage)?).ok_or_else(|| {
        args::bad_param(
            "newid",
            "invalid format - value does not look like a valid VM ID",
            usage,
        )
    })?;
    let opt = |k: &str| a.options.get(k).cloned();
    Ok(CloneRequest {
        source,
        target,
        snapname: opt("snapname"),
        full: flag(a, "full", usage)?,
        storage: opt("storage"),
        hostname: opt("hostname"),
        description: opt("description"),
        node: opt("target"),
    })
}

/// `pct resize <vmid> rootfs <size>`: `8G` sets the size, `+2G` grows it.
fn resize_to(host: &dyn Host, a: &Args, id: Ctid) -> Result<u64, String> {
    let usage = syntax("resize").usage;
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
    let syn = syntax(cmd);
    let usage = syn.usage;
    // Getopt first, then the positional arguments [JS get_options].
    let unknown: Vec<&str> = a
        .options
        .keys()
        .map(String::as_str)
        .filter(|k| !syn.takes(k))
        .collect();
    if !unknown.is_empty() {
        return Err(args::unknown_options(&unknown, usage));
    }
    if syn.args.is_some_and(|n| a.positional.len() > n) {
        return Err(args::too_many(usage));
    }
    let fail = |e: HostError| with_usage(e, usage);
    let w = |out: &mut dyn Write, s: &str| {
        let _ = out.write_all(s.as_bytes());
    };
    match cmd {
        "status" => {
            let id = vmid(&a, usage)?;
            w(out, &output::status(&ct(host, id)?));
        }
        "list" => {
            let inv = host.inventory().map_err(fail)?;
            w(out, &output::list(inv.values()));
        }
        "config" => {
            let id = vmid(&a, usage)?;
            let current = flag(&a, "current", usage)?.unwrap_or(false);
            let snapshot = a.options.get("snapshot");
            if current && snapshot.is_some() {
                return Err(format!("400 Parameter verification failed.\ncurrent: option conflicts with option 'snapshot'\n\n{usage}"));
            }
            let conf = conf_of(host, id)?;
            w(
                out,
                &output::config_of(&conf, current, snapshot.map(String::as_str))?,
            );
        }
        "exec" => {
            let id = vmid(&a, usage)?;
            let mut command: Vec<String> = a.positional[1..].to_vec();
            command.extend(a.rest.iter().cloned());
            if command.is_empty() {
                return Err("missing command".into());
            }
            return host.exec(id, &command, out).map_err(fail);
        }
        "push" | "pull" => {
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
            let id = vmid(&a, usage)?;
            host.set(id, &settings_of(&a)?).map_err(fail)?;
        }
        "start" => host.start(vmid(&a, usage)?).map_err(fail)?,
        "shutdown" => {
            let id = vmid(&a, usage)?;
            let timeout = a
                .options
                .get("timeout")
                .and_then(|t| t.parse().ok())
                .unwrap_or(60);
            host.shutdown(id, timeout).map_err(fail)?;
        }
        "stop" => host.stop(vmid(&a, usage)?).map_err(fail)?,
        "snapshot" => {
            let id = vmid(&a, usage)?;
            let name = nth(&a, 1, usage)?;
            let desc = a.options.get("description").cloned().unwrap_or_default();
            host.snapshot(id, name, &desc).map_err(fail)?;
        }
        "delsnapshot" => {
            let id = vmid(&a, usage)?;
            host.delete_snapshot(id, nth(&a, 1, usage)?).map_err(fail)?;
        }
        "rollback" => {
            let id = vmid(&a, usage)?;
            let start = flag(&a, "start", usage)?.unwrap_or(false);
            host.rollback(id, nth(&a, 1, usage)?).map_err(fail)?;
            if start {
                host.start(id).map_err(fail)?;
            }
        }
        "listsnapshot" => {
            let id = vmid(&a, usage)?;
            w(out, &output::snapshot_tree(&ct(host, id)?, &crate::os::utc));
        }
        "create" => {
            let id = vmid(&a, usage)?;
            let spec = create_spec(&a, nth(&a, 1, usage)?)?;
            let start = flag(&a, "start", usage)?.unwrap_or(false);
            host.create(id, &spec).map_err(fail)?;
            if start {
                host.start(id).map_err(fail)?;
            }
        }
        "clone" => host.clone_with(&clone_request(&a)?).map_err(fail)?,
        "resize" => {
            let id = vmid(&a, usage)?;
            let gb = resize_to(host, &a, id)?;
            host.resize(id, gb).map_err(fail)?;
        }
        "destroy" => host.destroy(vmid(&a, usage)?).map_err(fail)?,
        "restore" => {
            let id = vmid(&a, usage)?;
            let archive = nth(&a, 1, usage)?;
            let force = flag(&a, "force", usage)?.unwrap_or(false);
            if !force && host.ct(id).map_err(fail)?.is_some() {
                return Err(format!(
                    "unable to restore CT {id} - CT {id} already exists (use --force to overwrite it)"
                ));
            }
            let storage = a.options.get("storage").map_or("local", String::as_str);
            let kept = crate::host::KeptCopy {
                location: archive.to_string(),
                node: None,
                size_bytes: None,
            };
            host.restore(id, &kept, storage).map_err(fail)?;
        }
        "unlock" => host.unlock(vmid(&a, usage)?).map_err(fail)?,
        "migrate" => {
            let id = vmid(&a, usage)?;
            let target = nth(&a, 1, usage)?;
            if flag(&a, "online", usage)? == Some(true) {
                return Err("lxc live migration is currently not implemented".into());
            }
            let restart = flag(&a, "restart", usage)?.unwrap_or(false);
            host.migrate(id, target, restart).map_err(fail)?;
        }
        // A shell in the CT where the host can give one (over the API: SSH to its node).
        "enter" => return host.enter(vmid(&a, usage)?).map_err(fail),
        "template" => match host.template(vmid(&a, usage)?) {
            // The worker's failure: printed, yet exit 0 (pct-spec §0, no $upid_exit).
            Err(e) if e.kind == ErrorKind::Failed => eprintln!("{}", e.message),
            r => r.map_err(fail)?,
        },
        other => unreachable!("resolve_command returned {other}"),
    }
    Ok(0)
}
