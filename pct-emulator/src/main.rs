//! `pct-emulator`: Proxmox VE's `pct` for tests of phoenix's `pve` backend. Tests put a
//! link named `pct` to it first on `PATH`; it runs phoenix's model of a Proxmox node
//! ([`phoenix::host::sim`]) behind the `pct` command line ([`phoenix::host::pct`]), so
//! its behaviour is the one `pct-spec.md` describes.
//!
//! | variable | meaning |
//! |---|---|
//! | `PVE_EMULATOR_ROOT` | the node's file tree (required): `etc/pve/nodes/<node>/lxc/*.conf`, `etc/pve/storage.cfg`, volumes, `proc/`, `dev/` |
//! | `PVE_EMULATOR_NODE` | the node's name (default `pve`) |
//! | `PVE_EMULATOR_LATENCY_MS` | milliseconds each invocation costs before it runs (a real `pct` spends 0.5–1 s starting Perl) |
//! | `PVE_EMULATOR_FAULTS` | injected faults, in the syntax of `PHOENIX_SIM_FAULTS` |
//! | `PVE_EMULATOR_TASK_LATENCY` | what each operation costs on the node, in the syntax of `PHOENIX_SIM_LATENCY` (`clone=200,clone_per_gib=1500`: a full clone's time follows its bytes) |
//!
//! Invoked through a link named `vzdump` or `pvesm`, it answers as those (`vzdump <vmid>
//! --storage <s> --mode stop`, `pvesm free <volid>`), for phoenix's kept generations.
//!
//! Every invocation's argv is appended, shell-quoted, as one line to
//! `$PVE_EMULATOR_ROOT/pct-calls.log`. `exec` runs nothing on the host: the command is
//! recorded inside the CT's volume.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use phoenix::host::sim::{knobs, SimHost};

const FAIL: i32 = 255;

fn main() {
    std::process::exit(run());
}

fn run() -> i32 {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let Some(root) = std::env::var_os("PVE_EMULATOR_ROOT").map(PathBuf::from) else {
        eprintln!("pct-emulator: PVE_EMULATOR_ROOT is not set (the emulated node's file tree)");
        return FAIL;
    };
    let program = std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .filter(|n| n == "vzdump" || n == "pvesm")
        .unwrap_or_else(|| "pct".to_string());
    log_call(&root, &program, &argv);
    if let Some(ms) = std::env::var("PVE_EMULATOR_LATENCY_MS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        std::thread::sleep(Duration::from_millis(ms));
    }
    let node = std::env::var("PVE_EMULATOR_NODE").unwrap_or_else(|_| "pve".to_string());
    let faults =
        match knobs::parse_faults(&std::env::var("PVE_EMULATOR_FAULTS").unwrap_or_default()) {
            Ok(f) => f,
            Err(e) => {
                eprintln!(
                    "pct-emulator: {}",
                    e.replace("PHOENIX_SIM_FAULTS", "PVE_EMULATOR_FAULTS")
                );
                return FAIL;
            }
        };
    let latency =
        match knobs::parse_latency(&std::env::var("PVE_EMULATOR_TASK_LATENCY").unwrap_or_default())
        {
            Ok(l) => l,
            Err(e) => {
                eprintln!(
                    "pct-emulator: {}",
                    e.replace("PHOENIX_SIM_LATENCY", "PVE_EMULATOR_TASK_LATENCY")
                );
                return FAIL;
            }
        };
    let host = match SimHost::with_knobs(&root, &node, latency, faults) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("pct-emulator: {e}");
            return FAIL;
        }
    };
    let out = &mut std::io::stdout().lock();
    // Invoked as `vzdump` or `pvesm` (a link of that name), it answers as those.
    let tool = match program.as_str() {
        "vzdump" => phoenix::host::pct::vzdump,
        "pvesm" => phoenix::host::pct::pvesm,
        _ => phoenix::host::pct::run,
    };
    match tool(&host, &argv, out) {
        Ok(code) => code,
        Err(msg) => {
            let _ = out.flush();
            eprintln!("{msg}");
            FAIL
        }
    }
}

/// Appends `pct <argv>` (or `vzdump`, `pvesm`) as an admin would type it.
fn log_call(root: &std::path::Path, program: &str, argv: &[String]) {
    let mut line = String::from(program);
    for a in argv {
        line.push(' ');
        line.push_str(&quote(a));
    }
    line.push('\n');
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(root.join("pct-calls.log"))
    {
        // One write per line: concurrent invocations never interleave.
        let _ = f.write_all(line.as_bytes());
    }
}

/// A word as bash reads it back, on one line: bare when it is safe, single-quoted, or
/// `$'...'` when it holds a newline or another control character (as `printf %q` does).
fn quote(word: &str) -> String {
    let safe = !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./:=,+%@".contains(&b));
    if safe {
        word.to_string()
    } else if word.chars().any(char::is_control) {
        let mut out = String::from("$'");
        for c in word.chars() {
            match c {
                '\n' => out.push_str("\\n"),
                '\t' => out.push_str("\\t"),
                '\\' => out.push_str("\\\\"),
                '\'' => out.push_str("\\'"),
                c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
                c => out.push(c),
            }
        }
        out.push('\'');
        out
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::quote;

    #[test]
    fn words_quote_onto_one_line_as_bash_reads_them() {
        assert_eq!(quote("phx-0a1b"), "phx-0a1b");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("one\ntwo's"), r"$'one\ntwo\'s'");
        assert_eq!(quote(""), "''");
    }
}
