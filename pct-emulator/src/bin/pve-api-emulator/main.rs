//! `pve-api-emulator`: Proxmox VE's REST API over HTTPS, on phoenix's model of a Proxmox
//! node ([`phoenix::host::sim`]), for tests and benchmarks of the `pve` backend over the
//! API (`--pve-url`). Never packaged.
//!
//! It serves the cluster whose files are under `PVE_EMULATOR_ROOT` (the same tree
//! `pct-emulator` acts on, so that `pct` over SSH and the API see one cluster), with a
//! certificate signed by a CA it makes at start (written to
//! `<root>/etc/pve/pve-root-ca.pem`, as a node keeps its cluster's CA), and prints one
//! JSON line on stdout: `{"url", "fingerprint", "ca"}` (the fingerprint of the serving
//! certificate, as `pvenode cert info` prints it). It ends when its stdin closes.
//!
//! | variable | meaning |
//! |---|---|
//! | `PVE_EMULATOR_ROOT` | the cluster's file tree (required) |
//! | `PVE_EMULATOR_NODE` | the node the URL reaches (default `pve`) |
//! | `PVE_API_EMULATOR_NODES` | the cluster's other nodes, comma-separated |
//! | `PVE_API_EMULATOR_OFFLINE` | nodes that are offline (their guests read `unknown`, requests to them fail with 595) |
//! | `PVE_API_EMULATOR_NODE_IP` | the address `/cluster/status` gives every node (default `127.0.0.1`) |
//! | `PVE_API_EMULATOR_LATENCY_MS` | milliseconds every request waits before it is answered |
//! | `PVE_API_EMULATOR_TASK_LATENCY` | per verb, what a task's work costs (`PHOENIX_SIM_LATENCY`'s syntax) |
//! | `PVE_EMULATOR_FAULTS` | injected faults (`PHOENIX_SIM_FAULTS`' syntax), as for `pct-emulator` |
//! | `PVE_API_EMULATOR_TASK_VISIBLE_MS` | a new task answers `400 no such task` this long |
//! | `PVE_API_EMULATOR_WARN_TASKS` | task types (`vzstart,vzsnapshot`) that log a `WARN:` line and end `WARNINGS: 1` |
//! | `PVE_API_EMULATOR_TICKET_TTL_S` | how long a ticket is valid (default 7200, as Proxmox) |
//! | `PVE_API_EMULATOR_ANSWER` | `not-json` or `not-proxmox`: answer every request as something that is not Proxmox |
//!
//! Users and tokens are in `<root>/api-auth.json`, read at every request (so a test
//! revokes a token by rewriting it): `{"users": {"root@pam": {"password": "..."}},
//! "tokens": {"root@pam!phoenix": {"secret": "...", "privileges": ["VM.Audit", ...]}}}`
//! (no `privileges`: all of them; only `root@pam` itself passes root's checks). Every
//! request is appended to `<root>/api-requests.log` as `METHOD PATH STATUS`, and every
//! request that changes something on a node to `<root>/api-params.log` with its
//! parameters, one JSON line each (`method`, `path`, `params`, `status`).

mod auth;
mod http;
mod routes;
mod tasks;

use std::io::Read;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::Arc;

fn main() {
    if let Err(e) = run() {
        eprintln!("pve-api-emulator: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let root = std::env::var_os("PVE_EMULATOR_ROOT")
        .map(PathBuf::from)
        .ok_or("PVE_EMULATOR_ROOT is not set (the emulated cluster's file tree)")?;
    let mut listen = "127.0.0.1:0".to_string();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--listen" => listen = args.next().ok_or("--listen needs ADDR:PORT")?,
            other => return Err(format!("unknown argument {other} (--listen ADDR:PORT)")),
        }
    }
    let cluster = routes::Cluster::from_env(&root)?;
    let (server_config, fingerprint, ca_path) = http::certificate(&root)?;
    let listener =
        TcpListener::bind(&listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let hello = serde_json::json!({
        "url": format!("https://{addr}"),
        "fingerprint": fingerprint,
        "ca": ca_path.display().to_string(),
    });
    println!("{hello}");
    let _ = std::fs::write(root.join("api-emulator.json"), format!("{hello}\n"));
    // The emulator ends with its caller: when stdin closes.
    std::thread::spawn(|| {
        let mut sink = [0u8; 256];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        std::process::exit(0);
    });
    let cluster = Arc::new(cluster);
    let server_config = Arc::new(server_config);
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let cluster = cluster.clone();
        let config = server_config.clone();
        std::thread::spawn(move || http::serve(stream, config, &cluster));
    }
    Ok(())
}
