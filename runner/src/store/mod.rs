//! Durable history: every event, and what it says about runs, batches,
//! executions, logs, agent turns and merges, in one SQLite file.
//!
//! The model follows seed 003: a run is a pipeline run; a batch is a
//! workspace (branch, worktree, head before and after); an execution is a
//! process with a run reason (a task, a coding agent, a setup or cleanup
//! script), a status and an exit code; logs are the terminal output and log
//! lines; an agent turn is one command to a coding agent (prompt, summary,
//! agent session id, tokens, cost); a merge records where a batch's branch went.
//!
//! ## Writing
//! One thread owns the writing connection. [`Recorder`] is just another
//! subscriber of the [`EventBus`](crate::events::EventBus): it forwards
//! events to that thread, which writes them in transactions of up to a few
//! thousand events. Publishing never waits for the disk.
//! [`Recorder::flush`] waits until everything published so far is written.
//!
//! ## Reading
//! Queries go through a second connection; SQLite's WAL mode lets them run
//! while the writer writes, in this process or in another one
//! (`runner logs --follow` beside `runner run`).
//!
//! ## Sequence numbers
//! The `events` table keeps every event under its sequence number, so a
//! client can resume with [`Store::events_after`] after a restart. A
//! restarted runner continues the numbering: create the bus with
//! `EventBus::new(store.last_seq() + 1)`.
//!
//! ## Crashes
//! A committed transaction survives `kill -9` (WAL, `synchronous = NORMAL`);
//! at most the events still queued in memory are lost. [`Store::recover`], at
//! the next start, marks what the dead runner left running as interrupted and
//! records that as events, numbered after the last one written. Until then,
//! the queries already tell the truth: a run whose runner is gone (see
//! [`RecorderLock`]: its lock names a process that has ended) reads as
//! `interrupted` with [`RunSummary::owner_gone`] set, and what it left
//! running reads as recovery will record it.
//!
//! ## Retention
//! Log lines, terminal output and agent activity older than
//! [`Retention::log_days`] are pruned at open and by [`Store::prune`]; runs,
//! batches, executions, agent turns and merges are kept. The connection audit
//! keeps [`Retention::audit_days`] (30) days.
//!
//! ## Size budget
//! With [`Retention::max_bytes`], the writer checks the database's size at
//! open and after every 1/32 of the budget written; from 13/16 of the budget
//! it deletes the oldest log lines, terminal output and agent activity until
//! it is under 3/4 of it, except those of the newest run (a run larger than
//! the budget stays whole until the next one starts), and frees the pages
//! (`auto_vacuum = INCREMENTAL`; an older database is converted once with
//! `VACUUM`). The WAL is checkpointed every 1/16 of the budget, so file and
//! WAL together stay under it.

mod comparisons;
mod follow;
mod lock;
mod query;
mod recorder;
mod records;
mod schema;
mod writer;

pub use follow::LogFollow;
pub(crate) use lock::Holder;
pub use lock::{LOCK_FILE, RecorderLock, lock_path};
pub use recorder::Recorder;
pub use records::*;

pub use crate::config::history::HistorySettings;
use chrono::{DateTime, Utc};
use protocol::Event;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, mpsc};
use std::time::Duration;

/// The file name of the history database inside the state directory.
pub const DB_FILE: &str = "history.db";

/// How long [`Recorder::flush`] waits at most.
pub const FLUSH_LIMIT: Duration = Duration::from_secs(60);

/// Why the history database cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{}: cannot open the history database: {message}", path.display())]
    Open { path: PathBuf, message: String },
    #[error(
        "{}: the history database is corrupt or not a SQLite file ({message}); move it aside and the runner starts a new history",
        path.display()
    )]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "{}: the history database is locked by another process ({message}); is another runner using this state directory?",
        path.display()
    )]
    Locked { path: PathBuf, message: String },
    #[error(
        "{}: the history database has schema version {found}, newer than this runner knows ({known}); use a newer runner",
        path.display()
    )]
    TooNew {
        path: PathBuf,
        found: i64,
        known: i64,
    },
    #[error("{}: {message}", path.display())]
    Sqlite { path: PathBuf, message: String },
    #[error("no run `{0}` in the history; `runner history` lists the runs")]
    NoSuchRun(String),
    #[error("`{prefix}` names several runs: {}", matches.join(", "))]
    AmbiguousRun {
        prefix: String,
        matches: Vec<String>,
    },
    #[error("the history writer stopped: {0}")]
    WriterStopped(String),
    #[error("writing the history failed: {0}")]
    Write(String),
    #[error("recover the history before the event bus exists: a recorder is already attached")]
    RecoverTooLate,
}

impl StoreError {
    /// Sorts a SQLite error into the cases a user can act on.
    pub(crate) fn from_sqlite(path: &Path, err: rusqlite::Error) -> Self {
        let path = path.to_path_buf();
        let message = err.to_string();
        match err.sqlite_error_code() {
            Some(ErrorCode::NotADatabase | ErrorCode::DatabaseCorrupt) => {
                Self::Corrupt { path, message }
            }
            Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
                Self::Locked { path, message }
            }
            Some(ErrorCode::CannotOpen | ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => {
                Self::Open { path, message }
            }
            _ => Self::Sqlite { path, message },
        }
    }
}

/// How long history is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Days of log lines, terminal output and agent activity; `None` keeps them forever.
    pub log_days: Option<u32>,
    /// Days of the connection audit (seed 001 asks for 30).
    pub audit_days: u32,
    /// The size the database may reach before its oldest log lines,
    /// terminal output and agent activity are pruned; `None`: no budget.
    pub max_bytes: Option<u64>,
}

impl Default for Retention {
    fn default() -> Self {
        Self {
            log_days: Some(30),
            audit_days: 30,
            max_bytes: None,
        }
    }
}

/// What `[history]` keeps, once the config has checked it.
impl From<&HistorySettings> for Retention {
    fn from(settings: &HistorySettings) -> Self {
        let default = Retention::default();
        Retention {
            log_days: match settings.log_retention_days {
                Some(0) => None,
                Some(days) => Some(days),
                None => default.log_days,
            },
            audit_days: settings.audit_retention_days.unwrap_or(default.audit_days),
            max_bytes: settings.max_size_bytes,
        }
    }
}

/// How to open the store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub retention: Retention,
    /// How long a statement waits for another process's lock before
    /// failing with [`StoreError::Locked`].
    pub busy_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            retention: Retention::default(),
            busy_timeout: Duration::from_secs(5),
        }
    }
}

/// One entry of the connection audit (seed 001): who connected, from where,
/// and what happened.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionAudit {
    /// `dashboard`, `agent`, `client`, ...
    pub client: String,
    /// The peer address, for example `127.0.0.1:50312`.
    pub peer: String,
    /// `connected`, `disconnected`, `rejected`, ...
    pub action: String,
    /// A close code, a reason, an identity.
    pub detail: Option<String>,
}

/// What [`Store::recover`] found and marked.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recovery {
    /// The runs that were left running, now interrupted.
    pub runs: Vec<String>,
    /// Tasks and scripts that were left running, now interrupted.
    pub executions: usize,
    /// Batches that never finished, now failed.
    pub batches: usize,
    /// Agent commands that were queued or running, now interrupted.
    pub agent_turns: usize,
    /// The sequence numbers of the events that say so (`None` when nothing was left running).
    pub seqs: Option<(u64, u64)>,
}

/// What [`Store::prune`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub logs: usize,
    pub events: usize,
    pub connections: usize,
}

/// The history database. Cheap to clone; every clone talks to the same
/// writer thread.
#[derive(Clone)]
pub struct Store {
    shared: Arc<Shared>,
    tx: mpsc::Sender<writer::Command>,
}

/// What the writer thread and the handles share.
pub(crate) struct Shared {
    pub path: PathBuf,
    pub reader: Mutex<Connection>,
    pub progress: Mutex<Progress>,
    pub written: Condvar,
    pub recorder_attached: AtomicBool,
    /// The recorder's forwarding thread, woken by a flush from its pause.
    pub recorder_thread: Mutex<Option<std::thread::Thread>>,
    pub retention: Retention,
    /// The most WAL an exit leaves for the next process: [`KEEP_WAL`], or
    /// what the size budget checkpoints at (1/16 of it), when less.
    pub keep_wal: u64,
}

#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// The highest sequence number in the `events` table.
    pub last_seq: u64,
    /// The highest sequence number the writer has handled, written or not.
    pub handled_seq: u64,
    /// The first write error since the last flush.
    pub error: Option<String>,
    /// Why the writer thread ended, if it did.
    pub stopped: Option<String>,
}

/// A WAL up to this size (SQLite's 1,000 pages of 4 KiB, where it
/// checkpoints on its own while writing) is left for the next process at
/// exit, whose writer thread moves it into the file when it first has
/// nothing to do: reading it back at open costs about 0.5 ms a megabyte
/// (from the page cache), while writing it into the file and syncing both
/// cost an exit 2 to 8 ms on the machine of the README's benchmarks.
/// Larger, an exit checkpoints it ([`Store::checkpoint`]).
pub const KEEP_WAL: u64 = 4 << 20;

/// A connection that closes without checkpointing: SQLite otherwise
/// checkpoints at the last close, syncing the file and the WAL.
fn keep_wal_on_close(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(
        rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
        true,
    )
    .map(|_| ())
}

impl Store {
    /// Opens (or creates) the database at `path` with default options.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, StoreError> {
        Self::open_with(path, StoreOptions::default())
    }

    /// Opens (or creates) the database at `path`: WAL mode, migrations
    /// applied, old logs pruned, writer thread started.
    pub fn open_with(path: impl AsRef<Path>, options: StoreOptions) -> Result<Self, StoreError> {
        let path = path.as_ref().to_path_buf();
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).map_err(|err| StoreError::Open {
                path: path.clone(),
                message: format!("cannot create {}: {err}", parent.display()),
            })?;
        }
        let sqlite = |err| StoreError::from_sqlite(&path, err);
        let mut conn = Connection::open(&path).map_err(sqlite)?;
        conn.busy_timeout(options.busy_timeout).map_err(sqlite)?;
        // Before anything writes: with SQLite's default (`FULL`) every
        // commit of the open would wait for fsyncs.
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = OFF;")
            .map_err(sqlite)?;
        // Freed pages go back to the file system (the size budget needs
        // it). This takes effect for a new database only (setting it on an
        // existing one is a write of its own at every open); an older one
        // is converted below, when it has a budget.
        let pages: i64 = conn
            .query_row("PRAGMA page_count", [], |row| row.get(0))
            .map_err(sqlite)?;
        if pages == 0 {
            conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL;")
                .map_err(sqlite)?;
        }
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(sqlite)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Open {
                path,
                message: format!("cannot switch to WAL mode (journal mode is {mode})"),
            });
        }
        // And once more in WAL mode, where NORMAL syncs only at checkpoints.
        conn.execute_batch("PRAGMA synchronous = NORMAL;")
            .map_err(sqlite)?;
        // Closing leaves the WAL to the next process (see [`KEEP_WAL`]).
        keep_wal_on_close(&conn).map_err(sqlite)?;
        schema::migrate(&mut conn, &path)?;
        if let Some(max) = options.retention.max_bytes {
            let auto_vacuum: i64 = conn
                .query_row("PRAGMA auto_vacuum", [], |row| row.get(0))
                .map_err(sqlite)?;
            if auto_vacuum != 2 {
                // Once: rewrite the file so that pruning can shrink it.
                conn.execute_batch("PRAGMA auto_vacuum = INCREMENTAL; VACUUM;")
                    .map_err(sqlite)?;
            }
            // The WAL counts too: checkpointed every 1/16 of the budget
            // (at most SQLite's default 1000 pages), and cut back to that
            // size after a checkpoint.
            let page_size: i64 = conn
                .query_row("PRAGMA page_size", [], |row| row.get(0))
                .map_err(sqlite)?;
            let wal = (max / 16) as i64;
            conn.pragma_update(
                None,
                "wal_autocheckpoint",
                (wal / page_size.max(512)).clamp(16, 1000),
            )
            .map_err(sqlite)?;
            conn.pragma_update(None, "journal_size_limit", wal)
                .map_err(sqlite)?;
        } else {
            // After a checkpoint the WAL file is cut back to what SQLite
            // checkpoints at (1,000 pages).
            conn.pragma_update(None, "journal_size_limit", KEEP_WAL as i64)
                .map_err(sqlite)?;
        }
        let last_seq: u64 = conn
            .query_row("SELECT COALESCE(MAX(seq), 0) FROM events", [], |row| {
                row.get::<_, i64>(0)
            })
            .map_err(sqlite)? as u64;

        let reader = Connection::open_with_flags(
            &path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX
                | OpenFlags::SQLITE_OPEN_URI,
        )
        .map_err(sqlite)?;
        reader.busy_timeout(options.busy_timeout).map_err(sqlite)?;
        reader
            .execute_batch("PRAGMA query_only = ON;")
            .map_err(sqlite)?;
        keep_wal_on_close(&reader).map_err(sqlite)?;

        let shared = Arc::new(Shared {
            path: path.clone(),
            reader: Mutex::new(reader),
            progress: Mutex::new(Progress {
                last_seq,
                handled_seq: last_seq,
                error: None,
                stopped: None,
            }),
            written: Condvar::new(),
            recorder_attached: AtomicBool::new(false),
            recorder_thread: Mutex::new(None),
            retention: options.retention,
            keep_wal: options
                .retention
                .max_bytes
                .map_or(KEEP_WAL, |max| (max / 16).min(KEEP_WAL)),
        });
        let mut writer = writer::Writer::new(conn, shared.clone());
        writer.prune(Utc::now()).map_err(sqlite)?;
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("runner-store".into())
            .spawn(move || writer.run(rx))
            .map_err(|err| StoreError::Open {
                path: path.clone(),
                message: format!("cannot start the writer thread: {err}"),
            })?;
        Ok(Self { shared, tx })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The highest sequence number recorded. The bus of a restarted runner
    /// starts after it: `EventBus::new(store.last_seq() + 1)`.
    pub fn last_seq(&self) -> u64 {
        self.shared
            .progress
            .lock()
            .expect("store progress lock")
            .last_seq
    }

    /// Marks what a dead runner left running as interrupted, and records
    /// that as events numbered after the last one. Call it at start, after
    /// [`Store::open`] and before the event bus and the [`Recorder`] exist.
    /// Runs owned by a runner process that is still alive are left alone;
    /// while this process holds the [`RecorderLock`], every other process's
    /// run counts as dead (its id may have been reused since).
    pub fn recover(&self, reason: &str) -> Result<Recovery, StoreError> {
        if self.shared.recorder_attached.load(Ordering::SeqCst) {
            return Err(StoreError::RecoverTooLate);
        }
        let (reply, answer) = mpsc::channel();
        self.send(writer::Command::Recover {
            reason: reason.to_string(),
            reply,
        })?;
        answer.recv().map_err(|_| self.stopped())?
    }

    /// Writes an event that did not come through a bus (tests, tools).
    /// Its sequence number must be above [`Store::last_seq`].
    pub fn record(&self, event: Event) -> Result<(), StoreError> {
        self.send(writer::Command::Events(vec![Arc::new(event)]))
    }

    /// Adds an entry to the connection audit; returns at once.
    pub fn audit_connection(&self, entry: ConnectionAudit) {
        let _ = self.send(writer::Command::Audit(entry, Utc::now()));
    }

    /// Removes what is older than the retention allows.
    pub fn prune(&self) -> Result<Pruned, StoreError> {
        let (reply, answer) = mpsc::channel();
        self.send(writer::Command::Prune {
            now: Utc::now(),
            reply,
        })?;
        answer.recv().map_err(|_| self.stopped())?
    }

    /// Like [`Store::prune`], as if it were `now`.
    pub fn prune_at(&self, now: DateTime<Utc>) -> Result<Pruned, StoreError> {
        let (reply, answer) = mpsc::channel();
        self.send(writer::Command::Prune { now, reply })?;
        answer.recv().map_err(|_| self.stopped())?
    }

    /// Waits until everything sent to the writer so far is written; reports
    /// the first write error since the last flush.
    pub fn flush(&self) -> Result<(), StoreError> {
        let (reply, answer) = mpsc::channel();
        self.send(writer::Command::Flush(reply))?;
        answer.recv().map_err(|_| self.stopped())?;
        self.take_error()
    }

    /// Writes everything sent so far; then, when the WAL is over
    /// [`KEEP_WAL`] (or 1/16 of the size budget), moves it into the
    /// database file and empties it. A process that is about to exit calls
    /// it: the next process to open the history reads what is left of the
    /// WAL first, and its writer thread moves it into the file.
    pub fn checkpoint(&self) -> Result<(), StoreError> {
        let (reply, answer) = mpsc::channel();
        self.send(writer::Command::Checkpoint(reply))?;
        answer.recv().map_err(|_| self.stopped())?;
        self.take_error()
    }

    fn send(&self, command: writer::Command) -> Result<(), StoreError> {
        self.tx.send(command).map_err(|_| self.stopped())
    }

    fn stopped(&self) -> StoreError {
        let progress = self.shared.progress.lock().expect("store progress lock");
        StoreError::WriterStopped(
            progress
                .stopped
                .clone()
                .unwrap_or_else(|| "it ended".into()),
        )
    }

    fn take_error(&self) -> Result<(), StoreError> {
        match self
            .shared
            .progress
            .lock()
            .expect("store progress lock")
            .error
            .take()
        {
            Some(message) => Err(StoreError::Write(message)),
            None => Ok(()),
        }
    }
}
