//! Starting a group leader that dies with the runner, without forking the
//! runner.
//!
//! `PR_SET_PDEATHSIG` has to be set in the child, between fork and exec.
//! Doing that with a `pre_exec` hook makes the standard library `fork` the
//! whole runner: every mapping of a big address space (wasmtime's pools,
//! the tokio runtime, the history) is copied, then torn down at `exec`,
//! which made a pipeline of short commands spend most of its time in the
//! kernel. So the `runner` binary starts each leader through itself: it
//! spawns `/proc/self/exe` with `posix_spawn` (no copy of the address
//! space), and that small process, before anything else in `main`, sets
//! the death signal, checks the runner is still its parent, and `exec`s the
//! real program in place: same pid, same group, same descriptors,
//! environment and working directory. See [`leader_main`].
//!
//! A library user (the tests, an embedding program) has no such entry
//! point, so there a `pre_exec` hook sets the signal as before.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tokio::process::Command;

/// The first argument that makes `runner` a group leader's trampoline.
const MARKER: &str = "__runner-group-leader";

/// Set by [`use_trampoline`]: what to spawn to start a leader.
static TRAMPOLINE: OnceLock<PathBuf> = OnceLock::new();

/// Starts every group leader through this executable from now on. Its
/// `main` must call [`leader_main`] first.
pub fn use_trampoline() {
    let exe = PathBuf::from("/proc/self/exe");
    if exe.exists() {
        let _ = TRAMPOLINE.set(exe);
    }
}

/// When this process was started as a group leader's trampoline, becomes
/// the program it was asked to run (and never returns); otherwise returns
/// at once. Call it first in `main`, before any thread or runtime starts.
pub fn leader_main() {
    let mut args = std::env::args_os().skip(1);
    if args.next().as_deref() != Some(OsStr::new(MARKER)) {
        return;
    }
    let parent = args.next().and_then(|p| p.to_str()?.parse::<u32>().ok());
    let (Some(parent), Some(program), Some(argv0)) = (parent, args.next(), args.next()) else {
        eprintln!("runner: {MARKER} is for the runner's own use");
        std::process::exit(2);
    };
    if let Err(err) = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL) {
        eprintln!(
            "runner: cannot tie {} to the runner: {err}",
            argv0.to_string_lossy()
        );
        std::process::exit(126);
    }
    // The runner died before the signal was set: no signal will come.
    if nix::unistd::getppid().as_raw() as u32 != parent {
        std::process::exit(137);
    }
    use std::os::unix::process::CommandExt;
    // `exec` resets what the runtime changed (SIGPIPE ignored, the signal
    // mask), so the program starts as it would from a shell.
    let err = std::process::Command::new(&program)
        .arg0(&argv0)
        .args(args)
        .exec();
    eprintln!(
        "runner: cannot run {}: {err}",
        Path::new(&program).display()
    );
    std::process::exit(127);
}

/// A command that runs `program` as the leader of a new process group
/// (spawn it with [`super::groups::spawn`]). `cwd` is where it runs and
/// `path` the `PATH` it will have (`None`: the runner's), to find it as
/// `exec` would; a program that cannot be found fails here, as spawning it
/// directly would.
pub fn command(program: &str, cwd: &Path, path: Option<&OsStr>) -> io::Result<Command> {
    let Some(trampoline) = TRAMPOLINE.get() else {
        let mut command = Command::new(program);
        tie_in_child(&mut command);
        command.process_group(0);
        return Ok(command);
    };
    let found = super::find_program_on(program, cwd, path)
        .ok_or_else(|| io::Error::from_raw_os_error(nix::libc::ENOENT))?;
    let mut command = Command::new(trampoline);
    command
        .arg(MARKER)
        .arg(std::process::id().to_string())
        .arg(found)
        .arg(program)
        .process_group(0);
    Ok(command)
}

/// Sets the death signal in the forked child (the library's fallback).
fn tie_in_child(command: &mut Command) {
    let parent = std::process::id();
    #[allow(unsafe_code)]
    // SAFETY: the closure runs in the forked child before exec and calls
    // only prctl and getppid, both async-signal-safe, allocating nothing.
    unsafe {
        command.pre_exec(move || {
            nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL)?;
            // The runner died between fork and prctl: no signal will come.
            if nix::unistd::getppid().as_raw() as u32 != parent {
                return Err(io::Error::other("the runner is gone"));
            }
            Ok(())
        });
    }
}
