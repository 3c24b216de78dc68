//! The `lxc` backend end to end, with real containers: `lxc-*` tools, btrfs snapshots, a
//! debootstrapped Debian and Ubuntu, hooks running `pct` against them, and the example
//! fleet built with the README's command.
//!
//! They need root, Debian's `lxc`, `debootstrap`, `btrfs-progs` and `nftables`, Debian's
//! and Ubuntu's package mirrors, and a directory on btrfs named by
//! `PHOENIX_LXC_TEST_ROOT` (`.ci/run` makes one on a loop file). Without that variable
//! they say how to run them and pass; with it, a missing prerequisite fails them. The OS
//! caches (bookworm, noble) are made once, in `$PHOENIX_LXC_TEST_ROOT/cache`, and shared
//! by the tests (and kept between runs). The example fleet's test runs
//! `scripts/lxc-host-setup`, as the README says: it leaves root's subordinate ids, bridge
//! `vmbr0` (10.0.0.1/24), forwarding and a NAT table on the host.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::Run;

const HOW: &str = "skipped: the real-container tests need root, Debian's lxc, debootstrap, btrfs-progs and nftables, and a directory on btrfs: run `PHOENIX_LXC_TEST_ROOT=/mnt/btrfs cargo test --test lxc` as root (.ci/run makes such a directory on a loop file)";

/// One test's host: its own container path and state, the shared OS cache.
struct Lab {
    dir: PathBuf,
    cache: PathBuf,
    lxc: PathBuf,
    state: PathBuf,
    config: PathBuf,
    hooks: PathBuf,
}

fn tool(name: &str) -> bool {
    Command::new("sh")
        .args(["-c", "command -v \"$1\"", "sh", name])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Copies a directory tree of regular files.
fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &to.join(e.file_name()));
        } else {
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

impl Lab {
    /// A lab with the test fleet (`tests/fixtures/fleets/lxc`).
    fn new(name: &str) -> Option<Lab> {
        Lab::with_fleet(name, &common::repo().join("tests/fixtures/fleets/lxc"))
    }

    /// A lab with a copy of the fleet whose `etc/` and `hooks/` are in `fleet`.
    fn with_fleet(name: &str, fleet: &Path) -> Option<Lab> {
        let Some(root) = std::env::var_os("PHOENIX_LXC_TEST_ROOT") else {
            eprintln!("{HOW}");
            return None;
        };
        let root = PathBuf::from(root);
        assert_eq!(
            unsafe { libc::geteuid() },
            0,
            "PHOENIX_LXC_TEST_ROOT is set: the real-container tests must run as root"
        );
        for t in [
            "lxc-start",
            "lxc-attach",
            "lxc-ls",
            "debootstrap",
            "btrfs",
            "nft",
        ] {
            assert!(tool(t), "PHOENIX_LXC_TEST_ROOT is set but `{t}` is not on PATH: install lxc, debootstrap, btrfs-progs and nftables");
        }
        let fstype = Command::new("stat")
            .args(["-f", "-c", "%T"])
            .arg(&root)
            .output()
            .expect("stat");
        assert_eq!(
            String::from_utf8_lossy(&fstype.stdout).trim(),
            "btrfs",
            "PHOENIX_LXC_TEST_ROOT={} is not on btrfs",
            root.display()
        );
        let dir = root.join(name);
        teardown(&dir);
        let lab = Lab {
            cache: root.join("cache"),
            lxc: dir.join("lxc"),
            state: dir.join("state"),
            config: dir.join("etc"),
            hooks: dir.join("hooks"),
            dir,
        };
        for d in [&lab.lxc, &lab.state] {
            fs::create_dir_all(d).unwrap();
        }
        copy_tree(&fleet.join("etc"), &lab.config);
        copy_tree(&fleet.join("hooks"), &lab.hooks);
        Some(lab)
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_phoenix"));
        cmd.args(args)
            .env("PHOENIX_BACKEND", "lxc")
            .env("PHOENIX_LXC_PATH", &self.lxc)
            .env("PHOENIX_LXC_CACHE", &self.cache)
            .env("PHOENIX_LXC_NETWORK", "host")
            .env("PHOENIX_STATE_DIR", &self.state)
            .env("PHOENIX_CONFIG_DIR", &self.config)
            .env("PHOENIX_HOOKS_DIR", &self.hooks)
            .env("PHOENIX_LOG_FILE", self.dir.join("phoenix.log"))
            .env("NO_COLOR", "1");
        cmd
    }

    fn phoenix(&self, args: &[&str]) -> Run {
        let out = self.cmd(args).output().expect("run phoenix");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `phoenix build`, which must succeed.
    fn build(&self) -> Run {
        let r = self.phoenix(&["build", "-j", "2"]);
        assert_eq!(
            r.code,
            0,
            "build failed:\n{}\n{}\n{}",
            r.stdout,
            r.stderr,
            self.logs()
        );
        r
    }

    /// Every node's latest log, for failure messages.
    fn logs(&self) -> String {
        let mut out = String::new();
        for e in fs::read_dir(self.state.join("logs"))
            .into_iter()
            .flatten()
            .flatten()
        {
            let mut logs: Vec<PathBuf> = fs::read_dir(e.path())
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| e.path())
                .collect();
            logs.sort();
            if let Some(last) = logs.last() {
                out += &format!(
                    "--- {}\n{}",
                    last.display(),
                    fs::read_to_string(last).unwrap_or_default()
                );
            }
        }
        out
    }

    /// Runs a command inside a CT; its exit code and output.
    fn attach(&self, ctid: u32, argv: &[&str]) -> (i32, String) {
        let out = Command::new("lxc-attach")
            .args(["-n", &ctid.to_string(), "-P"])
            .arg(&self.lxc)
            .arg("--")
            .args(argv)
            .stdin(Stdio::null())
            .output()
            .expect("lxc-attach");
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    }

    fn running(&self) -> Vec<u32> {
        let out = Command::new("lxc-ls")
            .arg("-P")
            .arg(&self.lxc)
            .args(["--running", "-1"])
            .output()
            .expect("lxc-ls");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .filter_map(|n| n.parse().ok())
            .collect()
    }

    fn snapshots(&self, ctid: u32) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.lxc.join(ctid.to_string()).join("snaps"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn record(&self, ctid: u32) -> serde_json::Value {
        let p = self.lxc.join(ctid.to_string()).join("phoenix.json");
        serde_json::from_slice(&fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
            .unwrap()
    }

    /// Edits one of the fleet's config files.
    fn edit(&self, file: &str, f: impl FnOnce(&mut serde_json::Value)) {
        let path = self.config.join(file);
        let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&path).unwrap()).unwrap();
        f(&mut v);
        fs::write(&path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
    }

    fn edit_fleet(&self, f: impl FnOnce(&mut serde_json::Value)) {
        self.edit("phoenix_lxc_configs.json", f)
    }

    fn hook(&self, ctid: u32) -> PathBuf {
        self.hooks
            .join(format!("phoenix_hypervisor_setup_{ctid}.sh"))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        teardown(&self.dir);
    }
}

/// Stops every container under `dir/lxc` and removes `dir`, subvolumes included.
fn teardown(dir: &Path) {
    // A lab's container path may be a link to a directory store elsewhere.
    if let Ok(target) = fs::read_link(dir.join("lxc")) {
        teardown(&target);
    }
    let lxc = if dir.join("lxc").is_dir() {
        dir.join("lxc")
    } else {
        dir.to_path_buf()
    };
    if let Ok(entries) = fs::read_dir(&lxc) {
        for e in entries.flatten() {
            let _ = Command::new("lxc-stop")
                .arg("-n")
                .arg(e.file_name())
                .arg("-P")
                .arg(&lxc)
                .arg("-k")
                .stderr(Stdio::null())
                .status();
        }
    }
    let _ = phoenix::host::lxc::store::remove_tree(dir);
}

/// `btrfs subvolume show`'s value for `key` (`UUID`, `Parent UUID`).
fn subvolume_field(path: &Path, key: &str) -> String {
    let out = Command::new("btrfs")
        .args(["subvolume", "show"])
        .arg(path)
        .output()
        .expect("btrfs subvolume show");
    assert!(
        out.status.success(),
        "{} is not a subvolume",
        path.display()
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| {
            let (k, v) = l.trim().split_once(':')?;
            (k.trim() == key).then(|| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no {key} for {}", path.display()))
}

fn write_hook(path: &Path, body: &str) {
    fs::write(path, body).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755)).unwrap();
}

#[test]
fn a_fleet_builds_real_containers_rebuilds_exactly_a_subtree_and_gc_frees_the_old_generation() {
    let Some(lab) = Lab::new("fleet") else { return };
    let r = lab.build();
    assert!(r.stdout.contains("summary: 4 created"), "{}", r.stdout);
    // 100's hook asked systemd as it started: the CT had booted.
    let state = fs::read_to_string(lab.lxc.join("100/rootfs/etc/phoenix-boot-state")).unwrap();
    assert!(
        ["running", "degraded"].contains(&state.trim()),
        "systemd was `{}` when the hook started",
        state.trim()
    );

    // Inside the leaves: the app template's package, each leaf's own file, the base's mark.
    for ctid in [120, 121] {
        let (code, out) = lab.attach(ctid, &["hello"]);
        assert_eq!((code, out.trim()), (0, "Hello, world!"), "CT {ctid}");
        let (_, site) = lab.attach(
            ctid,
            &["cat", "/etc/phoenix-site", "/etc/phoenix-layer-base"],
        );
        assert_eq!(site, format!("site {ctid} v1\nbase\n"));
        let (_, name) = lab.attach(ctid, &["hostname"]);
        assert_eq!(name.trim(), if ctid == 120 { "web-a" } else { "web-b" });
    }
    assert_eq!(
        lab.running(),
        vec![120, 121],
        "containers run, templates are stopped"
    );
    // memory_mb is the CT's memory limit, as LXC's cgroup reports it.
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let key = if v2 {
        "memory.max"
    } else {
        "memory.limit_in_bytes"
    };
    let limit = Command::new("lxc-cgroup")
        .args(["-n", "120", "-P"])
        .arg(&lab.lxc)
        .arg(key)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&limit.stdout).trim(),
        (512u64 << 20).to_string()
    );

    // Every rootfs is a btrfs snapshot of its parent's phoenix snapshot: nothing copied.
    let snap_of = |ctid: u32| {
        let s = lab.snapshots(ctid);
        assert_eq!(s.len(), 1, "CT {ctid}: {s:?}");
        lab.lxc.join(format!("{ctid}/snaps/{}/rootfs", s[0]))
    };
    for (child, parent) in [(110, 100), (120, 110), (121, 110)] {
        let rootfs = lab.lxc.join(format!("{child}/rootfs"));
        assert_eq!(
            subvolume_field(&rootfs, "Parent UUID"),
            subvolume_field(&snap_of(parent), "UUID"),
            "CT {child}'s rootfs is a snapshot of {parent}'s"
        );
    }
    let flags = Command::new("btrfs")
        .args(["property", "get", "-ts"])
        .arg(snap_of(120))
        .arg("ro")
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&flags.stdout).trim(), "ro=true");

    // All fresh: nothing restarted, no snapshot added.
    let before: Vec<Vec<String>> = [100, 110, 120, 121].map(|c| lab.snapshots(c)).to_vec();
    let r = lab.build();
    assert!(r.stdout.contains("summary: 4 fresh"), "{}", r.stdout);
    assert_eq!(
        [100, 110, 120, 121].map(|c| lab.snapshots(c)).to_vec(),
        before
    );

    // A hook edit rebuilds exactly its node, and the new content is inside.
    let hook = lab.hook(120);
    let text = fs::read_to_string(&hook).unwrap().replace(" v1\"", " v2\"");
    write_hook(&hook, &text);
    let why = lab.phoenix(&["why", "120"]);
    assert!(
        why.stdout.contains("phoenix_hypervisor_setup_120.sh"),
        "{}",
        why.stdout
    );
    let plan = lab.phoenix(&["plan", "--output", "json"]).json();
    let actions: Vec<(u64, String)> = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["ctid"].as_u64().unwrap(),
                n["action"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        actions
            .iter()
            .filter(|(_, a)| a != "fresh")
            .map(|(c, _)| *c)
            .collect::<Vec<_>>(),
        vec![120],
        "{actions:?}"
    );
    let old = lab.snapshots(120);
    lab.build();
    let (_, site) = lab.attach(120, &["cat", "/etc/phoenix-site"]);
    assert_eq!(site, "site 120 v2\n");
    assert_eq!(
        [100, 110, 121].map(|c| lab.snapshots(c)).to_vec(),
        [before[0].clone(), before[1].clone(), before[3].clone()]
    );
    let now = lab.snapshots(120);
    assert_eq!(now.len(), 2, "the old generation stays until gc: {now:?}");

    // gc removes the old generation's subvolume, and only it.
    let old_subvolume = lab.lxc.join(format!("120/snaps/{}/rootfs", old[0]));
    assert!(old_subvolume.exists());
    let gc = lab.phoenix(&["gc", "--keep", "0"]);
    assert_eq!(gc.code, 0, "{}\n{}", gc.stdout, gc.stderr);
    assert!(
        !old_subvolume.exists(),
        "gc left {}",
        old_subvolume.display()
    );
    assert_eq!(lab.snapshots(120).len(), 1);
    let listed = Command::new("btrfs")
        .args(["subvolume", "list"])
        .arg(&lab.lxc)
        .output()
        .unwrap();
    let gone = format!("fleet/lxc/120/snaps/{}/rootfs", old[0]);
    assert!(
        !String::from_utf8_lossy(&listed.stdout)
            .lines()
            .any(|l| l.ends_with(&gone)),
        "the filesystem still has {gone}"
    );
    let g = lab.phoenix(&["generations", "120"]);
    assert_eq!(g.code, 0, "{}", g.stderr);
    assert!(g.stdout.contains("1 generation"), "{}", g.stdout);
}

#[test]
fn sigkill_mid_build_then_a_rebuild_leaves_a_consistent_host() {
    let Some(lab) = Lab::new("sigkill") else {
        return;
    };
    let marker = lab.dir.join("hook-started");
    let gate = lab.dir.join("killed-once");
    // 121's hook, the first time, starts a long child and waits: phoenix dies meanwhile.
    write_hook(
        &lab.hook(121),
        &format!(
            "#!/usr/bin/env bash\nset -euo pipefail\nif [ ! -e {gate} ]; then touch {gate}; sleep 600 & echo $! > {marker}.pid; touch {marker}; wait; fi\npct exec \"$1\" -- sh -c 'echo done > /etc/phoenix-site'\n",
            gate = gate.display(),
            marker = marker.display()
        ),
    );
    let mut child = lab
        .cmd(&["build", "-j", "2"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(300);
    while !marker.exists() {
        assert!(
            Instant::now() < deadline,
            "121's hook never started:\n{}",
            lab.logs()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the build ended before 121's hook ran:\n{}",
            lab.logs()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let orphan: i32 = fs::read_to_string(format!("{}.pid", marker.display()))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(
        unsafe { libc::kill(orphan, 0) },
        0,
        "the hook's child outlives a SIGKILLed phoenix"
    );

    // The next build ends what the killed run left, finishes 121, and leaves nothing locked.
    let r = lab.build();
    assert_ne!(
        unsafe { libc::kill(orphan, 0) },
        0,
        "the killed run's hook child still runs"
    );
    assert!(!r.stdout.contains("failed"), "{}", r.stdout);
    for ctid in [100, 110, 120, 121] {
        let rec = lab.record(ctid);
        assert!(rec["lock"].is_null(), "CT {ctid} is locked: {rec}");
        assert_eq!(lab.snapshots(ctid).len(), 1, "CT {ctid}");
    }
    let (_, site) = lab.attach(121, &["cat", "/etc/phoenix-site"]);
    assert_eq!(site, "done\n");
    assert!(lab.build().stdout.contains("summary: 4 fresh"));
}

#[test]
fn a_gpu_node_on_a_host_without_nvidia_fails_its_preflight_and_blocks_only_its_subtree() {
    let Some(lab) = Lab::new("gpu") else { return };
    if Path::new("/proc/driver/nvidia/version").exists() {
        eprintln!("skipped: this host has an NVIDIA driver");
        return;
    }
    lab.edit_fleet(|fleet| {
        fleet["lxc_configs"]["110"]["gpu_assignment"] = "0".into();
    });
    let plan = lab.phoenix(&["plan"]);
    assert_eq!(plan.code, 1, "{}\n{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout.contains("no NVIDIA kernel driver"),
        "{}",
        plan.stdout
    );
    let r = lab.phoenix(&["build"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains("/proc/driver/nvidia/version is missing"),
        "{}",
        r.stdout
    );
    // The base builds; the GPU template and its clones are never made.
    assert_eq!(lab.snapshots(100).len(), 1);
    for ctid in [110, 120, 121] {
        assert!(
            !lab.lxc.join(ctid.to_string()).exists(),
            "CT {ctid} was made"
        );
    }
}

/// A host bridge a test makes (`ip link add`), deleted when it ends.
struct TestBridge(&'static str);

impl TestBridge {
    /// The bridge, new: down, without an address, with no port.
    fn bare(name: &'static str) -> TestBridge {
        TestBridge::gone(name);
        ip(&["link", "add", name, "type", "bridge"]);
        TestBridge(name)
    }

    /// The bridge with the host's address `cidr` on it, up.
    fn with_address(name: &'static str, cidr: &str) -> TestBridge {
        let b = TestBridge::bare(name);
        b.address(cidr);
        b
    }

    fn address(&self, cidr: &str) {
        ip(&["addr", "add", cidr, "dev", self.0]);
        ip(&["link", "set", self.0, "up"]);
    }

    fn gone(name: &str) {
        let _ = Command::new("ip")
            .args(["link", "del", name])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for TestBridge {
    fn drop(&mut self) {
        TestBridge::gone(self.0);
    }
}

fn ip(args: &[&str]) {
    let st = Command::new("ip").args(args).status().expect("ip");
    assert!(st.success(), "ip {args:?} failed");
}

#[test]
fn config_networking_puts_a_veth_on_the_named_bridge_and_a_bridge_that_leads_nowhere_is_a_preflight_error(
) {
    let Some(lab) = Lab::new("bridge") else {
        return;
    };
    let bridge = "phxbr0";
    TestBridge::gone(bridge);
    let plan = lab.phoenix(&["plan", "--lxc-network", "config"]);
    assert_eq!(plan.code, 1, "{}\n{}", plan.stdout, plan.stderr);
    assert!(plan.stdout.contains("no such bridge"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains("--lxc-network host"),
        "{}",
        plan.stdout
    );

    // The base alone: its hook needs no network.
    lab.edit_fleet(|fleet| {
        let base = fleet["lxc_configs"]["100"].clone();
        fleet["lxc_configs"] = serde_json::json!({ "100": base });
        fleet["lxc_configs"]["100"]["network_config"]["ip"] = "10.99.0.5/24".into();
        fleet["lxc_configs"]["100"]["mac_address"] = "52:54:00:12:34:56".into();
        fleet["lxc_configs"]["100"]["is_template"] = false.into();
    });
    // A bridge as `ip link add` makes it: down, no address, no uplink. A CT on it would
    // reach nothing, and wait out the hook timeout on its first download: refused by the
    // plan, and by the build before it makes anything.
    let br = TestBridge::bare(bridge);
    let plan = lab.phoenix(&["plan", "--lxc-network", "config"]);
    assert_eq!(plan.code, 1, "{}\n{}", plan.stdout, plan.stderr);
    for said in [
        "100 base: bridge `phxbr0` is down",
        "100 base: bridge `phxbr0` has no IPv4 address and no uplink",
        "scripts/lxc-host-setup",
    ] {
        assert!(plan.stdout.contains(said), "{said} in\n{}", plan.stdout);
    }
    let started = Instant::now();
    let r = lab.phoenix(&["build", "--lxc-network", "config", "--output", "json"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(started.elapsed() < Duration::from_secs(30));
    let failed = r
        .stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "node_finished" && e["ctid"] == 100)
        .expect("100 finished");
    assert_eq!(failed["failed_step"], "preflight", "{failed}");
    assert!(!lab.lxc.join("100").exists(), "a CT was made");

    br.address("10.99.0.1/24");
    let r = lab.phoenix(&["build", "--lxc-network", "config"]);
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, lab.logs());
    let (_, link) = lab.attach(100, &["ip", "-o", "addr", "show", "eth0"]);
    assert!(link.contains("10.99.0.5/24"), "{link}");
    let (_, mac) = lab.attach(100, &["cat", "/sys/class/net/eth0/address"]);
    assert_eq!(mac.trim(), "52:54:00:12:34:56");
    let members = fs::read_dir(format!("/sys/class/net/{bridge}/brif"))
        .unwrap()
        .count();
    assert_eq!(members, 1, "the CT's veth is on {bridge}");
}

#[test]
fn the_docker_step_installs_docker_in_a_nesting_ct_and_a_failed_portainer_pull_fails_its_node() {
    let Some(lab) = Lab::new("docker") else {
        return;
    };
    // On the example fleet's bridge, routed and NATed by the host: Docker inside has a
    // network namespace of its own (in the host's, it would rewrite the host's firewall).
    host_setup();
    let on_vmbr0 = |ct: &mut serde_json::Value, ip: &str| {
        ct["network_config"] =
            serde_json::json!({"name": "eth0", "bridge": "vmbr0", "ip": ip, "gw": "10.0.0.1"});
    };
    lab.edit_fleet(|fleet| {
        let mut base = fleet["lxc_configs"]["100"].clone();
        on_vmbr0(&mut base, "10.0.0.140/24");
        let mut docker = fleet["lxc_configs"]["121"].clone();
        docker["features"] = "nesting=1".into();
        docker["clone_from_template_ctid"] = "100".into();
        docker["name"] = "docker".into();
        on_vmbr0(&mut docker, "10.0.0.130/24");
        let mut portainer = docker.clone();
        portainer["name"] = "portainer".into();
        portainer["portainer_role"] = "server".into();
        on_vmbr0(&mut portainer, "10.0.0.131/24");
        fleet["lxc_configs"] = serde_json::json!({ "100": base, "130": docker, "131": portainer });
    });
    lab.edit("phoenix_hypervisor_config.json", |h| {
        h["network"] = serde_json::json!({"portainer_server_ip": "10.0.0.99", "portainer_server_port": 9443, "portainer_agent_port": 9001});
        h["docker"] = serde_json::json!({"portainer_server_image": "portainer/portainer-ce:2.33.1-lts", "portainer_agent_image": "portainer/agent:2.33.1-lts"});
    });
    for ctid in [130, 131] {
        let _ = fs::remove_file(lab.hook(ctid));
    }

    let started = Instant::now();
    let r = lab.phoenix(&["build", "-j", "2", "--lxc-network", "config"]);
    let took = started.elapsed();
    // 131's Portainer image cannot be pulled here: its node fails, clearly and soon.
    assert_eq!(r.code, 1, "{}\n{}\n{}", r.stdout, r.stderr, lab.logs());
    assert!(took < Duration::from_secs(540), "the build took {took:?}");
    let log = lab.logs();
    assert!(
        log.contains("cannot pull the Portainer server image portainer/portainer-ce:2.33.1-lts"),
        "{log}"
    );
    assert!(
        r.stdout.contains("131") && r.stdout.contains("failed"),
        "{}",
        r.stdout
    );
    // 130: Docker from Debian's packages answers inside the nesting CT.
    assert_eq!(lab.snapshots(130).len(), 1, "130 is built");
    // (after the restart that follows the snapshot, dockerd takes a moment to come up)
    let deadline = Instant::now() + Duration::from_secs(120);
    let info = loop {
        let (code, info) = lab.attach(
            130,
            &[
                "docker",
                "info",
                "--format",
                "{{.ServerVersion}} {{.Driver}}",
            ],
        );
        if code == 0 {
            break info;
        }
        assert!(
            Instant::now() < deadline,
            "docker info never answered: {info}"
        );
        std::thread::sleep(Duration::from_secs(1));
    };
    assert!(info.trim().ends_with(" overlay2"), "{info}");

    // The NVIDIA step runs as the orchestrator ran it (on the host, `pct` on PATH)
    // until it needs the runfile, which this host cannot reach: a clear failure.
    let out = Command::new("bash")
        .arg(common::repo().join("hooks/phoenix_hypervisor_lxc_nvidia.sh"))
        .args([
            "130",
            "580.76.05",
            "",
            "https://us.download.nvidia.com/XFree86/Linux-x86_64/580.76.05/NVIDIA-Linux-x86_64-580.76.05.run",
        ])
        .env("PATH", format!("{}:{}", lab.state.join("bin").display(), std::env::var("PATH").unwrap()))
        .env("PHOENIX_BACKEND", "lxc")
        .env("PHOENIX_LXC_PATH", &lab.lxc)
        .env("PHOENIX_LXC_NETWORK", "config")
        .env("PHOENIX_STATE_DIR", &lab.state)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let said =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{said}");
    assert!(
        said.contains("nvidia: installing userspace driver 580.76.05"),
        "{said}"
    );
    assert!(
        said.contains("nvidia: cannot download the driver runfile"),
        "{said}"
    );
}

/// The host as `scripts/lxc-host-setup` leaves it: root's subordinate ids, bridge
/// `vmbr0` on 10.0.0.1/24, forwarding, NAT (idempotent; runs one at a time).
fn host_setup() {
    let out = Command::new("bash")
        .arg(common::repo().join("scripts/lxc-host-setup"))
        .stdin(Stdio::null())
        .output()
        .expect("bash");
    assert!(
        out.status.success(),
        "scripts/lxc-host-setup failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unprivileged_ct_runs_with_an_id_map_in_a_network_namespace_of_its_own() {
    let Some(lab) = Lab::new("unprivileged") else {
        return;
    };
    host_setup();
    lab.edit_fleet(|fleet| {
        let mut base = fleet["lxc_configs"]["100"].clone();
        base["unprivileged"] = true.into();
        base["is_template"] = false.into();
        base["network_config"]["bridge"] = "phxbr1".into();
        base["network_config"]["ip"] = "10.98.0.5/24".into();
        fleet["lxc_configs"] = serde_json::json!({ "100": base });
    });

    // Sharing the host's network cannot work: said before anything is made.
    let plan = lab.phoenix(&["plan"]);
    assert_eq!(plan.code, 1, "{}\n{}", plan.stdout, plan.stderr);
    assert!(
        plan.stdout
            .contains("an unprivileged CT cannot share the host's network"),
        "{}",
        plan.stdout
    );

    let _bridge = TestBridge::with_address("phxbr1", "10.98.0.1/24");
    let r = lab.phoenix(&["build", "--lxc-network", "config"]);
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, lab.logs());
    let config = fs::read_to_string(lab.lxc.join("100/config")).unwrap();
    assert!(config.contains("lxc.idmap = u 0 "), "{config}");
    let (_, map) = lab.attach(100, &["cat", "/proc/self/uid_map"]);
    let fields: Vec<&str> = map.split_whitespace().collect();
    assert_eq!(fields[0], "0");
    assert_ne!(fields[1], "0", "root inside is not root outside: {map}");
    // Inside, the files are root's; on the host, they belong to the mapped range.
    let (_, owner) = lab.attach(100, &["stat", "-c", "%u", "/etc/phoenix-layer-base"]);
    assert_eq!(owner.trim(), "0");
    let host_uid = fs::metadata(lab.lxc.join("100/rootfs/etc/phoenix-layer-base"))
        .unwrap()
        .uid();
    assert_eq!(host_uid.to_string(), fields[1]);
    let passwd_uid = fs::metadata(lab.lxc.join("100/rootfs/etc/passwd"))
        .unwrap()
        .uid();
    assert_eq!(
        passwd_uid.to_string(),
        fields[1],
        "the OS tree was shifted into the range"
    );
}

#[test]
fn without_lxc_tools_the_backend_says_what_to_install() {
    let fleet = common::repo().join("tests/fixtures/fleets/lxc");
    let tmp = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_phoenix"))
        .args(["plan", "--backend", "lxc", "--lxc-path"])
        .arg(tmp.path().join("lxc"))
        .env("PATH", tmp.path())
        .env("PHOENIX_CONFIG_DIR", fleet.join("etc"))
        .env("PHOENIX_HOOKS_DIR", fleet.join("hooks"))
        .env("PHOENIX_STATE_DIR", tmp.path().join("state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(6), "{stderr}");
    assert!(
        stderr.contains("`lxc-start` is not on PATH: install Debian's `lxc` package"),
        "{stderr}"
    );
}

#[test]
fn a_directory_store_makes_full_copies_and_builds_the_same() {
    let Some(lab) = Lab::new("dirstore") else {
        return;
    };
    let store = std::env::var_os("PHOENIX_LXC_TEST_DIR_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/phoenix-lxc-dir-store"));
    teardown(&store);
    fs::create_dir_all(&store).unwrap();
    let fstype = Command::new("stat")
        .args(["-f", "-c", "%T"])
        .arg(&store)
        .output()
        .unwrap();
    assert_ne!(
        String::from_utf8_lossy(&fstype.stdout).trim(),
        "btrfs",
        "{} must not be on btrfs (PHOENIX_LXC_TEST_DIR_STORE)",
        store.display()
    );
    fs::remove_dir(&lab.lxc).unwrap();
    std::os::unix::fs::symlink(&store, &lab.lxc).unwrap();
    lab.edit_fleet(|fleet| {
        let base = fleet["lxc_configs"]["100"].clone();
        let mut leaf = fleet["lxc_configs"]["120"].clone();
        leaf["clone_from_template_ctid"] = "100".into();
        fleet["lxc_configs"] = serde_json::json!({ "100": base, "120": leaf });
    });

    lab.build();
    let (_, site) = lab.attach(
        120,
        &["cat", "/etc/phoenix-site", "/etc/phoenix-layer-base"],
    );
    assert_eq!(site, "site 120 v1\nbase\n");
    let rootfs = store.join("120/rootfs");
    assert!(rootfs.join("etc/phoenix-site").is_file());
    let config = fs::read_to_string(store.join("120/config")).unwrap();
    assert!(config.contains("lxc.rootfs.path = dir:/"), "{config}");
    let snap = lab.snapshots(120);
    assert_eq!(snap.len(), 1);
    // A snapshot is a full copy: its own inodes, the same content.
    let copy = store.join(format!("120/snaps/{}/rootfs/etc/phoenix-site", snap[0]));
    assert_eq!(fs::read(&copy).unwrap(), b"site 120 v1\n");
    assert_ne!(
        fs::metadata(&copy).unwrap().ino(),
        fs::metadata(rootfs.join("etc/phoenix-site")).unwrap().ino()
    );
    assert!(lab.build().stdout.contains("summary: 2 fresh"));
    drop(lab);
    teardown(&store);
}

/// The README's one command for the example fleet on a plain host, as written there:
/// each `&&`-joined command as its arguments.
fn readme_lxc_command() -> Vec<Vec<String>> {
    let readme = fs::read_to_string(common::repo().join("README.md")).unwrap();
    let line = readme
        .lines()
        .find_map(|l| l.strip_prefix("# bash scripts/lxc-host-setup && "))
        .expect("the README gives the lxc command: `# bash scripts/lxc-host-setup && phoenix ...`");
    format!("bash scripts/lxc-host-setup && {line}")
        .split(" && ")
        .map(|c| c.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Whether this host reaches Docker Hub's registry (the CTs reach what it reaches,
/// through the bridge's NAT).
fn docker_hub_reachable() -> bool {
    use std::net::{TcpStream, ToSocketAddrs};
    ("registry-1.docker.io", 443)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_secs(10)).is_ok())
}

/// `chroot <rootfs> <argv>`: a command of a stopped CT's files, its output.
fn in_tree(rootfs: &Path, argv: &[&str]) -> String {
    let out = Command::new("chroot")
        .arg(rootfs)
        .args(argv)
        .stdin(Stdio::null())
        .output()
        .expect("chroot");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Issue 22: the example fleet (`etc/`, `hooks/`) builds on the lxc backend as shipped,
/// with the README's command on a plain Debian host: Ubuntu 24.04 made with debootstrap,
/// every node unprivileged on `vmbr0` with its static address, DNS from the host.
#[test]
fn the_example_fleet_builds_on_lxc_with_the_readmes_command() {
    let Some(lab) = Lab::with_fleet("example", &common::repo()) else {
        return;
    };
    let scripts = lab.dir.join("scripts");
    fs::create_dir_all(&scripts).unwrap();
    fs::copy(
        common::repo().join("scripts/lxc-host-setup"),
        scripts.join("lxc-host-setup"),
    )
    .unwrap();
    let commands = readme_lxc_command();
    let mut last = None;
    for argv in &commands {
        let mut cmd = Command::new(match argv[0].as_str() {
            "phoenix" => env!("CARGO_BIN_EXE_phoenix"),
            other => other,
        });
        // The README's container path is this lab's; its state, cache and log too.
        cmd.args(argv[1..].iter().map(|a| {
            if a == "/srv/btrfs/lxc" {
                lab.lxc.display().to_string()
            } else {
                a.clone()
            }
        }))
        .current_dir(&lab.dir)
        .env("PHOENIX_STATE_DIR", &lab.state)
        .env("PHOENIX_LXC_CACHE", &lab.cache)
        .env("PHOENIX_LOG_FILE", lab.dir.join("phoenix.log"))
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
        for v in ["PHOENIX_BACKEND", "PHOENIX_LXC_NETWORK", "PHOENIX_LXC_PATH"] {
            cmd.env_remove(v);
        }
        let started = Instant::now();
        let out = cmd.output().expect("run the README's command");
        let r = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        eprintln!(
            "{} ({:.0?}):\n{}{}",
            argv.join(" "),
            started.elapsed(),
            r.stdout,
            r.stderr
        );
        if argv[0] != "phoenix" {
            assert_eq!(r.code, 0, "{argv:?}: {}\n{}", r.stdout, r.stderr);
        }
        last = Some(r);
    }
    let r = last.unwrap();
    let out = format!("{}\n{}\n{}", r.stdout, r.stderr, lab.logs());

    let built = |ctid: u32| lab.snapshots(ctid).len() == 1;
    let snap_rootfs = |ctid: u32| {
        lab.lxc
            .join(format!("{ctid}/snaps/{}/rootfs", lab.snapshots(ctid)[0]))
    };
    // 900: a real Ubuntu 24.04, with its hook's packages and locale.
    assert!(built(900), "900 is not built:\n{out}");
    let base = snap_rootfs(900);
    let os = fs::read_to_string(base.join("etc/os-release")).unwrap();
    assert!(
        os.contains("VERSION_ID=\"24.04\"") && os.contains("ID=ubuntu"),
        "{os}"
    );
    for pkg in [
        "curl",
        "wget",
        "vim",
        "htop",
        "jq",
        "git",
        "rsync",
        "gnupg",
        "locales",
        "ca-certificates",
    ] {
        let status = in_tree(&base, &["dpkg-query", "-W", "-f=${Status}", pkg]);
        assert_eq!(status, "install ok installed", "{pkg} in 900");
    }
    assert!(
        in_tree(&base, &["locale", "-a"])
            .lines()
            .any(|l| l == "en_US.utf8"),
        "900 has no en_US.UTF-8"
    );
    assert!(fs::read_to_string(base.join("etc/default/locale"))
        .unwrap()
        .contains("LANG=en_US.UTF-8"));
    // Unprivileged: its files belong to root's subordinate range on the host.
    let uid = fs::metadata(base.join("etc/passwd")).unwrap().uid();
    assert!(
        uid >= 65536,
        "900's /etc/passwd belongs to uid {uid} on the host"
    );
    // The host's resolver, written at start.
    assert!(
        fs::read_to_string(base.join("etc/resolv.conf"))
            .unwrap()
            .contains("nameserver "),
        "900 has no resolver"
    );

    // 902: the Docker step installed Docker (its apt-get ran once the CT had booted).
    let docker_ct = lab.lxc.join("902/rootfs");
    assert_eq!(
        in_tree(
            &docker_ct,
            &["dpkg-query", "-W", "-f=${Status}", "docker.io"]
        ),
        "install ok installed",
        "902 has no docker.io:\n{out}"
    );
    let log902 = lab.phoenix(&["log", "902"]).stdout;
    assert!(log902.contains("== docker"), "{log902}");
    assert!(
        !log902.contains("Unknown error executing apt-key"),
        "{log902}"
    );

    // --skip-gpu: the GPU nodes are left out, never made.
    assert!(commands[1].contains(&"--skip-gpu".to_string()));
    for ctid in [901, 903, 920, 950] {
        assert!(
            !lab.lxc.join(ctid.to_string()).exists(),
            "GPU node {ctid} was made"
        );
        assert!(
            r.stdout
                .lines()
                .any(|l| l.trim_start().starts_with(&format!("{ctid} ")) && l.ends_with(" skipped")),
            "{ctid} is not skipped:\n{out}"
        );
    }
    if docker_hub_reachable() {
        eprintln!("Docker Hub is reachable: every node without a GPU builds");
        for ctid in [900, 902, 910] {
            assert!(built(ctid), "{ctid} is not built:\n{out}");
        }
        assert_eq!(r.code, 0, "{out}");
    } else {
        eprintln!("Docker Hub is not reachable: 902's hook fails and blocks its clones");
        assert_eq!(r.code, 1, "{out}");
        assert!(
            r.stdout.contains("902 BaseTemplateDocker: failed at hook"),
            "{out}"
        );
        assert!(
            log902.contains("Unable to find image 'hello-world:latest' locally")
                && log902.contains("registry-1.docker.io"),
            "{log902}"
        );
        assert!(!built(902), "902 has a snapshot");
        assert!(
            r.stdout
                .contains("910 Portainer                blocked by 902"),
            "{out}"
        );
        assert!(!lab.lxc.join("910").exists(), "910 was made");
        // The CT is left for inspection, on vmbr0 with its address, resolving names.
        let (_, addr) = lab.attach(902, &["ip", "-o", "-4", "addr", "show", "eth0"]);
        assert!(addr.contains("10.0.0.202/24"), "{addr}");
        let (code, host) = lab.attach(902, &["getent", "hosts", "archive.ubuntu.com"]);
        assert_eq!(code, 0, "902 cannot resolve names: {host}");
    }
}

/// Issue 22: a node that lacks an OS template the backend can make, subordinate ids and
/// its bridge hears of all three from one `plan`. The host's `/etc/subuid` and
/// `/etc/subgid` are hidden by empty files in a mount namespace of phoenix's own.
#[test]
fn one_plan_names_every_problem_of_an_lxc_node() {
    let Some(lab) = Lab::new("preflight-all") else {
        return;
    };
    lab.edit_fleet(|fleet| {
        let mut base = fleet["lxc_configs"]["100"].clone();
        base["template"] = "local:vztmpl/alpine-3.20-default_20240908_amd64.tar.xz".into();
        base["unprivileged"] = true.into();
        base["network_config"]["bridge"] = "phxnone0".into();
        base["is_template"] = false.into();
        fleet["lxc_configs"] = serde_json::json!({ "100": base });
    });
    TestBridge::gone("phxnone0");
    let empty = lab.dir.join("no-subids");
    fs::write(&empty, "").unwrap();
    let run = |args: &[&str]| -> Run {
        let cmd = lab.cmd(args);
        let phoenix = cmd.get_program().to_owned();
        let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
        let out = Command::new("unshare")
            .args(["--mount", "--propagation", "private", "--", "sh", "-c"])
            .arg(r#"mount --bind "$1" /etc/subuid && mount --bind "$1" /etc/subgid && shift && exec "$@""#)
            .arg("sh")
            .arg(&empty)
            .arg(phoenix)
            .args(args)
            .envs(cmd.get_envs().filter_map(|(k, v)| Some((k, v?))))
            .env("PHOENIX_LXC_NETWORK", "config")
            .output()
            .expect("unshare");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    };
    let r = run(&["plan", "--output", "json"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let problems: Vec<(String, String)> = r.json()["preflight"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["ctid"], 100);
            (
                p["check"].as_str().unwrap().to_string(),
                p["message"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert_eq!(problems[0].0, "storage");
    assert!(
        problems[0].1.contains("cannot make OS template"),
        "{problems:?}"
    );
    assert_eq!(problems[1].0, "runtime");
    assert!(
        problems[1]
            .1
            .contains("/etc/subuid has no `root:<start>:65536` line"),
        "{problems:?}"
    );
    assert_eq!(problems[2].0, "runtime");
    assert!(problems[2].1.contains("bridge `phxnone0`"), "{problems:?}");

    let r = run(&["plan"]);
    assert_eq!(r.code, 1);
    for (_, message) in &problems {
        assert!(
            r.stdout.contains(&format!("  100 base: {message}")),
            "{message} in\n{}",
            r.stdout
        );
    }
}

/// History on real containers: a template change rebuilds everything with
/// `--replace-all`, the replaced container's generation is kept as a read-only snapshot
/// subvolume (no copy), and `phoenix rollback` brings it back — its files and settings —
/// pinned until `unpin`; gc keeps what the pin needs and frees the rest.
#[test]
fn a_replaced_container_rolls_back_to_its_kept_generation() {
    let Some(lab) = Lab::new("history") else {
        return;
    };
    lab.build();
    // The node's log says what the lxc backend did, in phoenix's words: no `pct` line that
    // was never run.
    let log = lab.phoenix(&["log", "120"]).stdout;
    assert!(log.contains("> clone 110@phx-"), "{log}");
    assert!(!log.contains("$ pct "), "{log}");
    let old = lab.snapshots(120).pop().unwrap();
    let hook = fs::read_to_string(lab.hook(110)).unwrap();
    write_hook(&lab.hook(110), &format!("{hook}echo changed\n"));
    let site = fs::read_to_string(lab.hook(120)).unwrap();
    write_hook(&lab.hook(120), &site.replace(" v1\"", " v2\""));
    lab.edit_fleet(|v| v["lxc_configs"]["120"]["memory_mb"] = serde_json::json!(768));
    let r = lab.phoenix(&["build", "-j", "2", "--replace-all"]);
    assert_eq!(r.code, 0, "{}\n{}\n{}", r.stdout, r.stderr, lab.logs());
    let (_, now) = lab.attach(120, &["cat", "/etc/phoenix-site"]);
    assert_eq!(now, "site 120 v2\n");
    // The generation it held is kept beside the CTs, as a snapshot of its root filesystem.
    let kept: Vec<PathBuf> = fs::read_dir(lab.lxc.join(".phoenix-kept/120"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(store_is_subvolume(&kept[0].join("rootfs")));

    let r = lab.phoenix(&["rollback", "120"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let (_, back) = lab.attach(120, &["cat", "/etc/phoenix-site"]);
    assert_eq!(back, "site 120 v1\n", "its files as they were");
    assert_eq!(
        lab.record(120)["settings"]["memory_mb"],
        512,
        "and its settings"
    );
    assert_eq!(
        lab.snapshots(120),
        std::slice::from_ref(&old),
        "back as its generation"
    );
    assert!(lab.running().contains(&120), "it ran, so it runs again");
    let plan = lab.phoenix(&["plan", "--output", "json"]);
    let node = |p: &Run, c: u64| {
        p.json()["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["ctid"] == c)
            .cloned()
            .unwrap()
    };
    assert_eq!(node(&plan, 120)["action"], "pinned");
    let r = lab.phoenix(&["build", "-j", "2"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        lab.attach(120, &["cat", "/etc/phoenix-site"]).1,
        "site 120 v1\n",
        "left alone"
    );

    // gc: the pinned generation stays kept, the one the rollback set aside goes.
    let gc = lab.phoenix(&["gc", "--keep", "0", "--output", "json"]);
    assert_eq!(gc.code, 0, "{}", gc.stderr);
    let kept: Vec<PathBuf> = fs::read_dir(lab.lxc.join(".phoenix-kept/120"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.'))
        .collect();
    assert_eq!(kept.len(), 1, "the pinned one: {kept:?}");

    let r = lab.phoenix(&["build", "-j", "2", "--unpin", "120", "--replace", "120"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stderr, lab.logs());
    assert_eq!(
        lab.attach(120, &["cat", "/etc/phoenix-site"]).1,
        "site 120 v2\n"
    );
    let plan = lab.phoenix(&["plan", "--output", "json"]);
    assert_eq!(node(&plan, 120)["action"], "fresh");
}

fn store_is_subvolume(path: &Path) -> bool {
    Command::new("btrfs")
        .args(["subvolume", "show"])
        .arg(path)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}
