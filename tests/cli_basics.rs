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

#[test]
fn completions_for_every_shell_need_no_fleet() {
    // An empty fixture: no config files at all.
    let f = Fixture::empty();
    for (shell, marker) in [
        ("bash", "complete -F _phoenix"),
        ("zsh", "#compdef phoenix"),
        ("fish", "complete -c phoenix"),
        ("elvish", "edit:completion:arg-completer[phoenix]"),
        ("powershell", "Register-ArgumentCompleter"),
    ] {
        let r = f.phoenix(&["completions", shell]);
        assert_eq!(r.code, 0, "{shell}: {}", r.stderr);
        assert!(
            r.stdout.contains(marker),
            "{shell}: {}",
            &r.stdout[..200.min(r.stdout.len())]
        );
        assert!(
            r.stdout.contains("generations"),
            "{shell} completes subcommands"
        );
    }
    let r = f.phoenix(&["completions", "tcsh"]);
    assert_eq!(r.code, 2, "an unknown shell is a usage error");
}

#[test]
fn man_pages_cover_phoenix_and_every_command() {
    let f = Fixture::empty();
    let dir = f.tmp.path().join("man");
    let r = f.phoenix(&["man", dir.to_str().unwrap()]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    let mut pages: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert_eq!(
        pages,
        [
            "phoenix-build.1",
            "phoenix-completions.1",
            "phoenix-gc.1",
            "phoenix-generations.1",
            "phoenix-graph.1",
            "phoenix-log.1",
            "phoenix-plan.1",
            "phoenix-rollback.1",
            "phoenix-show.1",
            "phoenix-status.1",
            "phoenix-unpin.1",
            "phoenix-validate.1",
            "phoenix-why.1",
            "phoenix.1",
        ]
    );
    let build = std::fs::read_to_string(dir.join("phoenix-build.1")).unwrap();
    assert!(build.contains(".TH phoenix-build 1"), "{}", &build[..200]);
    assert!(build.contains("fail\\-fast"));
}

#[test]
fn plan_and_status_colour_their_actions_only_when_asked_or_on_a_terminal() {
    let f = Fixture::example();
    let r = f.sim(&["plan", "--color", "always"]);
    assert!(
        r.stdout
            .contains("\x1b[32mcreate          \x1b[0m       900"),
        "{}",
        r.stdout
    );
    // Not a terminal (auto), or never: plain text.
    for args in [&["plan"][..], &["plan", "--color", "never"]] {
        let r = f.sim(args);
        assert!(!r.stdout.contains('\x1b'), "{args:?}: {}", r.stdout);
    }
    assert_eq!(f.sim(&["build"]).code, 0);
    let r = f.sim(&["status", "--color", "always"]);
    assert!(r.stdout.contains("\x1b[2mfresh\x1b[0m"), "{}", r.stdout);
    let r = f.sim_env(&["status"], &[("TERM", "dumb")]);
    assert!(!r.stdout.contains('\x1b'), "{}", r.stdout);
}

#[test]
fn every_argument_and_option_has_help_and_globals_are_listed_apart() {
    use clap::CommandFactory;
    fn walk(cmd: &clap::Command, path: &str, missing: &mut Vec<String>) {
        for arg in cmd.get_arguments() {
            let id = arg.get_id().as_str();
            if id != "help" && id != "version" && arg.get_help().is_none() {
                missing.push(format!("{path} {id}"));
            }
        }
        for sub in cmd.get_subcommands() {
            walk(sub, &format!("{path} {}", sub.get_name()), missing);
        }
    }
    let cmd = phoenix::cli::Cli::command();
    let mut missing = Vec::new();
    walk(&cmd, "phoenix", &mut missing);
    assert!(missing.is_empty(), "without help: {missing:?}");

    let f = Fixture::empty();
    let help = f.phoenix(&["build", "--help"]).stdout;
    let (own, global) = help
        .split_once("Global options:")
        .expect("a global section");
    assert!(
        own.contains("--fail-fast") && !own.contains("--state-dir"),
        "{help}"
    );
    assert!(
        global.contains("--state-dir") && !global.contains("--fail-fast"),
        "{help}"
    );
    assert!(own.contains("--ready-timeout <SECONDS>"), "{help}");
}
