//! The shell scripts phoenix ships (built-in steps, example hooks, the demo) parse.

use std::path::Path;
use std::process::Command;

fn scripts(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            scripts(&p, out);
        } else if p.extension().is_some_and(|x| x == "sh")
            || p.ends_with("scripts/demo")
            || p.ends_with("scripts/lxc-host-setup")
            || p.ends_with(".ci/run")
        {
            out.push(p);
        }
    }
}

#[test]
fn every_shipped_script_is_valid_bash() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut all = Vec::new();
    for d in ["hooks", "scripts", ".ci"] {
        scripts(&root.join(d), &mut all);
    }
    assert!(all.len() >= 11, "{all:?}");
    for s in &all {
        let out = Command::new("bash").arg("-n").arg(s).output().unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            s.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn hooks_and_step_scripts_are_executable_and_not_world_writable() {
    use std::os::unix::fs::PermissionsExt;
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("hooks");
    for e in std::fs::read_dir(&root).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "sh") {
            let mode = std::fs::metadata(&p).unwrap().permissions().mode();
            assert!(
                mode & 0o111 != 0 && mode & 0o002 == 0,
                "{}: mode {mode:o}",
                p.display()
            );
        }
    }
}
