mod common;
use common::Fixture;

#[test]
fn example_fleet_is_valid() {
    let f = Fixture::example();
    let r = f.phoenix(&["validate"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("valid — 7 nodes (5 templates, 2 containers)"),
        "{}",
        r.stdout
    );
}

#[test]
fn graph_json_has_the_documented_fields() {
    let f = Fixture::example();
    let r = f.phoenix(&["graph", "--format", "json"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let v = r.json();
    let nodes = v["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 7);
    let n950 = nodes.iter().find(|n| n["ctid"] == 950).unwrap();
    assert_eq!(n950["parent"], 920);
    assert_eq!(n950["is_template"], false);
    let hash = n950["hash"].as_str().unwrap();
    assert_eq!(hash.len(), 64);
    assert_eq!(
        n950["snapshot"].as_str().unwrap(),
        format!("phx-{}", &hash[..32])
    );
    assert_eq!(n950["manifest"]["parent"]["ctid"], 920);
    let n900 = nodes.iter().find(|n| n["ctid"] == 900).unwrap();
    assert!(n900["parent"].is_null());
}

#[test]
fn verbosity_goes_through_tracing_and_rust_log_overrides_it() {
    let f = Fixture::example();
    let quiet = f.sim_env(&["plan"], &[("RUST_LOG", "")]);
    assert_eq!(quiet.code, 0, "{}", quiet.stderr);
    assert!(!quiet.stderr.contains("host call"), "{}", quiet.stderr);
    let loud = f.sim(&["build", "-vv"]);
    assert!(
        loud.stderr.contains("host call") && loud.stderr.contains("verb=\"inventory\""),
        "{}",
        loud.stderr
    );
    assert!(loud.stderr.contains("planned ctid=950"), "{}", loud.stderr);
    let info = f.sim_env(&["plan"], &[("RUST_LOG", "phoenix=info")]);
    assert!(info.stderr.contains("read the host"), "{}", info.stderr);
    assert!(!info.stderr.contains("host call"), "{}", info.stderr);
}
