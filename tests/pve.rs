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
    fn new() -> Node {
        let f = Fixture::example();
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
        for n in ["nvidia0", "nvidiactl", "nvidia-uvm", "nvidia-uvm-tools"] {
            fs::write(root.join("dev").join(n), "").unwrap();
        }
        fs::create_dir_all(&bin).unwrap();
        std::os::unix::fs::symlink(emulator(), bin.join("pct")).unwrap();
        Node { f, root, bin }
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
        self.f.phoenix_env(
            args,
            &[
                ("PHOENIX_BACKEND", "pve"),
                ("PHOENIX_PVE_ROOT", &root),
                ("PVE_EMULATOR_ROOT", &root),
                ("PATH", &path),
                ("PHOENIX_RETRY_DELAY_MS", "5"),
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
