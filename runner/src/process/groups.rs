//! A record of the live process groups this runner started, so none
//! outlives a runner that was killed.
//!
//! ## Two defences
//! In the `runner` binary, a guardian process kills every live group the
//! moment the runner is gone, however it went ([`super::leader`]). Where
//! there is no guardian (a library user), every group leader is spawned
//! with `PR_SET_PDEATHSIG = SIGKILL` instead; Linux sends that signal when
//! the *thread* that spawned it exits, so every such child is spawned by
//! one spawner thread that lives as long as the process, and the signal
//! reaches the leader only: what the leader started
//! (`sh -c 'sleep 300 & ...'`) stays in the group. So, and in case the
//! guardian itself was killed, each group is also recorded, one file per
//! group under `<state dir>/groups/`, removed when the group ends; the next
//! runner that starts on the state directory kills the groups of records
//! whose runner is gone.
//!
//! ## Never a reused PID
//! A record holds the group id (the leader's pid), the leader's start time
//! (`/proc/PID/stat` field 22) and the recording runner's pid and start
//! time. A group is killed only when its runner is gone and either its
//! leader is alive with the recorded start time, or its leader is gone and
//! the members (processes whose group is the recorded id) all started no
//! earlier than the leader did. A live process with the leader's pid and
//! another start time means the pid was reused: nothing is killed. Each
//! member is checked and signalled by its own pid.

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where this process records its groups (none until a runner adopts a
/// state directory: library users and tests record nothing).
static RECORD_DIR: Mutex<Option<PathBuf>> = Mutex::new(None);

/// The folder of records in a state directory.
pub fn records_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("groups")
}

/// What `/proc/PID/stat` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub pgrp: i32,
    /// Clock ticks after boot (field 22).
    pub start_time: u64,
    pub zombie: bool,
}

/// Reads `/proc/<pid>/stat`; `None` when there is no such process.
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

fn parse_stat(text: &str) -> Option<ProcStat> {
    // The command name (field 2) is in parentheses and may hold anything.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `fields[0]` is field 3.
    Some(ProcStat {
        zombie: *fields.first()? == "Z",
        pgrp: fields.get(2)?.parse().ok()?,
        start_time: fields.get(19)?.parse().ok()?,
    })
}

/// One recorded group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub pgid: i32,
    pub leader_start: u64,
    pub owner_pid: i32,
    pub owner_start: u64,
}

impl Record {
    fn file_name(&self) -> String {
        format!("{}-{}", self.owner_pid, self.pgid)
    }

    pub(crate) fn to_line(&self) -> String {
        format!(
            "{} {} {} {}\n",
            self.pgid, self.leader_start, self.owner_pid, self.owner_start
        )
    }

    pub(crate) fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let record = Self {
            pgid: words.next()?.parse().ok()?,
            leader_start: words.next()?.parse().ok()?,
            owner_pid: words.next()?.parse().ok()?,
            owner_start: words.next()?.parse().ok()?,
        };
        (record.pgid > 1 && words.next().is_none()).then_some(record)
    }

    /// Writes the record into `dir`.
    pub fn write(&self, dir: &Path) -> io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join(self.file_name());
        std::fs::write(&path, self.to_line())?;
        Ok(path)
    }
}

/// Records this process's groups in `state_dir` from now on, after killing
/// what dead runners left there. Returns the groups killed.
pub fn adopt(state_dir: &Path) -> Vec<Record> {
    let dir = records_dir(state_dir);
    let killed = reap(&dir);
    *RECORD_DIR.lock().expect("record dir lock") = Some(dir);
    killed
}

/// Kills the surviving groups of dead runners recorded in `dir` and
/// removes their records. Returns the groups that had processes to kill.
pub fn reap(dir: &Path) -> Vec<Record> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut killed = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Some(record) = Record::parse(&text) else {
            // Cut short by a crash while it was written: nothing to trust.
            let _ = std::fs::remove_file(&path);
            continue;
        };
        let owner_alive = proc_stat(record.owner_pid)
            .is_some_and(|stat| !stat.zombie && stat.start_time == record.owner_start);
        if owner_alive {
            continue;
        }
        if kill_group(&record) {
            killed.push(record);
        }
        let _ = std::fs::remove_file(&path);
    }
    killed
}

/// The live members of the recorded group, or nothing if the group id now
/// belongs to someone else.
fn members(record: &Record) -> Vec<i32> {
    if let Some(leader) = proc_stat(record.pgid)
        && leader.start_time != record.leader_start
    {
        return Vec::new();
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let candidates: Vec<(i32, ProcStat)> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(|pid| Some((pid, proc_stat(pid)?)))
        .filter(|(_, stat)| stat.pgrp == record.pgid && !stat.zombie)
        .collect();
    // A member that started before the leader cannot be its descendant.
    if candidates
        .iter()
        .any(|(_, stat)| stat.start_time < record.leader_start)
    {
        return Vec::new();
    }
    candidates.into_iter().map(|(pid, _)| pid).collect()
}

/// Whether any live (not zombie) process is in group `pgid`.
pub fn group_alive(pgid: i32) -> bool {
    // No member at all (zombies included): the quick answer.
    if kill(Pid::from_raw(-pgid), None) == Err(nix::errno::Errno::ESRCH) {
        return false;
    }
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse::<i32>().ok())
        .filter_map(proc_stat)
        .any(|stat| stat.pgrp == pgid && !stat.zombie)
}

/// SIGKILLs every member, again while new ones appear. `true` if any was found.
pub(crate) fn kill_group(record: &Record) -> bool {
    let mut found = false;
    for _ in 0..20 {
        let members = members(record);
        if members.is_empty() {
            break;
        }
        found = true;
        for pid in members {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    found
}

/// A group recorded while it lives; the record goes when this is dropped.
pub(crate) struct Recorded {
    /// What to write in the state directory, until [`Recorded::write_file`].
    pending: Option<Record>,
    path: Option<PathBuf>,
    /// The group the guardian was told of.
    announced: Option<i32>,
}

impl Recorded {
    /// Writes the record into the state directory (if this process records
    /// groups). Called once a group has lived for a while: a group the
    /// guardian was told of is killed with the runner anyway, and the file
    /// (created, then deleted) is most of what a short command costs the
    /// runner; it stays the defence for when the guardian is gone too.
    pub(crate) fn write_file(&mut self) {
        let Some(record) = self.pending.take() else {
            return;
        };
        let dir = RECORD_DIR.lock().expect("record dir lock").clone();
        self.path = dir.and_then(|dir| match record.write(&dir) {
            Ok(path) => Some(path),
            Err(err) => {
                tracing::warn!(
                    "cannot record process group {} in {}: {err}",
                    record.pgid,
                    dir.display()
                );
                None
            }
        });
    }
}

impl Drop for Recorded {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = std::fs::remove_file(path);
        }
        if let Some(pgid) = self.announced {
            super::leader::withdraw(pgid);
        }
    }
}

/// The start time of this process, read once.
fn own_start() -> Option<u64> {
    static START: std::sync::OnceLock<Option<u64>> = std::sync::OnceLock::new();
    *START.get_or_init(|| Some(proc_stat(std::process::id() as i32)?.start_time))
}

/// Records the group led by `leader`: to the guardian (see
/// [`super::leader`]) now, and in the state directory if this process
/// records groups: at once when there is no guardian, else when
/// [`Recorded::write_file`] is called.
pub(crate) fn record(leader: u32) -> Recorded {
    let mut recorded = Recorded {
        pending: None,
        path: None,
        announced: None,
    };
    let (Some(leader_stat), Some(owner_start)) = (proc_stat(leader as i32), own_start()) else {
        return recorded;
    };
    let record = Record {
        pgid: leader as i32,
        leader_start: leader_stat.start_time,
        owner_pid: std::process::id() as i32,
        owner_start,
    };
    let announced = super::leader::announce(&record);
    if announced {
        recorded.announced = Some(record.pgid);
    }
    recorded.pending = Some(record);
    if !announced {
        recorded.write_file();
    }
    recorded
}

type SpawnReply = tokio::sync::oneshot::Sender<io::Result<tokio::process::Child>>;

/// Spawns `command` (made by [`super::leader::command`]) from the
/// long-lived spawner thread, so that its leader's death signal comes
/// with the runner's end, not with a worker thread's.
pub(crate) async fn spawn(
    mut command: tokio::process::Command,
) -> io::Result<tokio::process::Child> {
    if super::leader::guarded() {
        // Nothing ties the child to this thread's life.
        return command.spawn();
    }
    use std::sync::OnceLock;
    use std::sync::mpsc;
    type Request = (tokio::process::Command, tokio::runtime::Handle, SpawnReply);
    static SPAWNER: OnceLock<mpsc::Sender<Request>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Request>();
        std::thread::Builder::new()
            .name("runner-spawner".into())
            .spawn(move || {
                // Never ends: the static sender is never dropped.
                for (mut command, handle, reply) in rx {
                    let _runtime = handle.enter();
                    let _ = reply.send(command.spawn());
                }
            })
            .expect("start the spawner thread");
        tx
    });
    let (reply, child) = tokio::sync::oneshot::channel();
    sender
        .send((command, tokio::runtime::Handle::current(), reply))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    child
        .await
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_group_and_start_time_past_a_command_name_with_parentheses() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 987654 1 2 3";
        assert_eq!(
            parse_stat(line),
            Some(ProcStat {
                pgrp: 42,
                start_time: 987654,
                zombie: false
            })
        );
    }

    #[test]
    fn a_record_reads_back_and_a_torn_one_does_not() {
        let record = Record {
            pgid: 1234,
            leader_start: 99,
            owner_pid: 77,
            owner_start: 5,
        };
        assert_eq!(Record::parse(&record.to_line()), Some(record));
        assert_eq!(Record::parse("1234 99 77"), None);
    }
}
