//! `lxc`: real containers with the `lxc-*` tools of Debian's `lxc` package, on any Linux
//! host, with root filesystems and snapshots on btrfs (copy-on-write, O(1)) or in plain
//! directories (full copies).
//!
//! A CT is LXC container `<ctid>` under the container path (`--lxc-path`,
//! `PHOENIX_LXC_PATH`, default `/var/lib/lxc`), laid out so that LXC's own tools work on
//! it (`lxc-ls`, `lxc-attach -n 950`, `lxc-snapshot -L -n 950`):
//!
//! | path | what |
//! |---|---|
//! | `<ctid>/phoenix.json` | the CT's settings as values ([`conf::Meta`]): the truth, as a `.conf` on Proxmox |
//! | `<ctid>/config` | LXC's config, made from them at every change ([`conf::render`]) |
//! | `<ctid>/rootfs` | the root filesystem: a btrfs subvolume, or a directory |
//! | `<ctid>/snaps/<name>/rootfs` | a snapshot: a read-only subvolume (or a copy) named by phoenix's `phx-<hash>` |
//! | `<ctid>/snaps/<name>/{phoenix.json,config,comment,ts}` | the CT as it was, its description (`comment`) and time (`ts`), as `lxc-snapshot` keeps them |
//! | `<ctid>/.lock` | the CT's `flock`, held for each change |
//!
//! A container without `phoenix.json` is not phoenix's: it is listed, never changed.
//! Base CTs come from [`template`] (a tarball, or a cached `debootstrap` of the Debian
//! release a Proxmox template name names); a clone is a writable snapshot of the
//! source's snapshot. Runtime: `lxc-start`, `lxc-stop`, `lxc-attach` (exec, push, pull),
//! `lxc-info` and one `lxc-ls --running` for the whole host. Networking follows
//! `--lxc-network` ([`NetworkMode`]).

pub mod conf;
pub mod net;
pub mod store;
pub mod template;

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use conf::{Meta, SnapshotMeta, Target};
use store::Store;

use crate::host::pve::props::new_mac;
use crate::host::pve::text;
use crate::host::{
    CloneSpec, CreateSpec, CtInfo, Ctid, ErrorKind, Host, HostError, HostFacts, HostResult,
    KeptCopy, Network, Passthrough, Settings, SnapshotInfo, Verb,
};

/// The container path unless `--lxc-path` / `PHOENIX_LXC_PATH` names another.
pub const DEFAULT_LXC_PATH: &str = "/var/lib/lxc";
/// Where Proxmox-style template names are looked up as files first.
pub const DEFAULT_VZTMPL_DIR: &str = "/var/lib/vz/template/cache";
/// `PATH` inside a CT for `exec`.
const GUEST_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How CTs reach the network.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkMode {
    /// A veth on the bridge the node's `network_config` names (the bridge must exist).
    Config,
    /// The host's own network namespace: CTs reach what the host reaches (test hosts).
    Host,
}

impl NetworkMode {
    pub fn name(self) -> &'static str {
        match self {
            NetworkMode::Config => "config",
            NetworkMode::Host => "host",
        }
    }
    pub fn parse(s: &str) -> Result<NetworkMode, String> {
        <NetworkMode as clap::ValueEnum>::from_str(s, false).map_err(|_| {
            format!("unknown LXC network mode `{s}` (PHOENIX_LXC_NETWORK): config or host")
        })
    }
}

/// Where and how the `lxc` backend works.
#[derive(Clone, Debug)]
pub struct LxcOptions {
    pub path: PathBuf,
    pub network: NetworkMode,
    /// Debootstrapped OS trees (`PHOENIX_LXC_CACHE`, default `<path>/.phoenix-cache`).
    pub cache: PathBuf,
    /// Package mirrors (`PHOENIX_LXC_MIRROR` for Debian, `PHOENIX_LXC_UBUNTU_MIRROR`).
    pub mirrors: template::Mirrors,
    pub vztmpl_dir: PathBuf,
    /// phoenix's state directory (the `pct` link for hooks lives in it).
    pub state_dir: PathBuf,
}

impl LxcOptions {
    /// From the environment (`PHOENIX_LXC_PATH`, `_NETWORK`, `_CACHE`, `_MIRROR`,
    /// `_UBUNTU_MIRROR`, `_TEMPLATES`): how the `pct` front-end of a hook finds the
    /// build's host.
    pub fn from_env(state_dir: &Path) -> Result<LxcOptions, String> {
        let path = var("PHOENIX_LXC_PATH").unwrap_or(DEFAULT_LXC_PATH.into());
        let network = match var("PHOENIX_LXC_NETWORK") {
            Some(n) => NetworkMode::parse(&n)?,
            None => NetworkMode::Config,
        };
        Ok(LxcOptions::new(state_dir, Path::new(&path), network))
    }

    /// The container path and network mode as given; the rest from the environment.
    pub fn new(state_dir: &Path, path: &Path, network: NetworkMode) -> LxcOptions {
        LxcOptions {
            cache: var("PHOENIX_LXC_CACHE")
                .map(PathBuf::from)
                .unwrap_or_else(|| path.join(".phoenix-cache")),
            mirrors: template::Mirrors {
                debian: var("PHOENIX_LXC_MIRROR").unwrap_or(template::DEFAULT_MIRROR.into()),
                ubuntu: var("PHOENIX_LXC_UBUNTU_MIRROR")
                    .unwrap_or(template::DEFAULT_UBUNTU_MIRROR.into()),
            },
            vztmpl_dir: var("PHOENIX_LXC_TEMPLATES")
                .map(PathBuf::from)
                .unwrap_or(DEFAULT_VZTMPL_DIR.into()),
            path: path.to_path_buf(),
            network,
            state_dir: state_dir.to_path_buf(),
        }
    }
}

fn var(k: &str) -> Option<String> {
    std::env::var(k).ok().filter(|v| !v.is_empty())
}

pub struct LxcHost {
    opts: LxcOptions,
    store: Store,
    cgroup2: bool,
    /// `exec` passes this process's stdin on (the `pct` front-end); phoenix's own
    /// probes give the CT none.
    pass_stdin: bool,
    pct_dir: OnceLock<Option<PathBuf>>,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> HostError {
    HostError::failed(format!("cannot {what} {}: {e}", path.display()))
}

/// `lxc-snapshot`'s time format.
fn lxc_ts(t: u64) -> String {
    let s = crate::os::utc(t);
    // "2026-11-23 10:00:00" → "2026:11:23 10:00:00"
    s.replacen('-', ":", 2)
}

impl LxcHost {
    /// Opens the container path (creating it) and tells its store and the host's cgroups.
    pub fn open(opts: LxcOptions) -> Result<LxcHost, String> {
        for tool in ["lxc-start", "lxc-attach", "lxc-ls"] {
            if !on_path(tool) {
                return Err(format!(
                    "the lxc backend needs LXC's tools and `{tool}` is not on PATH: install Debian's `lxc` package"
                ));
            }
        }
        fs::create_dir_all(&opts.path).map_err(|e| {
            format!(
                "cannot create the container path {}: {e}",
                opts.path.display()
            )
        })?;
        let store = Store::detect(&opts.path)?;
        if store == Store::Btrfs && !on_path("btrfs") {
            return Err(format!(
                "{} is on btrfs and `btrfs` is not on PATH: install Debian's `btrfs-progs` package",
                opts.path.display()
            ));
        }
        Ok(LxcHost {
            cgroup2: Path::new("/sys/fs/cgroup/cgroup.controllers").exists(),
            store,
            opts,
            pass_stdin: false,
            pct_dir: OnceLock::new(),
        })
    }

    pub fn from_env(state_dir: &Path) -> Result<LxcHost, String> {
        LxcHost::open(LxcOptions::from_env(state_dir)?)
    }

    /// `exec` hands this process's stdin to the command (for `pct exec`).
    pub fn passing_stdin(mut self) -> LxcHost {
        self.pass_stdin = true;
        self
    }

    pub fn store(&self) -> Store {
        self.store
    }

    fn dir(&self, ctid: Ctid) -> PathBuf {
        self.opts.path.join(ctid.to_string())
    }
    fn meta_path(&self, ctid: Ctid) -> PathBuf {
        self.dir(ctid).join("phoenix.json")
    }
    fn rootfs(&self, ctid: Ctid) -> PathBuf {
        self.dir(ctid).join("rootfs")
    }
    fn snap_dir(&self, ctid: Ctid, name: &str) -> PathBuf {
        self.dir(ctid).join("snaps").join(name)
    }

    /// The CT's record, `NotFound` when there is no such CT, `Invalid` when it is not
    /// phoenix's (phoenix changes only its own).
    fn meta(&self, ctid: Ctid) -> HostResult<Meta> {
        let p = self.meta_path(ctid);
        if p.symlink_metadata().is_err() {
            return Err(if self.dir(ctid).join("config").exists() {
                HostError::new(
                    ErrorKind::Invalid,
                    format!(
                        "CT {ctid} is an LXC container phoenix did not make ({} has no phoenix.json): phoenix leaves it alone",
                        self.dir(ctid).display()
                    ),
                )
            } else {
                self.not_found(ctid)
            });
        }
        Meta::read(&p)
    }

    /// Takes the CT's lock for one change.
    fn lock(&self, ctid: Ctid) -> HostResult<File> {
        let p = self.dir(ctid).join(".lock");
        let f = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&p)
            .map_err(|e| io_err("open", &p, e))?;
        f.lock().map_err(|e| io_err("lock", &p, e))?;
        Ok(f)
    }

    /// Writes the record and the LXC config made from it.
    fn save(&self, ctid: Ctid, meta: &Meta) -> HostResult<()> {
        meta.write(&self.meta_path(ctid))?;
        let config = self.config(ctid, meta, &self.rootfs(ctid));
        let p = self.dir(ctid).join("config");
        crate::os::write_atomic(&p, config.as_bytes()).map_err(|e| io_err("write", &p, e))
    }

    /// LXC's config for a CT with this record and root filesystem on this host.
    fn config(&self, ctid: Ctid, meta: &Meta, rootfs: &Path) -> String {
        conf::render(
            meta,
            &Target {
                name: &ctid.to_string(),
                rootfs,
                store: self.store,
                cgroup2: self.cgroup2,
                network: self.opts.network,
                idmap: self.idmap().ok(),
            },
        )
    }

    /// A change to a stopped-or-running CT's record under its lock.
    fn change<T>(&self, ctid: Ctid, f: impl FnOnce(&mut Meta) -> HostResult<T>) -> HostResult<T> {
        let _lock = self.lock_existing(ctid)?;
        let mut meta = self.meta(ctid)?;
        if let Some(l) = &meta.lock {
            return Err(text::locked(l));
        }
        let out = f(&mut meta)?;
        self.save(ctid, &meta)?;
        Ok(out)
    }

    /// For a change of snapshot `name`: CT `ctid`'s lock held, its record (refused if a
    /// task's lock is on it), the snapshot's directory and its record.
    fn unlocked_snapshot(&self, ctid: Ctid, name: &str) -> HostResult<(File, Meta, PathBuf, Meta)> {
        let lock = self.lock_existing(ctid)?;
        let meta = self.meta(ctid)?;
        if let Some(l) = &meta.lock {
            return Err(text::locked(l));
        }
        let dir = self.snap_dir(ctid, name);
        let snap =
            Meta::read(&dir.join("phoenix.json")).map_err(|_| text::snapshot_missing(name))?;
        Ok((lock, meta, dir, snap))
    }

    fn lock_existing(&self, ctid: Ctid) -> HostResult<File> {
        if !self.dir(ctid).is_dir() {
            return Err(self.not_found(ctid));
        }
        self.lock(ctid)
    }

    /// Root's subordinate uid and gid ranges (`/etc/subuid`, `/etc/subgid`), for the id
    /// map of unprivileged CTs.
    fn idmap(&self) -> Result<(u64, u64), String> {
        let first = |file: &str| -> Result<u64, String> {
            let text = fs::read_to_string(file).unwrap_or_default();
            text.lines()
                .filter_map(|l| {
                    let mut f = l.split(':');
                    let (who, start, count) = (f.next()?, f.next()?, f.next()?);
                    let (start, count) = (start.parse::<u64>().ok()?, count.parse::<u64>().ok()?);
                    (who == "root" && count >= 65536).then_some(start)
                })
                .next()
                .ok_or_else(|| {
                    format!(
                        "unprivileged CTs need subordinate ids for root and {file} has no `root:<start>:65536` line: add one (e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 root`), or set the node's `unprivileged` to false"
                    )
                })
        };
        Ok((first("/etc/subuid")?, first("/etc/subgid")?))
    }

    /// `<tool> -n <ctid> -P <path>`: in a process group of its own when phoenix drives it
    /// ([`crate::os::host_command`]); in the caller's when it is `pct`'s front end passing
    /// its stdin (an admin at a terminal reads and interrupts it as usual).
    fn lxc(&self, tool: &str, ctid: Ctid) -> Command {
        let mut cmd = if self.pass_stdin {
            Command::new(tool)
        } else {
            crate::os::host_command(tool)
        };
        cmd.arg("-n")
            .arg(ctid.to_string())
            .arg("-P")
            .arg(&self.opts.path);
        cmd
    }

    fn is_running(&self, ctid: Ctid) -> HostResult<bool> {
        let out = self
            .lxc("lxc-info", ctid)
            .args(["-s", "-H"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| HostError::failed(format!("cannot run lxc-info: {e}")))?;
        Ok(String::from_utf8_lossy(&out.stdout).trim() == "RUNNING")
    }

    fn running_set(&self) -> HostResult<Vec<Ctid>> {
        let out = crate::os::host_command("lxc-ls")
            .arg("-P")
            .arg(&self.opts.path)
            .args(["--running", "-1"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| HostError::failed(format!("cannot run lxc-ls: {e}")))?;
        if !out.status.success() {
            return Err(HostError::failed(format!(
                "lxc-ls failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
        Ok(String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect())
    }

    fn snapshots(&self, ctid: Ctid) -> Vec<SnapshotInfo> {
        let managed = self.meta_path(ctid).exists();
        let mut out = Vec::new();
        let Ok(entries) = fs::read_dir(self.dir(ctid).join("snaps")) else {
            return out;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let dir = e.path();
            match Meta::read(&dir.join("phoenix.json")) {
                Ok(m) => {
                    let s = m.snapshot.unwrap_or_default();
                    out.push(SnapshotInfo {
                        name,
                        description: s.description,
                        snaptime: s.snaptime,
                        parent: m.parent_snapshot,
                    })
                }
                // In a CT of phoenix's, a snapshot without its record is none (being
                // taken or deleted); in another, an `lxc-snapshot` of its own.
                Err(_) if managed => {}
                Err(_) => out.push(SnapshotInfo {
                    name,
                    description: fs::read_to_string(dir.join("comment")).unwrap_or_default(),
                    snaptime: 0,
                    parent: None,
                }),
            }
        }
        out.sort_by(|a, b| (a.snaptime, &a.name).cmp(&(b.snaptime, &b.name)));
        out
    }

    fn info(&self, ctid: Ctid, running: bool) -> HostResult<Option<CtInfo>> {
        let dir = self.dir(ctid);
        if !dir.join("config").exists() && !self.meta_path(ctid).exists() {
            return Ok(None);
        }
        let meta = match self.meta(ctid) {
            Ok(m) => m,
            Err(e) if e.kind == ErrorKind::Invalid => {
                let config = fs::read_to_string(dir.join("config")).unwrap_or_default();
                return Ok(Some(CtInfo {
                    ctid,
                    running,
                    lock: None,
                    template: false,
                    unprivileged: config.contains("lxc.idmap"),
                    settings: Settings {
                        hostname: conf::foreign_hostname(&config),
                        ..Settings::default()
                    },
                    disk_gb: None,
                    passthrough: Passthrough::default(),
                    snapshots: self.snapshots(ctid),
                    parent_snapshot: None,
                    root_volume: None,
                    unreadable: None,
                    node: None,
                    storage: None,
                }));
            }
            Err(e) => return Err(e),
        };
        Ok(Some(CtInfo {
            ctid,
            running,
            lock: meta.lock.clone(),
            template: false,
            unprivileged: meta.unprivileged,
            settings: meta.settings,
            disk_gb: meta.disk_gb,
            passthrough: meta.passthrough,
            snapshots: self.snapshots(ctid),
            parent_snapshot: meta.parent_snapshot,
            root_volume: None,
            unreadable: None,
            node: None,
            storage: None,
        }))
    }

    /// A new CT, made in `.<ctid>.new` beside the others and renamed into place when
    /// `fill` has made its root filesystem and its record is written: a CT is there whole
    /// or not at all, and what an interrupted run left half-made is removed here.
    /// A kept copy's directory, which must be one of `<lxc-path>/.phoenix-kept/`.
    fn kept_dir(&self, location: &str) -> HostResult<PathBuf> {
        let dir = PathBuf::from(location);
        let base = self.opts.path.join(".phoenix-kept");
        if dir.parent().and_then(Path::parent) != Some(base.as_path())
            || !dir.join("phoenix.json").is_file()
        {
            return Err(HostError::new(
                ErrorKind::NotFound,
                format!(
                    "{location} is not a generation kept under {}",
                    base.display()
                ),
            ));
        }
        Ok(dir)
    }

    fn provision(
        &self,
        ctid: Ctid,
        mut meta: Meta,
        fill: impl FnOnce(&Path) -> HostResult<()>,
    ) -> HostResult<()> {
        let dir = self.dir(ctid);
        if dir.symlink_metadata().is_ok() {
            return Err(text::already_exists(ctid, &hostname()));
        }
        let staging = self.opts.path.join(format!(".{ctid}.new"));
        let discard = || {
            let _ = self.store.remove(&staging.join("rootfs"));
            let _ = fs::remove_dir_all(&staging);
        };
        discard();
        fs::create_dir(&staging).map_err(|e| io_err("create", &staging, e))?;
        let made = fill(&staging.join("rootfs")).and_then(|()| {
            if let Some(net) = meta.settings.network.as_mut() {
                net.mac.get_or_insert_with(|| new_mac(ctid));
            }
            meta.lock = None;
            meta.write(&staging.join("phoenix.json"))?;
            fs::rename(&staging, &dir).map_err(|e| io_err("rename into place", &staging, e))
        });
        if made.is_err() {
            discard();
            return made;
        }
        let _lock = self.lock(ctid)?;
        self.save(ctid, &meta)
    }

    /// Runs `lxc-attach` with the CT's clean environment; stdout and stderr into `out`.
    fn attach(
        &self,
        ctid: Ctid,
        argv: &[&std::ffi::OsStr],
        stdin: Stdio,
        out: &mut dyn Write,
    ) -> HostResult<i32> {
        let (mut reader, writer) =
            std::io::pipe().map_err(|e| HostError::failed(format!("cannot make a pipe: {e}")))?;
        let writer2 = writer
            .try_clone()
            .map_err(|e| HostError::failed(format!("cannot make a pipe: {e}")))?;
        let mut cmd = self.lxc("lxc-attach", ctid);
        cmd.args(["--clear-env", "--keep-var", "TERM", "--set-var"])
            .arg(format!("PATH={GUEST_PATH}"))
            .args(["--set-var", "HOME=/root", "--"])
            .args(argv)
            .stdin(stdin)
            .stdout(writer)
            .stderr(writer2);
        let mut child = cmd
            .spawn()
            .map_err(|e| HostError::failed(format!("cannot run lxc-attach: {e}")))?;
        drop(cmd);
        let mut buf = [0u8; 8192];
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if out.write_all(&buf[..n]).is_err() {
                        // The reader went away (a closed pipe): keep draining so the
                        // command is not stopped by a full pipe.
                        continue;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(HostError::failed(format!("lxc-attach output: {e}"))),
            }
        }
        let status = child
            .wait()
            .map_err(|e| HostError::failed(format!("lxc-attach: {e}")))?;
        use std::os::unix::process::ExitStatusExt;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }

    fn need_running(&self, ctid: Ctid, err: HostError) -> HostResult<()> {
        self.meta(ctid)?;
        if self.is_running(ctid)? {
            Ok(())
        } else {
            Err(err)
        }
    }
}

/// The host's name, as Proxmox names the node in its messages.
fn hostname() -> String {
    fs::read_to_string("/etc/hostname")
        .ok()
        .and_then(|h| h.split('.').next().map(|s| s.trim().to_string()))
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

fn on_path(tool: &str) -> bool {
    use std::os::unix::fs::PermissionsExt;
    crate::os::find_on_path(tool)
        .and_then(|p| p.metadata().ok())
        .is_some_and(|m| m.permissions().mode() & 0o111 != 0)
}

impl Host for LxcHost {
    fn name(&self) -> &'static str {
        "lxc"
    }

    fn lock_path(&self) -> Option<PathBuf> {
        Some(self.opts.path.join(".phoenix.lock"))
    }

    fn describe(&self) -> String {
        format!("at {}", self.opts.path.display())
    }

    fn speaks_pct(&self) -> bool {
        false
    }

    /// A btrfs rollback writes a new root filesystem from the snapshot: the others stay.
    fn rollback_keeps_newer(&self) -> bool {
        true
    }

    fn enter_hint(&self, ctid: Ctid) -> String {
        format!("lxc-attach -P {} -n {ctid}", self.opts.path.display())
    }

    fn inventory(&self) -> HostResult<BTreeMap<Ctid, CtInfo>> {
        let running = self.running_set()?;
        let mut out = BTreeMap::new();
        let entries =
            fs::read_dir(&self.opts.path).map_err(|e| io_err("read", &self.opts.path, e))?;
        for e in entries.flatten() {
            let Some(ctid) = e.file_name().to_str().and_then(|n| n.parse::<Ctid>().ok()) else {
                continue;
            };
            if let Some(info) = self.info(ctid, running.contains(&ctid))? {
                out.insert(ctid, info);
            }
        }
        Ok(out)
    }

    fn ct(&self, ctid: Ctid) -> HostResult<Option<CtInfo>> {
        if !self.dir(ctid).is_dir() {
            return Ok(None);
        }
        let running = self.is_running(ctid)?;
        self.info(ctid, running)
    }

    fn config_file(&self, ctid: Ctid) -> HostResult<Option<String>> {
        let p = self.dir(ctid).join("config");
        crate::os::read_if_any(&p, 1 << 20)
            .map(|b| b.map(|b| String::from_utf8_lossy(&b).into_owned()))
            .map_err(|e| HostError::failed(format!("cannot read {e}")))
    }

    fn not_found(&self, ctid: Ctid) -> HostError {
        HostError::new(
            ErrorKind::NotFound,
            format!(
                "CT {ctid} does not exist (no LXC container {})",
                self.dir(ctid).display()
            ),
        )
    }

    fn facts(&self) -> HostResult<HostFacts> {
        HostFacts::read(Path::new("/")).map_err(HostError::failed)
    }

    fn check_storage(&self, _storage: &str, ostemplate: Option<&str>) -> Vec<String> {
        ostemplate
            .and_then(|t| template::resolve(t, &self.opts.vztmpl_dir).err())
            .into_iter()
            .collect()
    }

    fn check_runtime(&self, unprivileged: bool, network: Option<&Network>) -> Vec<String> {
        let mut problems = Vec::new();
        if unprivileged {
            problems.extend(self.idmap().err());
            if self.opts.network == NetworkMode::Host {
                problems.push("an unprivileged CT cannot share the host's network (--lxc-network host): the kernel lets a user namespace mount /sys only with a network namespace of its own. Use --lxc-network config, or set the node's `unprivileged` to false".into());
            }
        }
        if let (Some(n), NetworkMode::Config) = (network, self.opts.network) {
            match net::read(&n.bridge) {
                Ok(Some(bridge)) => problems.extend(net::problems(&bridge, n, net::forwarding())),
                Ok(None) => problems.push(format!(
                    "network_config names bridge `{}` and this host has no such bridge: make it with an address the CTs route through (`scripts/lxc-host-setup`, or the README's bridge recipe), or run with --lxc-network host to share the host's network",
                    n.bridge
                )),
                Err(e) => problems.push(e),
            }
        }
        problems
    }

    fn create(&self, ctid: Ctid, spec: &CreateSpec) -> HostResult<()> {
        let source = template::resolve(&spec.ostemplate, &self.opts.vztmpl_dir)
            .map_err(|m| HostError::new(ErrorKind::Invalid, m))?;
        let idmap = spec
            .unprivileged
            .then(|| self.idmap())
            .transpose()
            .map_err(|m| HostError::new(ErrorKind::Invalid, m))?;
        if let Some(m) = conf::unsupported(&spec.settings) {
            return Err(HostError::new(ErrorKind::Invalid, m));
        }
        let cache = match &source {
            template::Source::Debootstrap(release) => Some(template::cached(
                &self.opts.cache,
                *release,
                &self.opts.mirrors,
            )?),
            template::Source::Tarball(_) => None,
        };
        let meta = Meta {
            settings: spec.settings.clone(),
            unprivileged: spec.unprivileged,
            disk_gb: Some(spec.disk_gb),
            ..Meta::default()
        };
        self.provision(ctid, meta, |rootfs| {
            match (&source, &cache) {
                (_, Some(tree)) => self.store.copy(tree, rootfs, false)?,
                (template::Source::Tarball(t), None) => {
                    self.store.create(rootfs)?;
                    template::extract(t, rootfs)?;
                }
                (template::Source::Debootstrap(_), None) => unreachable!("made above"),
            }
            match idmap {
                Some((uid, gid)) => shift_ids(rootfs, uid, gid),
                None => Ok(()),
            }
        })
    }

    fn keeps_copies(&self) -> bool {
        true
    }

    /// The root filesystem as a read-only snapshot subvolume (no copy on btrfs) with the
    /// CT's record, under `<lxc-path>/.phoenix-kept/<ctid>/<time>/`; `storage` is
    /// Proxmox's and means nothing here.
    fn keep(&self, ctid: Ctid, _storage: &str, note: &str) -> HostResult<KeptCopy> {
        let _lock = self.lock_existing(ctid)?;
        let meta = self.meta(ctid)?;
        if self.is_running(ctid)? {
            return Err(HostError::new(
                ErrorKind::Running,
                format!("CT {ctid} runs; phoenix keeps a stopped CT"),
            ));
        }
        let base = self.opts.path.join(".phoenix-kept").join(ctid.to_string());
        crate::os::create_dir_all(&base).map_err(|e| io_err("create", &base, e))?;
        let mut t = crate::os::now_secs();
        let dir = loop {
            let d = base.join(t.to_string());
            if d.symlink_metadata().is_err() {
                break d;
            }
            t += 1;
        };
        let partial = base.join(format!(".{t}.partial"));
        let _ = self.store.remove(&partial.join("rootfs"));
        let _ = fs::remove_dir_all(&partial);
        fs::create_dir(&partial).map_err(|e| io_err("create", &partial, e))?;
        let made = self
            .store
            .copy(&self.rootfs(ctid), &partial.join("rootfs"), true)
            .and_then(|()| {
                let kept = Meta {
                    lock: None,
                    snapshot: None,
                    ..meta
                };
                kept.write(&partial.join("phoenix.json"))?;
                let note_path = partial.join("note");
                fs::write(&note_path, note).map_err(|e| io_err("write", &note_path, e))?;
                // Whole or not at all.
                fs::rename(&partial, &dir).map_err(|e| io_err("rename into place", &partial, e))
            });
        if made.is_err() {
            let _ = self.store.remove(&partial.join("rootfs"));
            let _ = fs::remove_dir_all(&partial);
        }
        made?;
        Ok(KeptCopy {
            location: dir.display().to_string(),
            node: None,
            size_bytes: None,
        })
    }

    /// CT `ctid` again from a kept copy: the CT of that id, if any, destroyed first; a
    /// writable snapshot of the kept root filesystem, the kept record, no snapshots.
    fn restore(&self, ctid: Ctid, kept: &KeptCopy, _storage: &str) -> HostResult<()> {
        let dir = self.kept_dir(&kept.location)?;
        let mut meta = Meta::read(&dir.join("phoenix.json"))?;
        meta.lock = None;
        meta.snapshot = None;
        meta.parent_snapshot = None;
        if self.dir(ctid).symlink_metadata().is_ok() {
            self.destroy(ctid)?;
        }
        self.provision(ctid, meta, |rootfs| {
            self.store.copy(&dir.join("rootfs"), rootfs, false)
        })
    }

    fn forget(&self, kept: &KeptCopy) -> HostResult<()> {
        let dir = self.kept_dir(&kept.location)?;
        self.store.remove(&dir.join("rootfs"))?;
        fs::remove_dir_all(&dir).map_err(|e| io_err("remove", &dir, e))
    }

    fn clone_ct(&self, spec: &CloneSpec) -> HostResult<()> {
        let snap = self.snap_dir(spec.source, &spec.snapshot);
        let src_meta = {
            let _lock = self.lock_existing(spec.source)?;
            self.meta(spec.source)?;
            Meta::read(&snap.join("phoenix.json"))
                .map_err(|_| text::snapshot_missing(&spec.snapshot))?
        };
        let mut meta = Meta {
            snapshot: None,
            parent_snapshot: None,
            lock: None,
            ..src_meta
        };
        meta.settings.hostname = Some(spec.hostname.clone());
        if let Some(net) = meta.settings.network.as_mut() {
            net.mac = None;
        }
        self.provision(spec.target, meta, |rootfs| {
            self.store.copy(&snap.join("rootfs"), rootfs, false)
        })
    }

    fn set(&self, ctid: Ctid, settings: &Settings) -> HostResult<()> {
        if let Some(m) = conf::unsupported(settings) {
            return Err(HostError::new(ErrorKind::Invalid, m));
        }
        fn take<T: Clone>(have: &mut Option<T>, want: &Option<T>) {
            if want.is_some() {
                have.clone_from(want);
            }
        }
        self.change(ctid, |meta| {
            let s = &mut meta.settings;
            take(&mut s.hostname, &settings.hostname);
            take(&mut s.memory_mb, &settings.memory_mb);
            take(&mut s.cores, &settings.cores);
            take(&mut s.onboot, &settings.onboot);
            take(&mut s.features, &settings.features);
            take(&mut s.managed, &settings.managed);
            take(&mut s.store_template, &settings.store_template);
            take(&mut s.description, &settings.description);
            if let Some(net) = &settings.network {
                let mut net = net.clone();
                if net.mac.is_none() {
                    // A MAC left open keeps the one the CT has.
                    net.mac = s
                        .network
                        .as_ref()
                        .and_then(|n| n.mac.clone())
                        .or_else(|| Some(new_mac(ctid)));
                }
                s.network = Some(net);
            }
            Ok(())
        })
    }

    fn resize(&self, ctid: Ctid, disk_gb: u64) -> HostResult<()> {
        self.change(ctid, |meta| {
            if meta.disk_gb.is_some_and(|have| disk_gb < have) {
                return Err(text::shrink());
            }
            meta.disk_gb = Some(disk_gb);
            Ok(())
        })
    }

    fn set_devices(&self, ctid: Ctid, devices: &Passthrough) -> HostResult<()> {
        self.change(ctid, |meta| {
            meta.passthrough = devices.clone();
            Ok(())
        })
    }

    fn start(&self, ctid: Ctid) -> HostResult<()> {
        let _lock = self.lock_existing(ctid)?;
        let meta = self.meta(ctid)?;
        if let Some(l) = &meta.lock {
            return Err(text::locked(l));
        }
        if self.is_running(ctid)? {
            return Err(text::already_running(ctid));
        }
        // As Proxmox at each start: the config and the guest's own files from the record.
        self.save(ctid, &meta)?;
        let resolv = conf::resolv_conf(
            &fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
            fs::read_to_string("/run/systemd/resolve/resolv.conf")
                .ok()
                .as_deref(),
            self.opts.network == NetworkMode::Config,
        );
        conf::write_guest_files(
            &self.rootfs(ctid),
            &meta,
            self.opts.network,
            resolv.as_deref(),
        )?;
        let log = self.dir(ctid).join("lxc.log");
        // This start's account only.
        let _ = fs::remove_file(&log);
        let out = self
            .lxc("lxc-start", ctid)
            .arg("-o")
            .arg(&log)
            .args(["-l", "WARN"])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| HostError::failed(format!("cannot run lxc-start: {e}")))?;
        if out.status.success() {
            return Ok(());
        }
        // LXC's own account: its ERROR lines, the first ones say why.
        let tail: Vec<String> = fs::read_to_string(&log)
            .unwrap_or_default()
            .lines()
            .filter(|l| l.contains(" ERROR "))
            .take(4)
            .map(str::to_string)
            .collect();
        Err(HostError::failed(format!(
            "lxc-start {ctid} failed: {}{}",
            String::from_utf8_lossy(&out.stderr).trim(),
            if tail.is_empty() {
                String::new()
            } else {
                format!("\n{} (its errors):\n{}", log.display(), tail.join("\n"))
            }
        )))
    }

    fn shutdown(&self, ctid: Ctid, timeout_s: u64) -> HostResult<()> {
        self.need_running(ctid, text::not_running(ctid))?;
        store::run(
            self.lxc("lxc-stop", ctid)
                .arg("-t")
                .arg(timeout_s.to_string()),
        )
    }

    fn stop(&self, ctid: Ctid) -> HostResult<()> {
        self.need_running(ctid, text::not_running(ctid))?;
        store::run(self.lxc("lxc-stop", ctid).arg("-k"))
    }

    fn exec(&self, ctid: Ctid, argv: &[String], out: &mut dyn Write) -> HostResult<i32> {
        self.need_running(ctid, text::exec_not_running(ctid))?;
        let args: Vec<&std::ffi::OsStr> = argv.iter().map(|a| a.as_ref()).collect();
        let stdin = if self.pass_stdin {
            Stdio::inherit()
        } else {
            Stdio::null()
        };
        self.attach(ctid, &args, stdin, out)
    }

    fn push(&self, ctid: Ctid, local: &Path, dest: &str, perms: u32) -> HostResult<()> {
        self.need_running(ctid, text::push_not_running())?;
        let file = File::open(local).map_err(|e| io_err("open", local, e))?;
        let mode = format!("{perms:o}");
        // The script is fixed; the path and mode are its arguments, never its text.
        let argv: [&std::ffi::OsStr; 6] = [
            "/bin/sh".as_ref(),
            "-c".as_ref(),
            r#"cat > "$1" && chmod "$2" "$1""#.as_ref(),
            "phoenix-push".as_ref(),
            dest.as_ref(),
            mode.as_ref(),
        ];
        let mut said = Vec::new();
        match self.attach(ctid, &argv, Stdio::from(file), &mut said)? {
            0 => Ok(()),
            code => Err(HostError::failed(format!(
                "cannot write {dest} in CT {ctid} (exit code {code}): {}",
                String::from_utf8_lossy(&said).trim()
            ))),
        }
    }

    fn pull(&self, ctid: Ctid, path: &str, local: &Path) -> HostResult<()> {
        self.need_running(ctid, text::pull_not_running())?;
        let mut data = Vec::new();
        let argv: [&std::ffi::OsStr; 3] = ["cat".as_ref(), "--".as_ref(), path.as_ref()];
        match self.attach(ctid, &argv, Stdio::null(), &mut data)? {
            0 => crate::os::write_atomic(local, &data).map_err(|e| io_err("write", local, e)),
            code => Err(HostError::failed(format!(
                "cannot read {path} in CT {ctid} (exit code {code}): {}",
                String::from_utf8_lossy(&data).trim()
            ))),
        }
    }

    fn snapshot(&self, ctid: Ctid, name: &str, description: &str) -> HostResult<()> {
        if let Some(e) = text::bad_snapshot_name(name) {
            return Err(e);
        }
        let _lock = self.lock_existing(ctid)?;
        let mut meta = self.meta(ctid)?;
        if let Some(l) = &meta.lock {
            return Err(text::locked(l));
        }
        let dir = self.snap_dir(ctid, name);
        if dir.symlink_metadata().is_ok() {
            return Err(text::snapshot_used(name));
        }
        meta.lock = Some("snapshot".into());
        self.save(ctid, &meta)?;
        let taken = (|| {
            fs::create_dir_all(&dir).map_err(|e| io_err("create", &dir, e))?;
            let snaptime = crate::os::now_secs();
            self.store
                .copy(&self.rootfs(ctid), &dir.join("rootfs"), true)?;
            let snap_meta = Meta {
                lock: None,
                snapshot: Some(SnapshotMeta {
                    description: description.to_string(),
                    snaptime,
                }),
                ..meta.clone()
            };
            let config = self.config(ctid, &snap_meta, &dir.join("rootfs"));
            let write = |file: &str, bytes: &[u8]| {
                let p = dir.join(file);
                crate::os::write_atomic(&p, bytes).map_err(|e| io_err("write", &p, e))
            };
            write("config", config.as_bytes())?;
            write("comment", description.as_bytes())?;
            write("ts", lxc_ts(snaptime).as_bytes())?;
            // Last: a snapshot without its record is not one.
            snap_meta.write(&dir.join("phoenix.json"))
        })();
        match taken {
            Ok(()) => meta.parent_snapshot = Some(name.to_string()),
            Err(_) => {
                let _ = self.store.remove(&dir.join("rootfs"));
                let _ = fs::remove_dir_all(&dir);
            }
        }
        meta.lock = None;
        self.save(ctid, &meta)?;
        taken
    }

    fn delete_snapshot(&self, ctid: Ctid, name: &str) -> HostResult<()> {
        let (_lock, mut meta, dir, gone) = self.unlocked_snapshot(ctid, name)?;
        // Its record goes first: from then on it is no snapshot, whatever else remains.
        let _ = fs::remove_file(dir.join("phoenix.json"));
        self.store.remove(&dir.join("rootfs"))?;
        fs::remove_dir_all(&dir).map_err(|e| io_err("remove", &dir, e))?;
        // What descended from it now descends from its parent, as on Proxmox.
        for s in self.snapshots(ctid) {
            if s.parent.as_deref() == Some(name) {
                let p = self.snap_dir(ctid, &s.name).join("phoenix.json");
                let mut m = Meta::read(&p)?;
                m.parent_snapshot.clone_from(&gone.parent_snapshot);
                m.write(&p)?;
            }
        }
        if meta.parent_snapshot.as_deref() == Some(name) {
            meta.parent_snapshot = gone.parent_snapshot;
            self.save(ctid, &meta)?;
        }
        Ok(())
    }

    fn rollback(&self, ctid: Ctid, name: &str) -> HostResult<()> {
        let (_lock, mut meta, dir, snap) = self.unlocked_snapshot(ctid, name)?;
        if self.is_running(ctid)? {
            store::run(self.lxc("lxc-stop", ctid).arg("-k"))?;
        }
        meta.lock = Some("rollback".into());
        self.save(ctid, &meta)?;
        let rootfs = self.rootfs(ctid);
        self.store.remove(&rootfs)?;
        self.store.copy(&dir.join("rootfs"), &rootfs, false)?;
        let restored = Meta {
            snapshot: None,
            lock: None,
            parent_snapshot: Some(name.to_string()),
            ..snap
        };
        self.save(ctid, &restored)
    }

    fn destroy(&self, ctid: Ctid) -> HostResult<()> {
        let _lock = self.lock_existing(ctid)?;
        let mut meta = self.meta(ctid)?;
        if self.is_running(ctid)? {
            return Err(text::destroy_running(ctid));
        }
        // Marked first: an interrupted destroy leaves a CT that says so, not a
        // half-empty one that looks whole.
        meta.lock = Some("destroyed".into());
        meta.write(&self.meta_path(ctid))?;
        let snapshots = self.snapshots(ctid);
        // Records first: a snapshot whose files are half gone is no snapshot.
        for s in &snapshots {
            let _ = fs::remove_file(self.snap_dir(ctid, &s.name).join("phoenix.json"));
        }
        for s in &snapshots {
            self.store
                .remove(&self.snap_dir(ctid, &s.name).join("rootfs"))?;
        }
        self.store.remove(&self.rootfs(ctid))?;
        let dir = self.dir(ctid);
        fs::remove_dir_all(&dir).map_err(|e| io_err("remove", &dir, e))
    }

    fn unlock(&self, ctid: Ctid) -> HostResult<()> {
        let _lock = self.lock_existing(ctid)?;
        let mut meta = self.meta(ctid)?;
        if meta.lock.take().is_none() {
            return Err(text::no_lock());
        }
        self.save(ctid, &meta)
    }

    fn pct_dir(&self) -> Option<PathBuf> {
        self.pct_dir
            .get_or_init(|| crate::host::pct::link_into(&self.opts.state_dir.join("bin")))
            .clone()
    }

    fn hook_env(&self) -> Vec<(String, String)> {
        vec![
            ("PHOENIX_BACKEND".into(), "lxc".into()),
            (
                "PHOENIX_STATE_DIR".into(),
                self.opts.state_dir.display().to_string(),
            ),
            (
                "PHOENIX_LXC_PATH".into(),
                self.opts.path.display().to_string(),
            ),
            (
                "PHOENIX_LXC_NETWORK".into(),
                self.opts.network.name().into(),
            ),
            (
                "PHOENIX_LXC_CACHE".into(),
                self.opts.cache.display().to_string(),
            ),
            (
                "PHOENIX_LXC_MIRROR".into(),
                self.opts.mirrors.debian.clone(),
            ),
            (
                "PHOENIX_LXC_UBUNTU_MIRROR".into(),
                self.opts.mirrors.ubuntu.clone(),
            ),
            (
                "PHOENIX_LXC_TEMPLATES".into(),
                self.opts.vztmpl_dir.display().to_string(),
            ),
        ]
    }

    fn estimate_ms(&self, verb: Verb) -> u64 {
        match verb {
            Verb::Create => 5_000,
            Verb::Start | Verb::Shutdown => 1_000,
            Verb::Exec => 50,
            _ => 20,
        }
    }
}

/// Moves a root filesystem's owners into an unprivileged CT's id range: every inode's
/// uid and gid shifted by the map's start, once (a file with several hard links is met
/// once per link), its mode (which `chown` clears of set-id bits) put back.
fn shift_ids(root: &Path, uid: u64, gid: u64) -> HostResult<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let mut stack = vec![root.to_path_buf()];
    let mut linked = std::collections::HashSet::new();
    while let Some(p) = stack.pop() {
        let m = p.symlink_metadata().map_err(|e| io_err("read", &p, e))?;
        if !m.is_dir() && m.nlink() > 1 && !linked.insert((m.dev(), m.ino())) {
            continue;
        }
        let (u, g) = (m.uid() as u64 + uid, m.gid() as u64 + gid);
        std::os::unix::fs::lchown(&p, Some(u as u32), Some(g as u32))
            .map_err(|e| io_err("chown", &p, e))?;
        if !m.file_type().is_symlink() && m.mode() & 0o6000 != 0 {
            fs::set_permissions(&p, fs::Permissions::from_mode(m.mode() & 0o7777))
                .map_err(|e| io_err("chmod", &p, e))?;
        }
        if m.is_dir() {
            for e in fs::read_dir(&p).map_err(|e| io_err("read", &p, e))? {
                stack.push(e.map_err(|e| io_err("read", &p, e))?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn network_modes_parse() {
        assert_eq!(NetworkMode::parse("host"), Ok(NetworkMode::Host));
        assert_eq!(NetworkMode::parse("config"), Ok(NetworkMode::Config));
        assert!(NetworkMode::parse("bridge")
            .unwrap_err()
            .contains("config or host"));
    }

    #[test]
    fn ids_shift_once_per_inode_however_many_links_it_has() {
        use std::os::unix::fs::MetadataExt;
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: chown needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        fs::create_dir_all(root.join("usr/bin")).unwrap();
        fs::write(root.join("usr/bin/perl"), b"").unwrap();
        fs::hard_link(root.join("usr/bin/perl"), root.join("usr/bin/perl5.38.2")).unwrap();
        fs::write(root.join("usr/bin/ls"), b"").unwrap();
        shift_ids(&root, 100_000, 200_000).unwrap();
        for f in ["usr/bin/perl", "usr/bin/perl5.38.2", "usr/bin/ls", "usr"] {
            let m = fs::symlink_metadata(root.join(f)).unwrap();
            assert_eq!((m.uid(), m.gid()), (100_000, 200_000), "{f}");
        }
    }

    #[test]
    fn snapshot_times_are_lxc_snapshots() {
        assert_eq!(lxc_ts(0), "1970:01:01 00:00:00");
    }
}
