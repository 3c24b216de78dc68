//! `phoenix generations`: the build snapshots of one CT, newest first.

use super::*;
use crate::engine::hash::Manifest;
use crate::engine::snapshot::{self, current_build};
use crate::engine::why::manifest_key;

/// One build snapshot, as `--output json` prints it.
#[derive(Serialize)]
struct Generation {
    snapshot: String,
    /// When the snapshot was taken: `built_at` (RFC 3339) in JSON.
    #[serde(rename = "built_at", with = "crate::os::rfc3339_secs")]
    snaptime: u64,
    current: bool,
    wanted: bool,
    /// What the build was made of; `None` when the manifest is not in the state dir.
    manifest: Option<Recipe>,
    /// Converged in place after its parent changed: the parent generation its files come
    /// from (not the manifest's parent, whose changes are not in it).
    #[serde(skip_serializing_if = "Option::is_none")]
    in_place_over: Option<ParentSnap>,
    /// Not on the CT: kept apart when the CT was replaced (`phoenix rollback` restores it).
    #[serde(skip_serializing_if = "Option::is_none")]
    kept: Option<KeptAt>,
    /// A template's generation kept as a store template: its VMID.
    #[serde(skip_serializing_if = "Option::is_none")]
    store_template: Option<Ctid>,
    /// The store template this generation's disk was a linked clone of (its build record).
    #[serde(skip_serializing_if = "Option::is_none")]
    linked: Option<Ctid>,
}

/// Where a kept generation is.
#[derive(Serialize)]
struct KeptAt {
    location: String,
    /// The node whose storage holds it (over the API).
    #[serde(skip_serializing_if = "Option::is_none")]
    node: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size_bytes: Option<u64>,
    #[serde(with = "crate::os::rfc3339_secs")]
    kept_at: u64,
}

/// The parent generation an in-place convergence left the CT's files on, from the
/// snapshot's build record.
fn in_place_over(fleet: &Fleet, ctid: Ctid, description: &str) -> Option<ParentSnap> {
    let record = snapshot::BuildRecord::parse(description);
    let base = record.base?;
    (record.parent.flatten().as_deref() != Some(base.as_str())).then(|| ParentSnap {
        ctid: fleet.graph.parent_of(ctid).unwrap_or(0),
        snapshot: snapshot::SnapshotName::for_hash(&base).to_string(),
    })
}

/// The parts of a stored manifest worth a line each.
#[derive(Serialize)]
struct Recipe {
    parent: Option<ParentSnap>,
    /// The hook's blake3.
    hook: Option<String>,
    build_fields: usize,
    steps: Vec<String>,
    nvidia_driver: Option<String>,
}

#[derive(Serialize)]
struct ParentSnap {
    ctid: Ctid,
    snapshot: String,
}

impl Recipe {
    fn of(m: &Manifest) -> Recipe {
        Recipe {
            parent: m.parent.as_ref().map(|p| ParentSnap {
                ctid: p.ctid,
                snapshot: p.hash.snapshot().to_string(),
            }),
            hook: m.hook.as_ref().map(|h| h.blake3.clone()),
            build_fields: m.build.len(),
            steps: m.steps.keys().cloned().collect(),
            nvidia_driver: m.nvidia.as_ref().and_then(|n| n.driver_version.clone()),
        }
    }

    fn summary(&self) -> String {
        let parent = self
            .parent
            .as_ref()
            .map_or("none".to_string(), |p| format!("{}@{}", p.ctid, p.snapshot));
        let steps = if self.steps.is_empty() {
            "none".to_string()
        } else {
            self.steps.join("+")
        };
        let driver = self
            .nvidia_driver
            .as_deref()
            .map_or(String::new(), |d| format!("  driver {d}"));
        format!(
            "parent {parent}  hook {}  steps {steps}{driver}",
            self.hook
                .as_deref()
                .map_or("none", |h| &h[..h.len().min(12)])
        )
    }
}

#[derive(Serialize)]
struct Listing {
    schema_version: u32,
    ctid: Ctid,
    generations: Vec<Generation>,
}

pub fn generations(cli: &Cli, fleet: &Fleet, ctid: Ctid) -> Result<i32, Error> {
    check_targets(fleet, &[ctid])?;
    let (_host, planned, state) = read_for_history(cli, fleet)?;
    // A configured node whose CT is not on the host has no generations: an answer.
    let kept = state.kept(ctid);
    let ct = planned.inventory.get(&ctid);
    if ct.is_none() && kept.is_empty() {
        match cli.output {
            Output::Json => print_json(&Listing {
                schema_version: JSON_SCHEMA_VERSION,
                ctid,
                generations: Vec::new(),
            }),
            Output::Human => println!(
                "CT {} is not on the host: no generations (`phoenix build {ctid}` creates it)",
                node_label(fleet, ctid)
            ),
        }
        return Ok(exit::OK);
    }
    let wanted = planned.hashes[&ctid].hash.snapshot().to_string();
    let stores = crate::engine::store::found(&planned.inventory, fleet.hypervisor.store_range);
    let store_of = |snapshot: &str| {
        stores
            .iter()
            .find(|s| {
                s.trusted() && s.ctid == Some(ctid) && s.snapshot.as_deref() == Some(snapshot)
            })
            .map(|s| s.vmid)
    };
    let linked = |description: &str| snapshot::BuildRecord::parse(description).linked;
    let current = ct.and_then(current_build).map(|s| s.name.clone());
    let rows: Vec<Generation> = ct
        .map(snapshot::generations)
        .unwrap_or_default()
        .into_iter()
        .map(|s| Generation {
            snapshot: s.name.clone(),
            snaptime: s.snaptime,
            current: current.as_deref() == Some(s.name.as_str()),
            wanted: s.name == wanted,
            manifest: state
                .manifest(&manifest_key(&s.name, &s.description))
                .map(|(_, m)| Recipe::of(&m)),
            in_place_over: in_place_over(fleet, ctid, &s.description),
            kept: None,
            store_template: store_of(&s.name),
            linked: linked(&s.description),
        })
        .collect();
    let mut rows = rows;
    for k in kept {
        if rows.iter().any(|r| r.snapshot == k.snapshot) {
            continue;
        }
        rows.push(Generation {
            snapshot: k.snapshot.clone(),
            snaptime: crate::engine::snapshot::BuildRecord::parse(&k.description)
                .built
                .unwrap_or(k.kept_at),
            current: false,
            wanted: k.snapshot == wanted,
            manifest: state
                .manifest(&manifest_key(&k.snapshot, &k.description))
                .map(|(_, m)| Recipe::of(&m)),
            in_place_over: in_place_over(fleet, ctid, &k.description),
            kept: Some(KeptAt {
                location: k.copy.location.clone(),
                node: k.copy.node.clone(),
                size_bytes: k.copy.size_bytes,
                kept_at: k.kept_at,
            }),
            store_template: store_of(&k.snapshot),
            linked: linked(&k.description),
        });
    }
    match cli.output {
        Output::Json => print_json(&Listing {
            schema_version: JSON_SCHEMA_VERSION,
            ctid,
            generations: rows,
        }),
        Output::Human => {
            println!(
                "CT {}: {} generation{} (newest first)",
                node_label(fleet, ctid),
                rows.len(),
                plural(rows.len())
            );
            for r in &rows {
                let marks: Vec<&str> = [(r.current, "current"), (r.wanted, "wanted")]
                    .into_iter()
                    .filter_map(|(on, mark)| on.then_some(mark))
                    .collect();
                let mut summary = r
                    .manifest
                    .as_ref()
                    .map_or("manifest not stored".to_string(), Recipe::summary);
                if let Some(k) = &r.kept {
                    summary = format!(
                        "kept apart as {}{}{} (the CT was replaced; `phoenix rollback --to` restores it); {summary}",
                        k.location,
                        k.node
                            .as_ref()
                            .map_or(String::new(), |n| format!(" on node {n}")),
                        k.size_bytes
                            .map_or(String::new(), |b| format!(", {:.1} MiB", b as f64 / 1048576.0))
                    );
                }
                if let Some(vmid) = r.linked {
                    summary = format!("a linked clone of store template {vmid}; {summary}");
                }
                if let Some(vmid) = r.store_template {
                    summary = format!("store template {vmid}; {summary}");
                }
                if let Some(over) = &r.in_place_over {
                    summary = format!(
                        "in place over {}@{} (the parent's later changes are not in it: --replace brings them); {summary}",
                        over.ctid, over.snapshot
                    );
                }
                println!(
                    "{} {}  {} UTC  {:<16} {summary}",
                    if r.current { "*" } else { " " },
                    r.snapshot,
                    crate::os::utc(r.snaptime),
                    marks.join(", "),
                );
            }
        }
    }
    Ok(exit::OK)
}
