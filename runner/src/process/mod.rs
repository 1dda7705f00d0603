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
    let executable = is_executable;
    if program.contains('/') {
        let path = cwd.join(program);
        return executable(&path).then_some(path);
    }
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|p| executable(p))
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
