//! `phoenix log`.

use super::*;

pub fn log(cli: &Cli, fleet: &Fleet, ctid: Ctid) -> Result<i32, Error> {
    check_targets(fleet, &[ctid])?;
    let state = StateDir {
        root: cli.state_dir.clone(),
    };
    let Some(path) = state.latest_log(ctid) else {
        return Err(Error::NoLog {
            ctid,
            dir: state.log_dir(ctid),
        });
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => {
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
        Err(source) => Err(Error::Read { path, source }),
    }
}
