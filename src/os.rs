//! What phoenix needs from the operating system beyond `std`: the wall clock in the forms
//! it prints, and files replaced atomically. A leaf: imports nothing from phoenix, so
//! every layer (the host models included) may use it.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// A short age: `42s`, `5m`, `3h`, `2d`.
pub fn age(s: u64) -> String {
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86400),
    }
}

/// Writes a file atomically: readers see the old content or the new, never a part. Safe
/// to call from many threads for the same path (each writes its own temporary file).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}.{n}", std::process::id()));
    let written = File::create(&tmp).and_then(|mut f| {
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
}
