//! The `pve` backend end to end on the `pct-emulator` (`cargo build --workspace` builds
//! it): a Proxmox node's file tree, with a `pct` link to the emulator first on `PATH`.

mod common;

use std::fs;
use std::path::PathBuf;

use common::{Fixture, Run};

/// A fixture plus an emulated Proxmox node `pve`.
struct Node {
    f: Fixture,
    root: PathBuf,
    bin: PathBuf,
}

fn emulator() -> PathBuf {
    let phoenix = PathBuf::from(env!("CARGO_BIN_EXE_phoenix"));
    let exe = phoenix.with_file_name("pct-emulator");
    assert!(
        exe.exists(),
        "{} is missing: build it with `cargo build --workspace`",
        exe.display()
    );
    exe
}

impl Node {
    /// The example fleet on a node laid out as the installer leaves it, with the OS
    /// template the fleet names downloaded.
    fn new() -> Node {
        let n = Node::on(Fixture::example());
        n.storage_cfg(
            "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\n\
             zfspool: local-zfs\n\tpool rpool/data\n\tsparse\n\tcontent images,rootdir\n",
        );
        n.file("var/lib/vz/template/cache/ubuntu-24.04-standard_24.04-2_amd64.tar.zst");
        n
    }

    /// A node `pve` for this fixture's fleet: two GPUs with the driver of
    /// `tests/fixtures/host/`, and a `pct` link to the emulator.
    fn on(f: Fixture) -> Node {
        let root = f.tmp.path().join("pve");
        let bin = f.tmp.path().join("bin");
        fs::create_dir_all(root.join("etc/pve/nodes/pve/lxc")).unwrap();
        fs::write(root.join("etc/hostname"), "pve\n").unwrap();
        let host = common::repo().join("tests/fixtures/host");
        fs::create_dir_all(root.join("proc/driver/nvidia")).unwrap();
        fs::copy(
            host.join("proc-driver-nvidia-version.txt"),
            root.join("proc/driver/nvidia/version"),
        )
        .unwrap();
        fs::copy(host.join("proc-devices.txt"), root.join("proc/devices")).unwrap();
        fs::create_dir_all(root.join("dev/nvidia-caps")).unwrap();
        for n in [
            "nvidia0",
            "nvidia1",
            "nvidiactl",
            "nvidia-uvm",
            "nvidia-uvm-tools",
        ] {
            fs::write(root.join("dev").join(n), "").unwrap();
        }
        fs::create_dir_all(&bin).unwrap();
        for tool in ["pct", "vzdump", "pvesm"] {
            std::os::unix::fs::symlink(emulator(), bin.join(tool)).unwrap();
        }
        Node { f, root, bin }
    }

    fn storage_cfg(&self, text: &str) {
        fs::write(self.root.join("etc/pve/storage.cfg"), text).unwrap();
    }

    /// An empty file at `rel` under the node's root.
    fn file(&self, rel: &str) {
        let p = self.root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, "").unwrap();
    }

    /// Installs pve-container `version` in the node's dpkg status.
    fn pve_container(&self, version: &str) {
        let dir = self.root.join("var/lib/dpkg");
        fs::create_dir_all(&dir).unwrap();
        fs::write(
            dir.join("status"),
            format!(
                "Package: pve-manager\nStatus: install ok installed\nVersion: 8.0.4\n\n\
                 Package: pve-container\nStatus: install ok installed\nVersion: {version}\n"
            ),
        )
        .unwrap();
    }

    fn path(&self) -> String {
        format!(
            "{}:{}",
            self.bin.display(),
            std::env::var("PATH").unwrap_or_default()
        )
    }

    fn phoenix(&self, args: &[&str]) -> Run {
        let path = self.path();
        let root = self.root.display().to_string();
        let log = self.f.tmp.path().join("phoenix.log").display().to_string();
        self.f.phoenix_env(
            args,
            &[
                ("PHOENIX_BACKEND", "pve"),
                ("PHOENIX_PVE_ROOT", &root),
                ("PVE_EMULATOR_ROOT", &root),
                ("PATH", &path),
                ("PHOENIX_RETRY_DELAY_MS", "5"),
                ("PHOENIX_LOG_FILE", &log),
            ],
        )
    }

    /// The `pct` invocations so far, as logged by the emulator.
    fn calls(&self) -> Vec<String> {
        fs::read_to_string(self.root.join("pct-calls.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn conf(&self, ctid: u32) -> PathBuf {
        self.root.join(format!("etc/pve/nodes/pve/lxc/{ctid}.conf"))
    }
}

/// A fixture config without phoenix's marker (101's carries it: it stands for a CT
/// phoenix built).
fn fixture_conf(name: &str) -> Vec<u8> {
    let text = fs::read_to_string(common::repo().join("tests/fixtures/pve").join(name)).unwrap();
    text.replace("tags: gpu;phoenix", "tags: gpu")
        .replace("tags: phoenix", "tags: web")
        .into_bytes()
}

const MUTATING: &[&str] = &[
    "create",
    "clone",
    "set",
    "resize",
    "start",
    "shutdown",
    "stop",
    "exec",
    "push",
    "snapshot",
    "delsnapshot",
    "rollback",
    "destroy",
    "unlock",
];

fn verb(call: &str) -> &str {
    call.split_whitespace().nth(1).unwrap_or("")
}

#[test]
fn the_example_fleet_builds_and_a_second_build_is_one_pct_list() {
    let n = Node::new();
    let r = n.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let first = n.calls();
    assert!(
        first.iter().any(|c| c.starts_with("pct create 900 ")),
        "{first:?}"
    );
    assert!(
        first
            .iter()
            .any(|c| c.starts_with("pct clone 900 901 --snapname phx-")),
        "{first:?}"
    );
    // pct-spec §5: the CT's config is Proxmox's, with phoenix's marker and the GPU's devN.
    let conf = fs::read_to_string(n.conf(901)).unwrap();
    assert!(conf.contains("tags: phoenix"), "{conf}");
    assert!(conf.contains("dev0: /dev/nvidia0,mode=0666"), "{conf}");
    assert!(conf.contains("\n[phx-"), "{conf}");

    let r = n.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let again: Vec<String> = n.calls()[first.len()..].to_vec();
    assert_eq!(
        again,
        ["pct list"],
        "a no-op build reads files and runs one pct list"
    );
}

#[test]
fn a_hook_edit_rebuilds_exactly_its_subtree() {
    let n = Node::new();
    assert_eq!(n.phoenix(&["build"]).code, 0);
    let before = n.calls().len();
    let hook = n.f.hook_path(920);
    let mut text = fs::read_to_string(&hook).unwrap();
    text.push_str("\n# v2\n");
    fs::write(&hook, text).unwrap();
    let r = n.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let touched: std::collections::BTreeSet<String> = n.calls()[before..]
        .iter()
        .filter(|c| MUTATING.contains(&verb(c)))
        .filter_map(|c| {
            // `pct clone <source> <target>` changes the target.
            let at = if verb(c) == "clone" { 3 } else { 2 };
            c.split_whitespace().nth(at).map(str::to_string)
        })
        .collect();
    assert_eq!(
        touched.into_iter().collect::<Vec<_>>(),
        ["920", "950"],
        "only 920 and its clone 950 change"
    );
}

#[test]
fn configs_phoenix_did_not_make_stay_byte_identical() {
    let n = Node::new();
    let foreign = [
        (101, "101-snapshots.conf"),
        (102, "102-foreign.conf"),
        (103, "103-pending.conf"),
        (104, "104-template.conf"),
    ];
    for (ctid, name) in foreign {
        fs::write(n.conf(ctid), fixture_conf(name)).unwrap();
    }
    assert_eq!(n.phoenix(&["build"]).code, 0);
    let r = n.phoenix(&["gc", "--orphans", "--keep", "0"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    for (ctid, name) in foreign {
        assert_eq!(
            fs::read(n.conf(ctid)).unwrap(),
            fixture_conf(name),
            "{name}"
        );
    }
    let on_foreign: Vec<String> = n
        .calls()
        .into_iter()
        .filter(|c| {
            c.split_whitespace()
                .nth(2)
                .is_some_and(|id| id.starts_with("10"))
        })
        .collect();
    assert!(
        on_foreign.is_empty(),
        "pct called on foreign CTs: {on_foreign:?}"
    );
}

#[test]
fn a_vmid_taken_on_another_node_is_unmanaged() {
    let n = Node::new();
    let other = n.root.join("etc/pve/nodes/pve2/qemu-server");
    fs::create_dir_all(&other).unwrap();
    fs::write(other.join("950.conf"), "memory: 1024\n").unwrap();
    let r = n.phoenix(&["plan", "--output", "json"]);
    let v = r.json();
    let e = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ctid"] == 950)
        .unwrap()
        .clone();
    assert_eq!(e["action"], "unmanaged", "{e}");
}

#[test]
fn without_pct_on_path_the_backend_says_where_it_runs() {
    let f = Fixture::example();
    let r = f.phoenix_env(
        &["plan"],
        &[("PHOENIX_BACKEND", "pve"), ("PATH", "/nonexistent")],
    );
    assert_eq!(r.code, 6);
    assert!(r.stderr.contains("`pct` is not on PATH"), "{}", r.stderr);
}

/// The `lxc.*` and `devN` lines of a config's main section.
fn device_lines(conf: &str) -> Vec<String> {
    conf.split("\n\n")
        .next()
        .unwrap()
        .lines()
        .filter(|l| l.starts_with("lxc.") || l.starts_with("dev"))
        .map(str::to_string)
        .collect()
}

#[test]
fn gpu_passthrough_is_dev_entries_on_pve_container_5_0_7_and_later() {
    let n = Node::new();
    n.pve_container("6.1.10");
    assert_eq!(n.phoenix(&["build"]).code, 0);
    // pct-spec §5: devN entries; Proxmox makes the nodes and cgroup rules itself.
    assert_eq!(
        device_lines(&fs::read_to_string(n.conf(901)).unwrap()),
        [
            "dev0: /dev/nvidia0,mode=0666",
            "dev1: /dev/nvidiactl,mode=0666",
            "dev2: /dev/nvidia-uvm,mode=0666",
            "dev3: /dev/nvidia-uvm-tools,mode=0666",
        ]
    );
    let set_devs: Vec<String> = n
        .calls()
        .into_iter()
        .filter(|c| c.contains(" --dev"))
        .collect();
    assert_eq!(
        set_devs,
        [901, 903].map(|c| format!("pct set {c} --dev0 /dev/nvidia0,mode=0666 --dev1 /dev/nvidiactl,mode=0666 --dev2 /dev/nvidia-uvm,mode=0666 --dev3 /dev/nvidia-uvm-tools,mode=0666")),
        "clones inherit the entries: 920 and 950 need none set (903 clones 902, which has no GPU)"
    );

    // A node that loses its GPU loses the entries its clone source passed on.
    n.f.edit_block(950, |b| {
        b.insert("gpu_assignment".into(), serde_json::json!("none"));
    });
    let r = n.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(
        device_lines(&fs::read_to_string(n.conf(950)).unwrap()),
        Vec::<String>::new()
    );
    assert!(n
        .calls()
        .contains(&"pct set 950 --delete dev0,dev1,dev2,dev3".to_string()));
}

#[test]
fn before_pve_container_5_0_7_passthrough_is_raw_lxc_lines_edited_under_the_config_lock() {
    let n = Node::new();
    n.pve_container("5.0.6");
    let r = n.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Majors from the host's /proc/devices (tests/fixtures/host/proc-devices.txt).
    let want = [
        "lxc.cgroup2.devices.allow: c 195:* rwm",
        "lxc.cgroup2.devices.allow: c 238:* rwm",
        "lxc.cgroup2.devices.allow: c 237:* rwm",
        "lxc.mount.entry: /dev/nvidia0 dev/nvidia0 none bind,optional,create=file",
        "lxc.mount.entry: /dev/nvidiactl dev/nvidiactl none bind,optional,create=file",
        "lxc.mount.entry: /dev/nvidia-uvm dev/nvidia-uvm none bind,optional,create=file",
        "lxc.mount.entry: /dev/nvidia-uvm-tools dev/nvidia-uvm-tools none bind,optional,create=file",
    ];
    for ctid in [901, 903, 920, 950] {
        assert_eq!(
            device_lines(&fs::read_to_string(n.conf(ctid)).unwrap()),
            want,
            "CT {ctid}"
        );
    }
    assert!(
        !n.calls().iter().any(|c| c.contains("--dev")),
        "no devN on this pve-container"
    );
    // The emulator reads the file as Proxmox would: the raw lines are part of the CT.
    let shown = std::process::Command::new(n.bin.join("pct"))
        .args(["config", "901"])
        .env("PVE_EMULATOR_ROOT", &n.root)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&shown.stdout)
        .contains("lxc.mount.entry: /dev/nvidia0 dev/nvidia0 none bind,optional,create=file"));

    // A rerun adds nothing (and runs one pct list).
    let before = n.calls().len();
    let conf = fs::read(n.conf(950)).unwrap();
    assert_eq!(n.phoenix(&["build"]).code, 0);
    assert_eq!(n.calls()[before..], ["pct list"]);
    assert_eq!(fs::read(n.conf(950)).unwrap(), conf);

    // A removed GPU is removed; other raw lines stay.
    let mut text = fs::read_to_string(n.conf(950)).unwrap();
    text = text.replacen(
        "lxc.cgroup2.devices.allow: c 195",
        "lxc.apparmor.profile: unconfined\nlxc.cgroup2.devices.allow: c 195",
        1,
    );
    fs::write(n.conf(950), text).unwrap();
    n.f.edit_block(950, |b| {
        b.insert("gpu_assignment".into(), serde_json::json!("none"));
    });
    assert_eq!(n.phoenix(&["build"]).code, 0);
    assert_eq!(
        device_lines(&fs::read_to_string(n.conf(950)).unwrap()),
        ["lxc.apparmor.profile: unconfined"]
    );
}

#[test]
fn the_upstream_fleet_builds_completely_on_a_node_laid_out_like_its_users() {
    let f = Fixture::empty();
    let fleet = common::repo().join("tests/fixtures/fleets/upstream-fe8c1c1");
    for name in [
        "phoenix_lxc_configs.json",
        "phoenix_lxc_configs.schema.json",
        "phoenix_hypervisor_config.json",
        "phoenix_hypervisor_config.schema.json",
    ] {
        fs::copy(fleet.join(name), f.config_dir.join(name)).unwrap();
    }
    let n = Node::on(f);
    n.storage_cfg(
        "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\n\
         zfspool: lxc-disks\n\tpool quickOS/lxc-disks\n\tcontent rootdir,images\n\tsparse 1\n",
    );
    // The driver the fleet pins; its template is a path, not a volume.
    let version = n.root.join("proc/driver/nvidia/version");
    let text = fs::read_to_string(&version).unwrap();
    fs::write(&version, text.replace("580.76.05", "580.76.06")).unwrap();

    // Preflight names what the node lacks before anything is touched.
    let r = n.phoenix(&["plan", "--output", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let problems = r.json()["preflight"].as_array().unwrap().clone();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0]["ctid"], 900);
    assert!(problems[0]["message"].as_str().unwrap().contains(
        "fastData/shared-iso/template/cache/ubuntu-24.04-standard_24.04-2_amd64.tar.zst is missing"
    ));
    assert!(n.calls().iter().all(|c| c == "pct list"), "{:?}", n.calls());

    n.file("fastData/shared-iso/template/cache/ubuntu-24.04-standard_24.04-2_amd64.tar.zst");
    let r = n.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for ctid in [900, 901, 902, 910, 920, 950] {
        let conf = fs::read_to_string(n.conf(ctid)).unwrap();
        assert!(
            conf.contains("rootfs: lxc-disks:subvol-"),
            "CT {ctid} on lxc-disks: {conf}"
        );
        assert!(conf.contains("\n[phx-"), "CT {ctid} has its build snapshot");
    }
    // Two GPUs: both nodes, majors from the host, in every GPU CT.
    let conf = fs::read_to_string(n.conf(950)).unwrap();
    assert!(
        conf.contains("dev0: /dev/nvidia0,mode=0666")
            && conf.contains("dev1: /dev/nvidia1,mode=0666"),
        "{conf}"
    );
    assert!(
        conf.contains("hwaddr=52:54:00:67:89:B0"),
        "the fleet's MAC: {conf}"
    );
    assert!(conf.contains("ip=10.0.0.150/24"), "{conf}");

    let before = n.calls().len();
    assert_eq!(n.phoenix(&["build"]).code, 0);
    assert_eq!(n.calls()[before..], ["pct list"]);
}

#[test]
fn hooks_get_the_nodes_pct_and_the_contracts_variables() {
    let n = Node::new();
    let out = n.f.tmp.path().join("hook-910.txt");
    n.f.write_hook(
        910,
        &format!(
            "#!/bin/bash\nset -eu\n{{\n  echo \"pct=$(command -v pct)\"\n  env | grep '^PHOENIX_' | grep -v '^PHOENIX_CONFIG_BLOCK=' | sort\n  pct status \"$1\"\n}} > {}\n",
            out.display()
        ),
    );
    let r = n.phoenix(&["build", "910"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let seen = fs::read_to_string(&out).unwrap();
    let var = |k: &str| {
        seen.lines()
            .find_map(|l| l.strip_prefix(&format!("{k}=")))
            .unwrap_or_else(|| panic!("{k} missing: {seen}"))
            .to_string()
    };
    assert_eq!(var("pct"), n.bin.join("pct").display().to_string());
    assert_eq!(var("PHOENIX_BACKEND"), "pve");
    assert_eq!(var("PHOENIX_CTID"), "910");
    assert_eq!(var("PHOENIX_NAME"), "Portainer");
    assert_eq!(var("PHOENIX_IS_TEMPLATE"), "0");
    assert_eq!(var("PHOENIX_PARENT_CTID"), "902");
    assert!(var("PHOENIX_PARENT_SNAPSHOT").starts_with("phx-"));
    assert!(var("PHOENIX_SNAPSHOT").starts_with("phx-"));
    assert_eq!(var("PHOENIX_NVIDIA_DRIVER_VERSION"), "580.76.05");
    assert!(var("PHOENIX_CONFIG_FILE").ends_with("phoenix_lxc_configs.json"));
    assert_eq!(
        var("PHOENIX_HOOKS_DIR"),
        n.f.hooks_dir.display().to_string()
    );
    // The hook's own pct call reached the node, and was logged like phoenix's.
    assert!(seen.contains("status: running"), "{seen}");
    assert!(n.calls().contains(&"pct status 910".to_string()));
}

/// pct-spec §1: the commands phoenix runs for a base template (900), a GPU template
/// cloned from it (901) and a container cloned from that (950), in order (`-j 1`), as
/// the emulator logged them. Hashes, times and temporary paths are masked.
#[test]
fn the_pct_commands_of_a_base_template_a_gpu_template_and_a_clone_read_as_an_admin_types_them() {
    let n = Node::new();
    n.f.edit_lxc(|v| {
        let configs = v["lxc_configs"].as_object_mut().unwrap();
        configs.retain(|k, _| ["900", "901", "950"].contains(&k.as_str()));
        configs["950"]["clone_from_template_ctid"] = serde_json::json!("901");
    });
    let r = n.phoenix(&["build", "-j", "1"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    insta::with_settings!({
        filters => vec![
            (r"phx-[0-9a-f]{32}", "phx-<hash>"),
            (r"(hash|parent): [0-9a-f]{64}", "$1: <hash>"),
            (r"built: \d+", "built: <time>"),
            (r"phoenix \d+\.\d+\.\d+ build", "phoenix <version> build"),
            (r"\S*/state/scripts/[0-9a-f]{64}", "<state-dir>/scripts/<content-hash>"),
            (r"/tmp/phoenix-step-(nvidia|docker)\.[A-Za-z0-9]{6}", "/tmp/phoenix-step-$1.<temp>"),
            (r"/tmp/phoenix-push-check\.[A-Za-z0-9]{6}", "/tmp/phoenix-push-check.<temp>"),
        ],
    }, {
        insta::assert_snapshot!(n.calls().join("\n"));
    });
}

/// Issue contract "secrets rotate", on the emulated node: a changed secret of 910 is an
/// `update` naming the field, delivered by 910's hook on the running CT; no pct command
/// of a rebuild (no destroy, clone, snapshot) and the value is in no pct argument.
#[test]
fn a_rotated_secret_reaches_the_running_ct_through_its_hook_and_nothing_is_rebuilt() {
    let n = Node::new();
    n.f.edit_block(910, |b| {
        b.insert(
            "portainer_admin_password".into(),
            serde_json::json!("first-horse-battery"),
        );
    });
    let runs = n.f.tmp.path().join("runs");
    n.f.write_hook(
        910,
        &format!(
            "#!/bin/sh\nset -e\necho \"rotated=$PHOENIX_SECRETS_ROTATED $(pct status 910)\" >> {runs}\nprintf '%s' \"$PHOENIX_CONFIG_BLOCK\" > {runs}.block\npct push 910 {runs}.block /root/block.json\n",
            runs = runs.display()
        ),
    );
    assert_eq!(n.phoenix(&["build"]).code, 0);
    n.f.edit_block(910, |b| {
        b.insert(
            "portainer_admin_password".into(),
            serde_json::json!("second-horse-battery"),
        );
    });
    let plan = n.phoenix(&["plan", "--output", "json"]).json();
    let entry = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ctid"] == 910)
        .unwrap()
        .clone();
    assert_eq!(entry["action"], "update");
    assert_eq!(
        entry["secrets"],
        serde_json::json!([{"field": "portainer_admin_password", "change": "changed"}])
    );
    let before = n.calls().len();
    let r = n.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout.contains("summary: 1 updated, 6 fresh"),
        "{}",
        r.stdout
    );
    let calls = n.calls()[before..].to_vec();
    assert!(calls.contains(&"pct status 910".to_string()), "{calls:?}");
    assert!(
        calls.iter().any(|c| c.starts_with("pct push 910 ")),
        "{calls:?}"
    );
    for c in &calls {
        assert!(
            !["destroy", "clone", "create", "snapshot", "shutdown"].contains(&verb(c)),
            "{calls:?}"
        );
        assert!(!c.contains("horse"), "{c}");
    }
    let ran = fs::read_to_string(&runs).unwrap();
    assert_eq!(
        ran.lines().last(),
        Some("rotated=portainer_admin_password status: running")
    );
    let second = n.phoenix(&["plan", "--output", "json"]).json();
    assert_eq!(second["counts"], serde_json::json!({"fresh": 7}));
}

/// The build's failure text for one node, from JSON events.
fn node_error(r: &Run, ctid: u64) -> String {
    r.stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|e| e["event"] == "node_finished" && e["ctid"] == ctid)
        .and_then(|e| e["error"].as_str().map(str::to_string))
        .unwrap_or_default()
}

/// Issue contract `rollback_on_failure`, on the emulated node: a failed in-place rebuild is
/// `pct rollback` to the CT's newest `phx-*` snapshot and started again; a failed create
/// is `pct destroy`ed; without it the CT is left and the error says how to look inside.
#[test]
fn rollback_on_failure_is_pct_rollback_or_pct_destroy_and_without_it_the_ct_is_left() {
    let n = Node::new();
    n.f.edit_hv(|v| v["behavior"]["rollback_on_failure"] = serde_json::json!(true));
    assert_eq!(n.phoenix(&["build"]).code, 0);
    let conf = fs::read_to_string(n.conf(950)).unwrap();
    let snap = conf
        .lines()
        .find_map(|l| l.strip_prefix("parent: "))
        .unwrap()
        .to_string();
    n.f.write_hook(950, "#!/bin/sh\nexit 2\n");
    n.f.write_hook(910, "#!/bin/sh\nexit 2\n");
    let before = n.calls().len();
    let r = n.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        node_error(&r, 950).contains(&format!("CT 950 was rolled back to {snap}")),
        "{}",
        node_error(&r, 950)
    );
    let calls = n.calls()[before..].to_vec();
    let at = |cmd: &str| {
        calls
            .iter()
            .position(|c| c == cmd)
            .unwrap_or_else(|| panic!("no `{cmd}` in {calls:?}"))
    };
    let restarted = calls.iter().rposition(|c| c == "pct start 950").unwrap();
    assert!(
        at(&format!("pct rollback 950 {snap}")) < restarted,
        "{calls:?}"
    );
    assert_eq!(
        fs::read_to_string(n.conf(950))
            .unwrap()
            .lines()
            .find_map(|l| l.strip_prefix("parent: ")),
        Some(snap.as_str())
    );
    assert_eq!(
        n.phoenix(&["plan", "--output", "json"]).json()["counts"]["rebuild"],
        2,
        "910 and 950 are rebuilt by the next run"
    );

    // A CT the run created is destroyed.
    let g = Node::new();
    g.f.edit_hv(|v| v["behavior"]["rollback_on_failure"] = serde_json::json!(true));
    g.f.write_hook(910, "#!/bin/sh\nexit 2\n");
    let r = g.phoenix(&["build", "--output", "json"]);
    assert!(node_error(&r, 910).contains("the half-built CT 910 was destroyed"));
    assert!(g.calls().iter().any(|c| c.starts_with("pct destroy 910")));
    assert!(!g.conf(910).exists());

    // Without it, the CT stays for inspection.
    let h = Node::new();
    h.f.write_hook(910, "#!/bin/sh\nexit 2\n");
    let r = h.phoenix(&["build", "--output", "json"]);
    assert!(node_error(&r, 910).contains("look inside with `pct enter 910`"));
    assert!(h.conf(910).exists());
    assert!(!h.calls().iter().any(|c| c.starts_with("pct destroy")));
}

/// Issue contract items 2–5 on the emulated node: the host set-up runs first with the
/// node's `pct` (before any CT exists), the user's own step scripts get the original's
/// arguments and run while their CT runs, `debug_mode` reaches hooks, and every run appends
/// to the main log.
#[test]
fn the_originals_host_scripts_debug_mode_and_main_log_on_a_proxmox_node() {
    let n = Node::new();
    let out = n.f.tmp.path().join("host-scripts.txt");
    let script = |name: &str, body: &str| {
        let p = n.f.hooks_dir.join(name);
        fs::write(&p, body).unwrap();
        n.f.set_mode(&p, 0o755);
    };
    let o = out.display();
    script(
        "phoenix_hypervisor_initial_setup.sh",
        &format!("#!/bin/sh\necho \"setup $PHOENIX_BACKEND $(pct list | wc -l)\" >> {o}\n"),
    );
    for name in [
        "phoenix_hypervisor_lxc_nvidia.sh",
        "phoenix_hypervisor_lxc_docker.sh",
    ] {
        script(
            name,
            &format!("#!/bin/sh\necho \"$(basename \"$0\") $* $(pct status \"$1\")\" >> {o}\n"),
        );
    }
    n.f.edit_hv(|v| v["behavior"]["debug_mode"] = serde_json::json!(true));
    n.f.write_hook(
        910,
        &format!("#!/bin/sh\necho \"hook debug=$PHOENIX_DEBUG\" >> {o}\n"),
    );
    let r = n.phoenix(&["build", "-j", "1", "901", "910"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stderr.contains("INFO"), "as with -v: {}", r.stderr);
    let seen = fs::read_to_string(&out).unwrap();
    let lines: Vec<&str> = seen.lines().collect();
    assert_eq!(lines[0], "setup pve 0", "before any CT: {seen}");
    let lxc = n.f.lxc();
    let field = |k: &str| lxc[k].as_str().unwrap().to_string();
    let nvidia = format!(
        "phoenix_hypervisor_lxc_nvidia.sh 901 {} {} {} status: running",
        field("nvidia_driver_version"),
        field("nvidia_repo_url"),
        field("nvidia_runfile_url")
    );
    assert!(lines.contains(&nvidia.as_str()), "{seen}");
    assert!(
        lines.contains(
            &"phoenix_hypervisor_lxc_docker.sh 910 server 10.0.0.99 9001 status: running"
        ),
        "{seen}"
    );
    assert!(seen.contains("hook debug=1"), "{seen}");
    let main_log = n.f.tmp.path().join("phoenix.log");
    let first = fs::read_to_string(&main_log).unwrap();
    assert!(first.contains(" 910 Portainer"), "{first}");
    assert_eq!(n.phoenix(&["build", "950"]).code, 0);
    let again = fs::read_to_string(&main_log).unwrap();
    assert!(
        again.starts_with(&first) && again.contains(" 950 "),
        "appended"
    );
}

/// A terminal's Ctrl-C signals phoenix's whole foreground process group. The `pct` in
/// flight is in a group of its own, so it finishes its task (CT 900 is created, not left
/// half made); phoenix then stops with 130, and the next run goes on from there.
#[test]
fn ctrl_c_at_a_terminal_lets_the_pct_in_flight_finish() {
    let n = Node::new();
    let root = n.root.display().to_string();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_phoenix"));
    cmd.args(["build", "--output", "json"])
        .env("PHOENIX_CONFIG_DIR", &n.f.config_dir)
        .env("PHOENIX_HOOKS_DIR", &n.f.hooks_dir)
        .env("PHOENIX_STATE_DIR", &n.f.state_dir)
        .env("PHOENIX_BACKEND", "pve")
        .env("PHOENIX_PVE_ROOT", &root)
        .env("PVE_EMULATOR_ROOT", &root)
        .env("PVE_EMULATOR_LATENCY_MS", "1500")
        .env("PATH", n.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // A process group of its own, as a shell gives a foreground job.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !n.calls().iter().any(|c| c.starts_with("pct create 900 ")) {
        assert!(std::time::Instant::now() < deadline, "{:?}", n.calls());
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let group = libc::pid_t::try_from(child.id()).unwrap();
    // SAFETY: kill(2) of the job's process group, as the terminal does on Ctrl-C.
    unsafe { libc::kill(-group, libc::SIGINT) };
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130));
    let conf = fs::read_to_string(n.conf(900)).expect("the create finished");
    assert!(!conf.contains("lock:"), "{conf}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.lines().last().unwrap_or("").contains("run_finished"));
    let r = n.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
}

/// The lock that keeps two builds apart is the node's, not the state directory's: a
/// second phoenix with a state directory of its own waits its turn instead of racing the
/// first on the same CTs, and is told which node and who holds it.
#[test]
fn two_state_directories_on_one_node_take_turns() {
    let n = Node::new();
    let root = n.root.display().to_string();
    let env = [
        ("PHOENIX_BACKEND", "pve"),
        ("PHOENIX_PVE_ROOT", root.as_str()),
        ("PVE_EMULATOR_ROOT", root.as_str()),
        ("PVE_EMULATOR_LATENCY_MS", "300"),
    ];
    let mut cmd = n.f.command(&["build"], &env);
    cmd.env("PATH", n.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let mut first = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while n.calls().is_empty() {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let other = n.f.tmp.path().join("other-state");
    let path = n.path();
    let r = n.f.phoenix_env(
        &["build"],
        &[
            ("PHOENIX_BACKEND", "pve"),
            ("PHOENIX_PVE_ROOT", &root),
            ("PVE_EMULATOR_ROOT", &root),
            ("PATH", &path),
            ("PHOENIX_STATE_DIR", other.to_str().unwrap()),
        ],
    );
    first.kill().unwrap();
    first.wait().unwrap();
    assert_eq!(r.code, 5, "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("phoenix build (pid {}, started", first.id()))
            && r.stderr.contains(&format!(
                "state directory {}) is building on the pve host node pve",
                n.f.state_dir.display()
            ))
            && r.stderr.contains("run/lock/phoenix.lock"),
        "{}",
        r.stderr
    );
}

/// `phoenix rollback` on a Proxmox node is the `pct` an admin would type: stop, delete
/// the newer snapshot (ZFS rolls back only to the most recent one), roll back, start.
#[test]
fn a_rollback_is_pct_shutdown_delsnapshot_rollback_start() {
    let n = Node::new();
    assert_eq!(n.phoenix(&["build"]).code, 0);
    let snaps = |n: &Node| -> Vec<String> {
        let text = fs::read_to_string(n.conf(910)).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("[phx-").and_then(|r| r.strip_suffix(']')))
            .map(|h| format!("phx-{h}"))
            .collect()
    };
    let first = snaps(&n).pop().unwrap();
    let hook = n.f.hook_path(910);
    fs::write(&hook, fs::read_to_string(&hook).unwrap() + "echo v2\n").unwrap();
    assert_eq!(n.phoenix(&["build"]).code, 0);
    let second = snaps(&n).into_iter().find(|s| *s != first).unwrap();
    let before = n.calls().len();
    let r = n.phoenix(&["rollback", "910", "--force"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let calls: Vec<String> = n.calls()[before..]
        .iter()
        .filter(|c| !c.starts_with("pct list") && !c.starts_with("pct config"))
        .cloned()
        .collect();
    assert_eq!(
        calls,
        [
            "pct shutdown 910 --timeout 60 --forceStop 1".to_string(),
            format!("pct delsnapshot 910 {second}"),
            format!("pct rollback 910 {first}"),
            "pct start 910".to_string(),
        ]
    );
    let r = n.phoenix(&["plan", "--output", "json"]);
    let node = r.json()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ctid"] == 910)
        .unwrap()
        .clone();
    assert_eq!(node["action"], "pinned");
}

/// A container replaced by a build is kept first, as Proxmox keeps a CT beyond its life
/// (`vzdump` to a storage with `backup` content), and `phoenix rollback` brings it back
/// with `pct restore`: the sequence an admin would type, pinned.
#[test]
fn a_kept_generation_is_vzdump_then_pct_restore() {
    let n = Node::new();
    assert_eq!(n.phoenix(&["build"]).code, 0);
    let hook = n.f.hook_path(902);
    fs::write(&hook, fs::read_to_string(&hook).unwrap() + "echo more\n").unwrap();
    let before = n.calls().len();
    let r = n.phoenix(&["build", "--replace", "910"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let r = n.phoenix(&["rollback", "910"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let calls: Vec<String> = n.calls()[before..]
        .iter()
        .filter(|c| c.contains(" 910") || c.starts_with("vzdump") || c.starts_with("pvesm"))
        .filter(|c| !c.starts_with("pct config") && !c.starts_with("pct status"))
        .cloned()
        .collect();
    insta::with_settings!({
        filters => vec![
            (r"phx-[0-9a-f]{32}", "phx-<hash>"),
            (r"vzdump-lxc-910-[0-9_-]+\.tar", "vzdump-lxc-910-<time>.tar"),
            (r"(hash|parent|built): [0-9a-f]+", "$1: <value>"),
            (r"/tmp/\S+", "<temp>"),
        ],
    }, {
        insta::assert_snapshot!(calls.join("\n"));
    });
    let dump = n.root.join("var/lib/vz/dump");
    let archives: Vec<String> = fs::read_dir(&dump)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tar"))
        .collect();
    assert_eq!(
        archives.len(),
        2,
        "the replaced generation and the one the rollback replaced: {archives:?}"
    );
    let notes = fs::read_to_string(dump.join(format!("{}.notes", archives[0]))).unwrap();
    assert!(notes.starts_with("phoenix: generation phx-"), "{notes}");
}

/// With `store_vmid_range`, a built template generation becomes a Proxmox template of its
/// own (a full clone of its snapshot, `pct template`, then phoenix's tags and its record
/// marked complete, the mark last), and its child is a linked clone of it: the sequence an
/// admin would type, pinned.
#[test]
fn a_template_generation_becomes_a_store_template_and_its_child_a_linked_clone() {
    let n = Node::new();
    n.f.edit_hv(|hv| hv["proxmox_defaults"]["store_vmid_range"] = "9000-9099".into());
    let r = n.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let calls: Vec<String> = n
        .calls()
        .into_iter()
        .filter(|c| {
            c.contains(" 9003")
                || (c.contains(" 950")
                    && !c.starts_with("pct exec")
                    && !c.starts_with("pct push")
                    && !c.starts_with("pct pull"))
        })
        .collect();
    insta::with_settings!({
        filters => vec![
            (r"phx-[0-9a-f]{32}", "phx-<hash>"),
            (r"(hash|parent|built|made)%3A [0-9a-f]+", "$1%3A <value>"),
            (r"(hash|parent|built|made): [0-9a-f]+", "$1: <value>"),
            (r"/tmp/\S+", "<temp>"),
        ],
    }, {
        insta::assert_snapshot!(calls.join("\n"));
    });
    let conf = fs::read_to_string(n.conf(9003)).unwrap();
    assert!(
        conf.contains("rootfs: local-zfs:basevol-9003-disk-0,size=64G\n"),
        "{conf}"
    );
    assert!(
        conf.contains("template: 1\n") && conf.contains("tags: phoenix;phoenix-store\n"),
        "{conf}"
    );
    let conf = fs::read_to_string(n.conf(950)).unwrap();
    assert!(
        conf.contains("rootfs: local-zfs:basevol-9003-disk-0/subvol-950-disk-0,size=100G\n"),
        "{conf}"
    );
    assert!(conf.contains("tags: phoenix\n"), "{conf}");
    // The model behind the emulator counts what each clone copied: the store template one
    // full copy, the child nothing.
    let log = fs::read_to_string(n.root.join("calls.log")).unwrap();
    let bytes = |ctid: u64| {
        log.lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|c| c["verb"] == "clone" && c["ctid"] == ctid)
            .and_then(|c| c["bytes"].as_u64())
    };
    assert_eq!(bytes(950), Some(0));
    assert!(bytes(9003).is_some_and(|b| b > 0));
    // Proxmox refuses to remove a base volume in use; gc never tries.
    let r = n.phoenix(&["gc"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(!n.calls().iter().any(|c| c.starts_with("pct destroy 900")));
}

/// A child on a `dir` storage cannot be a linked clone: the plan says so, and it is the
/// full clone of its parent's snapshot it was before store templates.
#[test]
fn a_child_on_a_dir_storage_gets_a_full_clone_and_the_plan_says_so() {
    let n = Node::new();
    n.storage_cfg(
        "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup,rootdir\n\n\
         zfspool: local-zfs\n\tpool rpool/data\n\tsparse\n\tcontent images,rootdir\n",
    );
    n.f.edit_hv(|hv| hv["proxmox_defaults"]["store_vmid_range"] = "9000-9099".into());
    n.f.edit_block(910, |b| {
        b.insert("storage_pool".into(), "local".into());
    });
    let r = n.phoenix(&["plan", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let plan = r.json();
    let entry = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["ctid"] == 910)
        .unwrap()
        .clone();
    assert_eq!(
        entry["clone"],
        serde_json::json!({"kind": "full", "because": "no_linked_clones", "storage": "local"})
    );
    let human = n.phoenix(&["plan"]).stdout;
    let line = human.lines().find(|l| l.contains(" 910 ")).unwrap();
    assert!(
        line.ends_with("new node: no CT with this id; a full clone: storage 'local' makes no linked clones (Proxmox links them on ZFS, LVM-thin, Ceph RBD and btrfs)"),
        "{line}"
    );
    // Proxmox takes no snapshot of a CT disk on a dir storage: the node then fails at its
    // snapshot, as it would have without store templates.
    let r = n.phoenix(&["build", "910"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout
            .contains("910 Portainer: failed at snapshot: pct snapshot 910 phx-"),
        "{}",
        r.stdout
    );
    let clone = n
        .calls()
        .into_iter()
        .find(|c| c.starts_with("pct clone 902 910 "))
        .unwrap_or_else(|| panic!("{:?}", n.calls()));
    assert_eq!(
        clone.split(" --snapname ").next().unwrap(),
        "pct clone 902 910",
        "from 902's snapshot, not a store template"
    );
    assert!(
        clone.ends_with(" --hostname Portainer --full 1 --storage local"),
        "{clone}"
    );
    let conf = fs::read_to_string(n.conf(910)).unwrap();
    assert!(
        conf.contains("rootfs: local:910/subvol-910-disk-0.subvol"),
        "{conf}"
    );
}

/// `pct template` exits 0 when its worker fails, with the error on stderr (pct-spec §0):
/// the store step fails on it, and nothing links to what is left.
#[test]
fn a_pct_template_that_fails_with_exit_0_fails_the_store_step() {
    let n = Node::new();
    n.f.edit_hv(|hv| hv["proxmox_defaults"]["store_vmid_range"] = "9000-9099".into());
    let path = n.path();
    let root = n.root.display().to_string();
    let r = n.f.phoenix_env(
        &["build"],
        &[
            ("PHOENIX_BACKEND", "pve"),
            ("PHOENIX_PVE_ROOT", &root),
            ("PVE_EMULATOR_ROOT", &root),
            ("PATH", &path),
            ("PHOENIX_RETRY_DELAY_MS", "5"),
            ("PVE_EMULATOR_FAULTS", "template:9000=fail"),
        ],
    );
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    assert!(
        r.stdout.contains(
            "900 BaseTemplate: failed at store: pct template 9000: simulated failure (template:9000=fail)"
        ),
        "{}",
        r.stdout
    );
    assert!(
        !n.calls().iter().any(|c| c.starts_with("pct clone 9000 ")),
        "nothing links to it"
    );
}
