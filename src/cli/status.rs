//! `phoenix status`: each node's built snapshot, state and age on the host, and its
//! planned action; then phoenix's store templates, what each holds and who links to it.

use super::*;
use crate::engine::snapshot::current_build;

/// Where a node's CT stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CtState {
    Running,
    Stopped,
    Missing,
}

/// One row of `phoenix status`.
#[derive(Clone, Debug, Serialize)]
pub struct StatusRow {
    pub ctid: Ctid,
    pub name: String,
    pub state: CtState,
    /// Whether phoenix created the CT; `None` when there is none.
    pub managed: Option<bool>,
    pub built_snapshot: Option<String>,
    /// When the built snapshot was taken (RFC 3339).
    pub built_at: Option<String>,
    pub age_s: Option<u64>,
    /// The snapshot today's config builds.
    pub snapshot: String,
    /// The cluster node the CT is on.
    pub node: Option<String>,
    pub action: Option<&'static str>,
}

#[derive(Serialize)]
struct StatusJson<'a> {
    schema_version: u32,
    backend: &'a str,
    nodes: Vec<StatusRow>,
    store_templates: Vec<crate::engine::store::Found>,
}

pub fn status(cli: &Cli, fleet: &Fleet) -> Result<i32, Error> {
    let host = open_placed_host(cli, fleet)?;
    let crate::build::Planned {
        hashes,
        inventory,
        plan,
        cluster,
        ..
    } = read_plan(cli, fleet, host.as_ref())?;
    let nodes = cluster.as_ref().is_some_and(|c| c.nodes.len() > 1);
    let now = now_secs();
    let stores = crate::engine::store::found(&inventory, fleet.hypervisor.store_range);
    let rows: Vec<StatusRow> = fleet
        .graph
        .order
        .iter()
        .map(|&ctid| {
            let ct = inventory.get(&ctid);
            let built = ct.and_then(current_build);
            StatusRow {
                ctid,
                name: fleet.nodes[&ctid].name().to_string(),
                state: match ct {
                    None => CtState::Missing,
                    Some(c) if c.running => CtState::Running,
                    Some(_) => CtState::Stopped,
                },
                managed: ct.map(|c| c.is_managed()),
                built_snapshot: built.map(|b| b.name.clone()),
                built_at: built.map(|b| crate::os::rfc3339(b.snaptime)),
                age_s: built.map(|b| now.saturating_sub(b.snaptime)),
                snapshot: hashes[&ctid].hash.snapshot().to_string(),
                node: ct.and_then(|c| c.node.clone()),
                action: plan.entry(ctid).map(|e| e.action.name()),
            }
        })
        .collect();
    match cli.output {
        Output::Json => print_json(&StatusJson {
            schema_version: JSON_SCHEMA_VERSION,
            backend: host.name(),
            nodes: rows,
            store_templates: stores,
        }),
        Output::Human => {
            let color = stdout_color(cli);
            let node_col = |n: Option<&str>| {
                if nodes {
                    format!("{:<12} ", n.unwrap_or("-"))
                } else {
                    String::new()
                }
            };
            println!(
                "{:>9}  {:<24} {:<8} {}{:<37} {:>8}  PLAN",
                "CTID",
                "NAME",
                "STATE",
                node_col(Some("NODE")),
                "BUILT",
                "AGE"
            );
            for r in &rows {
                let state = match r.state {
                    CtState::Running => "running",
                    CtState::Stopped => "stopped",
                    CtState::Missing => "missing",
                };
                println!(
                    "{:>9}  {:<24} {:<8} {}{:<37} {:>8}  {}",
                    r.ctid,
                    r.name,
                    state,
                    node_col(r.node.as_deref()),
                    r.built_snapshot.as_deref().unwrap_or("-"),
                    r.age_s.map_or("-".to_string(), crate::os::age),
                    action_cell(r.action.unwrap_or(""), 0, color)
                );
            }
            if !stores.is_empty() {
                println!("\nstore templates (immutable Proxmox templates of built generations; clones link to them):");
                for s in &stores {
                    println!("  {}", store_row(fleet, s));
                }
            }
        }
    }
    Ok(exit::OK)
}

/// One store template as `status` and `generations` show it.
pub fn store_row(fleet: &Fleet, s: &crate::engine::store::Found) -> String {
    let of = match (s.ctid, &s.snapshot) {
        (Some(c), Some(snap)) => format!("{snap} of CT {}", node_label(fleet, c)),
        _ => "of no generation phoenix can read".to_string(),
    };
    let linked = if s.linked.is_empty() {
        "no CT links to it".to_string()
    } else {
        format!(
            "linked: {}",
            s.linked
                .iter()
                .map(Ctid::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    let trust = s
        .untrusted
        .as_ref()
        .map_or(String::new(), |w| format!("  untrusted: {w}"));
    format!("{:>9}  {of}  {linked}{trust}", s.vmid)
}
