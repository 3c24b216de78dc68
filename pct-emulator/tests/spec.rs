//! The `pct-emulator` against `pct-spec.md`: every test runs the emulator binary on a
//! fresh node, as an admin types `pct` (an argument vector, never a shell string), and
//! checks one behaviour of the spec section its doc names.

use std::fs;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// What Proxmox's installer writes on a ZFS root (pct-spec §4): `local` holds templates,
/// `local-zfs` holds CT disks.
const STORAGE_CFG: &str = "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\nzfspool: local-zfs\n\tpool rpool/data\n\tsparse\n\tcontent images,rootdir\n";
const TEMPLATE_FILE: &str = "debian-12-standard_12.7-1_amd64.tar.zst";
const TEMPLATE: &str = "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst";

/// A fresh emulated node: `storage.cfg`, one downloaded OS template, no CTs.
struct Node {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    name: String,
}

/// One finished `pct` invocation.
#[derive(Debug)]
struct Pct {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Node {
    fn new() -> Node {
        Node::named("pve")
    }

    fn named(name: &str) -> Node {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("node");
        fs::create_dir_all(root.join("etc/pve")).unwrap();
        fs::write(root.join("etc/pve/storage.cfg"), STORAGE_CFG).unwrap();
        let cache = root.join("var/lib/vz/template/cache");
        fs::create_dir_all(&cache).unwrap();
        fs::write(cache.join(TEMPLATE_FILE), "").unwrap();
        Node {
            _tmp: tmp,
            root,
            name: name.to_string(),
        }
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pct-emulator"));
        c.args(args)
            .env("PVE_EMULATOR_ROOT", &self.root)
            .env("PVE_EMULATOR_NODE", &self.name)
            .env("TZ", "UTC")
            .env_remove("PVE_EMULATOR_LATENCY_MS")
            .env_remove("PVE_EMULATOR_FAULTS");
        c
    }

    fn pct_env(&self, args: &[&str], env: &[(&str, &str)]) -> Pct {
        let mut c = self.command(args);
        c.envs(env.iter().copied());
        let o = c.output().unwrap();
        Pct {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8(o.stdout).unwrap(),
            stderr: String::from_utf8(o.stderr).unwrap(),
        }
    }

    fn pct(&self, args: &[&str]) -> Pct {
        self.pct_env(args, &[])
    }

    /// A command that must succeed silently on stderr; its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let r = self.pct(args);
        assert_eq!((r.code, r.stderr.as_str()), (0, ""), "pct {args:?}: {r:?}");
        r.stdout
    }

    /// A command that must fail with exit 255; its stderr.
    fn fails(&self, args: &[&str]) -> String {
        let r = self.pct(args);
        assert_eq!(r.code, 255, "pct {args:?}: {r:?}");
        r.stderr
    }

    /// `pct create <ctid>` from the template on `local-zfs`, with extra options.
    fn create(&self, ctid: &str, options: &[&str]) {
        let mut args = vec!["create", ctid, TEMPLATE, "--storage", "local-zfs"];
        args.extend_from_slice(options);
        self.ok(&args);
    }

    fn conf_path(&self, ctid: &str) -> PathBuf {
        self.root
            .join(format!("etc/pve/nodes/{}/lxc/{ctid}.conf", self.name))
    }

    fn conf_text(&self, ctid: &str) -> String {
        fs::read_to_string(self.conf_path(ctid)).unwrap()
    }

    /// Adds lines to a CT's config by hand, as an admin editing the file would.
    fn append_conf(&self, ctid: &str, lines: &str) {
        let text = self.conf_text(ctid) + lines;
        fs::write(self.conf_path(ctid), text).unwrap();
    }

    /// The value of one key as `pct config` (with its options) prints it.
    fn value(&self, ctid: &str, key: &str, options: &[&str]) -> Option<String> {
        let mut args = vec!["config", ctid];
        args.extend_from_slice(options);
        let prefix = format!("{key}: ");
        self.ok(&args)
            .lines()
            .find_map(|l| l.strip_prefix(&prefix).map(str::to_string))
    }

    fn status(&self, ctid: &str) -> String {
        self.ok(&["status", ctid])
    }

    /// A template CT 100 on `local-zfs`.
    fn template(&self) {
        self.create("100", &[]);
        self.ok(&["template", "100"]);
    }
}

fn first_line(text: &str) -> &str {
    text.lines().next().unwrap_or("")
}

// ---------------------------------------------------------------------------------
// §0 cross-cutting command line
// ---------------------------------------------------------------------------------

/// pct-spec §0 two execution styles: a task's error is one line on stderr, nothing on
/// stdout, exit 255.
#[test]
fn a_task_error_is_one_line_on_stderr_and_exit_255() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["start", "100"]);
    let r = n.pct(&["start", "100"]);
    assert_eq!(r.code, 255);
    assert_eq!(r.stdout, "");
    assert_eq!(r.stderr, "CT 100 already running\n");
}

/// pct-spec §0 argument parsing: an unknown command is `ERROR: unknown command 'pct
/// foo'` on stderr, exit 255.
#[test]
fn an_unknown_command_is_refused() {
    let r = Node::new().pct(&["frobnicate", "100"]);
    assert_eq!(r.code, 255);
    assert_eq!(r.stdout, "");
    assert_eq!(
        first_line(&r.stderr),
        "ERROR: unknown command 'pct frobnicate'"
    );
}

/// pct-spec §0 argument parsing: a missing positional is `400 not enough arguments`.
#[test]
fn a_missing_argument_is_not_enough_arguments() {
    let n = Node::new();
    n.create("100", &[]);
    assert_eq!(
        first_line(&n.fails(&["snapshot", "100"])),
        "400 not enough arguments"
    );
}

/// pct-spec §0 argument parsing: an extra positional is `400 too many arguments`.
#[test]
fn an_extra_argument_is_too_many_arguments() {
    let n = Node::new();
    n.create("100", &[]);
    assert_eq!(
        first_line(&n.fails(&["status", "100", "101"])),
        "400 too many arguments"
    );
}

/// pct-spec §0 argument parsing: an unknown option is Getopt's `Unknown option: x`, then
/// `400 unable to parse option`.
#[test]
fn an_unknown_option_is_unable_to_parse_option() {
    let n = Node::new();
    n.create("100", &[]);
    let e = n.fails(&["status", "100", "--frobnicate", "1"]);
    assert!(
        e.starts_with("Unknown option: frobnicate\n400 unable to parse option\n"),
        "{e}"
    );
}

/// pct-spec §0 booleans: `--full` alone, `--full 1` and `--full=yes` all mean 1 (a full
/// clone of a template, whose default is linked, §3).
#[test]
fn every_true_form_of_a_boolean_option_is_true() {
    let n = Node::new();
    n.template();
    for (target, form) in [
        ("101", &["--full"][..]),
        ("102", &["--full", "1"][..]),
        ("103", &["--full=yes"][..]),
    ] {
        let mut args = vec!["clone", "100", target];
        args.extend_from_slice(form);
        n.ok(&args);
        assert_eq!(
            n.value(target, "rootfs", &[]).unwrap(),
            format!("local-zfs:subvol-{target}-disk-0,size=4G"),
            "{form:?}"
        );
    }
}

/// pct-spec §0 argument parsing: a unique prefix of a command is that command (`pct
/// stat` = `pct status`).
#[test]
fn a_unique_prefix_names_its_command() {
    let n = Node::new();
    n.create("100", &[]);
    assert_eq!(n.ok(&["stat", "100"]), "status: stopped\n");
}

/// pct-spec §0 nonexistent CT: `Configuration file 'nodes/<node>/lxc/<vmid>.conf' does
/// not exist`, with the local node's name.
#[test]
fn a_missing_ct_names_the_local_nodes_config_file() {
    let n = Node::named("node7");
    assert_eq!(
        n.fails(&["config", "555"]),
        "Configuration file 'nodes/node7/lxc/555.conf' does not exist\n"
    );
}

/// pct-spec §0 (the emulator's call log): every invocation, failed ones too, is one line
/// of `pct-calls.log`, shell-quoted.
#[test]
fn every_invocation_is_one_line_of_the_call_log() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["set", "100", "--description", "web server"]);
    n.fails(&["start", "999"]);
    let log = fs::read_to_string(n.root.join("pct-calls.log")).unwrap();
    assert_eq!(
        log,
        format!(
            "pct create 100 {TEMPLATE} --storage local-zfs\npct set 100 --description 'web server'\npct start 999\n"
        )
    );
}

/// pct-spec §0 exit codes: `push` has no `$upid_exit`, so a failure inside its worker
/// is printed on stderr yet exits 0.
#[test]
fn a_push_failing_in_its_worker_exits_0() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["start", "100"]);
    let missing = n.root.join("no-such-file");
    let r = n.pct(&["push", "100", missing.to_str().unwrap(), "/root/x"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(
        r.stderr,
        format!("failed to open {} for reading\n", missing.display())
    );
}

// ---------------------------------------------------------------------------------
// §1 commands
// ---------------------------------------------------------------------------------

/// pct-spec §1 status: exactly `status: stopped` or `status: running`.
#[test]
fn status_is_running_or_stopped() {
    let n = Node::new();
    n.create("100", &[]);
    assert_eq!(n.status("100"), "status: stopped\n");
    n.ok(&["start", "100"]);
    assert_eq!(n.status("100"), "status: running\n");
}

/// pct-spec §1 list: nothing at all when the node has no CTs.
#[test]
fn list_prints_nothing_without_cts() {
    assert_eq!(Node::new().ok(&["list"]), "");
}

/// pct-spec §1 list: `%-10s %-10s %-12s %-20s` rows (trailing spaces kept), sorted by
/// VMID as a number, the lock in its column.
#[test]
fn list_pads_its_columns_and_sorts_by_vmid() {
    let n = Node::new();
    n.create("1000", &[]);
    n.create("101", &["--hostname", "web01"]);
    n.ok(&["start", "101"]);
    n.append_conf("1000", "lock: backup\n");
    assert_eq!(
        n.ok(&["list"]),
        "VMID       Status     Lock         Name                \n\
         101        running                 web01               \n\
         1000       stopped    backup       CT1000              \n"
    );
}

/// pct-spec §1 config: every key sorted, `key: value`, the description URI-escaped
/// (`:` as `%3A`, `%` as `%25`, a newline as `%0A`).
#[test]
fn config_sorts_keys_and_escapes_the_description() {
    let n = Node::new();
    n.create(
        "100",
        &[
            "--hostname",
            "web01",
            "--memory",
            "1024",
            "--description",
            "web: 50%\nsecond",
        ],
    );
    let out = n.ok(&["config", "100"]);
    let keys: Vec<&str> = out.lines().map(|l| l.split(':').next().unwrap()).collect();
    assert_eq!(
        keys,
        [
            "arch",
            "description",
            "hostname",
            "memory",
            "ostype",
            "rootfs",
            "swap",
            "unprivileged"
        ]
    );
    let description = n.value("100", "description", &[]).unwrap();
    assert!(
        description.starts_with("web%3A 50%25%0Asecond"),
        "{description}"
    );
}

/// pct-spec §1 create: defaults `unprivileged: 1`, `hostname: CT<vmid>`, memory and swap
/// 512, a 4 GiB rootfs on the storage; the new CT is stopped.
#[test]
fn create_applies_proxmox_defaults() {
    let n = Node::new();
    n.create("100", &[]);
    assert_eq!(
        n.ok(&["config", "100"]),
        "arch: amd64\nhostname: CT100\nmemory: 512\nostype: debian\nrootfs: local-zfs:subvol-100-disk-0,size=4G\nswap: 512\nunprivileged: 1\n"
    );
    assert_eq!(n.status("100"), "status: stopped\n");
}

/// pct-spec §1 create: `--rootfs local-zfs:8` becomes `local-zfs:subvol-<vmid>-disk-0,size=8G`.
#[test]
fn create_rootfs_on_zfs_is_a_subvol() {
    let n = Node::new();
    n.ok(&["create", "100", TEMPLATE, "--rootfs", "local-zfs:8"]);
    assert_eq!(
        n.value("100", "rootfs", &[]).unwrap(),
        "local-zfs:subvol-100-disk-0,size=8G"
    );
}

/// pct-spec §1 create (and §3 target storage): an unknown storage is `storage '<id>'
/// does not exist`, and no CT is left.
#[test]
fn create_refuses_an_unknown_storage() {
    let n = Node::new();
    let e = n.fails(&["create", "100", TEMPLATE, "--storage", "tank"]);
    assert_eq!(e, "storage 'tank' does not exist\n");
    assert!(!n.conf_path("100").exists());
}

/// pct-spec §1 create: the default storage `local` holds no CT disks: a 400 with
/// `storage: storage 'local' does not support container directories`.
#[test]
fn create_refuses_a_storage_without_rootdir() {
    let n = Node::new();
    let e = n.fails(&["create", "100", TEMPLATE]);
    assert!(
        e.starts_with("400 Parameter verification failed.\nstorage: storage 'local' does not support container directories\n"),
        "{e}"
    );
    assert!(!n.conf_path("100").exists());
}

/// pct-spec §1 create: a worker error is prefixed `unable to create CT <vmid> - ` and
/// rolled back; an OS template that is not on its storage is one
/// (`can't find file '<volid>'`, STOR abs_filesystem_path).
#[test]
fn create_refuses_an_os_template_that_is_not_there() {
    let n = Node::new();
    let volid = "local:vztmpl/debian-99-standard_99.0-1_amd64.tar.zst";
    let e = n.fails(&["create", "100", volid, "--storage", "local-zfs"]);
    assert_eq!(
        e,
        format!("unable to create CT 100 - can't find file '{volid}'\n")
    );
    assert!(!n.conf_path("100").exists());
    assert!(!n.root.join("rpool/data/subvol-100-disk-0").exists());
}

/// pct-spec §1 create: a VMID in use is `CT <vmid> already exists on node '<node>'`.
#[test]
fn create_refuses_a_vmid_in_use() {
    let n = Node::new();
    n.create("100", &[]);
    assert_eq!(
        n.fails(&["create", "100", TEMPLATE, "--storage", "local-zfs"]),
        "CT 100 already exists on node 'pve'\n"
    );
}

/// pct-spec §1 create: the new CT is stopped unless `--start 1`.
#[test]
fn create_with_start_1_starts_the_ct() {
    let n = Node::new();
    n.create("100", &["--start", "1"]);
    assert_eq!(n.status("100"), "status: running\n");
}

/// A running CT 100 with an interface and snapshots `s1` and `s2`.
fn running_source(n: &Node) {
    n.create(
        "100",
        &[
            "--net0",
            "name=eth0,bridge=vmbr0,ip=dhcp,hwaddr=52:54:00:AA:BB:CC",
        ],
    );
    n.ok(&["snapshot", "100", "s1"]);
    n.ok(&["snapshot", "100", "s2"]);
    n.ok(&["start", "100"]);
}

/// pct-spec §1 clone (and §3): the clone is stopped, even of a running source.
#[test]
fn a_clone_is_stopped() {
    let n = Node::new();
    running_source(&n);
    n.ok(&["clone", "100", "101", "--snapname", "s2"]);
    assert_eq!(n.status("101"), "status: stopped\n");
    assert_eq!(n.status("100"), "status: running\n");
}

/// pct-spec §1 clone: every `netX` gets a new random MAC with Proxmox's `BC:24:11`
/// prefix.
#[test]
fn a_clone_gets_a_fresh_mac() {
    let n = Node::new();
    running_source(&n);
    n.ok(&["clone", "100", "101", "--snapname", "s2"]);
    let net0 = n.value("101", "net0", &[]).unwrap();
    let mac = net0
        .split(',')
        .find_map(|p| p.strip_prefix("hwaddr="))
        .unwrap();
    assert!(mac.starts_with("BC:24:11:"), "{net0}");
    assert!(net0.contains("bridge=vmbr0"), "{net0}");
}

/// pct-spec §1 clone: `snapshots parent snaptime snapstate` are not copied.
#[test]
fn a_clone_has_no_snapshots() {
    let n = Node::new();
    running_source(&n);
    n.ok(&["clone", "100", "101", "--snapname", "s2"]);
    let text = n.conf_text("101");
    assert!(!text.contains('['), "{text}");
    assert!(!text.contains("parent:"), "{text}");
    assert!(!text.contains("snaptime:"), "{text}");
    assert_eq!(n.ok(&["listsnapshot", "101"]).lines().count(), 1);
}

/// pct-spec §1 clone: a `--snapname` the source lacks is `snapshot '<s>' does not
/// exist`; the target config and the source's lock are removed again.
#[test]
fn clone_from_a_missing_snapshot_leaves_nothing() {
    let n = Node::new();
    n.create("100", &[]);
    assert_eq!(
        n.fails(&["clone", "100", "101", "--snapname", "nope"]),
        "snapshot 'nope' does not exist\n"
    );
    assert!(!n.conf_path("101").exists());
    assert_eq!(n.value("100", "lock", &[]), None);
}

/// pct-spec §1 clone: the source holds `lock: disk` for the whole clone, so a second
/// clone of it at the same time (another process) fails `CT is locked (disk)`.
#[test]
fn parallel_clones_of_one_source_collide() {
    let n = Node::new();
    n.create("100", &[]);
    let slow = n
        .command(&["clone", "100", "101"])
        .env("PVE_EMULATOR_FAULTS", "clone:101=sleep3000")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !n.conf_text("100").contains("lock: disk\n") {
        assert!(
            Instant::now() < deadline,
            "the first clone never locked 100"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = n.pct(&["clone", "100", "102"]);
    assert_eq!((r.code, r.stderr.as_str()), (255, "CT is locked (disk)\n"));
    let first = slow.wait_with_output().unwrap();
    assert!(first.status.success(), "{first:?}");
    assert!(!n.conf_path("102").exists());
    assert_eq!(n.value("100", "lock", &[]), None);
}

/// pct-spec §3: a template clones linked by default:
/// `local-zfs:basevol-<vmid>-disk-0/subvol-<newid>-disk-0`.
#[test]
fn a_template_clones_linked_by_default() {
    let n = Node::new();
    n.template();
    n.ok(&["clone", "100", "101"]);
    assert_eq!(
        n.value("101", "rootfs", &[]).unwrap(),
        "local-zfs:basevol-100-disk-0/subvol-101-disk-0,size=4G"
    );
    assert_eq!(n.value("101", "template", &[]), None);
}

/// pct-spec §3: a plain CT on ZFS cannot be cloned linked (`--full 0`): `Linked clone
/// feature for '<volid>' is not available`.
#[test]
fn a_plain_ct_cannot_be_cloned_linked() {
    let n = Node::new();
    n.create("100", &[]);
    assert_eq!(
        n.fails(&["clone", "100", "101", "--full", "0"]),
        "Linked clone feature for 'local-zfs:subvol-100-disk-0' is not available\n"
    );
    assert!(!n.conf_path("101").exists());
}

/// pct-spec §3: a full clone of a running CT needs `--snapname`.
#[test]
fn a_full_clone_of_a_running_ct_needs_a_snapshot() {
    let n = Node::new();
    running_source(&n);
    assert_eq!(
        n.fails(&["clone", "100", "101"]),
        "Full clone of a running container is only possible from a snapshot\n"
    );
}

/// pct-spec §3 target storage: `--storage` only with a full clone.
#[test]
fn storage_is_refused_for_a_linked_clone() {
    let n = Node::new();
    n.template();
    assert_eq!(
        n.fails(&["clone", "100", "101", "--storage", "local-zfs"]),
        "parameter 'storage' not allowed for linked clones\n"
    );
}

/// pct-spec §1 start: a running CT is `CT <vmid> already running`.
#[test]
fn start_of_a_running_ct_is_refused() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["start", "100"]);
    assert_eq!(n.fails(&["start", "100"]), "CT 100 already running\n");
}

/// pct-spec §1 stop: a stopped CT is `CT <vmid> not running`.
#[test]
fn stop_of_a_stopped_ct_is_refused() {
    let n = Node::new();
    n.create("100", &[]);
    assert_eq!(n.fails(&["stop", "100"]), "CT 100 not running\n");
}

/// pct-spec §1 shutdown: `CT <vmid> not running`, also for a CT that does not exist (no
/// config check first).
#[test]
fn shutdown_of_a_missing_ct_is_not_running() {
    assert_eq!(
        Node::new().fails(&["shutdown", "100"]),
        "CT 100 not running\n"
    );
}

/// pct-spec §1 exec (the emulator's model): the command runs nothing on the host; it
/// is recorded inside the CT's volume.
#[test]
fn exec_records_the_command_and_runs_nothing_on_the_host() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["start", "100"]);
    let marker = n.root.join("touched-by-exec");
    n.ok(&["exec", "100", "--", "touch", marker.to_str().unwrap()]);
    assert!(!marker.exists());
    let log = fs::read_to_string(
        n.root
            .join("rpool/data/subvol-100-disk-0/var/log/sim-commands.log"),
    )
    .unwrap();
    assert!(
        log.ends_with(&format!("touch {}\n", marker.display())),
        "{log}"
    );
}

/// pct-spec §1 exec: a stopped CT is `container '<vmid>' not running!`.
#[test]
fn exec_in_a_stopped_ct_is_refused() {
    let n = Node::new();
    n.create("100", &[]);
    assert_eq!(
        n.fails(&["exec", "100", "--", "true"]),
        "container '100' not running!\n"
    );
}

/// pct-spec §1 exec: the exit code is the command's (here one the model is told to
/// return).
#[test]
fn exec_exits_with_the_commands_status() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["start", "100"]);
    let r = n.pct_env(
        &["exec", "100", "--", "false"],
        &[("PVE_EMULATOR_FAULTS", "exec:100=exit3")],
    );
    assert_eq!(r.code, 3, "{r:?}");
}

/// pct-spec §1 exec: options are parsed in permute mode, so a command's own dash
/// options need `--` (`pct exec 100 ls -la` fails `400 unable to parse option`).
#[test]
fn exec_needs_a_double_dash_before_dash_options() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["start", "100"]);
    let e = n.fails(&["exec", "100", "ls", "-la"]);
    assert!(e.contains("400 unable to parse option\n"), "{e}");
    n.ok(&["exec", "100", "--", "ls", "-la"]);
}

/// pct-spec §1 push: a stopped CT is `can only push files to a running CT` (exit 255).
#[test]
fn push_to_a_stopped_ct_is_refused() {
    let n = Node::new();
    n.create("100", &[]);
    let file = n.root.join("file");
    fs::write(&file, "x").unwrap();
    assert_eq!(
        n.fails(&["push", "100", file.to_str().unwrap(), "/root/file"]),
        "can only push files to a running CT\n"
    );
}

/// pct-spec §1 set: no options is `no options specified`.
#[test]
fn set_without_options_is_refused() {
    let n = Node::new();
    n.create("100", &[]);
    assert_eq!(n.fails(&["set", "100"]), "no options specified\n");
}

/// pct-spec §1 set: `unable to modify read-only option: 'unprivileged'`.
#[test]
fn set_cannot_change_unprivileged() {
    let n = Node::new();
    n.create("100", &[]);
    assert_eq!(
        n.fails(&["set", "100", "--unprivileged", "0"]),
        "unable to modify read-only option: 'unprivileged'\n"
    );
}

/// pct-spec §1 set: on a running CT `features` waits in `[pve:pending]`: `pct config`
/// shows it, `pct config --current` does not.
#[test]
fn features_set_on_a_running_ct_are_pending() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["start", "100"]);
    n.ok(&["set", "100", "--features", "nesting=1"]);
    assert!(
        n.conf_text("100")
            .contains("\n[pve:pending]\nfeatures: nesting=1\n"),
        "{}",
        n.conf_text("100")
    );
    assert_eq!(n.value("100", "features", &["--current"]), None);
    assert_eq!(
        n.value("100", "features", &[]).as_deref(),
        Some("nesting=1")
    );
}

/// pct-spec §1 set: pending changes are applied on the next start.
#[test]
fn pending_changes_apply_at_the_next_start() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["start", "100"]);
    n.ok(&["set", "100", "--features", "nesting=1"]);
    n.ok(&["stop", "100"]);
    n.ok(&["start", "100"]);
    assert_eq!(
        n.value("100", "features", &["--current"]).as_deref(),
        Some("nesting=1")
    );
    assert!(!n.conf_text("100").contains("[pve:pending]"));
}

/// pct-spec §1 set: on a running CT `memory` is hot-plugged: applied at once.
#[test]
fn memory_set_on_a_running_ct_applies_at_once() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["start", "100"]);
    n.ok(&["set", "100", "--memory", "2048"]);
    assert_eq!(
        n.value("100", "memory", &["--current"]).as_deref(),
        Some("2048")
    );
    assert!(!n.conf_text("100").contains("[pve:pending]"));
}

/// pct-spec §0 argument parsing, for `pct resize <vmid> <disk> <size>` (the spec has no
/// resize section; A-LXC resize_vm): `+2G` grows the rootfs by 2 GiB.
#[test]
fn resize_grows_the_rootfs() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["resize", "100", "rootfs", "+2G"]);
    assert_eq!(
        n.value("100", "rootfs", &[]).unwrap(),
        "local-zfs:subvol-100-disk-0,size=6G"
    );
}

/// pct-spec §1 snapshot and §2: `current` and `vzdump` are reserved names.
#[test]
fn snapshot_names_current_and_vzdump_are_reserved() {
    let n = Node::new();
    n.create("100", &[]);
    for name in ["current", "vzdump"] {
        assert_eq!(
            n.fails(&["snapshot", "100", name]),
            format!("unable to use snapshot name '{name}' (reserved name)\n")
        );
    }
}

/// pct-spec §1 snapshot: `snapshot name '<n>' already used`.
#[test]
fn a_snapshot_name_in_use_is_refused() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["snapshot", "100", "s1"]);
    assert_eq!(
        n.fails(&["snapshot", "100", "s1"]),
        "snapshot name 's1' already used\n"
    );
}

/// pct-spec §1 snapshot and template: a template cannot be snapshotted.
#[test]
fn a_template_cannot_be_snapshotted() {
    let n = Node::new();
    n.template();
    assert_eq!(
        n.fails(&["snapshot", "100", "s1"]),
        "you can't take a snapshot if it's a template\n"
    );
}

/// pct-spec §1 listsnapshot: the tree, `current` under its parent with `You are here!`,
/// times `YYYY-MM-DD HH:MM:SS`, the first line of a description or `no-description`.
#[test]
fn listsnapshot_prints_the_tree() {
    let n = Node::new();
    n.create("100", &[]);
    n.append_conf(
        "100",
        "parent: s2\n\n[s1]\narch: amd64\nsnaptime: 1704103200\n\n[s2]\n#before upgrade\n#more\nparent: s1\nsnaptime: 1704106800\n",
    );
    assert_eq!(
        n.ok(&["listsnapshot", "100"]),
        "`-> s1                          2024-01-01 10:00:00     no-description\n \
         `-> s2                         2024-01-01 11:00:00     before upgrade\n  \
         `-> current                                           You are here!\n"
    );
}

/// pct-spec §1 listsnapshot: with no snapshots only the `current` line.
#[test]
fn listsnapshot_without_snapshots_is_current_only() {
    let n = Node::new();
    n.create("100", &[]);
    assert_eq!(
        n.ok(&["listsnapshot", "100"]),
        format!("`-> {:<27} {:<23} You are here!\n", "current", "")
    );
}

/// pct-spec §1 delsnapshot: the deleted snapshot's children move up to its parent.
#[test]
fn delsnapshot_reparents_the_children() {
    let n = Node::new();
    n.create("100", &[]);
    for s in ["s1", "s2", "s3"] {
        n.ok(&["snapshot", "100", s]);
    }
    n.ok(&["delsnapshot", "100", "s2"]);
    assert_eq!(
        n.value("100", "parent", &["--snapshot", "s3"]).as_deref(),
        Some("s1")
    );
    assert_eq!(n.value("100", "parent", &[]).as_deref(), Some("s3"));
}

/// pct-spec §1 delsnapshot: deleting the newest snapshot moves `parent:` to its parent.
#[test]
fn delsnapshot_of_the_newest_moves_the_parent_up() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["snapshot", "100", "s1"]);
    n.ok(&["snapshot", "100", "s2"]);
    n.ok(&["delsnapshot", "100", "s2"]);
    assert_eq!(n.value("100", "parent", &[]).as_deref(), Some("s1"));
    assert!(!n.conf_text("100").contains("[s2]"));
}

/// pct-spec §1 rollback and §4: ZFS rolls back to the most recent snapshot only.
#[test]
fn rollback_is_to_the_most_recent_snapshot_only() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["snapshot", "100", "s1"]);
    n.ok(&["snapshot", "100", "s2"]);
    assert_eq!(
        n.fails(&["rollback", "100", "s1"]),
        "can't rollback, 's1' is not most recent snapshot on 'local-zfs:subvol-100-disk-0'\n"
    );
}

/// pct-spec §1 rollback: a running CT is stopped.
#[test]
fn rollback_stops_a_running_ct() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["snapshot", "100", "s1"]);
    n.ok(&["start", "100"]);
    n.ok(&["rollback", "100", "s1"]);
    assert_eq!(n.status("100"), "status: stopped\n");
}

/// pct-spec §1 rollback: the snapshot's config comes back, with `parent: <snap>`.
#[test]
fn rollback_restores_the_snapshots_config() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["snapshot", "100", "s1"]);
    n.ok(&["set", "100", "--memory", "2048"]);
    n.ok(&["rollback", "100", "s1"]);
    assert_eq!(n.value("100", "memory", &[]).as_deref(), Some("512"));
    assert_eq!(n.value("100", "parent", &[]).as_deref(), Some("s1"));
}

/// pct-spec §1 rollback: `--start 1` starts the CT afterwards.
#[test]
fn rollback_with_start_1_starts_the_ct() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["snapshot", "100", "s1"]);
    n.ok(&["rollback", "100", "s1", "--start", "1"]);
    assert_eq!(n.status("100"), "status: running\n");
}

/// pct-spec §1 destroy: `unable to destroy CT <vmid> - container is running`.
#[test]
fn destroy_of_a_running_ct_is_refused() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["start", "100"]);
    assert_eq!(
        n.fails(&["destroy", "100"]),
        "unable to destroy CT 100 - container is running\n"
    );
    assert!(n.conf_path("100").exists());
}

/// pct-spec §1 destroy and §4: a template whose base volume linked clones use stays,
/// config intact.
#[test]
fn destroy_of_a_template_with_linked_clones_is_refused() {
    let n = Node::new();
    n.template();
    n.ok(&["clone", "100", "101"]);
    assert_eq!(
        n.fails(&["destroy", "100"]),
        "base volume 'basevol-100-disk-0' is still in use by linked clones\n"
    );
    assert_eq!(n.value("100", "template", &[]).as_deref(), Some("1"));
}

/// pct-spec §4: once its linked clones are destroyed, the template can be destroyed.
#[test]
fn a_template_goes_once_its_linked_clones_are_gone() {
    let n = Node::new();
    n.template();
    n.ok(&["clone", "100", "101"]);
    n.ok(&["destroy", "101"]);
    n.ok(&["destroy", "100"]);
    assert_eq!(n.ok(&["list"]), "");
}

/// pct-spec §1 unlock: a CT without a lock is `no lock found trying to remove any lock`.
#[test]
fn unlock_without_a_lock_is_refused() {
    let n = Node::new();
    n.create("100", &[]);
    assert_eq!(
        n.fails(&["unlock", "100"]),
        "no lock found trying to remove any lock\n"
    );
}

/// pct-spec §1 template and §3: the rootfs becomes the base volume
/// `basevol-<vmid>-disk-0`, `template: 1` is written, nothing is printed.
#[test]
fn template_makes_the_rootfs_a_base_volume() {
    let n = Node::new();
    n.create("100", &[]);
    assert_eq!(n.ok(&["template", "100"]), "");
    assert_eq!(
        n.value("100", "rootfs", &[]).unwrap(),
        "local-zfs:basevol-100-disk-0,size=4G"
    );
    assert_eq!(n.value("100", "template", &[]).as_deref(), Some("1"));
    assert_eq!(n.status("100"), "status: stopped\n");
}

/// pct-spec §1 template: a running CT cannot become a template (exit 255).
#[test]
fn a_running_ct_cannot_become_a_template() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["start", "100"]);
    assert_eq!(
        n.fails(&["template", "100"]),
        "you can't convert a CT to template if the CT is running\n"
    );
}

/// pct-spec §1 template: a CT with snapshots cannot become a template.
#[test]
fn a_ct_with_snapshots_cannot_become_a_template() {
    let n = Node::new();
    n.create("100", &[]);
    n.ok(&["snapshot", "100", "s1"]);
    assert_eq!(
        n.fails(&["template", "100"]),
        "unable to create template, because CT contains snapshots\n"
    );
}

/// pct-spec §1 template and start: a template cannot be started.
#[test]
fn a_template_cannot_start() {
    let n = Node::new();
    n.template();
    assert_eq!(
        n.fails(&["start", "100"]),
        "you can't start a CT if it's a template\n"
    );
}

// ---------------------------------------------------------------------------------
// §2 snapshot names
// ---------------------------------------------------------------------------------

/// pct-spec §2: a name must start with a letter (`2024-01-01` is invalid).
#[test]
fn a_snapshot_name_starting_with_a_digit_is_invalid() {
    let n = Node::new();
    n.create("100", &[]);
    let e = n.fails(&["snapshot", "100", "2024-01-01"]);
    assert!(
        e.starts_with("400 Parameter verification failed.\nsnapname: invalid format - invalid configuration ID '2024-01-01'\n"),
        "{e}"
    );
}

/// pct-spec §2: a name is at most 40 characters.
#[test]
fn a_snapshot_name_of_41_characters_is_too_long() {
    let n = Node::new();
    n.create("100", &[]);
    let e = n.fails(&["snapshot", "100", &"a".repeat(41)]);
    assert!(
        e.starts_with(
            "400 Parameter verification failed.\nsnapname: value may only be 40 characters long\n"
        ),
        "{e}"
    );
}

/// pct-spec §2: a name of 40 characters is accepted.
#[test]
fn a_snapshot_name_of_40_characters_is_accepted() {
    let n = Node::new();
    n.create("100", &[]);
    let name = format!("s{}", "a".repeat(39));
    n.ok(&["snapshot", "100", &name]);
    assert_eq!(n.value("100", "parent", &[]), Some(name));
}

// ---------------------------------------------------------------------------------
// §5 locks
// ---------------------------------------------------------------------------------

/// pct-spec §5: a CT with `lock: backup` rejects a snapshot with `CT is locked (backup)`.
#[test]
fn a_backup_lock_blocks_a_snapshot() {
    let n = Node::new();
    n.create("100", &[]);
    n.append_conf("100", "lock: backup\n");
    assert_eq!(
        n.fails(&["snapshot", "100", "s1"]),
        "CT is locked (backup)\n"
    );
}

/// pct-spec §5: `pct unlock` clears the lock.
#[test]
fn unlock_clears_a_lock() {
    let n = Node::new();
    n.create("100", &[]);
    n.append_conf("100", "lock: backup\n");
    n.ok(&["unlock", "100"]);
    assert_eq!(n.value("100", "lock", &[]), None);
    n.ok(&["snapshot", "100", "s1"]);
}

// ---------------------------------------------------------------------------------
// §7 VMIDs
// ---------------------------------------------------------------------------------

/// pct-spec §7: a VMID below 100 fails the `pve-vmid` format.
#[test]
fn a_vmid_below_100_is_invalid() {
    let e = Node::new().fails(&["create", "99", TEMPLATE, "--storage", "local-zfs"]);
    assert!(
        e.starts_with("400 Parameter verification failed.\nvmid: invalid format - value does not look like a valid VM ID\n"),
        "{e}"
    );
}

/// pct-spec §7: VMIDs are unique cluster-wide: a QEMU VM's on another node is
/// `VM <id> already exists on node '<node>'`.
#[test]
fn a_vmid_of_a_vm_on_another_node_is_taken() {
    let n = Node::new();
    let vm = n.root.join("etc/pve/nodes/other/qemu-server");
    fs::create_dir_all(&vm).unwrap();
    fs::write(vm.join("120.conf"), "memory: 2048\nname: vm120\n").unwrap();
    assert_eq!(
        n.fails(&["create", "120", TEMPLATE, "--storage", "local-zfs"]),
        "VM 120 already exists on node 'other'\n"
    );
}

/// pct-spec §7: a CT's VMID on another node is `CT <id> already exists on node
/// '<node>'`.
#[test]
fn a_vmid_of_a_ct_on_another_node_is_taken() {
    let n = Node::new();
    let ct = n.root.join("etc/pve/nodes/other/lxc");
    fs::create_dir_all(&ct).unwrap();
    fs::write(ct.join("121.conf"), "hostname: elsewhere\nmemory: 512\n").unwrap();
    assert_eq!(
        n.fails(&["create", "121", TEMPLATE, "--storage", "local-zfs"]),
        "CT 121 already exists on node 'other'\n"
    );
}

/// pct-spec §1 list and §0: a CT on another node is neither listed nor found here.
#[test]
fn a_ct_on_another_node_is_not_this_nodes() {
    let n = Node::new();
    let ct = n.root.join("etc/pve/nodes/other/lxc");
    fs::create_dir_all(&ct).unwrap();
    fs::write(ct.join("121.conf"), "hostname: elsewhere\nmemory: 512\n").unwrap();
    assert_eq!(n.ok(&["list"]), "");
    assert_eq!(
        n.fails(&["config", "121"]),
        "Configuration file 'nodes/pve/lxc/121.conf' does not exist\n"
    );
}
