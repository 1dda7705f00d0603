//! Child processes: starting a group leader that dies with the runner
//! ([`leader`]), spawning it and recording its group ([`groups`]), running one
//! command to its end under a kill guard ([`exec`]), cutting its output into
//! chunks ([`output`]), and finding programs and processes.

pub mod exec;
pub mod groups;
pub mod leader;
pub mod output;

use std::path::{Path, PathBuf};

/// Where `program` would be run from: a path as given (relative to `cwd`),
/// or the first match on `PATH`.
pub fn find_program(program: &str, cwd: &Path) -> Option<PathBuf> {
    find_program_on(program, cwd, None)
}

/// [`find_program`] with the `PATH` the program will have (`None`: the
/// runner's); relative entries are taken from `cwd`, as `exec` there would.
pub fn find_program_on(
    program: &str,
    cwd: &Path,
    path: Option<&std::ffi::OsStr>,
) -> Option<PathBuf> {
    if program.contains('/') {
        let found = cwd.join(program);
        return is_executable(&found).then_some(found);
    }
    let path = match path {
        Some(path) => path.to_os_string(),
        None => std::env::var_os("PATH")?,
    };
    // Remembered as a shell's `hash` does: a pipeline starts the same few
    // programs thousands of times, and each search is a `stat` per
    // directory. A remembered program is used while it is still there.
    type Key = (String, PathBuf, std::ffi::OsString);
    static FOUND: std::sync::Mutex<Option<std::collections::HashMap<Key, PathBuf>>> =
        std::sync::Mutex::new(None);
    let key = (program.to_string(), cwd.to_path_buf(), path);
    if let Some(found) = FOUND
        .lock()
        .expect("program cache lock")
        .as_ref()
        .and_then(|found| found.get(&key).cloned())
        && is_executable(&found)
    {
        return Some(found);
    }
    let found = std::env::split_paths(&key.2)
        .map(|dir| cwd.join(dir).join(program))
        .find(|p| is_executable(p))?;
    let mut cache = FOUND.lock().expect("program cache lock");
    let cache = cache.get_or_insert_with(Default::default);
    if cache.len() >= 256 {
        cache.clear();
    }
    cache.insert(key, found.clone());
    Some(found)
}

/// Whether `path` is a file someone may execute.
pub(crate) fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether a process with this id exists (a zombie or a reused id counts).
pub fn process_alive(pid: i64) -> bool {
    use nix::errno::Errno;
    use nix::sys::signal::kill;
    use nix::unistd::Pid;
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    !matches!(kill(Pid::from_raw(pid), None), Err(Errno::ESRCH))
}

/// glibc gives each thread that allocates its own arena, up to eight per
/// core, and an arena keeps what was freed in it: a 10,000-task run's RSS
/// was a fifth lower with two, which also keep the tokio workers from
/// contending. For a program's `main`, before it starts any thread.
pub fn fewer_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` takes two integers; called before other threads
    // exist, as glibc asks.
    unsafe {
        nix::libc::mallopt(nix::libc::M_ARENA_MAX, 2);
    }
}
