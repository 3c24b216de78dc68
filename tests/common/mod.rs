//! Fixture builder for integration tests: a config dir, a hooks dir and a state dir in a
//! temporary directory, and a way to run the real `phoenix` binary against them.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

pub const LXC: &str = "phoenix_lxc_configs.json";
pub const HV: &str = "phoenix_hypervisor_config.json";

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `../shared/fixtures/upstream`, when this checkout has it.
pub fn upstream() -> Option<PathBuf> {
    let p = repo().join("../shared/fixtures/upstream");
    if p.is_dir() {
        Some(p)
    } else {
        eprintln!(
            "skipped: {} is absent (upstream fixtures are not part of the repo)",
            p.display()
        );
        None
    }
}

pub struct Fixture {
    pub tmp: tempfile::TempDir,
    pub config_dir: PathBuf,
    pub hooks_dir: PathBuf,
    pub state_dir: PathBuf,
}

/// What a test's killed phoenix left (hooks, their cgroups) is ended with its fixture, as
/// the next run on that state directory would.
impl Drop for Fixture {
    fn drop(&mut self) {
        phoenix::build::hook::end_leftovers(&self.state_dir.join("hooks-running"));
    }
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not JSON ({e}):\n{}\nstderr:\n{}",
                self.stdout, self.stderr
            )
        })
    }

    /// Asserts the run rejected the configuration (exit 3) without panicking.
    pub fn assert_invalid(&self) -> &Self {
        assert!(
            !self.stderr.contains("panicked"),
            "phoenix panicked:\n{}",
            self.stderr
        );
        assert_eq!(
            self.code, 3,
            "expected exit 3 (invalid config)\nstdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// The `problems` of a `--output json` document.
    pub fn problems(&self) -> Vec<Value> {
        self.json()["problems"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The one problem with this code (panics listing every problem otherwise).
    pub fn problem(&self, code: &str) -> Value {
        let all = self.problems();
        let found: Vec<&Value> = all.iter().filter(|p| p["code"] == code).collect();
        assert_eq!(
            found.len(),
            1,
            "expected exactly one `{code}` problem, got:\n{}",
            serde_json::to_string_pretty(&all).unwrap()
        );
        found[0].clone()
    }

    /// Codes of every problem, in reported order.
    pub fn codes(&self) -> Vec<String> {
        self.problems()
            .iter()
            .map(|p| p["code"].as_str().unwrap_or("").to_string())
            .collect()
    }
}

/// 1-based line and column (in characters) of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
    (line, col)
}

/// Line and column of the last of `needles`, each searched after the one before it:
/// `locate(text, &["\"950\": {", "\"cores\": ", "8"])` is the `8` of 950's cores.
pub fn locate(text: &str, needles: &[&str]) -> (usize, usize) {
    let mut at = 0;
    let mut start = 0;
    for n in needles {
        let i = text[at..]
            .find(n)
            .unwrap_or_else(|| panic!("`{n}` not found after byte {at} in:\n{text}"));
        start = at + i;
        at = start + n.len();
    }
    line_col(text, start)
}

/// Asserts a JSON problem sits at this line and column.
pub fn assert_at(problem: &Value, (line, column): (usize, usize)) {
    assert_eq!(
        (problem["line"].as_u64(), problem["column"].as_u64()),
        (Some(line as u64), Some(column as u64)),
        "problem located elsewhere: {problem:#}"
    );
}

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            fs::copy(e.path(), &target).unwrap();
        }
    }
}

impl Fixture {
    /// An empty fixture: empty hooks dir, no config files.
    pub fn empty() -> Fixture {
        let tmp = tempfile::tempdir().unwrap();
        let config_dir = tmp.path().join("etc");
        let hooks_dir = tmp.path().join("hooks");
        let state_dir = tmp.path().join("state");
        fs::create_dir_all(&config_dir).unwrap();
        fs::create_dir_all(&hooks_dir).unwrap();
        Fixture {
            tmp,
            config_dir,
            hooks_dir,
            state_dir,
        }
    }

    /// The repo's example fleet (`etc/`, `hooks/`), copied.
    pub fn example() -> Fixture {
        let f = Fixture::empty();
        copy_dir(&repo().join("etc"), &f.config_dir);
        copy_dir(&repo().join("hooks"), &f.hooks_dir);
        f
    }

    /// A fixture with these two documents and no hooks.
    pub fn with(lxc: &Value, hv: &Value) -> Fixture {
        let f = Fixture::empty();
        f.write_lxc(lxc);
        f.write_hv(hv);
        f
    }

    pub fn lxc_path(&self) -> PathBuf {
        self.config_dir.join(LXC)
    }
    pub fn hv_path(&self) -> PathBuf {
        self.config_dir.join(HV)
    }
    pub fn lxc_text(&self) -> String {
        fs::read_to_string(self.lxc_path()).unwrap()
    }
    pub fn hv(&self) -> Value {
        serde_json::from_str(&fs::read_to_string(self.hv_path()).unwrap()).unwrap()
    }
    /// Edits the host settings in place (re-written pretty-printed).
    pub fn edit_hv(&self, f: impl FnOnce(&mut Value)) {
        let mut v = self.hv();
        f(&mut v);
        self.write_hv(&v);
    }
    pub fn lxc(&self) -> Value {
        serde_json::from_str(&fs::read_to_string(self.lxc_path()).unwrap()).unwrap()
    }
    pub fn write_lxc(&self, v: &Value) {
        self.write_text(LXC, &serde_json::to_string_pretty(v).unwrap());
    }
    pub fn write_hv(&self, v: &Value) {
        self.write_text(HV, &serde_json::to_string_pretty(v).unwrap());
    }
    pub fn write_text(&self, name: &str, text: &str) {
        fs::write(self.config_dir.join(name), text).unwrap();
    }
    /// Edits the fleet config in place (re-written pretty-printed).
    pub fn edit_lxc(&self, f: impl FnOnce(&mut Value)) {
        let mut v = self.lxc();
        f(&mut v);
        self.write_lxc(&v);
    }
    pub fn block(&self, ctid: u32) -> Value {
        self.lxc()["lxc_configs"][ctid.to_string()].clone()
    }
    pub fn edit_block(&self, ctid: u32, f: impl FnOnce(&mut serde_json::Map<String, Value>)) {
        self.edit_lxc(|v| f(v["lxc_configs"][ctid.to_string()].as_object_mut().unwrap()));
    }
    /// Writes `phoenix_hypervisor_setup_<ctid>.sh` (mode 755).
    pub fn write_hook(&self, ctid: u32, body: &str) -> PathBuf {
        let p = self
            .hooks_dir
            .join(format!("phoenix_hypervisor_setup_{ctid}.sh"));
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        p
    }
    pub fn hook_path(&self, ctid: u32) -> PathBuf {
        self.hooks_dir
            .join(format!("phoenix_hypervisor_setup_{ctid}.sh"))
    }

    pub fn set_mode(&self, path: &Path, mode: u32) {
        fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
    }

    /// `phoenix validate --output json`.
    pub fn validate_json(&self) -> Run {
        self.phoenix(&["validate", "--output", "json"])
    }

    /// `phoenix <args>` with this fixture's directories, no colour, no sim knobs from the
    /// caller's environment, then `env`.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_phoenix"));
        cmd.args(args)
            .env("PHOENIX_CONFIG_DIR", &self.config_dir)
            .env("PHOENIX_HOOKS_DIR", &self.hooks_dir)
            .env("PHOENIX_STATE_DIR", &self.state_dir)
            .env("NO_COLOR", "1")
            .env_remove("PHOENIX_SIM_LATENCY")
            .env_remove("PHOENIX_SIM_FAULTS");
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Starts `phoenix <args>` on the sim backend in the background, output discarded.
    pub fn spawn_sim(&self, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
        let mut all = vec![("PHOENIX_BACKEND", "sim")];
        all.extend_from_slice(env);
        self.command(args, &all)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start phoenix")
    }

    /// `phoenix <args>` on the sim backend (transient errors retried after 5 ms).
    pub fn sim(&self, args: &[&str]) -> Run {
        self.sim_env(args, &[])
    }

    /// `phoenix <args>` on the sim backend, with more environment.
    pub fn sim_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let mut all = vec![("PHOENIX_BACKEND", "sim"), ("PHOENIX_RETRY_DELAY_MS", "5")];
        all.extend_from_slice(env);
        self.phoenix_env(args, &all)
    }

    /// The `pct` that hooks get, run as an admin would on this fixture's sim host.
    pub fn pct(&self, args: &[&str]) -> Run {
        let out = Command::new(self.sim_host().root().join("bin/pct"))
            .args(args)
            .env("PHOENIX_BACKEND", "sim")
            .env("PHOENIX_STATE_DIR", &self.state_dir)
            .output()
            .expect("run pct");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// The simulated Proxmox node of this fixture, for acting on it or reading it the way
    /// an admin would.
    pub fn sim_host(&self) -> phoenix::host::sim::SimHost {
        phoenix::host::sim::SimHost::for_state_dir(&self.state_dir).expect("open the sim host")
    }

    /// One CT as the model reads it from its `.conf` file, as JSON (`None`: no CT).
    pub fn ct(&self, ctid: u32) -> Option<Value> {
        self.sim_host()
            .observe(ctid)
            .expect("read the sim host")
            .map(|ct| serde_json::to_value(ct).unwrap())
    }

    /// A CT's snapshot names, oldest generation first.
    pub fn snapshot_names(&self, ctid: u32) -> Vec<String> {
        let ct = self
            .sim_host()
            .observe(ctid)
            .expect("read the sim host")
            .unwrap_or_else(|| panic!("CT {ctid} does not exist"));
        let mut names: Vec<String> = phoenix::engine::snapshot::generations(&ct)
            .into_iter()
            .rev()
            .map(|s| s.name.clone())
            .collect();
        let mut others: Vec<&phoenix::host::SnapshotInfo> = ct
            .snapshots
            .iter()
            .filter(|s| !names.contains(&s.name))
            .collect();
        others.sort_by_key(|s| s.snaptime);
        names.extend(others.into_iter().map(|s| s.name.clone()));
        names
    }

    /// A comparable picture of the whole simulated host: every CT as the model reads it,
    /// without snapshot times.
    pub fn host_state(&self) -> std::collections::BTreeMap<u32, Value> {
        self.sim_host()
            .observe_all()
            .expect("read the sim host")
            .into_iter()
            .map(|(ctid, ct)| {
                let mut v = serde_json::to_value(&ct).unwrap();
                v["snapshots"] = ct
                    .snapshots
                    .iter()
                    .map(|s| Value::from(s.name.clone()))
                    .collect();
                (ctid, v)
            })
            .collect()
    }

    /// Every file of the simulated host's state (configs, volumes, snapshots), with its
    /// bytes; the model's own call log left out.
    pub fn host_files(&self) -> Vec<(String, Vec<u8>)> {
        fn walk(dir: &Path, root: &Path, out: &mut Vec<(String, Vec<u8>)>) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for e in entries.flatten() {
                let p = e.path();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                if matches!(
                    rel.as_str(),
                    "calls.log" | "faults.json" | "bin" | "run/lock"
                ) {
                    continue;
                }
                let meta = fs::symlink_metadata(&p).unwrap();
                if meta.is_dir() {
                    walk(&p, root, out);
                } else if meta.is_file() {
                    out.push((rel, fs::read(&p).unwrap()));
                }
            }
        }
        let root = self.state_dir.join("sim");
        let mut out = Vec::new();
        walk(&root, &root, &mut out);
        out.sort();
        out
    }

    /// Host calls recorded by the model (all processes, hooks' `pct` included).
    pub fn calls(&self) -> Vec<Value> {
        fs::read_to_string(self.state_dir.join("sim/calls.log"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Writes a CT config by hand into the model's node, as another tool would: not
    /// phoenix's. Returns its path.
    pub fn write_foreign_conf(&self, ctid: u32, text: &str) -> PathBuf {
        let path = self.sim_host().conf_path(ctid);
        fs::write(&path, text).unwrap();
        path
    }

    /// Creates a CT on the simulated host by hand, as an admin would: not phoenix's.
    pub fn create_foreign_ct(&self, ctid: u32, hostname: &str) -> PathBuf {
        let volume = self
            .state_dir
            .join(format!("sim/rpool/data/subvol-{ctid}-disk-0"));
        fs::create_dir_all(volume).unwrap();
        self.write_foreign_conf(
            ctid,
            &format!(
                "#made by hand\narch: amd64\ncores: 1\nhostname: {hostname}\nmemory: 512\nnet0: name=eth0,bridge=vmbr0,hwaddr=BC:24:11:00:00:01,ip=dhcp,type=veth\nostype: debian\nrootfs: local-zfs:subvol-{ctid}-disk-0,size=8G\nswap: 512\nunprivileged: 1\n"
            ),
        )
    }

    /// Waits until process `pid` holds the host lock (its pid is written in the lock file).
    pub fn wait_for_lock_holder(&self, pid: u32) {
        let lock = self.state_dir.join("phoenix.lock");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let holder: Option<Value> = fs::read_to_string(&lock)
                .ok()
                .and_then(|t| serde_json::from_str(&t).ok());
            if holder.is_some_and(|h| h["pid"] == pid) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "process {pid} never took the host lock"
            );
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }

    /// Runs `phoenix <args>` with this fixture's directories.
    pub fn phoenix(&self, args: &[&str]) -> Run {
        self.phoenix_env(args, &[])
    }

    pub fn phoenix_env(&self, args: &[&str], env: &[(&str, &str)]) -> Run {
        let out = self.command(args, env).output().expect("run phoenix");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

/// JSON lines of a `--output json` build.
pub fn events(r: &Run) -> Vec<Value> {
    r.stdout
        .lines()
        .map(|l| {
            serde_json::from_str(l)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}\n{}", r.stderr))
        })
        .collect()
}

/// ctid → (action, outcome) of every node a JSON build reported.
pub fn finished(r: &Run) -> BTreeMap<u64, (String, String)> {
    events(r)
        .iter()
        .filter(|e| e["event"] == "node_finished")
        .map(|e| {
            (
                e["ctid"].as_u64().unwrap(),
                (
                    e["action"].as_str().unwrap().to_string(),
                    e["outcome"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

pub fn built(r: &Run) -> BTreeSet<u64> {
    finished(r)
        .into_iter()
        .filter(|(_, (_, o))| o == "built")
        .map(|(c, _)| c)
        .collect()
}

pub fn outcome_of(r: &Run, outcome: &str) -> BTreeSet<u64> {
    finished(r)
        .into_iter()
        .filter(|(_, (_, o))| o == outcome)
        .map(|(c, _)| c)
        .collect()
}

pub fn set(ctids: &[u64]) -> BTreeSet<u64> {
    ctids.iter().copied().collect()
}

/// Plan actions by CTID.
pub fn plan(f: &Fixture, extra: &[&str]) -> BTreeMap<u64, Value> {
    let mut args = vec!["plan", "--output", "json"];
    args.extend_from_slice(extra);
    let r = f.sim(&args);
    assert!(r.code == 0 || r.code == 4, "plan failed: {}", r.stderr);
    r.json()["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["ctid"].as_u64().unwrap(), e.clone()))
        .collect()
}

pub fn actions(f: &Fixture, extra: &[&str]) -> BTreeMap<u64, String> {
    plan(f, extra)
        .into_iter()
        .map(|(c, e)| (c, e["action"].as_str().unwrap().to_string()))
        .collect()
}

pub fn build_json(f: &Fixture, extra: &[&str]) -> Run {
    let mut args = vec!["build", "--output", "json"];
    args.extend_from_slice(extra);
    f.sim(&args)
}
