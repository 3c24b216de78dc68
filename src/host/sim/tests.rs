//! The model against pct-spec: what phoenix depends on, on real files.

use super::*;

fn host() -> (tempfile::TempDir, SimHost) {
    let t = tempfile::tempdir().unwrap();
    let mut h = SimHost::open(&t.path().join("sim"), "pve").unwrap();
    h.latency.clear();
    h.faults.clear();
    (t, h)
}

fn spec() -> CreateSpec {
    CreateSpec {
        ostemplate: "local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst".into(),
        storage: "local-zfs".into(),
        disk_gb: 8,
        unprivileged: true,
        settings: Settings {
            hostname: Some("web01".into()),
            managed: Some(true),
            ..Settings::default()
        },
        node: None,
    }
}

fn clone_of(source: Ctid, snapshot: &str, target: Ctid) -> CloneSpec {
    CloneSpec {
        source,
        snapshot: snapshot.into(),
        target,
        hostname: format!("ct{target}"),
        storage: "local-zfs".into(),
        node: None,
    }
}

#[test]
fn state_is_proxmox_files() {
    let (_t, h) = host();
    h.create(100, &spec()).unwrap();
    let conf = fs::read_to_string(h.root().join("etc/pve/nodes/pve/lxc/100.conf")).unwrap();
    assert_eq!(
        conf,
        "arch: amd64\nhostname: web01\nmemory: 512\nostype: debian\nrootfs: local-zfs:subvol-100-disk-0,size=8G\nswap: 512\ntags: phoenix\nunprivileged: 1\n"
    );
    // etc/pve/lxc is the node's directory, as on Proxmox.
    assert!(h.root().join("etc/pve/lxc/100.conf").exists());
    assert!(h.root().join("rpool/data/subvol-100-disk-0").is_dir());
    h.snapshot(100, "s1", "first\nsecond line").unwrap();
    let conf = fs::read_to_string(h.conf_path(100)).unwrap();
    assert!(conf.contains("parent: s1\n"), "{conf}");
    assert!(conf.contains("\n[s1]\n#first\n#second line\n"), "{conf}");
    assert!(h
        .root()
        .join("rpool/data/subvol-100-disk-0/.zfs/snapshot/s1")
        .is_dir());
}

#[test]
fn behaves_like_pve_where_phoenix_depends_on_it() {
    let (_t, h) = host();
    h.create(100, &spec()).unwrap();
    let e = h.create(100, &spec()).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Exists);
    assert_eq!(e.message, "CT 100 already exists on node 'pve'");
    let mut log = Vec::new();
    let e = h.exec(100, &["true".into()], &mut log).unwrap_err();
    assert_eq!(
        (e.kind, e.message.as_str()),
        (ErrorKind::NotRunning, "container '100' not running!")
    );
    assert!(h
        .snapshot(100, "2024-01-01", "")
        .unwrap_err()
        .message
        .contains("invalid configuration ID"));
    h.snapshot(100, "phx-abc", "d").unwrap();
    assert_eq!(
        h.snapshot(100, "phx-abc", "d").unwrap_err().kind,
        ErrorKind::Exists
    );
    // Clone from the snapshot: stopped, a new MAC, the source unlocked afterwards.
    h.set(
        100,
        &Settings {
            network: Some(crate::host::Network {
                name: "eth0".into(),
                bridge: "vmbr0".into(),
                ip: "dhcp".into(),
                gw: None,
                mac: Some("52:54:00:AA:BB:CC".into()),
            }),
            ..Settings::default()
        },
    )
    .unwrap();
    h.snapshot(100, "phx-def", "d").unwrap();
    h.clone_ct(&clone_of(100, "phx-def", 101)).unwrap();
    let inv = h.inventory().unwrap();
    assert!(!inv[&101].running);
    assert_eq!(inv[&100].lock, None);
    let mac = inv[&101]
        .settings
        .network
        .as_ref()
        .unwrap()
        .mac
        .clone()
        .unwrap();
    assert!(mac.starts_with("BC:24:11:"), "{mac}");
    assert!(inv[&101].snapshots.is_empty());
    assert_eq!(inv[&101].settings.hostname.as_deref(), Some("ct101"));
    assert_eq!(
        h.clone_ct(&clone_of(100, "nope", 102)).unwrap_err().message,
        "snapshot 'nope' does not exist"
    );
    h.start(101).unwrap();
    assert_eq!(h.start(101).unwrap_err().kind, ErrorKind::Running);
    assert_eq!(h.destroy(101).unwrap_err().kind, ErrorKind::Running);
    assert_eq!(
        h.ct(999).map(|c| c.is_none()),
        Ok(true),
        "a missing CT reads as none"
    );
    assert_eq!(h.start(999).unwrap_err().kind, ErrorKind::NotFound);
}

#[test]
fn files_travel_with_snapshots_and_clones() {
    let (t, h) = host();
    h.create(100, &spec()).unwrap();
    h.start(100).unwrap();
    let local = t.path().join("script.sh");
    fs::write(&local, "echo hi\n").unwrap();
    h.push(100, &local, "/tmp/script.sh", 0o755).unwrap();
    h.exec(
        100,
        &["bash".into(), "/tmp/script.sh".into()],
        &mut Vec::new(),
    )
    .unwrap();
    h.shutdown(100, 60).unwrap();
    h.snapshot(100, "s1", "").unwrap();
    h.clone_ct(&clone_of(100, "s1", 101)).unwrap();
    h.start(101).unwrap();
    let back = t.path().join("back.sh");
    h.pull(101, "/tmp/script.sh", &back).unwrap();
    assert_eq!(fs::read_to_string(&back).unwrap(), "echo hi\n");
    assert_eq!(
        h.history(101).unwrap(),
        vec![
            "extract local:vztmpl/debian-12-standard_12.7-1_amd64.tar.zst",
            "bash /tmp/script.sh"
        ]
    );
    assert!(h.pull(101, "/etc/../../x", &back).is_err());
    assert!(h.push(101, &local, "relative", 0o644).is_err());
}

#[test]
fn rollback_only_to_the_newest_snapshot() {
    let (_t, h) = host();
    h.create(100, &spec()).unwrap();
    h.snapshot(100, "s1", "").unwrap();
    h.set(
        100,
        &Settings {
            memory_mb: Some(2048),
            ..Settings::default()
        },
    )
    .unwrap();
    h.snapshot(100, "s2", "").unwrap();
    h.set(
        100,
        &Settings {
            memory_mb: Some(4096),
            ..Settings::default()
        },
    )
    .unwrap();
    let e = h.rollback(100, "s1").unwrap_err();
    assert_eq!(
        e.message,
        "can't rollback, 's1' is not most recent snapshot on 'local-zfs:subvol-100-disk-0'"
    );
    h.start(100).unwrap();
    h.rollback(100, "s2").unwrap();
    let ct = h.ct(100).unwrap().unwrap();
    assert!(!ct.running, "a rollback stops the CT");
    assert_eq!(ct.settings.memory_mb, Some(2048));
    assert_eq!(ct.parent_snapshot.as_deref(), Some("s2"));
    // Deleting s2 moves the live state (and children) up to s1.
    h.delete_snapshot(100, "s2").unwrap();
    let ct = h.ct(100).unwrap().unwrap();
    assert_eq!(ct.parent_snapshot.as_deref(), Some("s1"));
    h.rollback(100, "s1").unwrap();
}

#[test]
fn parallel_clones_of_one_source_collide() {
    let (_t, mut h) = host();
    h.latency.per_call.insert(Some(Verb::Clone), 300);
    h.create(100, &spec()).unwrap();
    h.snapshot(100, "s1", "").unwrap();
    let h = std::sync::Arc::new(h);
    let a = {
        let h = h.clone();
        std::thread::spawn(move || h.clone_ct(&clone_of(100, "s1", 101)))
    };
    std::thread::sleep(Duration::from_millis(50));
    let b = h.clone_ct(&clone_of(100, "s1", 102));
    assert!(a.join().unwrap().is_ok());
    let err = b.unwrap_err();
    assert_eq!(err.message, "CT is locked (disk)");
    assert_eq!(err.kind, ErrorKind::Locked);
    assert!(err.kind.is_transient());
}

#[test]
fn a_foreign_config_is_read_as_that_ct() {
    let (_t, h) = host();
    let foreign = "#hand made\narch: amd64\ncores: 2\nhostname: db01\nmemory: 1024\nmp0: local-zfs:subvol-300-disk-1,mp=/data,size=16G\nrootfs: local-zfs:subvol-300-disk-0,size=8G\nlxc.apparmor.profile: unconfined\n";
    fs::write(h.conf_path(300), foreign).unwrap();
    let ct = h.ct(300).unwrap().unwrap();
    assert!(!ct.is_managed());
    assert_eq!(ct.settings.hostname.as_deref(), Some("db01"));
    assert_eq!(ct.disk_gb, Some(8));
    assert_eq!(ct.settings.description.as_deref(), Some("hand made"));
    assert!(h.inventory().unwrap().contains_key(&300));
    assert_eq!(fs::read_to_string(h.conf_path(300)).unwrap(), foreign);
}

#[test]
fn every_file_the_model_writes_is_what_proxmox_would_write() {
    // write_pct_config's layout: parse + print as Proxmox gives the same bytes back.
    let (_t, h) = host();
    h.create(100, &spec()).unwrap();
    h.set(
        100,
        &Settings {
            description: Some("web: 50% done\nsecond".into()),
            network: Some(crate::host::Network {
                name: "eth0".into(),
                bridge: "vmbr0".into(),
                ip: "dhcp".into(),
                gw: None,
                mac: None,
            }),
            ..Settings::default()
        },
    )
    .unwrap();
    h.snapshot(100, "s1", "first").unwrap();
    h.clone_ct(&clone_of(100, "s1", 101)).unwrap();
    h.snapshot(101, "s2", "").unwrap();
    for ctid in [100, 101] {
        let text = fs::read_to_string(h.conf_path(ctid)).unwrap();
        let conf = ConfFile::parse(&text).unwrap();
        assert_eq!(conf.to_pve_text(), text, "{ctid}");
    }
}

/// The bytes each call of the model copies, from `calls.log`: `(verb, ctid, bytes)`.
fn bytes_logged(h: &SimHost) -> Vec<(String, Option<u64>, Option<u64>)> {
    fs::read_to_string(h.root().join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (
                v["verb"].as_str().unwrap().to_string(),
                v["ctid"].as_u64(),
                v["bytes"].as_u64(),
            )
        })
        .collect()
}

#[test]
fn the_model_counts_the_bytes_each_call_copies() {
    let (_t, h) = host();
    let _ = fs::remove_file(h.root().join("calls.log"));
    h.create(100, &spec()).unwrap();
    h.start(100).unwrap();
    let mut out = Vec::new();
    let argv = |a: &str| a.split(' ').map(str::to_string).collect::<Vec<_>>();
    assert_eq!(
        h.exec(100, &argv("fallocate -l 15G /root/model.bin"), &mut out)
            .unwrap(),
        0
    );
    // fallocate's own complaints, as util-linux says them.
    assert_eq!(
        h.exec(100, &argv("fallocate /root/x"), &mut out).unwrap(),
        1
    );
    assert_eq!(
        h.exec(100, &argv("fallocate -l 2X /root/x"), &mut out)
            .unwrap(),
        1
    );
    assert_eq!(
        h.exec(100, &argv("fallocate -l 1G /nowhere/x"), &mut out)
            .unwrap(),
        1
    );
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("no length argument specified"), "{text}");
    assert!(
        text.contains("invalid length value specified: '2X'"),
        "{text}"
    );
    let vol = h.root().join("rpool/data/subvol-100-disk-0");
    let used = used_bytes(&vol);
    assert!(
        (15 << 30..(15 << 30) + 4096).contains(&used),
        "15 GiB and the skeleton's few bytes: {used}"
    );
    h.shutdown(100, 10).unwrap();
    h.snapshot(100, "phx-a", "").unwrap();
    // A full clone copies the snapshot's data; a template conversion and a linked clone
    // of it copy nothing.
    h.clone_ct(&clone_of(100, "phx-a", 200)).unwrap();
    h.template(200).unwrap();
    h.clone_with(&CloneRequest {
        source: 200,
        target: 300,
        full: Some(false),
        hostname: Some("linked".into()),
        ..CloneRequest::default()
    })
    .unwrap();
    h.rollback(100, "phx-a").unwrap();
    let logged = bytes_logged(&h);
    let of = |verb: &str, ctid: u64| {
        logged
            .iter()
            .find(|(v, c, _)| v == verb && *c == Some(ctid))
            .map(|(_, _, b)| *b)
            .unwrap()
    };
    assert!(of("create", 100).is_some_and(|b| b < 4096), "{logged:?}");
    assert_eq!(of("snapshot", 100), Some(0));
    assert_eq!(of("clone", 200), Some(used));
    assert_eq!(of("template", 200), Some(0));
    assert_eq!(of("clone", 300), Some(0));
    assert_eq!(of("rollback", 100), Some(0));
    assert_eq!(of("exec", 100), None, "exec moves no volume data");
    let conf = fs::read_to_string(h.conf_path(300)).unwrap();
    assert!(
        conf.contains("rootfs: local-zfs:basevol-200-disk-0/subvol-300-disk-0,size=8G"),
        "{conf}"
    );
    // The clone's copy of the data counts the same: the size travels with the file.
    assert_eq!(
        used_bytes(&h.root().join("rpool/data/subvol-300-disk-0")),
        used
    );
    // A failed clone copied nothing and says so by having no bytes.
    assert!(h.clone_ct(&clone_of(100, "phx-none", 400)).is_err());
    assert_eq!(bytes_logged(&h).last().unwrap().2, None);
}

#[test]
fn a_copys_latency_follows_its_bytes() {
    let (_t, mut h) = host();
    h.latency = knobs::parse_latency("clone_per_gib=100").unwrap();
    h.create(100, &spec()).unwrap();
    h.start(100).unwrap();
    let argv: Vec<String> = ["fallocate", "-l", "10G", "/root/data"]
        .map(String::from)
        .to_vec();
    h.exec(100, &argv, &mut Vec::new()).unwrap();
    h.shutdown(100, 10).unwrap();
    h.snapshot(100, "phx-a", "").unwrap();
    let t = std::time::Instant::now();
    h.clone_ct(&clone_of(100, "phx-a", 200)).unwrap();
    let full = t.elapsed();
    assert!(
        full >= Duration::from_millis(1000),
        "10 GiB at 100 ms each: {full:?}"
    );
    h.template(200).unwrap();
    let t = std::time::Instant::now();
    h.clone_with(&CloneRequest {
        source: 200,
        target: 300,
        full: Some(false),
        ..CloneRequest::default()
    })
    .unwrap();
    assert!(
        t.elapsed() < Duration::from_millis(500),
        "a linked clone copies nothing"
    );
}
