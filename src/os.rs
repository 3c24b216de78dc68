//! What phoenix needs from the operating system beyond `std`: the wall clock in the forms
//! it prints, files replaced atomically, and files read only when they are regular files
//! of a sane size. A leaf: imports nothing from phoenix, so
//! every layer (the host models included) may use it.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// A command for a host tool (`pct`, `lxc-*`, `btrfs`, `cp`, `debootstrap`...), in a
/// process group of its own: a terminal's Ctrl-C signals its whole foreground group, and
/// must not kill a host operation half way. phoenix lets it finish, then stops.
pub fn host_command(program: impl AsRef<std::ffi::OsStr>) -> std::process::Command {
    let mut cmd = std::process::Command::new(program);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd
}

/// The first file named `name` in a directory of `PATH`.
pub fn find_on_path(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// Why a file phoenix was asked to read cannot be read, in words for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileError {
    /// What is wrong (`is a named pipe (FIFO), not a file`), without the path.
    pub message: String,
    /// What to do about it.
    pub help: String,
    pub kind: FileErrorKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileErrorKind {
    /// Nothing is there, not even a dangling link.
    Missing,
    /// Over the size limit.
    TooLarge,
    /// Not a regular file: a directory, FIFO, device, socket, dangling or looping link.
    NotAFile,
    /// The read itself failed (permissions, I/O).
    Unreadable,
}

impl FileError {
    fn new(kind: FileErrorKind, message: impl Into<String>, help: &str) -> FileError {
        FileError {
            message: message.into(),
            help: help.to_string(),
            kind,
        }
    }
}

/// [`read_regular`] where a missing file is an answer (`None`), not an error; any other
/// refusal is one line naming the file.
pub fn read_if_any(path: &Path, max: u64) -> Result<Option<Vec<u8>>, String> {
    match read_regular(path, max) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind == FileErrorKind::Missing => Ok(None),
        Err(e) => Err(format!("{}: {}", path.display(), e.message)),
    }
}

/// Reads a regular file of at most `max` bytes. A FIFO, a device, a socket, a directory,
/// a dangling or looping link and a file over `max` are each refused with their own words,
/// before anything is read: nothing blocks and nothing is read without end.
pub fn read_regular(path: &Path, max: u64) -> Result<Vec<u8>, FileError> {
    use std::io::Read;
    use std::os::unix::fs::FileTypeExt;
    const ELOOP: i32 = 40;
    let meta = match fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(match fs::read_link(path) {
                Ok(target) => FileError::new(
                    FileErrorKind::NotAFile,
                    format!("is a link to {}, which does not exist", target.display()),
                    "fix the link or replace it with the file",
                ),
                Err(_) => FileError::new(
                    FileErrorKind::Missing,
                    "does not exist",
                    "create it, or point phoenix at the right directory",
                ),
            })
        }
        Err(e) if e.raw_os_error() == Some(ELOOP) => {
            return Err(FileError::new(
                FileErrorKind::NotAFile,
                "is a link that loops back on itself",
                "replace the links with the file itself",
            ))
        }
        Err(e) => {
            return Err(FileError::new(
                FileErrorKind::Unreadable,
                format!("cannot be read: {e}"),
                "check the file's permissions",
            ))
        }
    };
    let kind = meta.file_type();
    // A link is called a link: "is a directory" for a link to one would send the reader
    // looking for a directory that is not there.
    let link = fs::symlink_metadata(path)
        .is_ok_and(|m| m.file_type().is_symlink())
        .then(|| fs::read_link(path).ok())
        .flatten();
    let not_a_file = |what: &str| {
        FileError::new(
            FileErrorKind::NotAFile,
            match &link {
                Some(target) => format!(
                    "is a link to {}, which is {what}, not a regular file",
                    target.display()
                ),
                None => format!("is {what}, not a regular file"),
            },
            "phoenix reads only regular files: put the file itself there",
        )
    };
    if kind.is_dir() {
        return Err(not_a_file("a directory"));
    } else if kind.is_fifo() {
        return Err(not_a_file("a named pipe (FIFO)"));
    } else if kind.is_char_device() {
        return Err(not_a_file("a character device"));
    } else if kind.is_block_device() {
        return Err(not_a_file("a block device"));
    } else if kind.is_socket() {
        return Err(not_a_file("a socket"));
    }
    if meta.len() > max {
        return Err(FileError::new(
            FileErrorKind::TooLarge,
            format!(
                "is {:.1} MiB; phoenix reads such files up to {} MiB",
                meta.len() as f64 / 1048576.0,
                max / 1048576
            ),
            "is this the right file?",
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    File::open(path)
        .and_then(|f| f.take(max + 1).read_to_end(&mut bytes))
        .map_err(|e| {
            FileError::new(
                FileErrorKind::Unreadable,
                format!("cannot be read: {e}"),
                "check the file's permissions",
            )
        })?;
    if bytes.len() as u64 > max {
        return Err(FileError::new(
            FileErrorKind::TooLarge,
            format!("grew past {} MiB while it was read", max / 1048576),
            "is something writing it?",
        ));
    }
    Ok(bytes)
}

/// The CPUs of the machine phoenix runs on (online ones).
pub fn local_cpus() -> Option<u64> {
    // SAFETY: sysconf(3) has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u64::try_from(n).ok().filter(|&n| n > 0)
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DD HH:MM:SS` (UTC) of seconds since the epoch.
/// A run's id: its start in UTC, compact so that ids sort by time, and the process id
/// (`20261123T103045Z-4242`).
pub fn run_id(t: u64, pid: u32) -> String {
    let stamp: String = utc(t)
        .chars()
        .filter_map(|c| match c {
            '-' | ':' => None,
            ' ' => Some('T'),
            c => Some(c),
        })
        .collect();
    format!("{stamp}Z-{pid}")
}

pub fn utc(t: u64) -> String {
    let days = (t / 86400) as i64;
    let (h, m, s) = ((t % 86400) / 3600, (t % 3600) / 60, t % 60);
    // Days to a civil date (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{m:02}:{s:02}")
}

/// RFC 3339 (UTC) of seconds since the epoch, `2026-11-23T12:38:18Z`: how JSON documents
/// carry times.
pub fn rfc3339(t: u64) -> String {
    format!("{}Z", utc(t).replacen(' ', "T", 1))
}

/// Seconds since the epoch of what [`rfc3339`] writes; `None` for anything else.
pub fn parse_rfc3339(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let shape = b.len() == 20
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'Z',
            _ => c.is_ascii_digit(),
        });
    if !shape {
        return None;
    }
    let n = |r: std::ops::Range<usize>| text[r].parse::<i64>().ok();
    let (y, mo, d) = (n(0..4)?, n(5..7)?, n(8..10)?);
    let (h, mi, s) = (n(11..13)?, n(14..16)?, n(17..19)?);
    // A civil date to days (Howard Hinnant's algorithm, the inverse of `utc`'s).
    let yy = if mo <= 2 { y - 1 } else { y };
    let era = yy.div_euclid(400);
    let yoe = yy - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + d - 1;
    let days = era * 146_097 + yoe * 365 + yoe / 4 - yoe / 100 + doy - 719_468;
    let t = u64::try_from(days * 86400 + h * 3600 + mi * 60 + s).ok()?;
    // Out-of-range fields (month 13, February 30, hour 24) do not survive the round trip.
    (rfc3339(t) == text).then_some(t)
}

/// Serde for a time kept as seconds since the epoch and written as RFC 3339:
/// `#[serde(with = "crate::os::rfc3339_secs")]`.
pub mod rfc3339_secs {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &u64, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_rfc3339(&text).ok_or_else(|| {
            serde::de::Error::custom(format!("`{text}` is not an RFC 3339 UTC time"))
        })
    }
}

/// [`rfc3339_secs`] for an optional time.
pub mod rfc3339_secs_opt {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(t: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&super::rfc3339(*t)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|text| {
                super::parse_rfc3339(&text).ok_or_else(|| {
                    serde::de::Error::custom(format!("`{text}` is not an RFC 3339 UTC time"))
                })
            })
            .transpose()
    }
}

/// A short age: `42s`, `5m`, `3h`, `2d`.
pub fn age(s: u64) -> String {
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// `fs::create_dir_all`, with an error that says which part of the path is in the way
/// when one is not a directory (where the kernel says only `File exists` or `Not a
/// directory`).
pub fn create_dir_all(dir: &Path) -> std::io::Result<()> {
    match fs::create_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(in_the_way(dir).unwrap_or(e)),
    }
}

/// The first part of `dir` (from the root down) that exists and is not a directory, as an
/// error naming it and what it is.
pub fn in_the_way(dir: &Path) -> Option<std::io::Error> {
    use std::os::unix::fs::FileTypeExt;
    let mut parts: Vec<&Path> = dir.ancestors().collect();
    parts.reverse();
    for part in parts {
        let Ok(meta) = fs::symlink_metadata(part) else {
            return None;
        };
        let t = meta.file_type();
        let what = if t.is_symlink() {
            match fs::metadata(part) {
                Ok(m) if m.is_dir() => continue,
                Ok(_) => format!(
                    "a link to {}, which is not a directory",
                    fs::read_link(part).map_or("?".into(), |t| t.display().to_string())
                ),
                Err(_) => "a link to nothing".to_string(),
            }
        } else if t.is_dir() {
            continue;
        } else if t.is_fifo() {
            "a named pipe (FIFO)".to_string()
        } else if t.is_file() {
            "a file".to_string()
        } else {
            "a device or socket".to_string()
        };
        return Some(std::io::Error::other(format!(
            "{} is {what}, not a directory: move it aside (phoenix makes the directory)",
            part.display()
        )));
    }
    None
}

/// Whether files can be made in `dir` (made first if missing), tried by making and
/// removing one: the only test that sees a read-only mount, a full disk or an immutable
/// directory as the write itself would. `Err` says why not, naming the path.
pub fn probe_writable(dir: &Path) -> Result<(), String> {
    create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let probe = dir.join(format!(".phoenix-probe.{}", std::process::id()));
    let made = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(&probe)
        .and_then(|mut f| f.write_all(b"probe"));
    let _ = fs::remove_file(&probe);
    made.map_err(|e| format!("cannot write in {}: {e}", dir.display()))
}

/// A short, printable excerpt of untrusted text: control characters and NULs escaped
/// (`\0`, `\x1b`), a run of replacement characters (bytes that were not UTF-8) said once
/// with its length, and at most `max` characters, cut with `…`.
pub fn excerpt(text: &str, max: usize) -> String {
    let mut out = String::new();
    let mut shown = 0;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if shown >= max {
            out.push('…');
            break;
        }
        match c {
            '\u{fffd}' => {
                let mut n = 1;
                while chars.peek() == Some(&'\u{fffd}') {
                    chars.next();
                    n += 1;
                }
                out.push_str(&format!("<{n} bytes not UTF-8>"));
            }
            '\0' => out.push_str("\\0"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
        shown += 1;
    }
    out
}

/// Writes a file atomically: readers see the old content or the new, never a part. Safe
/// to call from many threads for the same path (each writes its own temporary file).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, 0o666)
}

/// [`write_atomic`] for a file only its owner may read or write (0600).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    write_atomic_mode(path, bytes, 0o600)
}

fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if let Some(dir) = path.parent() {
        create_dir_all(dir)?;
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}.{n}", std::process::id()));
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(mode)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(bytes)?;
            f.sync_all()
        });
    match written.and_then(|()| fs::rename(&tmp, path)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let _ = fs::remove_file(&tmp);
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_regular_files_of_a_sane_size_are_read() {
        use super::read_regular;
        let t = tempfile::tempdir().unwrap();
        let p = |n: &str| t.path().join(n);
        std::fs::write(p("ok"), "hello").unwrap();
        assert_eq!(read_regular(&p("ok"), 10).unwrap(), b"hello");
        assert!(read_regular(&p("ok"), 3)
            .unwrap_err()
            .message
            .contains("up to 0 MiB"));
        assert_eq!(
            read_regular(&p("none"), 10).unwrap_err().kind,
            super::FileErrorKind::Missing
        );
        std::os::unix::fs::symlink(p("gone"), p("dangling")).unwrap();
        let e = read_regular(&p("dangling"), 10).unwrap_err();
        assert!(
            e.message.contains("is a link to") && e.kind == super::FileErrorKind::NotAFile,
            "{e:?}"
        );
        std::os::unix::fs::symlink(p("loop2"), p("loop1")).unwrap();
        std::os::unix::fs::symlink(p("loop1"), p("loop2")).unwrap();
        assert!(read_regular(&p("loop1"), 10)
            .unwrap_err()
            .message
            .contains("loops"));
        std::fs::create_dir(p("dir")).unwrap();
        assert!(read_regular(&p("dir"), 10)
            .unwrap_err()
            .message
            .contains("a directory"));
        let fifo = std::process::Command::new("mkfifo")
            .arg(p("fifo"))
            .status()
            .unwrap();
        assert!(fifo.success());
        assert!(read_regular(&p("fifo"), 10)
            .unwrap_err()
            .message
            .contains("named pipe"));
        std::os::unix::fs::symlink("/dev/zero", p("zero")).unwrap();
        assert!(read_regular(&p("zero"), 10)
            .unwrap_err()
            .message
            .contains("character device"));
    }

    #[test]
    fn run_ids_read_as_utc_and_sort_by_time() {
        assert_eq!(super::run_id(1_795_437_498, 8376), "20261123T123818Z-8376");
        assert!(super::run_id(1_795_437_498, 9) < super::run_id(1_795_437_499, 1));
    }

    #[test]
    fn many_threads_write_one_path_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("blobs/abc");
        std::thread::scope(|s| {
            for i in 0..16u8 {
                let path = &path;
                s.spawn(move || super::write_atomic(path, &[i; 4096]).unwrap());
            }
        });
        let got = std::fs::read(&path).unwrap();
        assert!(got.len() == 4096 && got.iter().all(|&b| b == got[0]));
        assert_eq!(
            std::fs::read_dir(dir.path().join("blobs")).unwrap().count(),
            1,
            "temporary files left"
        );
    }

    #[test]
    fn utc_dates() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(super::utc(1_795_341_202), "2026-11-22 09:53:22");
    }

    #[test]
    fn rfc3339_times_round_trip() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_795_341_202), "2026-11-22T09:53:22Z");
        for t in [0, 951_782_400, 1_795_341_202, 4_102_444_799] {
            assert_eq!(super::parse_rfc3339(&super::rfc3339(t)), Some(t), "{t}");
        }
        for bad in [
            "2026-11-22 09:53:22",
            "2026-02-30T00:00:00Z",
            "2026-13-01T00:00:00Z",
            "2026-11-22T24:00:00Z",
            "2026-11-22T09:53:22+01:00",
        ] {
            assert_eq!(super::parse_rfc3339(bad), None, "{bad}");
        }
    }
}
