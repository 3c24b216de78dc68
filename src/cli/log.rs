//! `phoenix log`.

use super::*;

pub fn log(cli: &Cli, fleet: &Fleet, ctid: Ctid) -> Result<i32, Error> {
    check_targets(fleet, &[ctid])?;
    let state = StateDir {
        root: cli.state_dir.clone(),
    };
    // A configured node that was never built has no log: that is an answer, not an error.
    let Some(path) = state.latest_log(ctid) else {
        match cli.output {
            Output::Json => print_json(
                &json!({"schema_version": JSON_SCHEMA_VERSION, "ctid": ctid, "path": null, "log": null}),
            ),
            Output::Human => println!(
                "CT {} has not been built yet, so it has no log (`phoenix build {ctid}` writes one)",
                node_label(fleet, ctid)
            ),
        }
        return Ok(exit::OK);
    };
    // Logs are phoenix's own; one past a GiB, or one that is not a file, is not read.
    match crate::os::read_regular(&path, 1 << 30) {
        Ok(bytes) => {
            let text = String::from_utf8_lossy(&bytes);
            if cli.output == Output::Json {
                print_json(
                    &json!({"schema_version": JSON_SCHEMA_VERSION, "ctid": ctid, "path": path, "log": text}),
                );
            } else {
                eprintln!("==> {} <==", path.display());
                print!("{text}");
            }
            Ok(exit::OK)
        }
        Err(e) => Err(Error::Read {
            path,
            message: e.message,
            help: e.help,
        }),
    }
}
