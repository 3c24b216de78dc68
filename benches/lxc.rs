//! The `lxc` backend with real containers: the test fleet (`tests/fixtures/fleets/lxc`: a
//! debootstrapped base, an app template installing a package, two containers) built cold
//! (the debootstrap included), again (all fresh), and after a one-hook edit; then one
//! clone on btrfs against one in a plain directory store: time and disk use.
//!
//! Needs what `tests/lxc.rs` needs: root, lxc, debootstrap, btrfs-progs, the mirror, and
//! `PHOENIX_LXC_TEST_ROOT` on btrfs; `PHOENIX_LXC_BENCH_DIR_STORE` (default
//! `/var/tmp/phoenix-bench-dir`) must not be on btrfs. `cargo bench --bench lxc`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use phoenix::host::lxc::{LxcHost, LxcOptions, NetworkMode};
use phoenix::host::{CloneSpec, Host};

fn main() {
    let Some(root) = std::env::var_os("PHOENIX_LXC_TEST_ROOT").map(PathBuf::from) else {
        eprintln!("skipped: set PHOENIX_LXC_TEST_ROOT to a directory on btrfs and run as root (see tests/lxc.rs)");
        return;
    };
    let dir = root.join("bench");
    clean(&dir);
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let fleet = repo.join("tests/fixtures/fleets/lxc");
    let (config, hooks) = (dir.join("etc"), dir.join("hooks"));
    for (from, to) in [("etc", &config), ("hooks", &hooks)] {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(fleet.join(from)).unwrap() {
            let e = e.unwrap();
            fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
    let lxc = dir.join("lxc");
    let build = || {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_phoenix"))
            .args(["build", "-j", "2"])
            .env("PHOENIX_BACKEND", "lxc")
            .env("PHOENIX_LXC_PATH", &lxc)
            .env("PHOENIX_LXC_CACHE", dir.join("cache"))
            .env("PHOENIX_LXC_NETWORK", "host")
            .env("PHOENIX_STATE_DIR", dir.join("state"))
            .env("PHOENIX_CONFIG_DIR", &config)
            .env("PHOENIX_HOOKS_DIR", &hooks)
            .env("PHOENIX_LOG_FILE", dir.join("phoenix.log"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        t.elapsed()
    };
    let cold = build();
    let warm = build();
    let hook = hooks.join("phoenix_hypervisor_setup_120.sh");
    let text = fs::read_to_string(&hook).unwrap().replace(" v1\"", " v2\"");
    fs::write(&hook, text).unwrap();
    let rebuild = build();
    println!("lxc build of the test fleet (4 nodes, -j 2, host network):");
    println!(
        "  cold (debootstrap of bookworm included): {:>8.2} s",
        cold.as_secs_f64()
    );
    println!(
        "  warm (all fresh):                        {:>8.3} s",
        warm.as_secs_f64()
    );
    println!(
        "  one hook edited (CT 120 rebuilt):        {:>8.2} s",
        rebuild.as_secs_f64()
    );
    println!(
        "  cold ÷ warm {:.0}×, rebuild ÷ cold {:.3}",
        cold.as_secs_f64() / warm.as_secs_f64(),
        rebuild.as_secs_f64() / cold.as_secs_f64()
    );

    // One clone of the app template's snapshot, on each store.
    let state = dir.join("state");
    let btrfs_host = host(&lxc, &dir.join("cache"), &state);
    let dir_store = std::env::var_os("PHOENIX_LXC_BENCH_DIR_STORE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp/phoenix-bench-dir"));
    clean(&dir_store);
    fs::create_dir_all(&dir_store).unwrap();
    let plain = host(&dir_store, &dir.join("cache"), &state);
    assert_eq!(
        plain.store().name(),
        "dir",
        "{} is on btrfs",
        dir_store.display()
    );
    // The same template, copied into the directory store with its snapshot.
    let snap = fs::read_dir(lxc.join("110/snaps"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .file_name();
    let snap = snap.to_string_lossy().into_owned();
    let copy = Command::new("cp")
        .arg("-a")
        .arg(lxc.join("110"))
        .arg(&dir_store)
        .status()
        .unwrap();
    assert!(copy.success());
    let (t_btrfs, du_btrfs) = clone(&btrfs_host, &lxc, &snap);
    let (t_dir, du_dir) = clone(&plain, &dir_store, &snap);
    println!("one clone of CT 110's snapshot (CT 999):");
    println!(
        "  btrfs snapshot: {:>8.3} s, {:>8.1} MiB of new data",
        t_btrfs.as_secs_f64(),
        du_btrfs as f64 / 1048576.0
    );
    println!(
        "  directory copy: {:>8.3} s, {:>8.1} MiB of new data",
        t_dir.as_secs_f64(),
        du_dir as f64 / 1048576.0
    );
    println!(
        "  directory ÷ btrfs: {:.0}× the time",
        t_dir.as_secs_f64() / t_btrfs.as_secs_f64()
    );
    clean(&dir_store);
    clean(&dir);
}

fn host(path: &Path, cache: &Path, state: &Path) -> LxcHost {
    let mut opts = LxcOptions::new(state, path, NetworkMode::Host);
    opts.cache = cache.to_path_buf();
    LxcHost::open(opts).unwrap()
}

/// Clones 110 at `snap` into 999; the time and the bytes the clone added to its
/// filesystem (btrfs: the rootfs's exclusive bytes; a directory: its size).
fn clone(host: &LxcHost, path: &Path, snap: &str) -> (Duration, u64) {
    let t = Instant::now();
    host.clone_ct(&CloneSpec {
        source: 110,
        snapshot: snap.to_string(),
        target: 999,
        hostname: "bench".into(),
        storage: "local".into(),
        node: None,
    })
    .unwrap();
    let took = t.elapsed();
    let rootfs = path.join("999/rootfs");
    let bytes = if host.store().name() == "btrfs" {
        let out = Command::new("btrfs")
            .args(["filesystem", "du", "-s", "--raw"])
            .arg(&rootfs)
            .output()
            .unwrap();
        // "Total Exclusive Set-shared Filename"
        let text = String::from_utf8_lossy(&out.stdout);
        let row = text.lines().nth(1).unwrap_or_default().to_string();
        row.split_whitespace()
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    } else {
        let out = Command::new("du")
            .args(["-s", "-B1"])
            .arg(&rootfs)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    };
    (took, bytes)
}

/// Stops the containers under `dir` and removes it, subvolumes included.
fn clean(dir: &Path) {
    for lxc in [dir.join("lxc"), dir.to_path_buf()] {
        for e in fs::read_dir(&lxc).into_iter().flatten().flatten() {
            let _ = Command::new("lxc-stop")
                .arg("-n")
                .arg(e.file_name())
                .arg("-P")
                .arg(&lxc)
                .arg("-k")
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
    let _ = phoenix::host::lxc::store::remove_tree(dir);
}
