//! `phoenix validate`.

use super::*;

pub fn validate(cli: &Cli, fleet: &Fleet) -> Result<i32, Error> {
    let templates = fleet.nodes.values().filter(|n| n.is_template()).count();
    // A migration must not lose a node's setup silently: say which nodes have none.
    let without_hook: Vec<Ctid> = fleet
        .nodes
        .keys()
        .copied()
        .filter(|c| !fleet.hooks.node_hooks.contains_key(c))
        .collect();
    match cli.output {
        Output::Json => print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "valid": true,
            "node_count": fleet.nodes.len(),
            "template_count": templates,
            "without_hook": without_hook,
            "problems": fleet.warnings.0.iter().map(ProblemJson::from).collect::<Vec<_>>(),
        })),
        Output::Human => {
            println!(
                "{}: valid — {} nodes ({} templates, {} containers), hooks from {}",
                fleet.lxc_path().display(),
                fleet.nodes.len(),
                templates,
                fleet.nodes.len() - templates,
                fleet.hooks.dir.display()
            );
            if !without_hook.is_empty() {
                // A few names, then a count: a fleet of thousands stays one short line
                // (`--output json` lists them all).
                const SHOWN: usize = 5;
                let mut names: Vec<String> = without_hook
                    .iter()
                    .take(SHOWN)
                    .map(|c| node_label(fleet, *c))
                    .collect();
                if without_hook.len() > SHOWN {
                    names.push(format!(
                        "and {} more (`--output json` lists them)",
                        without_hook.len() - SHOWN
                    ));
                }
                println!(
                    "no setup hook (phoenix_hypervisor_setup_<CTID>.sh) for {} node{}: {} — phoenix's own steps build them alone",
                    without_hook.len(),
                    plural(without_hook.len()),
                    names.join(", ")
                );
            }
        }
    }
    Ok(exit::OK)
}
