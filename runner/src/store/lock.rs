//! The lock that makes one process at a time the recorder of a history, and
//! what a reader can tell from it.
//!
//! The recorder holds an exclusive lock (`flock`) on [`LOCK_FILE`] beside
//! the database for as long as it lives, and writes its process id and
//! start time into that file. The kernel releases the lock when the process
//! dies, even by `kill -9`, but the text stays. So a reader that finds the
//! named process gone (or its id reused by a process started at another
//! time) knows that the runs it left `running` have no owner any more.
//!
//! ## Readers never take the lock
//! `runner history` and `runner show` only read the file: if they took the
//! lock, even for a moment, a runner starting at that moment would find it
//! held and run unrecorded.

use std::fs::File;
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

/// The lock file, beside the history database.
pub const LOCK_FILE: &str = "history.lock";

/// Held while this process records into the history beside it.
#[derive(Debug)]
pub struct RecorderLock {
    _file: File,
}

impl RecorderLock {
    /// Takes the lock of the history database `db`, and writes this process
    /// into it; `Ok(None)` when another process holds it.
    pub fn try_acquire(db: &Path) -> std::io::Result<Option<Self>> {
        let path = lock_path(db);
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(&path)?;
        if file.try_lock().is_err() {
            return Ok(None);
        }
        let pid = std::process::id();
        let owner = match process_start(pid) {
            Some(start) => format!("{pid} {start}\n"),
            None => format!("{pid}\n"),
        };
        // Written over, then cut to its length: cutting an existing file
        // to nothing first frees its block, a journal write at every start.
        file.rewind()?;
        file.write_all(owner.as_bytes())?;
        file.set_len(owner.len() as u64)?;
        file.flush()?;
        Ok(Some(Self { _file: file }))
    }
}

/// The lock file of the history database `db`.
pub fn lock_path(db: &Path) -> PathBuf {
    db.with_file_name(LOCK_FILE)
}

/// Who records into a history, as far as its lock file tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Holder {
    /// The process named in the lock file is running.
    Alive(u32),
    /// The process named in the lock file has ended.
    Gone,
    /// No lock file, or one that names nobody (written by an older runner).
    Unknown,
}

impl Holder {
    /// Reads the lock file of the history database `db`.
    pub fn of(db: &Path) -> Self {
        let mut text = String::new();
        let read = File::open(lock_path(db)).and_then(|mut file| file.read_to_string(&mut text));
        if read.is_err() {
            return Self::Unknown;
        }
        let mut words = text.split_whitespace();
        let Some(pid) = words.next().and_then(|w| w.parse::<u32>().ok()) else {
            return Self::Unknown;
        };
        let start = words.next().and_then(|w| w.parse::<u64>().ok());
        let alive = match start {
            Some(written) => match process_start(pid) {
                Some(now) => now == written,
                None => !has_proc() && crate::process::process_alive(i64::from(pid)),
            },
            None => running(pid),
        };
        if alive { Self::Alive(pid) } else { Self::Gone }
    }

    /// Whether the runner that recorded a run as its process `owner_pid` is
    /// still running it.
    pub fn owns(self, owner_pid: Option<i64>) -> bool {
        match self {
            Self::Alive(pid) => owner_pid == Some(i64::from(pid)),
            Self::Gone => false,
            Self::Unknown => owner_pid
                .and_then(|pid| u32::try_from(pid).ok())
                .is_some_and(running),
        }
    }
}

/// When process `pid` started, in clock ticks after boot (Linux
/// `/proc/PID/stat`); `None` when it is not running (a zombie is not) or
/// there is no `/proc`.
pub(crate) fn process_start(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: read after it.
    let fields: Vec<&str> = stat
        .get(stat.rfind(')')? + 1..)?
        .split_whitespace()
        .collect();
    // Field 3 is the state, field 22 the start time.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(22 - 3)?.parse().ok()
}

/// Whether process `pid` is running (a zombie, dead and waiting to be
/// reaped, is not).
fn running(pid: u32) -> bool {
    if has_proc() {
        process_start(pid).is_some()
    } else {
        crate::process::process_alive(i64::from(pid))
    }
}

fn has_proc() -> bool {
    Path::new("/proc/self/stat").exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holder_of_a_lock_is_alive_while_it_holds_it_and_gone_when_its_process_is() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("history.db");
        assert_eq!(Holder::of(&db), Holder::Unknown);
        let lock = RecorderLock::try_acquire(&db)
            .unwrap()
            .expect("a free lock");
        let me = std::process::id();
        assert_eq!(Holder::of(&db), Holder::Alive(me));
        assert!(Holder::of(&db).owns(Some(i64::from(me))));
        assert!(!Holder::of(&db).owns(Some(i64::from(me) + 1)));
        assert!(
            RecorderLock::try_acquire(&db).unwrap().is_none(),
            "a second holder is refused"
        );
        drop(lock);

        // A process that has ended, named as the holder.
        let mut child = std::process::Command::new("true").spawn().unwrap();
        let pid = child.id();
        child.wait().unwrap();
        std::fs::write(lock_path(&db), format!("{pid} 12345\n")).unwrap();
        assert_eq!(Holder::of(&db), Holder::Gone);
        // This process, with another start time: its id was reused.
        let start = process_start(me).unwrap();
        std::fs::write(lock_path(&db), format!("{me} {}\n", start + 1)).unwrap();
        assert_eq!(Holder::of(&db), Holder::Gone);
        std::fs::write(lock_path(&db), "").unwrap();
        assert_eq!(Holder::of(&db), Holder::Unknown);
    }
}
