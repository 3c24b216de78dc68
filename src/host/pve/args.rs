//! `pct`'s command line [JS get_options, CLIH]: positionals in order, `--opt value`,
//! `--opt=value` or `-opt value` anywhere (Getopt's permute mode), `--` ends the options,
//! a bare boolean option (`--full`) means `1`; and its usage errors.

use std::collections::BTreeMap;

/// A parsed `pct` command line (after the command).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Args {
    pub positional: Vec<String>,
    pub options: BTreeMap<String, String>,
    /// Everything after `--`.
    pub rest: Vec<String>,
}

/// Options that take no value: present means `1` (unless a boolean word follows).
const FLAGS: &[&str] = &[
    "current",
    "full",
    "force",
    "purge",
    "verbose",
    "forceStop",
    "keep-env",
    "skiplock",
    "start",
    "debug",
    "unique",
    "restore",
    "ignore-unpack-errors",
];

fn is_bool_word(v: &str) -> bool {
    matches!(
        v.to_ascii_lowercase().as_str(),
        "1" | "0" | "on" | "off" | "yes" | "no" | "true" | "false"
    )
}

/// Reads a boolean value as Proxmox does [JS parse_boolean].
pub fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "on" | "yes" | "true" => Some(true),
        "0" | "off" | "no" | "false" => Some(false),
        _ => None,
    }
}

pub fn parse(args: &[String]) -> Result<Args, String> {
    let mut a = Args::default();
    let mut i = 0;
    while i < args.len() {
        let arg = &args[i];
        if arg == "--" {
            a.rest = args[i + 1..].to_vec();
            break;
        }
        let opt = arg
            .strip_prefix("--")
            .or_else(|| arg.strip_prefix('-'))
            .filter(|o| !o.is_empty() && !o.starts_with(|c: char| c.is_ascii_digit()));
        match opt {
            Some(opt) => match opt.split_once('=') {
                Some((k, v)) => {
                    a.options.insert(k.to_string(), v.to_string());
                }
                None if FLAGS.contains(&opt) => {
                    let value = match args.get(i + 1) {
                        Some(v) if is_bool_word(v) => {
                            i += 1;
                            v.clone()
                        }
                        _ => "1".to_string(),
                    };
                    a.options.insert(opt.to_string(), value);
                }
                None => {
                    let value = args.get(i + 1).cloned().ok_or_else(|| {
                        format!("Option {opt} requires an argument\n400 unable to parse option")
                    })?;
                    a.options.insert(opt.to_string(), value);
                    i += 1;
                }
            },
            None => a.positional.push(arg.clone()),
        }
        i += 1;
    }
    Ok(a)
}

/// `400 not enough arguments` and the usage line.
pub fn not_enough(usage: &str) -> String {
    format!("400 not enough arguments\n{usage}")
}

/// `400 too many arguments` and the usage line.
pub fn too_many(usage: &str) -> String {
    format!("400 too many arguments\n{usage}")
}

/// Options the command does not take: Getopt's warning for each, then the 400 [JS
/// get_options].
pub fn unknown_options(names: &[&str], usage: &str) -> String {
    let mut out = String::new();
    for n in names {
        out.push_str(&format!("Unknown option: {n}\n"));
    }
    out.push_str(&format!("400 unable to parse option\n{usage}"));
    out
}

/// A schema violation of one parameter [EXC stringify, REST cli_handler].
pub fn bad_param(param: &str, msg: &str, usage: &str) -> String {
    format!("400 Parameter verification failed.\n{param}: {msg}\n\n{usage}")
}

/// The `pct` commands the front-end answers, for unique-prefix expansion [CLIH
/// resolve_cmd].
pub const COMMANDS: &[&str] = &[
    "migrate",
    "status",
    "list",
    "config",
    "exec",
    "push",
    "pull",
    "set",
    "start",
    "shutdown",
    "stop",
    "snapshot",
    "listsnapshot",
    "delsnapshot",
    "rollback",
    "create",
    "clone",
    "resize",
    "destroy",
    "unlock",
    "template",
    "restore",
    "enter",
];

/// The command a word names: itself, or the one command it is a unique prefix of.
pub fn resolve_command(word: &str) -> Option<&'static str> {
    if let Some(c) = COMMANDS.iter().find(|c| **c == word) {
        return Some(c);
    }
    let mut hits = COMMANDS.iter().filter(|c| c.starts_with(word));
    match (hits.next(), hits.next()) {
        (Some(c), None) if !word.is_empty() => Some(c),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_parse_like_pct() {
        let a = parse(&v(&[
            "100",
            "--perms=0644",
            "-user",
            "root",
            "--",
            "ls",
            "-la",
        ]))
        .unwrap();
        assert_eq!(a.positional, vec!["100"]);
        assert_eq!(a.options["perms"], "0644");
        assert_eq!(a.options["user"], "root");
        assert_eq!(a.rest, vec!["ls", "-la"]);
        assert!(parse(&v(&["--description"])).is_err());
        let a = parse(&v(&["100", "s1", "--force", "--start", "0"])).unwrap();
        assert_eq!(a.options["force"], "1");
        assert_eq!(a.options["start"], "0");
        assert_eq!(a.positional, vec!["100", "s1"]);
    }

    #[test]
    fn unique_prefixes_expand() {
        assert_eq!(resolve_command("stat"), Some("status"));
        assert_eq!(resolve_command("listsnap"), Some("listsnapshot"));
        assert_eq!(resolve_command("s"), None, "ambiguous");
        assert_eq!(resolve_command("frobnicate"), None);
    }
}
