//! `phoenix graph` and `phoenix show`: the build graph and one node's manifest.

use super::*;
use clap::ValueEnum;

/// One node as `graph --format json` and `show --output json` print it.
#[derive(Serialize)]
pub struct NodeJson<'a> {
    pub ctid: Ctid,
    pub name: &'a str,
    pub parent: Option<Ctid>,
    pub children: &'a [Ctid],
    pub is_template: bool,
    pub hash: &'a str,
    pub snapshot: String,
    /// The cluster node its block (or `default_node`) places it on.
    pub node: Option<&'a str>,
    pub manifest: &'a hash::Manifest,
}

fn node_json<'a>(fleet: &'a Fleet, ctid: Ctid, h: &'a Hashed) -> NodeJson<'a> {
    let node = &fleet.nodes[&ctid];
    NodeJson {
        ctid,
        name: node.name(),
        parent: fleet.graph.parent_of(ctid),
        children: fleet.graph.children_of(ctid),
        is_template: node.is_template(),
        hash: h.hash.as_str(),
        snapshot: h.hash.snapshot().to_string(),
        node: node.placed_on(&fleet.hypervisor),
        manifest: &h.manifest,
    }
}

pub fn graph(cli: &Cli, fleet: &Fleet, format: Option<GraphFormat>) -> Result<i32, Error> {
    // `--output json` is JSON; a `--format` that says otherwise is a contradiction, not
    // something to override silently.
    let format = match (cli.output, format) {
        (Output::Json, None | Some(GraphFormat::Json)) => GraphFormat::Json,
        (Output::Json, Some(other)) => {
            return Err(Error::Usage {
                option: "--format",
                message: format!(
                    "--output json prints the graph as JSON, but --format asks for {}: give one of them",
                    other.to_possible_value().map_or("another format".into(), |v| v.get_name().to_string())
                ),
            })
        }
        (Output::Human, f) => f.unwrap_or(GraphFormat::Dot),
    };
    let hashes = hash::hash_fleet(fleet);
    let label = |c: Ctid| {
        let n = &fleet.nodes[&c];
        let kind = if n.is_template() {
            "template"
        } else {
            "container"
        };
        let on = n
            .placed_on(&fleet.hypervisor)
            .map(|node| format!("\\non {node}"))
            .unwrap_or_default();
        format!(
            "{c} {}\\n{kind} {}{on}",
            n.name(),
            &hashes[&c].hash.snapshot()
        )
    };
    let mut out = String::new();
    match format {
        GraphFormat::Json => {
            #[derive(Serialize)]
            struct GraphJson<'a> {
                schema_version: u32,
                nodes: Vec<NodeJson<'a>>,
            }
            let nodes = fleet
                .graph
                .order
                .iter()
                .map(|&c| node_json(fleet, c, &hashes[&c]))
                .collect();
            print_json(&GraphJson {
                schema_version: JSON_SCHEMA_VERSION,
                nodes,
            });
            return Ok(exit::OK);
        }
        GraphFormat::Dot => {
            out.push_str("digraph phoenix {\n  rankdir=LR;\n  node [fontname=\"monospace\"];\n");
            for &c in &fleet.graph.order {
                let shape = if fleet.nodes[&c].is_template() {
                    "box"
                } else {
                    "ellipse"
                };
                out.push_str(&format!(
                    "  \"{c}\" [shape={shape}, label=\"{}\"];\n",
                    label(c)
                ));
            }
            for &c in &fleet.graph.order {
                if let Some(p) = fleet.graph.parent_of(c) {
                    out.push_str(&format!("  \"{p}\" -> \"{c}\";\n"));
                }
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for &c in &fleet.graph.order {
                let text = label(c).replace("\\n", "<br/>");
                if fleet.nodes[&c].is_template() {
                    out.push_str(&format!("  n{c}[\"{text}\"]\n"));
                } else {
                    out.push_str(&format!("  n{c}([\"{text}\"])\n"));
                }
            }
            for &c in &fleet.graph.order {
                if let Some(p) = fleet.graph.parent_of(c) {
                    out.push_str(&format!("  n{p} --> n{c}\n"));
                }
            }
        }
    }
    print!("{out}");
    Ok(exit::OK)
}

pub fn show(cli: &Cli, fleet: &Fleet, ctid: Ctid) -> Result<i32, Error> {
    check_targets(fleet, &[ctid])?;
    let hashes = hash::hash_fleet(fleet);
    let h = &hashes[&ctid];
    match cli.output {
        Output::Json => print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "node": node_json(fleet, ctid, h),
            "canonical": h.manifest.canonical(),
        })),
        Output::Human => {
            let node = &fleet.nodes[&ctid];
            println!(
                "CT {ctid} {}{}",
                node.name(),
                if node.is_template() {
                    " (template)"
                } else {
                    ""
                }
            );
            println!("  defined at {}", fleet.line_of(&node.pointer));
            match fleet.graph.parent_of(ctid) {
                Some(p) => println!("  parent    {p} {}", fleet.nodes[&p].name()),
                None => println!(
                    "  parent    none (created from {})",
                    node.spec.template.as_deref().unwrap_or("?")
                ),
            }
            println!("  hash      {}", h.hash);
            println!("  snapshot  {}", h.hash.snapshot());
            println!("manifest:");
            let pretty = serde_json::to_string_pretty(&h.manifest).unwrap_or_default();
            for line in pretty.lines() {
                println!("  {line}");
            }
        }
    }
    Ok(exit::OK)
}
