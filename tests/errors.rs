//! Error paths of the command line that a user can reach, each with its exit code and a
//! message that says what to do.

mod common;

use common::Fixture;

#[test]
fn unknown_ctids_on_the_command_line() {
    let f = Fixture::example();
    for args in [
        &["show", "123"][..],
        &["plan", "123"],
        &["build", "123"],
        &["why", "123"],
        &["log", "123"],
        &["generations", "123"],
    ] {
        let r = f.sim(args);
        assert_eq!(r.code, 7, "{args:?}: {}", r.stderr);
        assert!(
            r.stderr.contains("123") && r.stderr.contains("not defined"),
            "{args:?}: {}",
            r.stderr
        );
    }
}

#[test]
fn log_and_generations_of_a_configured_ct_never_built_say_so_and_succeed() {
    let f = Fixture::example();
    let r = f.sim(&["log", "950"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(
        r.stdout
            .contains("CT 950 vllmQwen3Coder has not been built yet"),
        "{}",
        r.stdout
    );
    let r = f.sim(&["log", "950", "--output", "json"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.json()["log"], serde_json::Value::Null);
    let r = f.sim(&["generations", "950"]);
    assert_eq!(r.code, 0, "{}", r.stderr);
    assert!(r.stdout.contains("is not on the host"), "{}", r.stdout);
    let r = f.sim(&["generations", "950", "--output", "json"]);
    assert_eq!(r.code, 0);
    assert_eq!(r.json()["generations"], serde_json::json!([]));
}

#[test]
fn a_replace_of_a_ctid_not_in_the_config_is_exit_7_naming_it() {
    let f = Fixture::example();
    for cmd in ["plan", "build"] {
        let r = f.sim(&[cmd, "--replace", "123", "--replace", "910", "124", "124"]);
        assert_eq!(r.code, 7, "{cmd}: {}", r.stderr);
        assert!(
            r.stderr.contains("CT 123, 124 not defined"),
            "{cmd}: {}",
            r.stderr
        );
    }
    assert!(f.ct(900).is_none(), "nothing was built");
}

#[test]
fn a_command_that_fails_under_output_json_prints_one_error_document() {
    let f = Fixture::example();
    for (args, kind, code) in [
        (
            &["generations", "123", "--output", "json"][..],
            "not_in_config",
            7,
        ),
        (&["why", "123", "--output", "json"], "not_in_config", 7),
        (
            &["gc", "--older-than", "soon", "--output", "json"],
            "usage",
            2,
        ),
    ] {
        let r = f.sim(args);
        assert_eq!(r.code, code, "{args:?}: {}", r.stderr);
        let v = r.json();
        assert_eq!(v["error"]["kind"], kind, "{args:?}");
        assert_eq!(v["error"]["exit_code"], code);
        assert!(v["error"]["help"].as_str().is_some_and(|h| !h.is_empty()));
        assert!(r.stderr.contains("help:"), "{}", r.stderr);
    }
}

#[test]
fn bad_simulator_knobs_are_named() {
    let f = Fixture::example();
    let r = f.sim_env(&["plan"], &[("PHOENIX_SIM_LATENCY", "clone")]);
    assert_eq!(r.code, 6);
    assert!(
        r.stderr.contains("PHOENIX_SIM_LATENCY") && r.stderr.contains("clone"),
        "{}",
        r.stderr
    );
    let r = f.sim_env(&["build"], &[("PHOENIX_SIM_FAULTS", "exec=3")]);
    assert_eq!(r.code, 6);
    assert!(r.stderr.contains("PHOENIX_SIM_FAULTS"), "{}", r.stderr);
}

#[test]
fn bad_command_lines_exit_2() {
    let f = Fixture::example();
    for args in [
        &["build", "-j", "0"][..],
        &["build", "abc"],
        &["graph", "--format", "png"],
        &["frobnicate"],
    ] {
        let r = f.sim(args);
        assert_eq!(r.code, 2, "{args:?}: {}", r.stderr);
    }
}

#[test]
fn an_unusable_state_directory() {
    let f = Fixture::example();
    let file = f.tmp.path().join("not-a-dir");
    std::fs::write(&file, "x").unwrap();
    let r = f.phoenix_env(
        &["build"],
        &[
            ("PHOENIX_BACKEND", "sim"),
            ("PHOENIX_STATE_DIR", file.to_str().unwrap()),
        ],
    );
    assert_eq!(r.code, 6, "{}", r.stderr);
    assert!(r.stderr.contains("state directory"), "{}", r.stderr);
    assert!(
        r.stderr
            .contains(&format!("{} is a file, not a directory", file.display())),
        "says what is in the way, not `File exists`: {}",
        r.stderr
    );
}

#[test]
fn an_invalid_config_touches_nothing() {
    let f = Fixture::example();
    f.edit_block(950, |b| {
        b.insert("clone_from_template_ctid".into(), serde_json::json!("999"));
    });
    for cmd in ["plan", "build", "gc", "why", "status"] {
        let r = f.sim(&[cmd]);
        assert_eq!(r.code, 3, "{cmd}: {}", r.stderr);
        assert!(
            r.stderr.contains("nothing was touched"),
            "{cmd}: {}",
            r.stderr
        );
    }
    assert!(
        !f.state_dir.exists(),
        "the state directory was created for an invalid config"
    );
}

#[test]
fn format_and_output_never_silently_override_each_other() {
    let f = Fixture::example();
    let r = f.sim(&["graph", "--format", "dot", "--output", "json"]);
    assert_eq!(r.code, 2, "{}", r.stdout);
    assert_eq!(r.json()["error"]["kind"], "usage");
    assert!(r.stderr.contains("--format asks for dot"), "{}", r.stderr);
    for args in [
        &["graph", "--output", "json"][..],
        &["graph", "--format", "json"],
        &["graph", "--format", "json", "--output", "json"],
    ] {
        let r = f.sim(args);
        assert_eq!(r.code, 0, "{args:?}");
        assert!(r.json()["nodes"].is_array(), "{args:?}");
    }
    let r = f.sim(&["graph"]);
    assert!(
        r.stdout.starts_with("digraph"),
        "dot by default: {}",
        r.stdout
    );
}

/// `phoenix validate --output json` that must end within 20 s (a FIFO read would block).
fn validate_in_time(f: &Fixture) -> common::Run {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_phoenix"));
    cmd.args(["validate", "--output", "json"])
        .env("PHOENIX_CONFIG_DIR", &f.config_dir)
        .env("PHOENIX_HOOKS_DIR", &f.hooks_dir)
        .env("PHOENIX_STATE_DIR", &f.state_dir)
        .env("PHOENIX_BACKEND", "sim")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() {
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("phoenix validate hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    common::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn files_that_are_not_regular_files_are_refused_by_name_without_blocking() {
    use std::os::unix::fs::symlink;
    let mkfifo = |p: &std::path::Path| {
        assert!(std::process::Command::new("mkfifo")
            .arg(p)
            .status()
            .unwrap()
            .success());
    };
    type Setup = fn(&Fixture, &dyn Fn(&std::path::Path));
    let cases: [(&str, Setup, &str, &str); 6] = [
        (
            "the config is a FIFO",
            |f, mkfifo| {
                std::fs::remove_file(f.lxc_path()).unwrap();
                mkfifo(&f.lxc_path());
            },
            "config::unreadable-file",
            "is a named pipe (FIFO), not a regular file",
        ),
        (
            "the config is a dangling link",
            |f, _| {
                std::fs::remove_file(f.lxc_path()).unwrap();
                symlink(f.tmp.path().join("gone.json"), f.lxc_path()).unwrap();
            },
            "config::unreadable-file",
            "which does not exist",
        ),
        (
            "a hook is a FIFO",
            |f, mkfifo| {
                std::fs::remove_file(f.hook_path(910)).unwrap();
                mkfifo(&f.hook_path(910));
            },
            "config::unreadable-hook",
            "is a named pipe (FIFO)",
        ),
        (
            "a hook links to /dev/zero",
            |f, _| {
                std::fs::remove_file(f.hook_path(910)).unwrap();
                symlink("/dev/zero", f.hook_path(910)).unwrap();
            },
            "config::unreadable-hook",
            "is a character device",
        ),
        (
            "a lib file is a link that loops",
            |f, _| {
                let lib = f.hooks_dir.join("lib");
                symlink(lib.join("b.sh"), lib.join("a.sh")).unwrap();
                symlink(lib.join("a.sh"), lib.join("b.sh")).unwrap();
            },
            "config::unreadable-hook",
            "loops back on itself",
        ),
        (
            "a lib entry links back to its directory",
            |f, _| {
                let lib = f.hooks_dir.join("lib");
                symlink(&lib, lib.join("again")).unwrap();
            },
            "config::unreadable-hook",
            "is a directory",
        ),
    ];
    for (case, setup, code, said) in cases {
        let f = Fixture::example();
        setup(&f, &mkfifo);
        let r = validate_in_time(&f);
        assert_eq!(r.code, 3, "{case}: {}", r.stderr);
        let p = r.problem(code);
        assert!(p["message"].as_str().unwrap().contains(said), "{case}: {p}");
    }
}

#[test]
fn a_closed_stdout_or_stderr_ends_phoenix_quietly_without_a_panic() {
    use std::os::unix::process::ExitStatusExt;
    let f = Fixture::example();
    let run = |args: &[&str], close_stdout: bool| {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader); // the reader is gone before phoenix writes a byte
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_phoenix"));
        cmd.args(args)
            .env("PHOENIX_CONFIG_DIR", &f.config_dir)
            .env("PHOENIX_HOOKS_DIR", &f.hooks_dir)
            .env("PHOENIX_STATE_DIR", &f.state_dir)
            .env("PHOENIX_BACKEND", "sim");
        let out = if close_stdout {
            cmd.stdout(writer)
                .stderr(std::process::Stdio::piped())
                .output()
                .unwrap()
        } else {
            cmd.stderr(writer)
                .stdout(std::process::Stdio::null())
                .output()
                .unwrap()
        };
        (
            out.status,
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for args in [&["plan"][..], &["graph"], &["validate"]] {
        let (status, stderr) = run(args, true);
        assert_eq!(status.signal(), Some(13), "{args:?}: {status:?} {stderr}");
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }
    // Something to say on stderr: an invalid config.
    f.write_text(common::LXC, "{");
    let (status, _) = run(&["validate"], false);
    assert_eq!(status.signal(), Some(13), "{status:?}");
    assert_ne!(status.code(), Some(101));
}
