//! `phoenix validate`.

use super::*;

pub fn validate(cli: &Cli, fleet: &Fleet) -> Result<i32, Error> {
    let templates = fleet.nodes.values().filter(|n| n.is_template()).count();
    match cli.output {
        Output::Json => print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "valid": true,
            "node_count": fleet.nodes.len(),
            "template_count": templates,
            "problems": fleet.warnings.0.iter().map(ProblemJson::from).collect::<Vec<_>>(),
        })),
        Output::Human => println!(
            "{}: valid — {} nodes ({} templates, {} containers), hooks from {}",
            fleet.lxc_path().display(),
            fleet.nodes.len(),
            templates,
            fleet.nodes.len() - templates,
            fleet.hooks.dir.display()
        ),
    }
    Ok(exit::OK)
}
