//! `phoenix log`.

use super::*;

pub fn log(cli: &Cli, fleet: &Fleet, ctid: Ctid) -> i32 {
    if let Some(code) = unknown_targets(fleet, &[ctid]) {
        return code;
    }
    let state = StateDir {
        root: cli.state_dir.clone(),
    };
    match state.latest_log(ctid) {
        Some(path) => match std::fs::read_to_string(&path) {
            Ok(text) => {
                if cli.output == Output::Json {
                    print_json(
                        &json!({"schema_version": JSON_SCHEMA_VERSION, "ctid": ctid, "path": path, "log": text}),
                    );
                } else {
                    eprintln!("==> {} <==", path.display());
                    print!("{text}");
                }
                exit::OK
            }
            Err(e) => fail(&format!("cannot read {}: {e}", path.display()), exit::HOST),
        },
        None => fail(
            &format!(
                "CT {ctid} has no build log in {} yet",
                state.log_dir(ctid).display()
            ),
            exit::NOT_FOUND,
        ),
    }
}
