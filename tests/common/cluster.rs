//! A Proxmox cluster for tests of the `pve` backend over the API: the model served over
//! HTTPS by `pve-api-emulator`, and a real `sshd` on a loopback port whose `pct` is the
//! `pct-emulator` on the same tree, with a host key and a user key made by `ssh-keygen`.
//! phoenix reaches it as from a workstation: `--pve-url`, a pinned fingerprint, and
//! `PHOENIX_SSH`, a wrapper that gives `ssh` this cluster's configuration (port, key,
//! known_hosts) the way a user's `~/.ssh/config` would.
//!
//! Needs `cargo build --workspace` (both emulators) and `openssh-server` (`.ci/run`
//! installs it).
#![allow(dead_code)]

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const ROOT_PASSWORD: &str = "emulated-root-password-7c1e";
pub const TOKEN_ID: &str = "root@pam!phoenix";
pub const TOKEN_SECRET: &str = "5f1e2d3c-aaaa-4bbb-8ccc-0123456789ab";
/// A token with the least privileges the README names, and one without VM.Allocate.
pub const CI_TOKEN_ID: &str = "phoenix@pve!ci";
pub const CI_TOKEN_SECRET: &str = "0c1d2e3f-bbbb-4ccc-8ddd-ba9876543210";
pub const PRIVILEGES: &[&str] = &[
    "Sys.Audit",
    "VM.Audit",
    "VM.Allocate",
    "VM.Clone",
    "VM.Config.CPU",
    "VM.Config.Memory",
    "VM.Config.Network",
    "VM.Config.Disk",
    "VM.Config.Options",
    "VM.PowerMgmt",
    "VM.Snapshot",
    "VM.Snapshot.Rollback",
    "VM.Backup",
    "Datastore.Audit",
    "Datastore.AllocateSpace",
];

fn exe(name: &str) -> PathBuf {
    let phoenix = PathBuf::from(env!("CARGO_BIN_EXE_phoenix"));
    let exe = phoenix.with_file_name(name);
    assert!(
        exe.exists(),
        "{} is missing: build it with `cargo build --workspace`",
        exe.display()
    );
    exe
}

/// A free loopback port (taken and released; sshd binds it right after).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn wait_for_port(port: u16, what: &str) {
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{what} did not listen on 127.0.0.1:{port}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn keygen(path: &Path) {
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-C", "phoenix-test", "-f"])
        .arg(path)
        .status()
        .expect("ssh-keygen (openssh-client) is needed");
    assert!(st.success());
}

/// `sshd` on a loopback port, its remote `pct` the emulator on `root` for node `node`.
pub struct Sshd {
    /// `None` for a second handle on a node's sshd (the cluster's `sshd`).
    child: Option<Child>,
    pub dir: PathBuf,
    pub port: u16,
}

impl Sshd {
    pub fn start(dir: &Path, root: &Path, bin: &Path, node: &str) -> Sshd {
        Sshd::start_at(dir, root, root, bin, node, &[])
    }

    /// `files`: the node's own files (its `/`: host facts, OS templates), `root` the
    /// cluster's tree its `pct` acts on; `pct_env`: more of the remote environment (the
    /// `pct-emulator`'s knobs, `PVE_EMULATOR_TASK_LATENCY` …).
    pub fn start_at(
        dir: &Path,
        root: &Path,
        files: &Path,
        bin: &Path,
        node: &str,
        pct_env: &[(&str, &str)],
    ) -> Sshd {
        let sshd = Path::new("/usr/sbin/sshd");
        assert!(
            sshd.exists(),
            "/usr/sbin/sshd is missing: these tests run a real sshd (apt-get install openssh-server; .ci/run does)"
        );
        fs::create_dir_all(dir).unwrap();
        // sshd's privilege separation directory.
        let _ = fs::create_dir_all("/run/sshd");
        keygen(&dir.join("host_key"));
        let port = free_port();
        let path = format!("{}:/usr/local/bin:/usr/bin:/bin", bin.display());
        let more: String = pct_env.iter().map(|(k, v)| format!(" {k}={v}")).collect();
        let config = format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_key\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n\
             StrictModes no\nUsePAM no\nPidFile {d}/sshd.pid\nLogLevel ERROR\nMaxSessions 100\nMaxStartups 100\n\
             SetEnv PATH={path} PVE_EMULATOR_ROOT={r} PHOENIX_PVE_ROOT={f} PVE_EMULATOR_NODE={node}{more}\n",
            d = dir.display(),
            r = root.display(),
            f = files.display(),
        );
        fs::write(dir.join("sshd_config"), config).unwrap();
        let child = Command::new(sshd)
            .args(["-D", "-e", "-f"])
            .arg(dir.join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(fs::File::create(dir.join("sshd.log")).unwrap()))
            .spawn()
            .expect("start sshd");
        wait_for_port(port, "sshd");
        Sshd {
            child: Some(child),
            dir: dir.to_path_buf(),
            port,
        }
    }

    pub fn host_key(&self) -> String {
        let k = fs::read_to_string(self.dir.join("host_key.pub")).unwrap();
        k.split_whitespace().take(2).collect::<Vec<_>>().join(" ")
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The API emulator; it ends when its stdin closes (with this value).
pub struct Emulator {
    child: Child,
    pub url: String,
    pub fingerprint: String,
    pub ca: PathBuf,
}

impl Emulator {
    pub fn start(root: &Path, env: &[(&str, &str)]) -> Emulator {
        let mut cmd = Command::new(exe("pve-api-emulator"));
        cmd.env("PVE_EMULATOR_ROOT", root)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start pve-api-emulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&line)
            .unwrap_or_else(|e| panic!("pve-api-emulator said {line:?}: {e}"));
        Emulator {
            child,
            url: v["url"].as_str().unwrap().to_string(),
            fingerprint: v["fingerprint"].as_str().unwrap().to_string(),
            ca: PathBuf::from(v["ca"].as_str().unwrap()),
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A Proxmox cluster served by the API emulator, with SSH to each node: one node `pve`
/// ([`Cluster::start`]), or several sharing one `etc/pve` ([`Cluster::start_nodes`]).
pub struct Cluster {
    pub dir: PathBuf,
    /// The cluster's file tree.
    pub root: PathBuf,
    /// The node's `bin`: its `pct` is the `pct-emulator`.
    pub bin: PathBuf,
    pub emulator: Emulator,
    /// The first node's sshd.
    pub sshd: Sshd,
    /// Every node's sshd, by node (the first one is `sshd`'s twin: its port).
    pub node_sshd: Vec<(String, Sshd)>,
    /// `PHOENIX_SSH`: ssh with this cluster's port, key and known_hosts.
    pub ssh: PathBuf,
    /// The nodes, the first the one the URL reaches; empty for the single-node tree.
    pub nodes: Vec<String>,
}

/// The storages of [`Cluster::start_nodes`]: each node's `local` and `local-zfs`, and
/// `ceph`, an RBD pool every node shares.
pub const CLUSTER_STORAGE_CFG: &str = "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\nzfspool: local-zfs\n\tpool rpool/data\n\tsparse\n\tcontent images,rootdir\n\nrbd: ceph\n\tpool vm-pool\n\tcontent images,rootdir\n\tkrbd 1\n";

fn copy_gpu_facts(files: &Path) {
    let host = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/host");
    fs::create_dir_all(files.join("proc/driver/nvidia")).unwrap();
    fs::copy(
        host.join("proc-driver-nvidia-version.txt"),
        files.join("proc/driver/nvidia/version"),
    )
    .unwrap();
    fs::copy(host.join("proc-devices.txt"), files.join("proc/devices")).unwrap();
    fs::create_dir_all(files.join("dev")).unwrap();
    for n in [
        "nvidia0",
        "nvidia1",
        "nvidia-uvm",
        "nvidia-uvm-tools",
        "nvidiactl",
    ] {
        fs::write(files.join("dev").join(n), "").unwrap();
    }
}

/// A user's SSH set-up for these nodes: a key they accept, their host keys in
/// known_hosts, and `PHOENIX_SSH`, a wrapper giving `ssh` that configuration.
fn user_ssh(dir: &Path, nodes: &[&Sshd], port_in_config: Option<u16>) -> PathBuf {
    let user = dir.join("user");
    fs::create_dir_all(&user).unwrap();
    if !user.join("id_ed25519").exists() {
        keygen(&user.join("id_ed25519"));
    }
    let mut known = String::new();
    for s in nodes {
        fs::copy(user.join("id_ed25519.pub"), s.dir.join("authorized_keys")).unwrap();
        known.push_str(&format!("[127.0.0.1]:{} {}\n", s.port, s.host_key()));
    }
    fs::write(user.join("known_hosts"), known).unwrap();
    let port = port_in_config
        .map(|p| format!("  Port {p}\n"))
        .unwrap_or_default();
    fs::write(
        user.join("config"),
        format!(
            "Host *\n{port}  IdentityFile {u}/id_ed25519\n  IdentitiesOnly yes\n  UserKnownHostsFile {u}/known_hosts\n  GlobalKnownHostsFile /dev/null\n",
            u = user.display()
        ),
    )
    .unwrap();
    let ssh = user.join("ssh");
    fs::write(
        &ssh,
        format!("#!/bin/sh\nexec ssh -F {}/config \"$@\"\n", user.display()),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&ssh, fs::Permissions::from_mode(0o755)).unwrap();
    ssh
}

impl Cluster {
    /// A node laid out as the installer leaves it (the model's standard templates and
    /// storages, the GPU host facts of `tests/fixtures/host/`), with users and tokens.
    pub fn start(dir: &Path, env: &[(&str, &str)]) -> Cluster {
        let root = dir.join("pve");
        let bin = dir.join("node-bin");
        fs::create_dir_all(root.join("etc/pve/nodes/pve/lxc")).unwrap();
        fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(exe("pct-emulator"), bin.join("pct")).unwrap();
        copy_gpu_facts(&root);
        write_auth(&root, PRIVILEGES);
        let emulator = Emulator::start(&root, env);
        let sshd = Sshd::start(&dir.join("sshd"), &root, &bin, "pve");
        let ssh = user_ssh(dir, &[&sshd], Some(sshd.port));
        Cluster {
            dir: dir.to_path_buf(),
            root,
            bin,
            emulator,
            sshd,
            node_sshd: Vec::new(),
            ssh,
            nodes: Vec::new(),
        }
    }

    /// A cluster of `nodes` sharing one `etc/pve` (`.members`), each with its own
    /// `local` and `local-zfs` and an sshd of its own, and `ceph` shared
    /// ([`CLUSTER_STORAGE_CFG`]); the first node is the one the URL reaches. `gpu`: the
    /// nodes with NVIDIA GPUs and driver (the others have none).
    pub fn start_nodes(dir: &Path, nodes: &[&str], gpu: &[&str], env: &[(&str, &str)]) -> Cluster {
        Cluster::start_nodes_with(dir, nodes, gpu, env, &[])
    }

    /// [`Cluster::start_nodes`], with `pct_env` in the environment of every node's `pct`
    /// over SSH (the API emulator's knobs do not reach it).
    pub fn start_nodes_with(
        dir: &Path,
        nodes: &[&str],
        gpu: &[&str],
        env: &[(&str, &str)],
        pct_env: &[(&str, &str)],
    ) -> Cluster {
        let root = dir.join("pve");
        let bin = dir.join("node-bin");
        fs::create_dir_all(root.join("etc/pve")).unwrap();
        fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(exe("pct-emulator"), bin.join("pct")).unwrap();
        phoenix::host::sim::cluster::Members::new("emulated", nodes, "127.0.0.1")
            .write(&root)
            .unwrap();
        fs::write(root.join("etc/pve/storage.cfg"), CLUSTER_STORAGE_CFG).unwrap();
        for n in nodes {
            let files = root.join("local").join(n);
            fs::create_dir_all(root.join("etc/pve/nodes").join(n).join("lxc")).unwrap();
            if gpu.contains(n) {
                copy_gpu_facts(&files);
            } else {
                fs::create_dir_all(files.join("proc")).unwrap();
                fs::write(
                    files.join("proc/devices"),
                    "Character devices:\n  1 mem\n  4 tty\n\nBlock devices:\n  8 sd\n",
                )
                .unwrap();
            }
        }
        write_auth(&root, PRIVILEGES);
        let emulator = Emulator::start(&root, env);
        let mut node_sshd = Vec::new();
        for n in nodes {
            let files = root.join("local").join(n);
            let s = Sshd::start_at(
                &dir.join(format!("sshd-{n}")),
                &root,
                &files,
                &bin,
                n,
                pct_env,
            );
            node_sshd.push((n.to_string(), s));
        }
        let refs: Vec<&Sshd> = node_sshd.iter().map(|(_, s)| s).collect();
        let ssh = user_ssh(dir, &refs, None);
        // `sshd` is the first node's: same port, its own process stays in `node_sshd`.
        let first = Sshd {
            child: None,
            dir: node_sshd[0].1.dir.clone(),
            port: node_sshd[0].1.port,
        };
        Cluster {
            dir: dir.to_path_buf(),
            root,
            bin,
            emulator,
            sshd: first,
            node_sshd,
            ssh,
            nodes: nodes.iter().map(|n| n.to_string()).collect(),
        }
    }

    /// `--pve-ssh-host` for every node of a cluster: each sshd's port.
    pub fn ssh_hosts(&self) -> String {
        self.node_sshd
            .iter()
            .map(|(n, s)| format!("{n}=127.0.0.1:{}", s.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Stops a node's sshd: SSH to it then fails.
    pub fn stop_sshd(&mut self, node: &str) {
        let i = self.node_sshd.iter().position(|(n, _)| n == node).unwrap();
        let (_, s) = &mut self.node_sshd[i];
        if let Some(c) = &mut s.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// A node's own files (`local/<node>`).
    pub fn files(&self, node: &str) -> PathBuf {
        self.root.join("local").join(node)
    }

    /// The node whose directory holds a CT's config, if any.
    pub fn node_of(&self, ctid: u32) -> Option<String> {
        self.nodes
            .iter()
            .find(|n| {
                self.root
                    .join(format!("etc/pve/nodes/{n}/lxc/{ctid}.conf"))
                    .exists()
            })
            .cloned()
    }

    /// Marks a node offline or online in `.members` (the emulator reads it at every
    /// request).
    pub fn set_online(&self, node: &str, online: bool) {
        phoenix::host::sim::cluster::Members::set_online(&self.root, node, online).unwrap();
    }

    /// Starts the API emulator again with other knobs (the tree stays).
    pub fn restart_emulator(&mut self, env: &[(&str, &str)]) {
        let new = Emulator::start(&self.root, env);
        self.emulator = new;
    }

    /// phoenix's environment for this cluster, logged in as root@pam with a password.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("PHOENIX_BACKEND".into(), "pve".into()),
            ("PHOENIX_PVE_URL".into(), self.emulator.url.clone()),
            (
                "PHOENIX_PVE_FINGERPRINT".into(),
                self.emulator.fingerprint.clone(),
            ),
            ("PHOENIX_PVE_USER".into(), "root@pam".into()),
            ("PHOENIX_PVE_PASSWORD".into(), ROOT_PASSWORD.into()),
            ("PHOENIX_SSH".into(), self.ssh.display().to_string()),
            ("PHOENIX_PVE_SSH_HOSTS".into(), self.ssh_hosts()),
            ("PHOENIX_RETRY_DELAY_MS".into(), "5".into()),
            (
                "PHOENIX_LOG_FILE".into(),
                self.dir.join("phoenix.log").display().to_string(),
            ),
        ]
    }

    /// The same with an API token instead of the password.
    pub fn token_env(&self, id: &str, secret: &str) -> Vec<(String, String)> {
        let mut env: Vec<(String, String)> = self
            .env()
            .into_iter()
            .filter(|(k, _)| k != "PHOENIX_PVE_USER" && k != "PHOENIX_PVE_PASSWORD")
            .collect();
        env.push(("PHOENIX_PVE_TOKEN".into(), format!("{id}={secret}")));
        env
    }

    /// Every request so far, `METHOD PATH STATUS`.
    pub fn requests(&self) -> Vec<String> {
        fs::read_to_string(self.root.join("api-requests.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    pub fn conf(&self, ctid: u32) -> PathBuf {
        let node = self.node_of(ctid).unwrap_or_else(|| "pve".into());
        self.root
            .join(format!("etc/pve/nodes/{node}/lxc/{ctid}.conf"))
    }

    /// Commands run in a CT (the model records them in its root filesystem).
    pub fn commands(&self, ctid: u32) -> String {
        self.ct_file(ctid, "var/log/sim-commands.log")
            .unwrap_or_default()
    }

    /// A file in a CT's root filesystem (`path` relative to its `/`).
    pub fn ct_file(&self, ctid: u32, path: &str) -> Option<String> {
        let conf = fs::read_to_string(self.conf(ctid)).unwrap();
        let disk = conf
            .lines()
            .find_map(|l| l.strip_prefix("rootfs: "))
            .and_then(|r| r.split(',').next())
            .and_then(|v| v.split_once(':'))
            .map(|(_, name)| name.rsplit('/').next().unwrap().to_string())
            .unwrap();
        let (base, pool) = if conf.contains("rootfs: local-zfs:") {
            match self.node_of(ctid) {
                Some(n) if !self.nodes.is_empty() => (self.files(&n), "rpool/data"),
                _ => (self.root.clone(), "rpool/data"),
            }
        } else if conf.contains("rootfs: ceph:") {
            (self.root.clone(), "ceph/vm-pool")
        } else {
            (self.root.clone(), "quickOS/lxc-disks")
        };
        fs::read_to_string(base.join(pool).join(disk).join(path)).ok()
    }

    /// The CT's snapshots, as its config's sections name them.
    pub fn snapshots(&self, ctid: u32) -> Vec<String> {
        fs::read_to_string(self.conf(ctid))
            .unwrap()
            .lines()
            .filter_map(|l| l.strip_prefix('[')?.strip_suffix(']'))
            .filter(|s| *s != "pve:pending")
            .map(str::to_string)
            .collect()
    }
}

/// `<root>/api-auth.json`: root@pam with a password, root's token with every
/// privilege, and a CI token with `privileges`.
pub fn write_auth(root: &Path, privileges: &[&str]) {
    let auth = serde_json::json!({
        "users": {
            "root@pam": {"password": ROOT_PASSWORD},
            "phoenix@pve": {"password": "unused-user-password", "privileges": privileges},
        },
        "tokens": {
            TOKEN_ID: {"secret": TOKEN_SECRET},
            CI_TOKEN_ID: {"secret": CI_TOKEN_SECRET, "privileges": privileges},
        },
    });
    fs::write(root.join("api-auth.json"), auth.to_string()).unwrap();
}
