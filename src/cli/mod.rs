//! The command line: argument parsing, and rendering of each command's result for a person
//! or as JSON. The engine modules know nothing of this one.

mod build;
mod completions;
pub mod error;
mod gc;
mod generations;
mod graph;
mod log;
mod plan;
mod rollback;
mod status;
mod validate;
mod why;

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::json;

use crate::engine::hash::{self, Hashed};
use crate::engine::plan::Consent;
use crate::exit;
use crate::fleet::config::{self, Ctid, Paths};
use crate::fleet::diag::{ProblemJson, Problems};
use crate::fleet::Fleet;
use crate::host::{Backend, Host};
use crate::os::now_secs;
use crate::state::{HostLock, LockError, StateDir};

pub use error::Error;

pub use crate::render::JSON_SCHEMA_VERSION;

/// The heading global options are listed under, apart from each command's own.
const GLOBAL: &str = "Global options";

#[derive(Parser, Debug)]
#[command(
    name = "phoenix",
    version,
    about = "Build fleets of Proxmox VE LXC containers and templates the way Nix builds packages",
    after_help = "Exit codes: 0 ok, 1 build failed, 2 usage, 3 invalid config, 4 held, 5 locked, 6 host error, 7 unknown CTID."
)]
pub struct Cli {
    /// Directory holding phoenix_lxc_configs.json and phoenix_hypervisor_config.json.
    #[arg(long, global = true, env = "PHOENIX_CONFIG_DIR", default_value = config::DEFAULT_CONFIG_DIR, help_heading = GLOBAL)]
    pub config_dir: PathBuf,
    /// Directory holding the hooks (phoenix_hypervisor_setup_CTID.sh per node, lib/, step scripts).
    #[arg(long, global = true, env = "PHOENIX_HOOKS_DIR", default_value = config::DEFAULT_HOOKS_DIR, help_heading = GLOBAL)]
    pub hooks_dir: PathBuf,
    /// Directory of phoenix's own state (manifests, logs, lock; the sim host).
    #[arg(long, global = true, env = "PHOENIX_STATE_DIR", default_value = crate::host::DEFAULT_STATE_DIR, help_heading = GLOBAL)]
    pub state_dir: PathBuf,
    /// The host to act on: `pve` (Proxmox through pct), `lxc` (plain LXC), `sim` (an embedded simulated Proxmox node).
    #[arg(long, global = true, env = "PHOENIX_BACKEND", value_enum, default_value_t = Backend::Pve, help_heading = GLOBAL)]
    pub backend: Backend,
    /// `--backend lxc`: the LXC container path (each CT is container `<ctid>` in it).
    #[arg(long, global = true, env = "PHOENIX_LXC_PATH", default_value = crate::host::lxc::DEFAULT_LXC_PATH, help_heading = GLOBAL)]
    pub lxc_path: PathBuf,
    /// `--backend lxc`: `config` gives each CT a veth on the bridge its network_config
    /// names; `host` shares the host's network (test machines).
    #[arg(long, global = true, env = "PHOENIX_LXC_NETWORK", value_enum, default_value_t = crate::host::lxc::NetworkMode::Config, help_heading = GLOBAL)]
    pub lxc_network: crate::host::lxc::NetworkMode,
    #[command(flatten)]
    pub api: crate::host::pve::api::ApiArgs,
    /// Leave out GPU nodes (gpu_assignment other than none) and everything cloned from
    /// them: plan, build and status show them as `skipped`, and a build that built
    /// everything else exits 0 (a host without a GPU).
    #[arg(long, global = true, env = "PHOENIX_SKIP_GPU", value_parser = clap::builder::BoolishValueParser::new(), help_heading = GLOBAL)]
    pub skip_gpu: bool,
    /// Output for people, or JSON for programs.
    #[arg(long, global = true, value_enum, default_value_t = Output::Human, help_heading = GLOBAL)]
    pub output: Output,
    /// Colour in human output.
    #[arg(long, global = true, value_enum, default_value_t = Color::Auto, help_heading = GLOBAL)]
    pub color: Color,
    /// More detail on stderr: -v what phoenix read and decided (and script diffs in `why`),
    /// -vv each node's plan and every host call of a build with its time. RUST_LOG (e.g.
    /// `phoenix=debug`) overrides.
    #[arg(short, long, global = true, action = clap::ArgAction::Count, help_heading = GLOBAL)]
    pub verbose: u8,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    Human,
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Color {
    Auto,
    Always,
    Never,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Check the configuration and hooks; report every problem with its location.
    Validate,
    /// Print the build graph.
    Graph {
        /// Graphviz dot (the default), a Mermaid flowchart, or JSON (nodes with parents,
        /// children, hashes; also what `--output json` gives).
        #[arg(long, value_enum)]
        format: Option<GraphFormat>,
    },
    /// Print one node's manifest and hash.
    Show {
        /// The node's CTID.
        ctid: Ctid,
    },
    /// Show what a build would do to each node, and why (changes nothing).
    Plan {
        /// Only these nodes and the ancestors they need.
        targets: Vec<Ctid>,
        #[command(flatten)]
        consent: ConsentArgs,
    },
    /// Build what is not fresh: new nodes, changed nodes and their descendants.
    Build {
        /// Only these nodes and whatever of their ancestors is not fresh.
        targets: Vec<Ctid>,
        /// Nodes built at the same time on each cluster node (host operations of one node
        /// never wait on another's).
        #[arg(short, long, value_name = "N", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: u16,
        /// Nodes built at the same time across the whole cluster [default: no limit beyond
        /// -j per node].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=4096))]
        max_jobs: Option<u16>,
        /// Start nothing new after the first failure.
        #[arg(long)]
        fail_fast: bool,
        /// Wait for another running build instead of exiting.
        #[arg(long)]
        wait: bool,
        /// Seconds to wait for a started CT to finish booting (systemd: `systemctl
        /// is-system-running --wait`; another init: until it runs a command).
        #[arg(long, value_name = "SECONDS", default_value_t = 300)]
        ready_timeout: u64,
        /// The main log every run appends its events to [default: /var/log/phoenix_hypervisor.log
        /// on pve, <state-dir>/phoenix.log otherwise].
        #[arg(long, value_name = "PATH", env = "PHOENIX_LOG_FILE")]
        log_file: Option<PathBuf>,
        /// Seconds a node's hook may run before it is killed and the node fails.
        #[arg(long, value_name = "SECONDS", default_value_t = 3600)]
        hook_timeout: u64,
        /// Give this pinned CT back to builds first (as `phoenix unpin`).
        #[arg(long = "unpin", value_name = "CTID")]
        unpin: Vec<Ctid>,
        #[command(flatten)]
        consent: ConsentArgs,
    },
    /// Each node's built snapshot, state and age on the host.
    Status,
    /// Print a node's log from its latest build.
    Log {
        /// The node's CTID.
        ctid: Ctid,
    },
    /// Explain why a node would rebuild (root cause first), or, without a CTID, the plan's root causes.
    /// With -v, shows script changes as unified diffs.
    Why {
        /// The node to explain; without it, the plan's root causes.
        ctid: Option<Ctid>,
    },
    /// Remove phx-* snapshots that no current node needs (and, with --orphans, phoenix's CTs that left the config).
    Gc {
        /// List what would be removed and what is kept, and why; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Generations kept per CT besides the current and the wanted one.
        #[arg(long, value_name = "N", default_value_t = 1)]
        keep: usize,
        /// Keep snapshots younger than this (90s, 30m, 12h, 7d, 2w).
        #[arg(long, value_name = "AGE", default_value = "0s")]
        older_than: String,
        /// Also destroy phoenix-managed CTs that are no longer in the config.
        #[arg(long)]
        orphans: bool,
        /// Wait for a running build instead of exiting.
        #[arg(long)]
        wait: bool,
    },
    /// Put a CT back to one of its generations (files and settings as built) and pin it
    /// there: builds leave it alone until `unpin`.
    Rollback {
        /// The node's CTID.
        ctid: Ctid,
        /// The generation to go back to (`phx-…`, as `generations` lists it).
        #[arg(long, value_name = "SNAPSHOT", conflicts_with = "steps")]
        to: Option<String>,
        /// Go back this many generations [default: 1, the one before the current].
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
        steps: Option<u16>,
        /// Show what would happen; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// Delete the newer snapshots a rollback needs gone (ZFS rolls back only to the
        /// most recent one).
        #[arg(long)]
        force: bool,
        /// Wait for a running build instead of exiting.
        #[arg(long)]
        wait: bool,
    },
    /// Give a CT pinned by `rollback` back to builds.
    Unpin {
        /// The node's CTID.
        ctid: Ctid,
    },
    /// A CT's phx-* snapshots, newest first, with what each was built from.
    Generations {
        /// The node's CTID.
        ctid: Ctid,
    },
    /// Print a completion script for a shell (`phoenix completions bash > /etc/bash_completion.d/phoenix`).
    Completions {
        /// The shell to complete for.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Write the man pages (phoenix.1 and one per command) into a directory.
    #[command(hide = true)]
    Man {
        /// Where to write them.
        dir: PathBuf,
    },
}

#[derive(clap::Args, Debug, Clone, Default)]
pub struct ConsentArgs {
    /// Consent to replace this standard container (destroying its data) when its parent changed.
    #[arg(long = "replace", value_name = "CTID")]
    pub replace: Vec<Ctid>,
    /// Consent to replace every standard container whose parent changed.
    #[arg(long)]
    pub replace_all: bool,
    /// Consent to delete this CT's snapshots so that it can move to the node its block
    /// names (its storage cannot move them).
    #[arg(long = "drop-snapshots", value_name = "CTID")]
    pub drop_snapshots: Vec<Ctid>,
}

impl ConsentArgs {
    fn consent(&self) -> crate::engine::plan::Consent {
        crate::engine::plan::Consent {
            replace: self.replace.iter().copied().collect(),
            replace_all: self.replace_all,
            drop_snapshots: self.drop_snapshots.iter().copied().collect(),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
    Json,
}

/// Runs the command line; returns the process exit code. Invoked as `pct` (the link
/// put on a hook's `PATH`), acts as `pct` on the backend that runs the build.
pub fn main() -> i32 {
    let args: Vec<String> = std::env::args().collect();
    if args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == "pct")
    {
        return crate::host::pct::main(&args[1..]);
    }
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            if !e.use_stderr() {
                return exit::OK; // --help, --version
            }
            if wants_json(&args) {
                error::report_usage(&e.to_string());
            }
            return exit::USAGE;
        }
    };
    run(cli)
}

pub fn run(mut cli: Cli) -> i32 {
    // Hooks run in the hooks directory, and their `pct` finds the host through the state
    // directory: a relative one would point elsewhere there. (The config and hooks
    // directories stay as typed, for messages; hooks get them absolute.)
    if let Ok(abs) = std::path::absolute(&cli.state_dir) {
        cli.state_dir = abs;
    }
    // Commands about phoenix itself need no fleet.
    match &cli.command {
        Command::Completions { shell } => return completions::print(*shell),
        Command::Man { dir } => return completions::man_pages(dir),
        _ => {}
    }
    let paths = Paths {
        config_dir: cli.config_dir.clone(),
        hooks_dir: cli.hooks_dir.clone(),
    };
    let color = match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => {
            std::io::stderr().is_terminal()
                && !dumb_terminal()
                && std::env::var_os("NO_COLOR").is_none()
        }
    };
    let fleet = match crate::fleet::load(&paths) {
        Ok(mut f) => {
            if let Some(cpus) = host_cpus(cli.backend) {
                let more = crate::fleet::rules::cores_above_the_host(&f, cpus);
                f.warnings.0.extend(more);
            }
            f
        }
        Err(problems) => {
            init_tracing(cli.verbose);
            report_problems(&cli, &problems, color);
            return exit::INVALID_CONFIG;
        }
    };
    // `behavior.debug_mode` is `-v` for everyone who runs this fleet.
    if fleet.hypervisor.debug_mode {
        cli.verbose = cli.verbose.max(1);
    }
    init_tracing(cli.verbose);
    // Warnings in full where they are asked for; elsewhere one line that points there.
    if !fleet.warnings.0.is_empty() && cli.output == Output::Human {
        if matches!(cli.command, Command::Validate) {
            eprint!("{}", fleet.warnings.render(color));
        } else {
            eprintln!(
                "warning: the configuration has {} warning(s): `phoenix validate` shows them",
                fleet.warnings.0.len()
            );
        }
    }
    let result = match &cli.command {
        Command::Validate => validate::validate(&cli, &fleet),
        Command::Graph { format } => graph::graph(&cli, &fleet, *format),
        Command::Show { ctid } => graph::show(&cli, &fleet, *ctid),
        Command::Plan { targets, consent } => plan::plan(&cli, &fleet, targets, &consent.consent()),
        Command::Build {
            targets,
            jobs,
            max_jobs,
            fail_fast,
            wait,
            ready_timeout,
            hook_timeout,
            log_file,
            consent,
            unpin,
        } => build::build(
            &cli,
            &fleet,
            unpin,
            &crate::build::BuildOptions {
                targets: targets.clone(),
                skip_gpu: cli.skip_gpu,
                jobs: usize::from(*jobs),
                max_jobs: max_jobs.map(usize::from),
                fail_fast: *fail_fast,
                consent: consent.consent(),
                ready_timeout: std::time::Duration::from_secs(*ready_timeout),
                hook_timeout: std::time::Duration::from_secs(*hook_timeout),
            },
            *wait,
            log_file.as_deref(),
        ),
        Command::Status => status::status(&cli, &fleet),
        Command::Log { ctid } => log::log(&cli, &fleet, *ctid),
        Command::Why { ctid } => why::why(&cli, &fleet, *ctid, cli.verbose > 0),
        Command::Gc {
            dry_run,
            keep,
            older_than,
            orphans,
            wait,
        } => gc::gc(
            &cli,
            &fleet,
            &gc::GcArgs {
                dry_run: *dry_run,
                keep: *keep,
                older_than: older_than.clone(),
                orphans: *orphans,
                wait: *wait,
            },
        ),
        Command::Generations { ctid } => generations::generations(&cli, &fleet, *ctid),
        Command::Rollback {
            ctid,
            to,
            steps,
            dry_run,
            force,
            wait,
        } => rollback::rollback(
            &cli,
            &fleet,
            &rollback::RollbackArgs {
                ctid: *ctid,
                to: to.clone(),
                steps: steps.map(usize::from),
                dry_run: *dry_run,
                force: *force,
                wait: *wait,
            },
        ),
        Command::Unpin { ctid } => rollback::unpin(&cli, &fleet, *ctid),
        Command::Completions { .. } | Command::Man { .. } => Ok(exit::OK),
    };
    result.unwrap_or_else(|e| error::report(&e, cli.output == Output::Json, color))
}

/// The CPUs of the host the CTs run on, where phoenix can tell: `PHOENIX_HOST_CPUS`, else
/// this machine's for the backends that run CTs here (`pve` through local `pct`, `lxc`).
/// The simulated node has none of its own.
fn host_cpus(backend: Backend) -> Option<u64> {
    match std::env::var("PHOENIX_HOST_CPUS").ok() {
        Some(v) => v.parse().ok(),
        None if backend == Backend::Sim => None,
        None => crate::os::local_cpus(),
    }
}

/// Whether a command line clap could not parse asked for `--output json`: its error is
/// then a JSON document too.
fn wants_json(args: &[String]) -> bool {
    args.iter().any(|a| a == "--output=json")
        || args
            .windows(2)
            .any(|w| w[0] == "--output" && w[1] == "json")
}

/// `TERM=dumb`: a terminal that takes no cursor movement and no colour.
pub(crate) fn dumb_terminal() -> bool {
    std::env::var_os("TERM").is_some_and(|t| t == "dumb")
}

/// Whether human output on stdout is coloured: `--color`, else a terminal that is not
/// dumb and no `NO_COLOR`.
pub(crate) fn stdout_color(cli: &Cli) -> bool {
    match cli.color {
        Color::Always => true,
        Color::Never => false,
        Color::Auto => {
            std::io::stdout().is_terminal()
                && !dumb_terminal()
                && std::env::var_os("NO_COLOR").is_none()
        }
    }
}

/// An action's name padded to `width`, coloured by what it does to the host when
/// `color`: green creates, yellow rebuilds or updates, red fails or refuses, dim changes
/// nothing.
pub(crate) fn action_cell(action: &str, width: usize, color: bool) -> String {
    let cell = format!("{action:<width$}");
    if !color {
        return cell;
    }
    let code = match action.split('/').next().unwrap_or(action) {
        "create" => "32",
        "rebuild" | "update" => "33",
        "held" => "35",
        "blocked" | "unmanaged" => "31",
        "fresh" | "skipped" => "2",
        _ => return cell,
    };
    format!("\x1b[{code}m{cell}\x1b[0m")
}

/// phoenix's own diagnostics go to stderr through `tracing`: warnings by default, more
/// with each -v; `RUST_LOG` (an `EnvFilter` directive) wins when set.
fn init_tracing(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("phoenix={level}")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| OnceEach(std::io::stderr()))
        .without_time()
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none())
        .try_init();
}

/// stderr for diagnostics, where a line already written once is not written again: the
/// same warning found by each read of the host (a build reads it more than once) is said
/// once per run.
struct OnceEach(std::io::Stderr);

impl Write for OnceEach {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        static SEEN: std::sync::Mutex<Option<std::collections::HashSet<Vec<u8>>>> =
            std::sync::Mutex::new(None);
        let fresh = SEEN
            .lock()
            .map(|mut seen| {
                seen.get_or_insert_with(Default::default)
                    .insert(buf.to_vec())
            })
            .unwrap_or(true);
        if fresh {
            self.0.write_all(buf)?;
        }
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// An invalid configuration: `validate`'s answer, every other command's error.
fn report_problems(cli: &Cli, problems: &Problems, color: bool) {
    let (e, w) = (problems.errors(), problems.warnings());
    let message = format!(
        "the configuration has {e} error{}{}; nothing was touched",
        plural(e),
        if w > 0 {
            format!(" and {w} warning{}", plural(w))
        } else {
            String::new()
        }
    );
    match (cli.output, &cli.command) {
        (Output::Json, Command::Validate) => print_json(&json!({
            "schema_version": JSON_SCHEMA_VERSION,
            "valid": false,
            "problems": problems.0.iter().map(ProblemJson::from).collect::<Vec<_>>(),
        })),
        (Output::Json, _) => error::report_invalid_config(problems, message),
        (Output::Human, _) => {
            eprint!("{}", problems.render(color));
            eprintln!("error: {message}");
        }
    }
}

pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}

pub fn print_json<T: Serialize>(value: &T) {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let _ = serde_json::to_writer_pretty(&mut out, value);
    let _ = writeln!(out);
    let _ = out.flush();
}

pub(crate) fn open_host(cli: &Cli) -> Result<Box<dyn Host>, Error> {
    match cli.backend {
        Backend::Lxc => {
            let opts =
                crate::host::lxc::LxcOptions::new(&cli.state_dir, &cli.lxc_path, cli.lxc_network);
            crate::host::lxc::LxcHost::open(opts)
                .map(|h| Box::new(h) as Box<dyn Host>)
                .map_err(Error::Backend)
        }
        // Over the REST API from anywhere (`--pve-url`).
        Backend::Pve if cli.api.pve_url.as_deref().is_some_and(|u| !u.is_empty()) => {
            use crate::host::pve::api;
            let opts = api::ApiOptions::new(&cli.api).map_err(Error::Api)?;
            api::host::ApiHost::open(opts, true)
                .map(|h| Box::new(h) as Box<dyn Host>)
                .map_err(Error::Api)
        }
        b => b.open(&cli.state_dir).map_err(Error::Backend),
    }
}

/// Opens the host and checks that the fleet's placement fits it: every `node` (and
/// `default_node`) names a node of its cluster. Before anything is read or changed.
pub(crate) fn open_placed_host(cli: &Cli, fleet: &Fleet) -> Result<Box<dyn Host>, Error> {
    let host = open_host(cli)?;
    let placed = fleet.nodes.values().any(|n| n.spec.node.is_some())
        || fleet.hypervisor.default_node.is_some();
    if !placed {
        return Ok(host);
    }
    let cluster = host.cluster().map_err(Error::ReadHost)?;
    let names: Option<Vec<&str>> = cluster.as_ref().map(|c| c.names());
    let problems = crate::fleet::rules::placement(
        fleet,
        names.as_deref(),
        &format!("the {} backend", host.name()),
    );
    if problems.is_empty() {
        Ok(host)
    } else {
        let mut all = crate::fleet::diag::Problems(problems);
        all.sort();
        Err(Error::InvalidConfig(Box::new(all)))
    }
}

/// Opens (making it if needed) the state directory.
pub(crate) fn open_state(cli: &Cli) -> Result<StateDir, Error> {
    StateDir::open(&cli.state_dir).map_err(Error::StateDir)
}

/// Takes the run locks (one `build` or `gc` at a time): the state directory's, and the
/// host's own where it has one (so that two runs with different state directories do
/// not build on one host at once).
pub(crate) fn lock_host(
    state: &StateDir,
    host: &dyn Host,
    command: &str,
    wait: bool,
) -> Result<Vec<HostLock>, Error> {
    let held = |lock: PathBuf, what: String| {
        move |e| match e {
            LockError::Held(holder) => Error::Locked {
                holder: holder.map_or("another phoenix process".to_string(), |mut h| {
                    // The state directory's own lock names it already.
                    if h.state_dir.as_ref() == Some(&state.root) && what.starts_with("state") {
                        h.state_dir = None;
                    }
                    h.describe()
                }),
                what,
                lock,
            },
            LockError::Io(message) => Error::LockIo { lock, message },
        }
    };
    let mut locks = Vec::new();
    let path = state.root.join("phoenix.lock");
    let what = format!("state directory {}", state.root.display());
    locks.push(HostLock::acquire(state, command, wait).map_err(held(path, what))?);
    if let Some(path) = host.lock_path() {
        let what = format!("{} host {}", host.name(), host.describe());
        locks.push(
            HostLock::acquire_host(&path, state, command, wait)
                .map_err(held(path.clone(), what))?,
        );
    }
    Ok(locks)
}

/// Every CTID named on the command line (targets and `--replace`) must be in the config:
/// exit 7 names each one that is not.
pub(crate) fn check_targets(fleet: &Fleet, targets: &[Ctid]) -> Result<(), Error> {
    let ctids: Vec<Ctid> = targets
        .iter()
        .copied()
        .filter(|c| fleet.node(*c).is_none())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    if ctids.is_empty() {
        return Ok(());
    }
    Err(Error::NotInConfig {
        ctids,
        file: fleet.lxc_path().to_path_buf(),
        defined: fleet
            .nodes
            .keys()
            .map(Ctid::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Reads the host and decides the plan with no consent given.
pub(crate) fn read_plan(
    cli: &Cli,
    fleet: &Fleet,
    host: &dyn Host,
) -> Result<crate::build::Planned, Error> {
    let state = StateDir {
        root: cli.state_dir.clone(),
    };
    crate::build::make_plan(fleet, host, &state, &Consent::default(), &[], cli.skip_gpu)
        .map_err(Error::ReadHost)
}

/// Reads the host and the state for `why` and `generations`.
pub(crate) fn read_for_history(
    cli: &Cli,
    fleet: &Fleet,
) -> Result<(Box<dyn Host>, crate::build::Planned, StateDir), Error> {
    let host = open_placed_host(cli, fleet)?;
    let planned = read_plan(cli, fleet, host.as_ref())?;
    let state = StateDir {
        root: cli.state_dir.clone(),
    };
    Ok((host, planned, state))
}

pub(crate) fn node_label(fleet: &Fleet, ctid: Ctid) -> String {
    format!("{ctid} {}", fleet.node(ctid).map_or("", |n| n.name()))
}
