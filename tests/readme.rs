//! The README's tour, run as a reader would paste it: every `$ ` command of its first
//! `console` block in one `bash`, from the repository root, with `/tmp/phx-tour` moved to
//! a temporary directory and this build's `phoenix` on `PATH` (the tour's `cargo build`
//! line is that). Each output line shown must appear, in order, in what the command
//! printed (`...` stands for anything, alone or inside a line); each command exits 0
//! unless its comment says `exit code N`.

mod common;

use std::io::Write;
use std::process::{Command, Stdio};

struct Step {
    command: String,
    expected: Vec<String>,
    exit_code: i32,
}

fn tour(readme: &str) -> Vec<Step> {
    let section = &readme[readme.find("## A tour").expect("a tour section")..];
    let start = section.find("```console\n").expect("a console block") + "```console\n".len();
    let block = &section[start..start + section[start..].find("```").expect("block end")];
    let mut steps: Vec<Step> = Vec::new();
    for line in block.lines() {
        if let Some(command) = line.strip_prefix("$ ") {
            let exit_code = command
                .split_once('#')
                .and_then(|(_, c)| c.split("exit code ").nth(1))
                .and_then(|n| n.trim().parse().ok())
                .unwrap_or(0);
            steps.push(Step {
                command: command.to_string(),
                expected: Vec::new(),
                exit_code,
            });
        } else if let Some(step) = steps.last_mut() {
            step.expected.push(line.to_string());
        }
    }
    steps
}

/// Whether `actual` matches `expected`, where `...` in it stands for anything.
fn line_matches(expected: &str, actual: &str) -> bool {
    let parts: Vec<&str> = expected.split("...").collect();
    if parts.len() == 1 {
        return actual.trim_end() == expected.trim_end();
    }
    let mut rest = actual;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.trim_end().ends_with(part.trim_end());
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[test]
fn the_tour_works_when_pasted() {
    let repo = common::repo();
    let readme = std::fs::read_to_string(repo.join("README.md")).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let tour_dir = tmp.path().join("phx-tour");
    let tour_dir = tour_dir.to_str().unwrap();
    let bin_dir = std::path::Path::new(env!("CARGO_BIN_EXE_phoenix"))
        .parent()
        .unwrap()
        .display()
        .to_string();
    let steps = tour(&readme);
    assert!(steps.len() >= 8, "the tour has its commands");
    let mut script = String::from("set -u\n");
    for (i, step) in steps.iter().enumerate() {
        let command = if step.command.starts_with("cargo build") {
            format!("export PATH=\"{bin_dir}:$PATH\"")
        } else {
            step.command.replace("/tmp/phx-tour", tour_dir)
        };
        script.push_str(&format!(
            "echo '@@step {i}'\n{{ {command}\n}} 2>&1\necho \"@@exit $?\"\n"
        ));
    }
    let mut child = Command::new("bash")
        .arg("-s")
        .current_dir(&repo)
        .env("NO_COLOR", "1")
        .env_remove("PHOENIX_BACKEND")
        .env_remove("PHOENIX_STATE_DIR")
        .env_remove("PHOENIX_CONFIG_DIR")
        .env_remove("PHOENIX_HOOKS_DIR")
        .env_remove("PHOENIX_SIM_LATENCY")
        .env_remove("PHOENIX_SIM_FAULTS")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(script.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);

    let mut outputs: Vec<(Vec<&str>, Option<i32>)> = Vec::new();
    for line in stdout.lines() {
        if line.starts_with("@@step ") {
            outputs.push((Vec::new(), None));
        } else if let Some(code) = line.strip_prefix("@@exit ") {
            if let Some(last) = outputs.last_mut() {
                last.1 = code.trim().parse().ok();
            }
        } else if let Some(last) = outputs.last_mut() {
            last.0.push(line);
        }
    }
    assert_eq!(
        outputs.len(),
        steps.len(),
        "every step ran: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (step, (lines, code)) in steps.iter().zip(&outputs) {
        assert_eq!(
            *code,
            Some(step.exit_code),
            "`{}` exit code; it printed:\n{}",
            step.command,
            lines.join("\n")
        );
        let mut at = 0;
        for want in &step.expected {
            let want = want.replace("/tmp/phx-tour", tour_dir);
            if want.trim().is_empty() || want.trim() == "..." {
                continue;
            }
            match lines[at..].iter().position(|l| line_matches(&want, l)) {
                Some(k) => at += k + 1,
                None => panic!(
                    "`{}` should print, in order:\n  {want}\nit printed:\n{}",
                    step.command,
                    lines.join("\n")
                ),
            }
        }
    }
}

#[test]
fn a_line_with_an_ellipsis_matches_what_it_elides() {
    assert!(line_matches(
        "summary: 7 created in ...",
        "summary: 7 created in 0.5s"
    ));
    assert!(!line_matches(
        "summary: 7 created in ...",
        "summary: 6 created in 0.5s"
    ));
    assert!(line_matches("a ... c ... e", "a b c d e"));
    assert!(!line_matches("plan: 7 create", "plan: 7 created"));
}
