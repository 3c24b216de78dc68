//! Stress: the real binary on the sim backend, fed mutated configs, odd hook files and
//! corrupt state, killed and signalled at random moments, and run concurrently. Every
//! run is judged the same way: it ends within its time limit, with one of phoenix's exit
//! codes (never 101, a panic, or a signal of its own), says nothing of a secret, and
//! leaves no hook process and no lock behind.
//!
//! `cargo test --test stress` runs a quick round (as CI does); `PHOENIX_STRESS=full` the
//! full one (about 2,600 configs, 70 kills and signals; `-- --nocapture` prints the
//! tally); `PHOENIX_STRESS_SEED=<n>` another seed. A finding names its seed and case.

mod common;

use std::fs;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::Fixture;
use serde_json::{json, Value};

/// A secret put in every config: it must never be printed.
const SECRET: &str = "stress-secret-9f3c1a7e";

fn full() -> bool {
    std::env::var("PHOENIX_STRESS").is_ok_and(|v| v == "full")
}

fn seed() -> u64 {
    std::env::var("PHOENIX_STRESS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234)
}

/// xorshift64*: enough randomness to vary cases, and reproducible from the seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// How a run ended.
struct Ended {
    code: Option<i32>,
    signal: Option<i32>,
    stdout: String,
    stderr: String,
    timed_out: bool,
}

fn command(f: &Fixture, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut all = vec![("PHOENIX_BACKEND", "sim"), ("PHOENIX_RETRY_DELAY_MS", "5")];
    all.extend_from_slice(env);
    let mut cmd = f.command(args, &all);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Waits for a child with a time limit (killed past it), reading its output meanwhile.
fn finish(mut child: Child, limit: Duration) -> Ended {
    use std::os::unix::process::ExitStatusExt;
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let o = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = out.read_to_end(&mut s);
        s
    });
    let e = std::thread::spawn(move || {
        let mut s = Vec::new();
        let _ = err.read_to_end(&mut s);
        s
    });
    let deadline = Instant::now() + limit;
    let mut timed_out = false;
    let status = loop {
        if let Some(st) = child.try_wait().unwrap() {
            break st;
        }
        if Instant::now() > deadline {
            timed_out = true;
            let _ = child.kill();
            break child.wait().unwrap();
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Ended {
        code: status.code(),
        signal: status.signal(),
        stdout: String::from_utf8_lossy(&o.join().unwrap_or_default()).into_owned(),
        stderr: String::from_utf8_lossy(&e.join().unwrap_or_default()).into_owned(),
        timed_out,
    }
}

fn run(f: &Fixture, args: &[&str], env: &[(&str, &str)], limit: Duration) -> Ended {
    finish(command(f, args, env).spawn().unwrap(), limit)
}

/// What is wrong with a run that was not signalled by the test: `None` if nothing.
fn judge(e: &Ended, allowed: &[i32]) -> Option<String> {
    if e.timed_out {
        return Some("did not end within its time limit".into());
    }
    if e.stderr.contains("panicked at") || e.code == Some(101) {
        return Some(format!("panicked: {}", tail(&e.stderr)));
    }
    if let Some(sig) = e.signal {
        return Some(format!("died of signal {sig}: {}", tail(&e.stderr)));
    }
    if !e.code.is_some_and(|c| allowed.contains(&c)) {
        return Some(format!(
            "exit {:?} (expected one of {allowed:?}): {}",
            e.code,
            tail(&e.stderr)
        ));
    }
    if let Some(line) = format!("{}\n{}", e.stdout, e.stderr)
        .lines()
        .find(|l| l.contains(SECRET))
    {
        let shown: String = line.replace(SECRET, "<SECRET>").chars().take(160).collect();
        return Some(format!("printed the secret: {shown}"));
    }
    None
}

fn tail(s: &str) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(3)..].join(" | ")
}

/// Findings of one section, reported together.
struct Tally {
    section: &'static str,
    tried: usize,
    found: Vec<String>,
    started: Instant,
}

impl Tally {
    fn new(section: &'static str) -> Tally {
        Tally {
            section,
            tried: 0,
            found: Vec::new(),
            started: Instant::now(),
        }
    }
    fn check(&mut self, case: &str, problem: Option<String>) {
        if let Some(p) = problem {
            self.found.push(format!("{case}: {p}"));
        }
    }
    fn done(self) {
        eprintln!(
            "stress {}: {} tried, {} found in {:.0?} (seed {})",
            self.section,
            self.tried,
            self.found.len(),
            self.started.elapsed(),
            seed()
        );
        assert!(
            self.found.is_empty(),
            "{} finding(s):\n{}",
            self.found.len(),
            self.found.join("\n")
        );
    }
}

/// Processes still running whose command line holds `marker`.
fn running_with(marker: &str) -> Vec<String> {
    let mut out = Vec::new();
    for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
        let zombie = fs::read_to_string(e.path().join("stat")).is_ok_and(|s| s.contains(") Z "));
        if !zombie
            && String::from_utf8_lossy(&cmdline)
                .replace('\0', " ")
                .contains(marker)
        {
            out.push(name);
        }
    }
    out
}

/// Leftover hook processes (marked by a `sleep <marker>`), after a moment to die.
fn leftovers(marker: &str) -> Option<String> {
    let until = Instant::now() + Duration::from_secs(3);
    loop {
        let left = running_with(&format!("sleep {marker}"));
        if left.is_empty() {
            return None;
        }
        if Instant::now() > until {
            for pid in &left {
                let _ = Command::new("kill").args(["-9", pid]).status();
            }
            return Some(format!("hook processes left running: {left:?}"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn locks(f: &Fixture) -> Option<String> {
    let locked: Vec<String> = f
        .host_state()
        .into_iter()
        .filter(|(_, ct)| !ct["lock"].is_null())
        .map(|(c, ct)| format!("{c}:{}", ct["lock"]))
        .collect();
    (!locked.is_empty()).then(|| format!("CTs left locked: {locked:?}"))
}

// ---------------------------------------------------------------------------------------
// Mutated configs

/// Values that configs must survive anywhere.
fn odd_value(rng: &mut Rng) -> Value {
    let long = "x".repeat(100_000);
    let deep = {
        let mut v = json!(1);
        for _ in 0..200 {
            v = json!([v]);
        }
        v
    };
    let choices = [
        json!(null),
        json!(true),
        json!(-1),
        json!(0),
        json!(1e308),
        json!(18446744073709551615u64),
        json!(4294967296u64),
        json!(""),
        json!(long),
        json!("\u{0}\u{1b}[31m"),
        json!("../../../../etc/shadow"),
        json!("ΩΩ name with spaces\nand a newline"),
        json!([]),
        json!({}),
        json!("900"),
        json!(900),
        deep,
        json!({"nested": {"api_token": SECRET}}),
    ];
    rng.pick(&choices).clone()
}

/// Every path (JSON pointer) in a document.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                let p = format!("{at}/{}", k.replace('~', "~0").replace('/', "~1"));
                out.push(p.clone());
                pointers(v, p, out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                let p = format!("{at}/{i}");
                out.push(p.clone());
                pointers(v, p, out);
            }
        }
        _ => {}
    }
}

fn mutate_json(rng: &mut Rng, doc: &mut Value) -> String {
    let mut ps = Vec::new();
    pointers(doc, String::new(), &mut ps);
    let p = rng.pick(&ps).clone();
    let (parent, key) = p.rsplit_once('/').unwrap();
    match rng.below(5) {
        0 => {
            if let Some(Value::Object(m)) = doc.pointer_mut(parent) {
                m.remove(&key.replace("~1", "/").replace("~0", "~"));
            }
            format!("removed {p}")
        }
        1 => {
            let ctids = [
                "900", "901", "902", "903", "910", "920", "950", "1", "99999",
            ];
            let c = rng.pick(&ctids).to_string();
            if let Some(Value::Object(m)) = doc.pointer_mut("/lxc_configs") {
                let ks: Vec<String> = m.keys().cloned().collect();
                if let Some(block) = ks
                    .get(rng.below(ks.len()))
                    .and_then(|k| m.get_mut(k))
                    .and_then(Value::as_object_mut)
                {
                    block.insert("clone_from_template_ctid".into(), json!(c));
                }
            }
            format!("a clone_from_template_ctid set to {c}")
        }
        _ => {
            let v = odd_value(rng);
            if let Some(slot) = doc.pointer_mut(&p) {
                *slot = v.clone();
            }
            format!("{p} = {}", short(&v))
        }
    }
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 40 {
        format!(
            "{}…({} bytes)",
            &s[..40.min(s.len())].chars().take(30).collect::<String>(),
            s.len()
        )
    } else {
        s
    }
}

fn mutate_bytes(rng: &mut Rng, text: &mut Vec<u8>) -> String {
    let at = rng.below(text.len());
    match rng.below(4) {
        0 => {
            let b = *rng.pick(&[b'{', b'}', b'"', b',', b':', 0u8, 0xff, b'\\', b'\n', b'9']);
            text[at] = b;
            format!("byte {at} = {b:#x}")
        }
        1 => {
            let n = rng.below(64).min(text.len() - at);
            text.drain(at..at + n);
            format!("deleted {n} bytes at {at}")
        }
        2 => {
            text.truncate(at);
            format!("truncated at {at}")
        }
        _ => {
            let options: [&[u8]; 5] = [
                b"\"api_token\": \"stress-secret-9f3c1a7e\", ",
                b"{{{{",
                b"\xef\xbb\xbf",
                b"\"\xc3\x28\"",
                b"\"900\": {}, ",
            ];
            let junk = rng.pick(&options).to_vec();
            text.splice(at..at, junk.iter().copied());
            format!("inserted {:?} at {at}", String::from_utf8_lossy(&junk))
        }
    }
}

#[test]
fn mutated_configs_never_panic_hang_or_print_a_secret() {
    let mut rng = Rng::new(seed());
    let n = if full() { 2600 } else { 120 };
    let f = Fixture::example();
    let base_lxc: Value = f.lxc();
    let base_hv: Value = f.hv();
    let limit = Duration::from_secs(30);
    let mut t = Tally::new("configs");
    for i in 0..n {
        let mut lxc = base_lxc.clone();
        // A secret beside whatever goes wrong.
        lxc["lxc_configs"]["950"]["hf_token"] = json!(SECRET);
        let mut hv = base_hv.clone();
        let mut what = Vec::new();
        for _ in 0..=rng.below(3) {
            if rng.below(4) == 0 {
                what.push(format!("hypervisor: {}", mutate_json(&mut rng, &mut hv)));
            } else {
                what.push(mutate_json(&mut rng, &mut lxc));
            }
        }
        let mut text = match rng.below(3) {
            0 => serde_json::to_vec(&lxc).unwrap(),
            _ => serde_json::to_vec_pretty(&lxc).unwrap(),
        };
        if rng.below(3) == 0 {
            what.push(mutate_bytes(&mut rng, &mut text));
        }
        if rng.below(20) == 0 {
            // A problem far past column 65,535 of one minified line.
            let mut wide = lxc.clone();
            if let Some(block) = wide
                .pointer_mut("/lxc_configs/900")
                .and_then(Value::as_object_mut)
            {
                block.insert("padding".into(), json!("p".repeat(70_000)));
                block.insert("memory_mb".into(), json!("lots"));
                text = serde_json::to_vec(&wide).unwrap();
                what.push("a bad value past column 70,000".into());
            }
        }
        fs::write(f.config_dir.join(common::LXC), &text).unwrap();
        f.write_hv(&hv);
        let case = format!("config {i} ({})", what.join("; "));
        for args in [
            &["validate", "--output", "json"][..],
            &["validate"][..],
            &["plan", "--output", "json"][..],
            &["why", "950"][..],
        ] {
            t.tried += 1;
            let e = run(&f, args, &[], limit);
            let mut problem = judge(&e, &[0, 1, 3, 4, 6, 7]);
            if problem.is_none() && args.contains(&"json") && e.code != Some(0) {
                // A JSON command answers with JSON, even to a bad config.
                let last = e.stdout.lines().last().unwrap_or("");
                if serde_json::from_str::<Value>(&e.stdout).is_err()
                    && serde_json::from_str::<Value>(last).is_err()
                {
                    problem = Some(format!("not JSON: {}", tail(&e.stdout)));
                }
            }
            t.check(&format!("{case}: {}", args.join(" ")), problem);
        }
    }
    t.done();
}

// ---------------------------------------------------------------------------------------
// Odd hook files

/// One odd hook for 910: what to put there, and the exit codes phoenix may answer with.
struct OddHook {
    name: &'static str,
    make: fn(&Fixture, &Path),
    codes: &'static [i32],
}

fn script(body: &str) -> impl Fn(&Fixture, &Path) + '_ {
    move |_f, p| {
        fs::write(p, body).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }
}

fn odd_hooks() -> Vec<OddHook> {
    fn link(target: &'static str) -> impl Fn(&Fixture, &Path) {
        move |_f, p| std::os::unix::fs::symlink(target, p).unwrap()
    }
    macro_rules! hook {
        ($name:expr, $codes:expr, |$f:ident, $p:ident| $body:expr) => {
            OddHook {
                name: $name,
                make: |$f, $p| {
                    let _ = &$f;
                    $body
                },
                codes: $codes,
            }
        };
        ($name:expr, $codes:expr, $text:expr) => {
            OddHook {
                name: $name,
                make: |f, p| script($text)(f, p),
                codes: $codes,
            }
        };
    }
    vec![
        hook!("a FIFO", &[3], |f, p| {
            assert!(Command::new("mkfifo").arg(p).status().unwrap().success())
        }),
        hook!("a link to /dev/zero", &[3], |f, p| link("/dev/zero")(f, p)),
        hook!("a link to /dev/null", &[3], |f, p| link("/dev/null")(f, p)),
        hook!("a directory", &[3], |f, p| fs::create_dir(p).unwrap()),
        hook!(
            "a dangling link",
            &[3],
            |f, p| link("/nonexistent/hook.sh")(f, p)
        ),
        hook!("a link to itself", &[3], |f, p| std::os::unix::fs::symlink(
            p.file_name().unwrap(),
            p
        )
        .unwrap()),
        hook!("17 MiB", &[3], |f, p| {
            fs::write(p, vec![b'#'; 17 * 1024 * 1024]).unwrap();
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        }),
        hook!("empty", &[0, 1], ""),
        hook!("without #!", &[1], "echo no shebang\n"),
        hook!("CRLF", &[1], "#!/bin/sh\r\necho hi\r\n"),
        hook!("a missing interpreter", &[1], "#!/no/such/sh\necho hi\n"),
        hook!("not executable", &[1, 3], |f, p| {
            fs::write(p, "#!/bin/sh\nexit 0\n").unwrap();
            fs::set_permissions(p, fs::Permissions::from_mode(0o644)).unwrap();
        }),
        hook!("world-writable", &[1, 3], |f, p| {
            fs::write(p, "#!/bin/sh\nexit 0\n").unwrap();
            fs::set_permissions(p, fs::Permissions::from_mode(0o777)).unwrap();
        }),
        hook!("binary garbage", &[1], |f, p| {
            fs::write(p, [0x7f, b'E', b'L', b'F', 0, 1, 2, 3, 0xff, 0xfe]).unwrap();
            fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
        }),
        hook!(
            "20 MB of output",
            &[0],
            "#!/bin/sh\nhead -c 20000000 /dev/zero | tr '\\0' 'a'\n"
        ),
        hook!(
            "invalid UTF-8 and the secret in its output",
            &[0],
            "#!/bin/sh\nprintf '\\377\\376 %s\\n' \"$PHOENIX_CONFIG_BLOCK\"\n"
        ),
        hook!(
            "closing its output",
            &[0],
            "#!/bin/sh\nexec >&- 2>&-\nexit 0\n"
        ),
        hook!("reading stdin", &[0], "#!/bin/sh\ncat\n"),
        hook!(
            "a setsid daemon",
            &[0],
            "#!/bin/sh\nsetsid sleep 31338 </dev/null >/dev/null 2>&1 &\nexit 0\n"
        ),
        hook!(
            "a child holding its output",
            &[0],
            "#!/bin/sh\nsleep 31338 &\nexit 0\n"
        ),
        hook!("past --hook-timeout", &[1], "#!/bin/sh\nsleep 31338\n"),
        hook!("dying of SIGSEGV", &[1], "#!/bin/sh\nkill -SEGV $$\n"),
        hook!(
            "removing phoenix.lock",
            &[0],
            "#!/bin/sh\nrm -f \"$PHOENIX_STATE_DIR/phoenix.lock\"\nexit 0\n"
        ),
        hook!(
            "destroying its own CT",
            &[1],
            "#!/bin/sh\npct stop $1\npct destroy $1\nexit 0\n"
        ),
        hook!("a link to a good script", &[0], |f, p| {
            let real = f.tmp.path().join("real-hook.sh");
            fs::write(&real, "#!/bin/sh\nexit 0\n").unwrap();
            fs::set_permissions(&real, fs::Permissions::from_mode(0o755)).unwrap();
            std::os::unix::fs::symlink(&real, p).unwrap();
        }),
        hook!(
            "killing phoenix",
            &[],
            "#!/bin/sh\nkill -9 $PPID\nsleep 31338\n"
        ),
    ]
}

#[test]
fn odd_hook_files_each_get_a_clear_answer_and_leave_nothing_running() {
    let mut t = Tally::new("hook files");
    for h in odd_hooks() {
        let f = Fixture::example();
        let p = f.hook_path(910);
        fs::remove_file(&p).unwrap();
        (h.make)(&f, &p);
        t.tried += 1;
        let e = run(
            &f,
            &["build", "--output", "json", "--hook-timeout", "2"],
            &[],
            Duration::from_secs(120),
        );
        let case = format!("hook 910 {}", h.name);
        if h.codes.is_empty() {
            // It killed phoenix: the next run must recover.
            t.check(
                &case,
                (e.signal != Some(9)).then(|| format!("not killed: {:?}", e.code)),
            );
            fs::remove_file(&p).unwrap();
            script("#!/bin/sh\nexit 0\n")(&f, &p);
            let again = run(&f, &["build"], &[], Duration::from_secs(120));
            t.check(&format!("{case}, the next run"), judge(&again, &[0]));
        } else {
            t.check(&case, judge(&e, h.codes));
            if e.code == Some(3) {
                // A hook that cannot be read is named.
                let told = e.stdout.contains("phoenix_hypervisor_setup_910.sh")
                    || e.stderr.contains("phoenix_hypervisor_setup_910.sh");
                t.check(
                    &case,
                    (!told).then(|| "the answer does not name the hook".into()),
                );
            }
            if e.code == Some(1) {
                // A failed node says why.
                let said = e.stdout.lines().any(|l| {
                    serde_json::from_str::<Value>(l).is_ok_and(|v| {
                        v["event"] == "node_finished"
                            && v["ctid"] == 910
                            && v["error"].as_str().is_some_and(|m| !m.is_empty())
                    })
                });
                t.check(&case, (!said).then(|| "910 failed without a reason".into()));
            }
        }
        t.check(&case, leftovers("31338"));
        if f.state_dir.join("sim").exists() {
            t.check(&case, locks(&f));
        }
    }
    t.done();
}

// ---------------------------------------------------------------------------------------
// Corrupt state

/// One corruption of a built fleet's state directory or host.
type Corrupt = (&'static str, fn(&Fixture));

fn first_file(dir: &Path) -> std::path::PathBuf {
    let mut files: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files.into_iter().next().expect("a file")
}

fn replace_with(p: &Path, kind: &str) {
    let _ = fs::remove_file(p);
    let _ = fs::remove_dir_all(p);
    match kind {
        "garbage" => fs::write(p, b"\x00\xffnot what it was{{{").unwrap(),
        "empty" => fs::write(p, b"").unwrap(),
        "dir" => fs::create_dir_all(p).unwrap(),
        "fifo" => assert!(Command::new("mkfifo").arg(p).status().unwrap().success()),
        "zero" => std::os::unix::fs::symlink("/dev/zero", p).unwrap(),
        "loop" => std::os::unix::fs::symlink(p.file_name().unwrap(), p).unwrap(),
        _ => unreachable!(),
    }
}

fn corruptions() -> Vec<Corrupt> {
    macro_rules! each {
        ($what:expr, $path:expr) => {{
            let all: [Corrupt; 6] = [
                (concat!($what, " garbage"), |f| {
                    replace_with(&($path)(f), "garbage")
                }),
                (concat!($what, " empty"), |f| {
                    replace_with(&($path)(f), "empty")
                }),
                (concat!($what, " a directory"), |f| {
                    replace_with(&($path)(f), "dir")
                }),
                (concat!($what, " a FIFO"), |f| {
                    replace_with(&($path)(f), "fifo")
                }),
                (concat!($what, " a link to /dev/zero"), |f| {
                    replace_with(&($path)(f), "zero")
                }),
                (concat!($what, " a looping link"), |f| {
                    replace_with(&($path)(f), "loop")
                }),
            ];
            all
        }};
    }
    let mut out: Vec<Corrupt> = Vec::new();
    out.extend(each!("a manifest", |f: &Fixture| first_file(
        &f.state_dir.join("manifests")
    )));
    out.extend(each!("a blob", |f: &Fixture| first_file(
        &f.state_dir.join("blobs")
    )));
    out.extend(each!("the secrets key", |f: &Fixture| f
        .state_dir
        .join("secrets/key")));
    out.extend(each!("950's secrets record", |f: &Fixture| f
        .state_dir
        .join("secrets/950.json")));
    out.extend(each!("phoenix.lock", |f: &Fixture| f
        .state_dir
        .join("phoenix.lock")));
    out.extend(each!("a CT's conf", |f: &Fixture| f
        .state_dir
        .join("sim/etc/pve/nodes/sim/lxc/950.conf")));
    out.push(("the logs of 950 a file", |f| {
        replace_with(&f.state_dir.join("logs/950"), "garbage")
    }));
    out.push(("a hook record naming pid 1", |f| {
        let stat = fs::read_to_string("/proc/1/stat").unwrap();
        let start = stat[stat.rfind(')').unwrap() + 1..]
            .split_whitespace()
            .nth(19)
            .unwrap()
            .to_string();
        let dir = f.state_dir.join("hooks-running");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("950"), format!("1 {start} /sys/fs/cgroup\n")).unwrap();
    }));
    out.push((
        "a hook record naming a directory outside the hierarchy",
        |f| {
            let victim = f.tmp.path().join("phoenix-hook.950.1");
            fs::create_dir_all(victim.join("keep")).unwrap();
            let dir = f.state_dir.join("hooks-running");
            fs::create_dir_all(&dir).unwrap();
            fs::write(dir.join("950"), format!("999999 1 {}\n", victim.display())).unwrap();
        },
    ));
    out.push(("a garbage hook record", |f| {
        let dir = f.state_dir.join("hooks-running");
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("910"), b"\xff\xfe garbage").unwrap();
    }));
    out
}

#[test]
fn corrupt_state_is_reported_and_never_believed() {
    let mut t = Tally::new("state corruptions");
    for (name, corrupt) in corruptions() {
        let f = Fixture::example();
        f.edit_block(950, |b| {
            b.insert("hf_token".into(), json!(SECRET));
        });
        assert_eq!(
            run(&f, &["build"], &[], Duration::from_secs(120)).code,
            Some(0)
        );
        // A second generation, so manifests and blobs have history.
        let p = f.hook_path(950);
        let text = fs::read_to_string(&p).unwrap();
        fs::write(&p, format!("{text}\n# edited\n")).unwrap();
        assert_eq!(
            run(&f, &["build"], &[], Duration::from_secs(120)).code,
            Some(0)
        );
        corrupt(&f);
        for args in [
            &["status"][..],
            &["plan", "--output", "json"][..],
            &["why", "950", "-v"][..],
            &["why"][..],
            &["generations", "950"][..],
            &["log", "950"][..],
            &["build"][..],
            &["gc", "--keep", "0"][..],
            &["build"][..],
        ] {
            t.tried += 1;
            let started = Instant::now();
            let e = run(&f, args, &[], Duration::from_secs(60));
            let case = format!("{name}: {}", args.join(" "));
            if started.elapsed() > Duration::from_secs(10) {
                t.check(&case, Some(format!("took {:?}", started.elapsed())));
            }
            t.check(&case, judge(&e, &[0, 1, 4, 6, 7]));
        }
        // The corrupt record of another directory was not touched.
        let victim = f.tmp.path().join("phoenix-hook.950.1/keep");
        if name.contains("outside") {
            t.check(
                name,
                (!victim.exists()).then(|| "a directory outside the hierarchy was touched".into()),
            );
        }
        t.check(name, locks(&f));
    }
    t.done();
}

// ---------------------------------------------------------------------------------------
// Kills and signals at random moments, and concurrent runs

/// Hooks that take a random while and leave a marked process behind in the background.
fn slow_hooks(f: &Fixture, rng: &mut Rng) {
    for ctid in [900, 902, 910, 920, 950] {
        let ms = rng.below(300);
        let setsid = if rng.below(2) == 0 { "setsid " } else { "" };
        f.write_hook(
            ctid,
            &format!(
                "#!/bin/sh\n{setsid}sleep 31337 </dev/null >/dev/null 2>&1 &\nsleep 0.{ms:03}\npct exec {ctid} -- true\nexit 0\n"
            ),
        );
    }
}

#[test]
fn kills_and_signals_at_random_moments_leave_a_host_the_next_run_completes() {
    let mut rng = Rng::new(seed() ^ 0xabcd);
    let n = if full() { 70 } else { 8 };
    let mut t = Tally::new("kills and signals");
    let f = Fixture::example();
    let latency = [("PHOENIX_SIM_LATENCY", "*=3,clone=40,snapshot=20")];
    for i in 0..n {
        slow_hooks(&f, &mut rng);
        // Some rounds change the base template: everything rebuilds.
        if rng.below(3) == 0 {
            f.edit_block(900, |b| {
                b.insert("round".into(), json!(i));
            });
        }
        let child = command(
            &f,
            &["build", "--output", "json", "-j", "3", "--replace-all"],
            &latency,
        )
        .spawn()
        .unwrap();
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        std::thread::sleep(Duration::from_millis(rng.below(1500) as u64));
        let how = *rng.pick(&["KILL", "INT", "TERM", "INT+TERM", "INT,INT"]);
        let sigs: Vec<i32> = match how {
            "KILL" => vec![libc::SIGKILL],
            "INT" => vec![libc::SIGINT],
            "TERM" => vec![libc::SIGTERM],
            "INT+TERM" => vec![libc::SIGINT, libc::SIGTERM],
            _ => vec![libc::SIGINT, libc::SIGINT],
        };
        for (k, s) in sigs.iter().enumerate() {
            if k > 0 && how == "INT,INT" {
                std::thread::sleep(Duration::from_millis(200));
            }
            // SAFETY: kill(2) on the child's pid.
            unsafe { libc::kill(pid, *s) };
        }
        let e = finish(child, Duration::from_secs(60));
        t.tried += 1;
        let case = format!("round {i}: {how}");
        let problem = if e.timed_out {
            Some("did not stop".to_string())
        } else if how == "KILL" {
            None
        } else {
            let ok_codes = [0, 130, 143];
            // Before the run starts (config read, lock taken), a signal has its default
            // action: nothing was touched yet, and the shell sees 130/143 all the same.
            let before_run =
                e.signal.is_some_and(|s| s == sigs[0]) && !e.stdout.contains("run_started");
            let code_ok = e.code.is_some_and(|c| ok_codes.contains(&c)) || before_run;
            let last = e.stdout.lines().last().unwrap_or("");
            if !code_ok {
                Some(format!(
                    "exit {:?} / signal {:?}: {}",
                    e.code,
                    e.signal,
                    tail(&e.stderr)
                ))
            } else if e.code == Some(130) && how == "INT" && !last.contains("run_finished") {
                Some(format!("JSON does not end with run_finished: {last}"))
            } else {
                None
            }
        };
        t.check(&case, problem);
        if how != "KILL" {
            t.check(&case, leftovers("31337"));
        }
        // The next run ends what was left, and completes the fleet.
        let again = run(
            &f,
            &["build", "--replace-all"],
            &latency,
            Duration::from_secs(120),
        );
        t.check(&format!("{case}, the next run"), judge(&again, &[0]));
        t.check(&format!("{case}, the next run"), leftovers("31337"));
        t.check(&format!("{case}, the next run"), locks(&f));
        let plan = run(
            &f,
            &["plan", "--output", "json"],
            &[],
            Duration::from_secs(30),
        );
        let fresh = serde_json::from_str::<Value>(&plan.stdout)
            .ok()
            .is_some_and(|p| p["counts"] == json!({"fresh": 7}));
        t.check(
            &format!("{case}, the next run"),
            (!fresh).then(|| format!("not all fresh: {}", tail(&plan.stdout))),
        );
    }
    t.done();
}

#[test]
fn concurrent_runs_take_turns_and_agree() {
    let mut rng = Rng::new(seed() ^ 0x77);
    let rounds = if full() { 10 } else { 2 };
    let mut t = Tally::new("concurrent runs");
    let f = Fixture::example();
    for r in 0..rounds {
        slow_hooks(&f, &mut rng);
        f.edit_block(902, |b| {
            b.insert("round".into(), json!(r));
        });
        let wait = r % 2 == 1;
        let mut kids = Vec::new();
        for k in 0..5 {
            let mut args = if k == 4 {
                vec!["gc"]
            } else {
                vec!["build", "--replace-all"]
            };
            if wait {
                args.push("--wait");
            }
            kids.push(command(&f, &args, &[]).spawn().unwrap());
        }
        let ends: Vec<Ended> = kids
            .into_iter()
            .map(|c| finish(c, Duration::from_secs(180)))
            .collect();
        for (k, e) in ends.iter().enumerate() {
            t.tried += 1;
            let allowed: &[i32] = if wait { &[0] } else { &[0, 5] };
            t.check(
                &format!("round {r} (wait {wait}) run {k}"),
                judge(e, allowed),
            );
        }
        // One of them at least held the lock (the gc may have been first).
        let done = ends.iter().filter(|e| e.code == Some(0)).count();
        t.check(
            &format!("round {r}"),
            (done == 0).then(|| "no run got the lock".into()),
        );
        let again = run(
            &f,
            &["build", "--replace-all"],
            &[],
            Duration::from_secs(120),
        );
        t.check(&format!("round {r}, after"), judge(&again, &[0]));
        t.check(&format!("round {r}, after"), leftovers("31337"));
        t.check(&format!("round {r}, after"), locks(&f));
    }
    t.done();
}
