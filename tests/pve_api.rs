//! The `pve` backend over the REST API (`--pve-url`) end to end: the real `phoenix`
//! against the model served over HTTPS by `pve-api-emulator`, and a real `sshd` whose
//! `pct` is the `pct-emulator` on the same tree (`tests/common/cluster.rs`).

#[path = "common/cluster.rs"]
mod cluster;
mod common;

use std::collections::BTreeSet;
use std::fs;

use cluster::Cluster;
use common::{Fixture, Run};

struct Api {
    f: Fixture,
    c: Cluster,
}

impl Api {
    fn new() -> Api {
        Api::with(Fixture::example(), &[])
    }

    fn with(f: Fixture, emulator_env: &[(&str, &str)]) -> Api {
        let c = Cluster::start(&f.tmp.path().join("cluster"), emulator_env);
        Api { f, c }
    }

    fn run(&self, args: &[&str], env: &[(String, String)], extra: &[(&str, &str)]) -> Run {
        let mut all: Vec<(&str, &str)> =
            env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        all.extend_from_slice(extra);
        let r = self.f.phoenix_env(args, &all);
        for secret in [
            cluster::ROOT_PASSWORD,
            cluster::TOKEN_SECRET,
            cluster::CI_TOKEN_SECRET,
        ] {
            assert!(
                !r.stdout.contains(secret) && !r.stderr.contains(secret),
                "a secret was printed:\n{}\n{}",
                r.stdout,
                r.stderr
            );
        }
        r
    }

    /// phoenix as root@pam with a password.
    fn phoenix(&self, args: &[&str]) -> Run {
        self.run(args, &self.c.env(), &[])
    }

    fn phoenix_with(&self, args: &[&str], extra: &[(&str, &str)]) -> Run {
        self.run(args, &self.c.env(), extra)
    }

    fn requests_since(&self, n: usize) -> Vec<String> {
        self.c.requests()[n..].to_vec()
    }
}

fn is_read(request: &str) -> bool {
    request.starts_with("GET ") || request.starts_with("POST /api2/json/access/ticket ")
}

/// The CTIDs requests change (`/nodes/<node>/lxc/<id>/...`); a clone's target and a
/// create's CT are not in the path: `POST …/<source>/clone` counts as `clone of
/// <source>`, `POST /nodes/<node>/lxc` as `new`.
fn changed(requests: &[String]) -> BTreeSet<String> {
    requests
        .iter()
        .filter(|r| !is_read(r))
        .filter_map(|r| {
            let target = r.split_whitespace().nth(1)?;
            let path = target.split('?').next()?;
            let parts: Vec<&str> = path.split('/').collect();
            match parts.as_slice() {
                ["", "api2", "json", "nodes", _, "lxc", id, "clone"] => {
                    Some(format!("clone of {id}"))
                }
                ["", "api2", "json", "nodes", _, "lxc", id, ..] => Some(id.to_string()),
                ["", "api2", "json", "nodes", _, "lxc"] => Some("new".to_string()),
                _ => None,
            }
        })
        .collect()
}

/// The config files of these CTs.
fn confs(c: &Cluster, ctids: &[u32]) -> Vec<Vec<u8>> {
    ctids
        .iter()
        .map(|id| fs::read(c.conf(*id)).unwrap())
        .collect()
}

#[test]
fn the_example_fleet_builds_over_the_api_and_a_second_build_only_reads() {
    let a = Api::new();
    let r = a.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        common::built(&r),
        common::set(&[900, 901, 902, 903, 910, 920, 950])
    );
    // Proxmox's config, written through the API: the marker, the GPU's devN, the snapshot.
    let conf = fs::read_to_string(a.c.conf(901)).unwrap();
    assert!(conf.contains("tags: phoenix"), "{conf}");
    assert!(conf.contains("dev0: /dev/nvidia0,mode=0666"), "{conf}");
    assert!(conf.contains("\n[phx-"), "{conf}");
    // The steps ran inside the CTs over SSH: the shipped step scripts' own commands.
    let cmds = a.c.commands(903);
    assert!(cmds.contains("bash /tmp/phoenix-step-nvidia.sh"), "{cmds}");
    assert!(cmds.contains("bash /tmp/phoenix-step-docker.sh"), "{cmds}");
    // Every change was an API request or a `pct` on the node, never a local one.
    let reqs = a.c.requests();
    assert!(reqs
        .iter()
        .any(|r| r.starts_with("POST /api2/json/nodes/pve/lxc ")));
    assert!(reqs
        .iter()
        .any(|r| r.starts_with("POST /api2/json/nodes/pve/lxc/900/clone ")));
    assert!(reqs.iter().all(|r| r.ends_with(" 200")), "{reqs:#?}");

    let before = a.c.requests().len();
    let r = a.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("7 fresh"), "{}", r.stdout);
    let again = a.requests_since(before);
    assert!(
        again.iter().all(|r| is_read(r)),
        "a no-op build only reads: {again:#?}"
    );
    // 2 per CT (its config and snapshots) plus a constant (login, status, resources).
    assert!(
        again.len() <= 2 * 7 + 3,
        "{} requests: {again:#?}",
        again.len()
    );
}

#[test]
fn a_hook_edit_rebuilds_exactly_its_subtree() {
    let a = Api::new();
    assert_eq!(a.phoenix(&["build"]).code, 0);
    let before = a.c.requests().len();
    let untouched = confs(&a.c, &[900, 901, 902, 903, 910]);
    let hook = a.f.hook_path(920);
    let mut text = fs::read_to_string(&hook).unwrap();
    text.push_str("\n# v2\n");
    fs::write(&hook, text).unwrap();
    let r = a.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert_eq!(common::built(&r), common::set(&[920, 950]));
    assert_eq!(
        changed(&a.requests_since(before)),
        ["920", "950", "clone of 903"]
            .into_iter()
            .map(String::from)
            .collect(),
        "only 920 (replaced by a clone of 903) and its clone 950 (converged in place) change"
    );
    assert_eq!(confs(&a.c, &[900, 901, 902, 903, 910]), untouched);
}

/// The example fleet less its GPU branch: 900, 902 and 910.
fn small_fleet() -> Fixture {
    let f = Fixture::example();
    f.edit_lxc(|v| {
        let configs = v["lxc_configs"].as_object_mut().unwrap();
        configs.retain(|k, _| ["900", "902", "910"].contains(&k.as_str()));
    });
    f
}

/// Waits (up to 20 s) for a request matching `pred` after the first `from`.
fn wait_for_request(c: &Cluster, from: usize, pred: impl Fn(&str) -> bool) {
    let start = std::time::Instant::now();
    loop {
        if c.requests().iter().skip(from).any(|r| pred(r)) {
            return;
        }
        assert!(
            start.elapsed() < std::time::Duration::from_secs(20),
            "the request never came: {:#?}",
            &c.requests()[from..]
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

fn edit_conf(c: &Cluster, ctid: u32, f: impl FnOnce(String) -> String) {
    let text = fs::read_to_string(c.conf(ctid)).unwrap();
    fs::write(c.conf(ctid), f(text)).unwrap();
}

#[test]
fn a_config_edited_by_hand_between_plan_and_build_is_refused_by_its_digest_and_the_next_build_converges(
) {
    let mut a = Api::with(small_fleet(), &[]);
    assert_eq!(a.phoenix(&["build"]).code, 0);
    a.f.edit_block(910, |b| {
        b.insert("memory_mb".into(), serde_json::json!(2048));
    });
    // Each request now waits 300 ms: the edit lands after phoenix read 910 and before
    // its write is answered.
    a.c.restart_emulator(&[("PVE_API_EMULATOR_LATENCY_MS", "300")]);
    let from = a.c.requests().len();
    let edited = std::thread::scope(|s| {
        let c = &a.c;
        let editor = s.spawn(move || {
            wait_for_request(c, from, |r| {
                r.starts_with("GET /api2/json/nodes/pve/lxc/910/snapshot ")
            });
            edit_conf(c, 910, |t| t.replace("cores: 4", "cores: 3"));
        });
        let r = a.phoenix(&["build", "--output", "json"]);
        editor.join().unwrap();
        r
    });
    assert_eq!(edited.code, 1, "{}\n{}", edited.stdout, edited.stderr);
    let failed = common::events(&edited)
        .into_iter()
        .find(|e| e["event"] == "node_finished" && e["ctid"] == 910)
        .unwrap();
    assert_eq!(failed["outcome"], "failed");
    let error = failed["error"].as_str().unwrap();
    assert!(
        error.contains("detected modified configuration")
            && error.contains("nothing was overwritten"),
        "{error}"
    );
    let conf = fs::read_to_string(a.c.conf(910)).unwrap();
    assert!(
        conf.contains("cores: 3") && conf.contains("memory: 4096"),
        "the hand edit stays, nothing written: {conf}"
    );

    let r = a.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let conf = fs::read_to_string(a.c.conf(910)).unwrap();
    assert!(
        conf.contains("cores: 4") && conf.contains("memory: 2048"),
        "converged: {conf}"
    );
}

#[test]
fn a_lock_held_by_another_client_is_retried_then_reported_and_a_released_one_lets_the_build_go_on()
{
    let a = Api::with(small_fleet(), &[]);
    assert_eq!(a.phoenix(&["build"]).code, 0);
    a.f.edit_block(910, |b| {
        b.insert("memory_mb".into(), serde_json::json!(2048));
    });
    // A backup holds 910 for the whole run: retried, then reported with Proxmox's words.
    edit_conf(&a.c, 910, |t| {
        t.replacen("memory:", "lock: backup\nmemory:", 1)
    });
    let before = fs::read(a.c.conf(910)).unwrap();
    let r = a.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let events = common::events(&r);
    let retries = events
        .iter()
        .filter(|e| e["event"] == "retry" && e["ctid"] == 910)
        .count();
    assert_eq!(
        retries, 5,
        "retried until the attempts ran out: {events:#?}"
    );
    let failed = events
        .iter()
        .find(|e| e["event"] == "node_finished" && e["ctid"] == 910)
        .unwrap();
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("CT is locked (backup)"),
        "{failed}"
    );
    assert_eq!(fs::read(a.c.conf(910)).unwrap(), before, "nothing written");

    // Released during the retries: the build goes on.
    let from = a.c.requests().len();
    let r = std::thread::scope(|s| {
        let c = &a.c;
        let releaser = s.spawn(move || {
            wait_for_request(c, from, |r| {
                r.starts_with("PUT /api2/json/nodes/pve/lxc/910/config 500")
            });
            edit_conf(c, 910, |t| t.replace("lock: backup\n", ""));
        });
        let r = a.phoenix_with(
            &["build", "--output", "json"],
            &[("PHOENIX_RETRY_DELAY_MS", "300")],
        );
        releaser.join().unwrap();
        r
    });
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(fs::read_to_string(a.c.conf(910))
        .unwrap()
        .contains("memory: 2048"));
}

#[test]
fn a_task_that_ends_in_error_fails_its_node_with_proxmoxs_text_and_blocks_only_its_subtree() {
    let a = Api::with(
        Fixture::example(),
        &[("PVE_EMULATOR_FAULTS", "start:902=fail")],
    );
    let r = a.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let fin = common::finished(&r);
    assert_eq!(fin[&902].1, "failed");
    for ctid in [903, 910, 920, 950] {
        assert_eq!(fin[&ctid].1, "blocked", "{ctid}");
    }
    assert_eq!(common::built(&r), common::set(&[900, 901]));
    let failed = common::events(&r)
        .into_iter()
        .find(|e| e["event"] == "node_finished" && e["ctid"] == 902)
        .unwrap();
    assert_eq!(failed["failed_step"], "start");
    assert!(
        failed["error"]
            .as_str()
            .unwrap()
            .contains("simulated failure (start:902=fail)"),
        "the task's exit status: {failed}"
    );
    // The task's log is in the node's log.
    let log =
        a.f.phoenix_env(&["log", "902"], &[("PHOENIX_BACKEND", "sim")]);
    assert!(
        log.stdout.contains("TASK ERROR: simulated failure"),
        "{}",
        log.stdout
    );
}

#[test]
fn the_upstream_fleet_builds_over_the_api_from_a_path_template_as_root() {
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
    let dir = f.tmp.path().join("cluster");
    let root = dir.join("pve");
    fs::create_dir_all(root.join("etc/pve")).unwrap();
    fs::write(
        root.join("etc/pve/storage.cfg"),
        "dir: local\n\tpath /var/lib/vz\n\tcontent iso,vztmpl,backup\n\n\
         zfspool: lxc-disks\n\tpool quickOS/lxc-disks\n\tcontent rootdir,images\n\tsparse 1\n",
    )
    .unwrap();
    let template =
        root.join("fastData/shared-iso/template/cache/ubuntu-24.04-standard_24.04-2_amd64.tar.zst");
    fs::create_dir_all(template.parent().unwrap()).unwrap();
    fs::write(&template, "").unwrap();
    let a = Api {
        c: Cluster::start(&dir, &[]),
        f,
    };
    let version = a.c.root.join("proc/driver/nvidia/version");
    let text = fs::read_to_string(&version).unwrap();
    fs::write(&version, text.replace("580.76.05", "580.76.06")).unwrap();
    let r = a.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    for ctid in [900, 901, 902, 910, 920, 950] {
        let conf = fs::read_to_string(a.c.conf(ctid)).unwrap();
        assert!(
            conf.contains("rootfs: lxc-disks:subvol-"),
            "CT {ctid}: {conf}"
        );
        assert!(conf.contains("\n[phx-"), "CT {ctid} has its build snapshot");
    }
    let conf = fs::read_to_string(a.c.conf(950)).unwrap();
    assert!(
        conf.contains("dev0: /dev/nvidia0,mode=0666")
            && conf.contains("dev1: /dev/nvidia1,mode=0666"),
        "{conf}"
    );
    let before = a.c.requests().len();
    assert_eq!(a.phoenix(&["build"]).code, 0);
    assert!(a.requests_since(before).iter().all(|r| is_read(r)));
}

/// A plan that cannot use the API: exit 6, one message (returned), nothing changed.
fn unusable(a: &Api, env: &[(String, String)], extra: &[(&str, &str)]) -> String {
    let before = a.c.requests().len();
    let r = a.run(&["plan", "--output", "json"], env, extra);
    assert_eq!(r.code, 6, "{}\n{}", r.stdout, r.stderr);
    assert!(
        a.requests_since(before).iter().all(|r| is_read(r)),
        "nothing changed"
    );
    let doc = r.json();
    let e = &doc["error"];
    assert_eq!(e["kind"], "api", "{e}");
    // The documented error document (schemas/output/error.schema.json).
    let schema: serde_json::Value = serde_json::from_str(
        &fs::read_to_string(common::repo().join("schemas/output/error.schema.json")).unwrap(),
    )
    .unwrap();
    let v = jsonschema::validator_for(&schema).unwrap();
    assert!(v.is_valid(&doc), "{doc}");
    e["message"].as_str().unwrap().to_string()
}

#[test]
fn certificates_are_trusted_by_pin_or_ca_and_a_wrong_one_is_named() {
    let a = Api::with(small_fleet(), &[]);
    let env = a.c.env();
    // A pin that is not the server's: nothing is sent, the fingerprint is named.
    let wrong = "AB:".repeat(31) + "AB";
    let e = unusable(&a, &env, &[("PHOENIX_PVE_FINGERPRINT", &wrong)]);
    assert!(
        e.contains("not the one pinned")
            && e.contains(&a.c.emulator.fingerprint)
            && e.contains("pvenode cert info"),
        "{e}"
    );
    assert!(
        a.c.requests().is_empty(),
        "no request crossed an unverified connection"
    );
    // The system's roots do not know the cluster's CA: say how to trust it.
    let e = unusable(&a, &env, &[("PHOENIX_PVE_FINGERPRINT", "")]);
    assert!(
        e.contains("--pve-ca") && e.contains(&a.c.emulator.fingerprint),
        "{e}"
    );
    // The cluster's CA (what /etc/pve/pve-root-ca.pem holds) verifies it.
    let ca = a.c.emulator.ca.display().to_string();
    let r = a.run(
        &["plan"],
        &env,
        &[("PHOENIX_PVE_FINGERPRINT", ""), ("PHOENIX_PVE_CA", &ca)],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Insecure only when asked, and said.
    let r = a.run(
        &["plan"],
        &env,
        &[
            ("PHOENIX_PVE_FINGERPRINT", ""),
            ("PHOENIX_PVE_INSECURE", "1"),
        ],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stderr.contains("--pve-insecure: the certificate of"),
        "{}",
        r.stderr
    );
    // Two ways at once is a contradiction.
    let e = unusable(&a, &env, &[("PHOENIX_PVE_CA", &ca)]);
    assert!(e.contains("alternatives"), "{e}");
}

#[test]
fn refused_credentials_say_what_to_fix_and_change_nothing() {
    let a = Api::with(small_fleet(), &[]);
    // A wrong password.
    let e = unusable(
        &a,
        &a.c.env(),
        &[("PHOENIX_PVE_PASSWORD", "not-the-password")],
    );
    assert!(
        e.contains("refused the login of root@pam") && e.contains("PHOENIX_PVE_PASSWORD"),
        "{e}"
    );
    assert!(!e.contains("not-the-password"));
    // A token works, until it is revoked.
    let token = a.c.token_env(cluster::TOKEN_ID, cluster::TOKEN_SECRET);
    let r = a.run(&["plan"], &token, &[]);
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
    let auth = a.c.root.join("api-auth.json");
    let mut v: serde_json::Value = serde_json::from_slice(&fs::read(&auth).unwrap()).unwrap();
    v["tokens"]
        .as_object_mut()
        .unwrap()
        .remove(cluster::TOKEN_ID);
    fs::write(&auth, v.to_string()).unwrap();
    let e = unusable(&a, &token, &[]);
    assert!(
        e.contains("refused the API token root@pam!phoenix")
            && e.contains("revoked")
            && e.contains("pveum user token add"),
        "{e}"
    );
    // A token that is not one.
    let e = unusable(
        &a,
        &a.c.env(),
        &[
            ("PHOENIX_PVE_USER", ""),
            ("PHOENIX_PVE_TOKEN", "root@pam:phoenix:xyz"),
        ],
    );
    assert!(e.contains("user@realm!tokenid=secret"), "{e}");
    // No credentials at all.
    let e = unusable(
        &a,
        &a.c.env(),
        &[("PHOENIX_PVE_USER", ""), ("PHOENIX_PVE_PASSWORD", "")],
    );
    assert!(e.contains("no Proxmox credentials"), "{e}");
}

#[test]
fn tickets_are_renewed_before_they_expire_and_a_node_that_refuses_fresh_ones_is_said() {
    let mut a = Api::with(small_fleet(), &[]);
    // Renewed every 0.2 s (Proxmox's tickets last 2 h; phoenix renews after 1 h).
    let r = a.phoenix_with(&["build"], &[("PHOENIX_PVE_TICKET_RENEW", "0.2")]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let logins =
        a.c.requests()
            .iter()
            .filter(|r| r.starts_with("POST /api2/json/access/ticket "))
            .count();
    assert!(logins > 2, "renewed: {logins} logins");
    // Tickets that last 1 s: renewed in the background, so that a hook's `pct` after a
    // long hook still has a valid one.
    a.c.restart_emulator(&[("PVE_API_EMULATOR_TICKET_TTL_S", "1")]);
    let hook = a.f.hook_path(910);
    let text = fs::read_to_string(&hook).unwrap();
    fs::write(&hook, text + "\nsleep 1.5\npct status \"$1\"\n").unwrap();
    let r = a.phoenix_with(&["build"], &[("PHOENIX_PVE_TICKET_RENEW", "0.3")]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    // A ticket the node refuses before phoenix renews it is replaced by a new login.
    a.c.restart_emulator(&[
        ("PVE_API_EMULATOR_TICKET_TTL_S", "1"),
        ("PVE_API_EMULATOR_LATENCY_MS", "300"),
    ]);
    a.f.edit_block(910, |b| {
        b.insert("memory_mb".into(), serde_json::json!(2048));
    });
    let from = a.c.requests().len();
    let r = a.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let reqs = a.requests_since(from);
    let refused = reqs
        .iter()
        .position(|r| r.ends_with(" 401"))
        .expect("a ticket expired under the build");
    assert!(
        reqs[refused..]
            .iter()
            .any(|r| r.starts_with("POST /api2/json/access/ticket 200")),
        "{reqs:#?}"
    );
    assert!(fs::read_to_string(a.c.conf(910))
        .unwrap()
        .contains("memory: 2048"));
    // A node whose clock makes every ticket expired at once.
    a.c.restart_emulator(&[("PVE_API_EMULATOR_TICKET_TTL_S", "0")]);
    let e = unusable(&a, &a.c.env(), &[]);
    assert!(
        e.contains("refuses the ticket of root@pam it issued a moment ago")
            && e.contains("timedatectl"),
        "{e}"
    );
}

#[test]
fn an_unreachable_url_a_url_that_is_not_proxmox_and_an_answer_that_is_not_json_are_named() {
    let mut a = Api::with(small_fleet(), &[]);
    let env = a.c.env();
    // Nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("https://127.0.0.1:{port}");
    let e = unusable(&a, &env, &[("PHOENIX_PVE_URL", &url)]);
    assert!(
        e.contains("refused the connection") && e.contains("pveproxy"),
        "{e}"
    );
    // Not a URL phoenix takes.
    let e = unusable(&a, &env, &[("PHOENIX_PVE_URL", "http://127.0.0.1:8006")]);
    assert!(e.contains("https"), "{e}");
    // An address that does not answer.
    let e = unusable(
        &a,
        &env,
        &[
            ("PHOENIX_PVE_URL", "https://192.0.2.1:8006"),
            ("PHOENIX_PVE_HTTP_TIMEOUT", "1"),
        ],
    );
    assert!(e.contains("192.0.2.1:8006"), "{e}");
    // A web server that is not Proxmox.
    a.c.restart_emulator(&[("PVE_API_EMULATOR_ANSWER", "not-proxmox")]);
    let env = a.c.env();
    let e = unusable(&a, &env, &[]);
    assert!(
        e.contains("does not answer as a Proxmox VE API") && e.contains("404"),
        "{e}"
    );
    a.c.restart_emulator(&[("PVE_API_EMULATOR_ANSWER", "not-json")]);
    let env = a.c.env();
    let e = unusable(&a, &env, &[]);
    assert!(
        e.contains("not JSON") && e.contains("Welcome to nginx"),
        "{e}"
    );
}

#[test]
fn a_token_without_a_privilege_is_told_which_and_gpu_nodes_need_root_pam_itself() {
    let f = Fixture::example();
    // Only nesting: the one feature a token may set.
    f.edit_lxc(|v| {
        for (_, b) in v["lxc_configs"].as_object_mut().unwrap() {
            if b.get("features").is_some() {
                b["features"] = serde_json::json!("nesting=1");
            }
        }
    });
    let a = Api::with(f, &[]);
    let ci =
        a.c.token_env(cluster::CI_TOKEN_ID, cluster::CI_TOKEN_SECRET);
    // Preflight: every GPU node names the root@pam rule, before anything changes.
    let r = a.run(&["plan", "--output", "json"], &ci, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let pre = r.json()["preflight"].as_array().unwrap().clone();
    let gpu: BTreeSet<u64> = pre.iter().map(|p| p["ctid"].as_u64().unwrap()).collect();
    assert_eq!(gpu, common::set(&[901, 903, 920, 950]), "{pre:#?}");
    for p in &pre {
        assert_eq!(p["check"], "privilege");
        let m = p["message"].as_str().unwrap();
        assert!(
            m.contains("only root@pam") && m.contains("phoenix@pve!ci") && m.contains("--skip-gpu"),
            "{m}"
        );
    }
    // The rest builds with the least privileges; the GPU branch fails at preflight.
    let r = a.run(&["build", "--output", "json"], &ci, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert_eq!(common::built(&r), common::set(&[900, 902, 910]));
    assert!(
        !a.c.conf(901).exists(),
        "nothing of the GPU branch was made"
    );

    // A privilege taken away is named, with what to grant.
    let least: Vec<&str> = cluster::PRIVILEGES
        .iter()
        .copied()
        .filter(|p| *p != "VM.Snapshot")
        .collect();
    cluster::write_auth(&a.c.root, &least);
    a.f.edit_block(910, |b| {
        b.insert("vllm_model".into(), serde_json::json!("rebuild me"));
    });
    let r = a.run(&["build", "--skip-gpu", "--output", "json"], &ci, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let failed = common::events(&r)
        .into_iter()
        .find(|e| e["event"] == "node_finished" && e["outcome"] == "failed")
        .unwrap();
    let m = failed["error"].as_str().unwrap();
    assert!(
        m.contains("Permission check failed (/vms/910, VM.Snapshot)")
            && m.contains("pveum acl modify"),
        "{m}"
    );
    // Without Sys.Audit phoenix cannot even read the cluster: said at once.
    let no_audit: Vec<&str> = cluster::PRIVILEGES
        .iter()
        .copied()
        .filter(|p| *p != "Sys.Audit")
        .collect();
    cluster::write_auth(&a.c.root, &no_audit);
    let e = unusable(&a, &ci, &[]);
    assert!(e.contains("Permission check failed (/, Sys.Audit)"), "{e}");
}

#[test]
fn a_node_that_is_offline_fails_the_preflight_by_name() {
    let a = Api::with(small_fleet(), &[("PVE_API_EMULATOR_OFFLINE", "pve")]);
    let r = a.phoenix(&["plan", "--output", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let pre = r.json()["preflight"].as_array().unwrap().clone();
    assert_eq!(pre.len(), 3, "{pre:#?}");
    assert!(
        pre[0]["message"]
            .as_str()
            .unwrap()
            .contains("node 'pve', where new CTs go, is offline"),
        "{pre:#?}"
    );
}

#[test]
fn an_ssh_host_key_that_does_not_match_fails_the_preflight_and_changes_nothing() {
    let a = Api::with(small_fleet(), &[]);
    let known = a.c.dir.join("user/known_hosts");
    // The node's key as the user knew it before a reinstall.
    let old = a.c.dir.join("user/old_host_key");
    assert!(std::process::Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&old)
        .status()
        .unwrap()
        .success());
    let key = fs::read_to_string(old.with_extension("pub")).unwrap();
    let key: Vec<&str> = key.split_whitespace().take(2).collect();
    fs::write(
        &known,
        format!("[127.0.0.1]:{} {}\n", a.c.sshd.port, key.join(" ")),
    )
    .unwrap();
    let r = a.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let failed = common::events(&r)
        .into_iter()
        .find(|e| e["event"] == "node_finished" && e["ctid"] == 900)
        .unwrap();
    assert_eq!(failed["failed_step"], "preflight");
    let m = failed["error"].as_str().unwrap();
    assert!(
        m.contains("does not match your known_hosts")
            && m.contains("never turns host-key checking off"),
        "{m}"
    );
    assert!(a.c.requests().iter().all(|r| is_read(r)), "nothing changed");
    // Unknown: never accepted unseen.
    fs::write(&known, "").unwrap();
    let r = a.phoenix(&["plan"]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.contains("is not in your known_hosts"),
        "{}",
        r.stdout
    );
}

#[test]
fn hooks_get_a_pct_that_reaches_the_node_lifecycle_through_the_api_and_exec_through_ssh() {
    let a = Api::with(small_fleet(), &[]);
    let out = a.f.tmp.path().join("hook-910.txt");
    let payload = a.f.tmp.path().join("payload");
    fs::write(&payload, "payload\nwith 'quotes' and $dollars\n").unwrap();
    a.f.write_hook(
        910,
        &format!(
            r#"#!/bin/bash
set -eu
ctid=$1
{{
  echo "pct=$(command -v pct)"
  pct status "$ctid"
  pct exec "$ctid" -- echo 'a b' '$HOME;x' "it's"
  pct snapshot "$ctid" hook-snap --description 'taken by a hook'
  pct listsnapshot "$ctid"
  pct delsnapshot "$ctid" hook-snap
  pct push "$ctid" {payload} /root/pushed --perms 0600
  pct pull "$ctid" /root/pushed {pulled}
  cat {pulled}
  pct enter "$ctid" < /dev/null || echo "enter exited $?"
  env | sort
  ps -eo args
}} > {out} 2>&1
"#,
            payload = payload.display(),
            pulled = a.f.tmp.path().join("pulled").display(),
            out = out.display()
        ),
    );
    let r = a.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let seen = fs::read_to_string(&out).unwrap();
    // phoenix's own pct, in its private run directory, not the node's.
    let pct = seen.lines().next().unwrap();
    assert!(
        pct.starts_with("pct=/") && pct.ends_with("/bin/pct") && !pct.contains("node-bin"),
        "{seen}"
    );
    assert!(seen.contains("status: running"), "{seen}");
    assert!(seen.contains("hook-snap"), "{seen}");
    assert!(
        seen.contains("payload\nwith 'quotes' and $dollars\n"),
        "pushed and pulled back: {seen}"
    );
    // `enter` went over SSH to the node's pct (the model gives no shell, and says so).
    assert!(
        seen.contains("the sim host gives no shell through this pct")
            && seen.contains("enter exited 255"),
        "{seen}"
    );
    // The exec reached the CT over SSH, every argument intact.
    assert!(
        a.c.commands(910).contains("echo a b $HOME;x it's"),
        "{}",
        a.c.commands(910)
    );
    // Snapshots through the API.
    let reqs = a.c.requests();
    assert!(reqs
        .iter()
        .any(|r| r == "POST /api2/json/nodes/pve/lxc/910/snapshot 200"));
    assert!(reqs
        .iter()
        .any(|r| r == "DELETE /api2/json/nodes/pve/lxc/910/snapshot/hook-snap 200"));
    // Hooks see the API's settings and a ticket file, never the password.
    assert!(
        seen.contains("PHOENIX_PVE_URL=https://127.0.0.1:"),
        "{seen}"
    );
    assert!(seen.contains("PHOENIX_PVE_TICKET_FILE=/"), "{seen}");
    assert!(!seen.contains("PHOENIX_PVE_PASSWORD="), "{seen}");
    assert!(
        !seen.contains(cluster::ROOT_PASSWORD),
        "a secret reached a hook: {seen}"
    );
    // Nor did it reach any file phoenix wrote.
    for entry in walk(&a.f.state_dir)
        .into_iter()
        .chain([a.c.dir.join("phoenix.log")])
    {
        let bytes = fs::read(&entry).unwrap_or_default();
        let text = String::from_utf8_lossy(&bytes);
        assert!(
            !text.contains(cluster::ROOT_PASSWORD),
            "{}",
            entry.display()
        );
    }
}

/// Every file under `dir`.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk(&p));
        } else {
            out.push(p);
        }
    }
    out
}

#[test]
fn a_token_reaches_hooks_as_a_private_file_and_never_as_an_argument() {
    let f = small_fleet();
    f.edit_lxc(|v| {
        for (_, b) in v["lxc_configs"].as_object_mut().unwrap() {
            if b.get("features").is_some() {
                b["features"] = serde_json::json!("nesting=1");
            }
        }
    });
    let a = Api::with(f, &[]);
    let out = a.f.tmp.path().join("hook-910.txt");
    a.f.write_hook(
        910,
        &format!(
            "#!/bin/bash\nset -eu\n{{ env | sort; ps -eo args; cat \"$PHOENIX_PVE_TOKEN_FILE\" | wc -c; pct status \"$1\"; }} > {} 2>&1\n",
            out.display()
        ),
    );
    let token = a.c.token_env(cluster::TOKEN_ID, cluster::TOKEN_SECRET);
    let r = a.run(&["build"], &token, &[]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let seen = fs::read_to_string(&out).unwrap();
    assert!(seen.contains("PHOENIX_PVE_TOKEN_FILE=/"), "{seen}");
    assert!(seen.contains("status: running"), "{seen}");
    assert!(
        !seen.contains(cluster::TOKEN_SECRET),
        "the token is in a hook's environment or argv: {seen}"
    );
    // The private file is gone with the run.
    let file = seen
        .lines()
        .find_map(|l| l.strip_prefix("PHOENIX_PVE_TOKEN_FILE="))
        .unwrap();
    assert!(
        !std::path::Path::new(file).exists(),
        "{file} outlived the run"
    );
}

#[test]
fn remote_commands_are_argument_vectors_quoted_once_over_real_ssh() {
    use phoenix::host::pve::api::ssh::{Address, Input, Ssh, SshOptions};
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    let a = Api::with(small_fleet(), &[]);
    let control = a.f.tmp.path().join("ctl");
    fs::create_dir_all(&control).unwrap();
    let ssh = Ssh::new(
        SshOptions {
            program: a.c.ssh.clone(),
            user: "root".into(),
            hosts: Default::default(),
            control_dir: None,
        },
        control,
        true,
    );
    let addr = Address {
        host: "127.0.0.1".into(),
        port: Some(a.c.sshd.port),
    };
    let words: Vec<&OsStr> = vec![
        OsStr::new("a b"),
        OsStr::new("it's \"quoted\""),
        OsStr::new("$HOME `id` $(id)"),
        OsStr::new("; rm -rf /nonexistent; echo"),
        OsStr::new("line one\nline two"),
        OsStr::new(""),
        OsStr::new("*"),
        OsStr::from_bytes(b"\xff\xfe not utf-8 \x80"),
        OsStr::new("\\ backslash 'single'"),
    ];
    let mut argv: Vec<&OsStr> = vec![OsStr::new("printf"), OsStr::new("%s\\0")];
    argv.extend(words.iter().copied());
    let out = ssh.run(&addr, &argv, Input::Null, None).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut want = Vec::new();
    for w in &words {
        want.extend_from_slice(w.as_bytes());
        want.push(0);
    }
    assert_eq!(
        out.stdout, want,
        "every byte of every argument, as one argument each"
    );
    // One connection per node: the second command reuses the master.
    assert!(
        fs::read_dir(ssh.control_dir()).unwrap().count() == 1,
        "one control socket"
    );
}

#[test]
fn credentials_come_from_files_as_well() {
    let a = Api::with(small_fleet(), &[]);
    let dir = a.f.tmp.path();
    fs::write(
        dir.join("token"),
        format!("{}={}\n", cluster::TOKEN_ID, cluster::TOKEN_SECRET),
    )
    .unwrap();
    fs::write(
        dir.join("password"),
        format!("{}\n", cluster::ROOT_PASSWORD),
    )
    .unwrap();
    let token_file = dir.join("token").display().to_string();
    let password_file = dir.join("password").display().to_string();
    let r = a.phoenix_with(
        &["plan", "--pve-token-file", &token_file],
        &[("PHOENIX_PVE_USER", ""), ("PHOENIX_PVE_PASSWORD", "")],
    );
    assert!(r.code == 0 || r.code == 1, "{}", r.stderr);
    assert!(r.stdout.contains("plan: 3 create"), "{}", r.stdout);
    let r = a.phoenix_with(
        &["plan", "--pve-password-file", &password_file],
        &[("PHOENIX_PVE_PASSWORD", "")],
    );
    assert_eq!(r.code, 0, "{}", r.stderr);
    // Two sources of one secret are a contradiction, said without the secret.
    let e = unusable(
        &a,
        &a.c.env(),
        &[("PHOENIX_PVE_PASSWORD_FILE", &password_file)],
    );
    assert!(e.contains("give the password once"), "{e}");
    // A file that is not there.
    let e = unusable(
        &a,
        &a.c.env(),
        &[
            ("PHOENIX_PVE_PASSWORD", ""),
            ("PHOENIX_PVE_PASSWORD_FILE", "/nonexistent/pw"),
        ],
    );
    assert!(e.contains("/nonexistent/pw"), "{e}");
}

#[test]
fn guests_phoenix_did_not_make_and_vms_are_never_written() {
    let a = Api::with(small_fleet(), &[]);
    let fixture = |name: &str| {
        fs::read_to_string(common::repo().join("tests/fixtures/pve").join(name))
            .unwrap()
            .replace("tags: gpu;phoenix", "tags: gpu")
            .replace("tags: phoenix", "tags: web")
    };
    let foreign = [
        (101, "101-snapshots.conf"),
        (102, "102-foreign.conf"),
        (104, "104-template.conf"),
    ];
    for (ctid, name) in foreign {
        fs::write(a.c.conf(ctid), fixture(name)).unwrap();
    }
    // A CT of somebody else's at a configured CTID, and a VM.
    fs::write(a.c.conf(910), fixture("102-foreign.conf")).unwrap();
    let vms = a.c.root.join("etc/pve/nodes/pve/qemu-server");
    fs::create_dir_all(&vms).unwrap();
    fs::write(vms.join("902.conf"), "memory: 1024\nname: somebodys-vm\n").unwrap();
    let before: Vec<Vec<u8>> = [101, 102, 104, 910]
        .iter()
        .map(|c| fs::read(a.c.conf(*c)).unwrap())
        .collect();
    let r = a.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let fin = common::finished(&r);
    assert_eq!(fin[&902].0, "unmanaged", "a VM holds 902: {fin:?}");
    assert_eq!(fin[&910].1, "blocked");
    assert_eq!(common::built(&r), common::set(&[900]));
    assert_eq!(a.phoenix(&["gc", "--orphans", "--keep", "0"]).code, 0);
    let after: Vec<Vec<u8>> = [101, 102, 104, 910]
        .iter()
        .map(|c| fs::read(a.c.conf(*c)).unwrap())
        .collect();
    assert_eq!(before, after, "byte-identical");
    assert_eq!(
        fs::read_to_string(vms.join("902.conf")).unwrap(),
        "memory: 1024\nname: somebodys-vm\n"
    );
    let touched: Vec<String> =
        a.c.requests()
            .into_iter()
            .filter(|r| {
                ["/101", "/102", "/104", "/910", "/902"]
                    .iter()
                    .any(|id| r.contains(&format!("/lxc{id}")))
            })
            .collect();
    assert!(
        touched.is_empty(),
        "foreign guests are not even read: {touched:#?}"
    );
}

#[test]
fn tasks_are_waited_for_while_invisible_warnings_are_success_and_a_task_past_its_limit_is_named() {
    let mut a = Api::with(
        small_fleet(),
        &[
            ("PVE_API_EMULATOR_TASK_VISIBLE_MS", "150"),
            ("PVE_API_EMULATOR_WARN_TASKS", "vzstart"),
        ],
    );
    let r = a.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let reqs = a.c.requests();
    assert!(
        reqs.iter()
            .any(|r| r.contains("/tasks/") && r.ends_with(" 400")),
        "a task was not visible at first: {reqs:#?}"
    );
    // The warning is in the node's log; the start succeeded.
    let log =
        a.f.phoenix_env(&["log", "900"], &[("PHOENIX_BACKEND", "sim")]);
    assert!(
        log.stdout.contains("WARN: an emulated warning") && log.stdout.contains("TASK WARNINGS: 1"),
        "{}",
        log.stdout
    );
    // A task that outlives PHOENIX_PVE_TASK_TIMEOUT fails its node, naming the task.
    a.c.restart_emulator(&[("PVE_API_EMULATOR_TASK_LATENCY", "snapshot=3000")]);
    a.f.edit_block(910, |b| {
        b.insert("vllm_model".into(), serde_json::json!("rebuild me"));
    });
    let r = a.phoenix_with(
        &["build", "--output", "json"],
        &[("PHOENIX_PVE_TASK_TIMEOUT", "1")],
    );
    assert_eq!(r.code, 1, "{}", r.stderr);
    let failed = common::events(&r)
        .into_iter()
        .find(|e| e["event"] == "node_finished" && e["ctid"] == 910)
        .unwrap();
    let m = failed["error"].as_str().unwrap();
    assert!(
        m.contains("UPID:pve:")
            && m.contains("still running after 1 s")
            && m.contains("PHOENIX_PVE_TASK_TIMEOUT"),
        "{m}"
    );
}

#[test]
fn a_nodes_ssh_address_can_be_given_and_a_wrong_one_is_named() {
    let a = Api::with(small_fleet(), &[]);
    // The user's ssh config without the port: the address comes from --pve-ssh-host.
    let user = a.c.dir.join("user");
    let config = fs::read_to_string(user.join("config")).unwrap();
    let no_port: String = config
        .lines()
        .filter(|l| !l.trim_start().starts_with("Port"))
        .map(|l| format!("{l}\n"))
        .collect();
    fs::write(user.join("config"), no_port).unwrap();
    // Nothing listens at this one.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let wrong = format!("pve=127.0.0.1:{port}");
    let r = a.phoenix_with(&["plan", "--pve-ssh-host", &wrong], &[]);
    assert_eq!(r.code, 1);
    assert!(
        r.stdout
            .contains("node 'pve' refused SSH at root@127.0.0.1:")
            && r.stdout.contains("--pve-ssh-host pve=ADDR"),
        "{}",
        r.stdout
    );
    let host = format!("pve=127.0.0.1:{}", a.c.sshd.port);
    let r = a.phoenix(&["build", "--pve-ssh-host", &host]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let r = a.phoenix_with(&["plan", "--pve-ssh-host", "pve"], &[]);
    assert_eq!(r.code, 6);
    assert!(r.stderr.contains("NODE=ADDR"), "{}", r.stderr);
}

/// 910's hook writes which version of it ran into the CT (`pct push` over SSH).
fn versioned_hook(f: &Fixture, version: &str) {
    f.write_hook(
        910,
        &format!(
            "#!/bin/sh\nf=$(mktemp)\necho {version} > \"$f\"\npct push \"$1\" \"$f\" /root/version.txt\n"
        ),
    );
}

/// 902's hook changed: 910, cloned from it, is rebuilt.
fn touch_902(f: &Fixture) {
    let hook = f.hook_path(902);
    fs::write(&hook, fs::read_to_string(&hook).unwrap() + "echo more\n").unwrap();
}

/// The backup archives of the model's `local` storage (`/var/lib/vz/dump`).
fn archives(c: &Cluster) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(c.root.join("var/lib/vz/dump"))
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.ends_with(".tar"))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_replaced_container_keeps_its_generation_over_the_api_and_a_rollback_restores_it() {
    let a = Api::with(small_fleet(), &[]);
    versioned_hook(&a.f, "v1");
    assert_eq!(a.phoenix(&["build"]).code, 0);
    let old = a.c.snapshots(910).pop().unwrap();
    touch_902(&a.f);
    versioned_hook(&a.f, "v2");
    a.f.edit_block(910, |b| {
        b.insert("memory_mb".into(), serde_json::json!(8192));
    });
    let before = a.c.requests().len();
    let r = a.phoenix(&["build", "--replace", "910", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let new = a.c.snapshots(910).pop().unwrap();
    assert_eq!(
        a.c.snapshots(910),
        std::slice::from_ref(&new),
        "a new CT: one snapshot"
    );
    assert_eq!(
        a.c.ct_file(910, "root/version.txt").as_deref(),
        Some("v2\n")
    );
    // Kept the Proxmox way before the CT went: a vzdump task on its node, the archive in
    // the storage's dump directory with the note naming the generation.
    let reqs = a.requests_since(before);
    let at = |prefix: &str| reqs.iter().position(|r| r.starts_with(prefix));
    let dump = at("POST /api2/json/nodes/pve/vzdump 200").expect("a vzdump request");
    let destroy = at("DELETE /api2/json/nodes/pve/lxc/910?purge=1 200").expect("a destroy");
    assert!(dump < destroy, "{reqs:#?}");
    let kept = archives(&a.c);
    assert_eq!(kept.len(), 1, "{kept:?}");
    assert!(kept[0].starts_with("vzdump-lxc-910-"), "{kept:?}");
    let notes =
        a.c.root
            .join("var/lib/vz/dump")
            .join(format!("{}.notes", kept[0]));
    assert_eq!(
        fs::read_to_string(notes).unwrap(),
        format!("phoenix: generation {old} of CT 910 (Portainer), kept when it was replaced")
    );
    // The task's log, with the archive as a node names it, is in the node's log.
    let log =
        a.f.phoenix_env(&["log", "910"], &[("PHOENIX_BACKEND", "sim")])
            .stdout;
    assert!(
        log.contains(&format!(
            "INFO: creating vzdump archive '/var/lib/vz/dump/{}'",
            kept[0]
        )) && log.contains(&format!("kept {old} as local:backup/{}", kept[0])),
        "{log}"
    );

    // generations lists it: the volume, its node, its size.
    let gens = a
        .phoenix(&["generations", "910", "--output", "json"])
        .json();
    let listed: Vec<&str> = gens["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["snapshot"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [new.as_str(), old.as_str()], "{gens}");
    let k = &gens["generations"][1]["kept"];
    assert_eq!(k["location"], format!("local:backup/{}", kept[0]));
    assert_eq!(k["node"], "pve");
    let size = fs::metadata(a.c.root.join("var/lib/vz/dump").join(&kept[0]))
        .unwrap()
        .len();
    assert_eq!(k["size_bytes"].as_u64(), Some(size));
    let human = a.phoenix(&["generations", "910"]).stdout;
    assert!(
        human.contains(&format!(
            "kept apart as local:backup/{} on node pve",
            kept[0]
        )),
        "{human}"
    );

    // rollback restores it through the API: files and settings back, pinned, running.
    let before = a.c.requests().len();
    let r = a.phoenix(&["rollback", "910", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(r.json()["to"], old);
    assert_eq!(
        r.json()["restored_from"],
        format!("local:backup/{}", kept[0])
    );
    let reqs = a.requests_since(before);
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("POST /api2/json/nodes/pve/vzdump 200")),
        "the generation it held is kept first: {reqs:#?}"
    );
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("POST /api2/json/nodes/pve/lxc 200")),
        "the restore: {reqs:#?}"
    );
    assert_eq!(
        a.c.ct_file(910, "root/version.txt").as_deref(),
        Some("v1\n")
    );
    let conf = fs::read_to_string(a.c.conf(910)).unwrap();
    assert!(
        conf.contains("memory: 4096\n"),
        "the settings it was built with:\n{conf}"
    );
    assert_eq!(
        a.c.snapshots(910),
        std::slice::from_ref(&old),
        "back as its generation"
    );
    assert!(
        a.c.root.join("run/lxc/910.running").exists(),
        "started again"
    );
    let plan = a.phoenix(&["plan", "--output", "json"]).json();
    let node = plan["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["ctid"] == 910)
        .unwrap()
        .clone();
    assert_eq!(node["action"], "pinned", "{node}");
    assert_eq!(
        archives(&a.c).len(),
        2,
        "the rolled-back generation is kept too"
    );

    // gc over the API forgets the copy nothing needs any more; the pinned one stays.
    let before = a.c.requests().len();
    let r = a.phoenix(&["gc", "--keep", "0", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let deletes: Vec<String> = a
        .requests_since(before)
        .into_iter()
        .filter(|r| r.starts_with("DELETE /api2/json/nodes/pve/storage/local/content/"))
        .collect();
    let gone: Vec<String> = archives(&a.c);
    assert_eq!(
        gone,
        [kept[0].clone()],
        "only the pinned generation's copy is left"
    );
    assert_eq!(deletes.len(), 1, "{deletes:#?}");
    assert!(
        deletes[0].contains("local%3Abackup%2Fvzdump-lxc-910-") && deletes[0].ends_with(" 200"),
        "{deletes:#?}"
    );
    let gens = a
        .phoenix(&["generations", "910", "--output", "json"])
        .json();
    assert_eq!(gens["generations"].as_array().unwrap().len(), 1, "{gens}");
}

#[test]
fn what_keeping_a_generation_needs_is_named_and_without_it_nothing_is_destroyed() {
    let f = small_fleet();
    // Only nesting: the one feature a token may set.
    f.edit_lxc(|v| {
        for (_, b) in v["lxc_configs"].as_object_mut().unwrap() {
            if b.get("features").is_some() {
                b["features"] = serde_json::json!("nesting=1");
            }
        }
    });
    let a = Api::with(f, &[]);
    let ci =
        a.c.token_env(cluster::CI_TOKEN_ID, cluster::CI_TOKEN_SECRET);
    let r = a.run(&["build"], &ci, &[]);
    assert_eq!(
        r.code, 0,
        "the least privileges build and keep: {}",
        r.stdout
    );
    let conf = fs::read(a.c.conf(910)).unwrap();
    touch_902(&a.f);
    let node_error = |r: &Run| -> String {
        common::events(r)
            .into_iter()
            .find(|e| e["event"] == "node_finished" && e["ctid"] == 910)
            .unwrap()["error"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let destroyed = |from: usize| {
        a.requests_since(from)
            .iter()
            .any(|r| r.starts_with("DELETE /api2/json/nodes/pve/lxc/910"))
    };

    // VM.Backup is checked by vzdump's worker: the task fails, and phoenix says which
    // privilege to grant.
    let no_backup: Vec<&str> = cluster::PRIVILEGES
        .iter()
        .copied()
        .filter(|p| *p != "VM.Backup")
        .collect();
    cluster::write_auth(&a.c.root, &no_backup);
    let before = a.c.requests().len();
    let r = a.run(&["build", "--replace", "910", "--output", "json"], &ci, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let m = node_error(&r);
    assert!(
        m.contains("Permission check failed (/vms/910, VM.Backup)")
            && m.contains("pveum acl modify"),
        "{m}"
    );
    assert!(!destroyed(before), "{:#?}", a.requests_since(before));
    assert_eq!(fs::read(a.c.conf(910)).unwrap(), conf, "910 is as it was");
    assert!(archives(&a.c).is_empty());

    // Datastore.AllocateSpace on the backup storage is checked before the task starts.
    let no_space: Vec<&str> = cluster::PRIVILEGES
        .iter()
        .copied()
        .filter(|p| *p != "Datastore.AllocateSpace")
        .collect();
    cluster::write_auth(&a.c.root, &no_space);
    let r = a.run(&["build", "--replace", "910", "--output", "json"], &ci, &[]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let m = node_error(&r);
    assert!(
        m.contains("Permission check failed (/storage/local, Datastore.AllocateSpace)")
            && m.contains("pveum acl modify"),
        "{m}"
    );
    assert_eq!(fs::read(a.c.conf(910)).unwrap(), conf);

    // A backup storage that takes no backups: Proxmox's words, and what to set.
    cluster::write_auth(&a.c.root, cluster::PRIVILEGES);
    a.f.edit_hv(|v| {
        v["proxmox_defaults"]["backup_storage"] = serde_json::json!("local-zfs");
    });
    let before = a.c.requests().len();
    let r = a.phoenix(&["build", "--replace", "910", "--output", "json"]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    let m = node_error(&r);
    assert!(
        m.contains("can't use storage 'local-zfs' for backups - wrong content type")
            && m.contains("proxmox_defaults.backup_storage")
            && m.contains("pvesm set local-zfs --content"),
        "{m}"
    );
    assert!(!destroyed(before));
    assert_eq!(fs::read(a.c.conf(910)).unwrap(), conf);
}

#[test]
fn a_rollback_to_a_copy_kept_on_another_node_says_to_migrate_the_ct_back() {
    let a = Api::with(small_fleet(), &[("PVE_API_EMULATOR_NODES", "pve2")]);
    assert_eq!(a.phoenix(&["build"]).code, 0);
    touch_902(&a.f);
    let r = a.phoenix(&["build", "--replace", "910"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    // An admin migrates 910 to pve2; its copy stays in pve's `local`.
    let moved = a.c.root.join("etc/pve/nodes/pve2/lxc/910.conf");
    fs::rename(a.c.conf(910), &moved).unwrap();
    let before = fs::read(&moved).unwrap();
    let r = a.phoenix(&["rollback", "910"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr.contains("CT 910 already exists on node 'pve2'")
            && r.stderr.contains("is on node 'pve'")
            && r.stderr.contains("pct migrate 910 pve"),
        "{}",
        r.stderr
    );
    let after = fs::read(&moved).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&before)
            .lines()
            .filter(|l| l.starts_with("rootfs"))
            .collect::<Vec<_>>(),
        String::from_utf8_lossy(&after)
            .lines()
            .filter(|l| l.starts_with("rootfs"))
            .collect::<Vec<_>>(),
        "the CT on pve2 was not replaced"
    );
}

/// The example fleet with store templates in 9000-9099.
fn store_fleet() -> Fixture {
    let f = Fixture::example();
    f.edit_hv(|hv| hv["proxmox_defaults"]["store_vmid_range"] = "9000-9099".into());
    f
}

/// The volume a CT's root disk is, from its config (`rootfs: <volume>,size=…`).
fn rootfs(c: &Cluster, ctid: u32) -> String {
    let conf = fs::read_to_string(c.conf(ctid)).unwrap();
    conf.lines()
        .find_map(|l| l.strip_prefix("rootfs: "))
        .and_then(|r| r.split(',').next())
        .unwrap()
        .to_string()
}

/// What each request that changed something on a node asked for (`api-params.log`):
/// `method`, `path` (under `/api2/json`), `params`, `status`.
fn changes(c: &Cluster) -> Vec<serde_json::Value> {
    fs::read_to_string(c.root.join("api-params.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The one request that changed `path`, with `newid` when given.
fn change(c: &Cluster, path: &str, newid: Option<&str>) -> serde_json::Value {
    let found: Vec<serde_json::Value> = changes(c)
        .into_iter()
        .filter(|r| r["path"] == path && newid.is_none_or(|n| r["params"]["newid"] == n))
        .collect();
    assert_eq!(found.len(), 1, "{path} {newid:?}: {found:#?}");
    found[0].clone()
}

/// The bytes each clone of the model copied, by target CTID (the last clone of each),
/// from its `calls.log`.
fn clone_bytes(c: &Cluster) -> std::collections::BTreeMap<u64, u64> {
    fs::read_to_string(c.root.join("calls.log"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|c| c["verb"] == "clone" && c["bytes"].is_u64())
        .map(|c| (c["ctid"].as_u64().unwrap(), c["bytes"].as_u64().unwrap()))
        .collect()
}

fn append_to_hook(f: &Fixture, ctid: u32, line: &str) {
    let hook = fs::read_to_string(f.hook_path(ctid)).unwrap();
    f.write_hook(ctid, &format!("{hook}{line}\n"));
}

#[test]
fn store_templates_are_made_over_the_api_and_children_are_linked_clones_of_them() {
    // Each conversion takes a while in its task, as on a node.
    let a = Api::with(
        store_fleet(),
        &[("PVE_API_EMULATOR_TASK_LATENCY", "template=200")],
    );
    let r = a.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        common::built(&r),
        common::set(&[900, 901, 902, 903, 910, 920, 950])
    );
    assert!(
        !r.stderr.contains("makes no store templates"),
        "{}",
        r.stderr
    );
    // Each template generation kept once: a Proxmox template, unlocked, tagged, its record
    // complete, as the inventory over the API reads it back (`status`).
    for vmid in [9000, 9001, 9002, 9003] {
        let conf = fs::read_to_string(a.c.conf(vmid)).unwrap();
        assert!(conf.contains("template: 1\n"), "{vmid}: {conf}");
        assert!(
            conf.contains("tags: phoenix;phoenix-store\n"),
            "{vmid}: {conf}"
        );
        assert!(conf.contains("#store%3A complete\n"), "{vmid}: {conf}");
        assert!(!conf.contains("\nlock:"), "{vmid}: {conf}");
    }
    let status = a.phoenix(&["status", "--output", "json"]).json();
    let stores = status["store_templates"].as_array().unwrap();
    assert_eq!(
        stores
            .iter()
            .map(|s| (s["vmid"].as_u64().unwrap(), s["ctid"].as_u64().unwrap()))
            .collect::<Vec<_>>(),
        [(9000, 900), (9001, 902), (9002, 903), (9003, 920)]
    );
    assert!(
        stores.iter().all(|s| s.get("untrusted").is_none()),
        "{stores:#?}"
    );
    // The children's disks are linked clones of their parents' store templates.
    assert_eq!(
        rootfs(&a.c, 910),
        "local-zfs:basevol-9001-disk-0/subvol-910-disk-0"
    );
    assert_eq!(
        rootfs(&a.c, 950),
        "local-zfs:basevol-9003-disk-0/subvol-950-disk-0"
    );
    // The requests: the full clone of the snapshot with its record, `POST …/template`
    // (answered `null`; its task found in the node's task list), the mark; then each child
    // a clone of the store template with full=0 and no storage.
    let reqs = a.c.requests();
    for vmid in [9000, 9001, 9002, 9003] {
        let post = format!("POST /api2/json/nodes/pve/lxc/{vmid}/template 200");
        assert!(reqs.contains(&post), "{post}: {reqs:#?}");
    }
    assert!(
        reqs.iter()
            .any(|r| r.starts_with("GET /api2/json/nodes/pve/tasks?")
                && r.contains("typefilter=vztemplate")),
        "{reqs:#?}"
    );
    assert!(
        reqs.iter().any(
            |r| r.starts_with("GET /api2/json/nodes/pve/tasks/UPID%3Apve%3A")
                && r.contains("%3Avztemplate%3A9003%3A")
                && r.contains("/status ")
        ),
        "the conversion's task, waited for: {reqs:#?}"
    );
    let made = change(&a.c, "/nodes/pve/lxc/920/clone", Some("9003"));
    assert_eq!(made["params"]["full"], "1", "{made}");
    assert_eq!(made["params"]["storage"], "local-zfs", "{made}");
    let snap = made["params"]["snapname"].as_str().unwrap();
    assert!(snap.starts_with("phx-"), "{made}");
    assert_eq!(made["params"]["hostname"], snap, "{made}");
    assert!(
        made["params"]["description"]
            .as_str()
            .unwrap()
            .starts_with("phoenix 0.1.0 store template of CT 920 ("),
        "{made}"
    );
    let marked = change(&a.c, "/nodes/pve/lxc/9003/config", None);
    assert_eq!(marked["method"], "PUT");
    assert_eq!(
        marked["params"]["tags"], "phoenix;phoenix-store",
        "{marked}"
    );
    assert!(
        marked["params"]["description"]
            .as_str()
            .unwrap()
            .ends_with("store: complete\n"),
        "{marked}"
    );
    let linked = change(&a.c, "/nodes/pve/lxc/9003/clone", Some("950"));
    assert_eq!(linked["params"]["full"], "0", "{linked}");
    assert!(linked["params"].get("storage").is_none(), "{linked}");
    assert!(linked["params"].get("snapname").is_none(), "{linked}");
    // Linked clones copy nothing; each store template is the one full copy.
    let bytes = clone_bytes(&a.c);
    for child in [901, 902, 903, 910, 920, 950] {
        assert_eq!(bytes[&child], 0, "{child}: {bytes:?}");
    }
    for store in [9000, 9001, 9002, 9003] {
        assert!(bytes[&store] > 0, "{store}: {bytes:?}");
    }
    // A second build is a no-op that only reads: 2 requests per CT, store templates
    // included, plus a constant.
    let before = a.c.requests().len();
    let r = a.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("7 fresh"), "{}", r.stdout);
    let again = a.requests_since(before);
    assert!(
        again.iter().all(|r| is_read(r)),
        "a no-op build only reads: {again:#?}"
    );
    assert!(
        again.len() <= 2 * 11 + 3,
        "{} requests: {again:#?}",
        again.len()
    );
}

#[test]
fn a_leaf_replaced_over_the_api_is_a_linked_clone_and_copies_nothing() {
    let a = Api::with(store_fleet(), &[]);
    // 920's generation holds 15 GiB: a full clone of it would copy them.
    a.f.write_hook(
        920,
        "#!/bin/bash\nset -e\npct exec \"$1\" -- fallocate -l 15G /root/model.safetensors\n",
    );
    let r = a.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert!(clone_bytes(&a.c)[&9003] >= 15 << 30);
    // The leaf's own hook changed: rebuilt clean when named.
    append_to_hook(&a.f, 950, "echo more");
    let before = a.c.requests().len();
    let calls_before = fs::read_to_string(a.c.root.join("calls.log"))
        .unwrap()
        .lines()
        .count();
    let r = a.phoenix(&["build", "--replace", "950", "--output", "json"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(common::built(&r), common::set(&[950]));
    let copied: u64 = fs::read_to_string(a.c.root.join("calls.log"))
        .unwrap()
        .lines()
        .skip(calls_before)
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|c| c["verb"] == "clone")
        .map(|c| c["bytes"].as_u64().unwrap())
        .sum();
    assert_eq!(copied, 0, "a linked clone copies nothing");
    assert_eq!(
        rootfs(&a.c, 950),
        "local-zfs:basevol-9003-disk-0/subvol-950-disk-0"
    );
    assert_eq!(
        changed(&a.requests_since(before)),
        ["950", "clone of 9003"]
            .into_iter()
            .map(String::from)
            .collect(),
        "only 950 changes (destroyed, then a clone of store template 9003)"
    );
    let linked: Vec<serde_json::Value> = changes(&a.c)
        .into_iter()
        .filter(|r| r["path"] == "/nodes/pve/lxc/9003/clone")
        .collect();
    assert_eq!(linked.len(), 2, "{linked:#?}");
    assert!(
        linked.iter().all(|r| r["params"]["full"] == "0"),
        "{linked:#?}"
    );
}

#[test]
fn gc_over_the_api_keeps_the_store_template_a_container_links_to() {
    let a = Api::with(store_fleet(), &[]);
    assert_eq!(a.phoenix(&["build"]).code, 0);
    append_to_hook(&a.f, 902, "echo more");
    // 910 is held (its parent changed): it stays a linked clone of 902's old generation.
    let r = a.phoenix(&["build"]);
    assert_eq!(r.code, 4, "{}\n{}", r.stdout, r.stderr);
    assert_eq!(
        rootfs(&a.c, 910),
        "local-zfs:basevol-9001-disk-0/subvol-910-disk-0"
    );
    let dry = a.phoenix(&["gc", "--dry-run", "--output", "json"]).json();
    let verdict = |vmid: u64| {
        dry["store_templates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["vmid"] == vmid)
            .unwrap()
            .clone()
    };
    let old = verdict(9001);
    assert_eq!(
        (&old["decision"], &old["reason"]),
        (&"keep".into(), &"linked".into()),
        "{old}"
    );
    assert_eq!(old["ctids"], serde_json::json!([910]));
    let gone = verdict(9002);
    assert_eq!(gone["decision"], "delete", "{gone}");
    let before = a.c.requests().len();
    let r = a.phoenix(&["gc"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let deletes: Vec<String> = a
        .requests_since(before)
        .into_iter()
        .filter(|r| r.starts_with("DELETE "))
        .collect();
    assert!(
        deletes
            .iter()
            .any(|r| r.starts_with("DELETE /api2/json/nodes/pve/lxc/9002?") && r.ends_with(" 200")),
        "{deletes:#?}"
    );
    assert!(
        !deletes
            .iter()
            .any(|r| r.starts_with("DELETE /api2/json/nodes/pve/lxc/9001")),
        "never tried on a store template a CT links to: {deletes:#?}"
    );
    assert!(a.c.conf(9001).exists() && !a.c.conf(9002).exists());
}

/// phoenix's `pct` (a hook's), run as an admin would against the cluster, with root's
/// token in a file.
fn api_pct(a: &Api, args: &[&str]) -> Run {
    let dir = a.f.tmp.path().join("admin");
    fs::create_dir_all(&dir).unwrap();
    let pct = dir.join("pct");
    if !pct.exists() {
        std::os::unix::fs::symlink(env!("CARGO_BIN_EXE_phoenix"), &pct).unwrap();
        fs::write(
            dir.join("token"),
            format!("{}={}\n", cluster::TOKEN_ID, cluster::TOKEN_SECRET),
        )
        .unwrap();
    }
    let out = std::process::Command::new(&pct)
        .args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("PHOENIX_BACKEND", "pve")
        .env("PHOENIX_PVE_URL", &a.c.emulator.url)
        .env("PHOENIX_PVE_FINGERPRINT", &a.c.emulator.fingerprint)
        .env("PHOENIX_PVE_TOKEN_FILE", dir.join("token"))
        .output()
        .unwrap();
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn a_template_conversion_that_fails_fails_the_store_step_with_proxmoxs_words_and_is_made_again() {
    // The conversion's task fails (once): the request itself was answered `null`.
    let a = Api::with(
        store_fleet(),
        &[("PVE_EMULATOR_FAULTS", "template:9000=fail*1")],
    );
    let r = a.phoenix(&["build", "--output", "json"]);
    assert_eq!(r.code, 1, "{}\n{}", r.stdout, r.stderr);
    let finished = common::finished(&r);
    assert_eq!(finished[&900].1, "failed");
    assert_eq!(finished[&901].1, "blocked", "nothing links to it");
    let failure = common::events(&r)
        .into_iter()
        .find(|e| e["event"] == "node_finished" && e["ctid"] == 900)
        .unwrap();
    assert_eq!(failure["failed_step"], "store");
    assert!(
        failure["error"]
            .as_str()
            .unwrap()
            .contains("simulated failure (template:9000=fail*1)"),
        "the task's exit status: {failure}"
    );
    let reqs = a.c.requests();
    assert!(
        reqs.contains(&"POST /api2/json/nodes/pve/lxc/9000/template 200".to_string()),
        "{reqs:#?}"
    );
    // What is left is an untrusted store template, made again by the next build.
    let status = a.phoenix(&["status", "--output", "json"]).json();
    assert_eq!(
        status["store_templates"][0]["untrusted"],
        "it is not a Proxmox template: its making was cut short",
        "{status:#}"
    );
    let before = changes(&a.c).len();
    let r = a.phoenix(&["build"]);
    assert_eq!(r.code, 0, "{}\n{}", r.stdout, r.stderr);
    let on_9000: Vec<String> = changes(&a.c)[before..]
        .iter()
        .filter(|r| {
            let path = r["path"].as_str().unwrap();
            (path.starts_with("/nodes/pve/lxc/9000") && !path.ends_with("/clone"))
                || r["params"]["newid"] == "9000"
        })
        .map(|r| format!("{} {} {}", r["method"], r["path"], r["status"]).replace('"', ""))
        .collect();
    assert_eq!(
        on_9000,
        [
            "DELETE /nodes/pve/lxc/9000 200",
            "POST /nodes/pve/lxc/900/clone 200",
            "POST /nodes/pve/lxc/9000/template 200",
            "PUT /nodes/pve/lxc/9000/config 200",
        ],
        "destroyed, cloned again, converted, marked"
    );
    // Then 900's children, waiting until now, are linked clones of it.
    for child in ["901", "902"] {
        let linked = change(&a.c, "/nodes/pve/lxc/9000/clone", Some(child));
        assert_eq!(linked["params"]["full"], "0", "{linked}");
    }
    assert_eq!(
        rootfs(&a.c, 901),
        "local-zfs:basevol-9000-disk-0/subvol-901-disk-0"
    );
    // Proxmox refuses before its task what cannot become a template: the request's own
    // answer, in its words (900 holds its build snapshots).
    let r = api_pct(&a, &["template", "900"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("unable to create template, because CT contains snapshots"),
        "{}",
        r.stderr
    );
    assert!(
        a.c.requests()
            .contains(&"POST /api2/json/nodes/pve/lxc/900/template 500".to_string()),
        "{:#?}",
        a.c.requests()
    );
    let r = api_pct(&a, &["template", "9000"]);
    assert_ne!(r.code, 0, "{}", r.stdout);
    assert!(
        r.stderr
            .contains("you can't convert a template to a template"),
        "{}",
        r.stderr
    );
}
