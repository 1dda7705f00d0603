//! `runner plugin check FILE`: which world and `runner:plugin` version a
//! component targets, and whether this runner can load it (needs no
//! `runner.toml`); the same check in `runner check`; and the compile
//! feedback shown while plugins load.

use super::{Error, exit};
use crate::config::{Config, PluginSource};
use crate::events::EventBus;
use crate::plugin::check::{self, Report};
use crate::plugin::{LoadError, Plugins};
use crate::printer::TerminalPrinter;
use clap::Subcommand;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Say which world and WIT version a component targets and whether this
    /// runner can load it; name each import or export that does not fit (exit 2).
    Check {
        /// The component (`.wasm`).
        file: PathBuf,
    },
}

pub fn execute(command: &PluginCommand) -> Result<i32, Error> {
    match command {
        PluginCommand::Check { file } => match check_file(file)? {
            Ok(report) => {
                println!("{}: {report}", file.display());
                Ok(if report.loadable() {
                    exit::OK
                } else {
                    exit::INVALID
                })
            }
            Err(err) => {
                println!("{}: {err}", file.display());
                Ok(exit::INVALID)
            }
        },
    }
}

fn check_file(file: &Path) -> Result<Result<Report, check::CheckError>, Error> {
    let bytes = std::fs::read(file)
        .map_err(|err| Error::Usage(format!("cannot read {}: {err}", file.display())))?;
    Ok(check::check(&bytes))
}

/// `runner check`: the same check for every plugin file `runner.toml` names,
/// one line each; `false` when one does not fit.
pub fn check_configured(config: &Config) -> Result<bool, Error> {
    let mut all_fit = true;
    for decl in config.plugins.values() {
        let PluginSource::Path(path) = &decl.source else {
            continue;
        };
        let line = match check_file(path)? {
            Ok(report) => {
                all_fit &= report.loadable();
                report.to_string()
            }
            Err(err) => {
                all_fit = false;
                err.to_string()
            }
        };
        println!("plugin `{}` ({}): {line}", decl.name, path.display());
    }
    Ok(all_fit)
}

/// Loads plugins, publishing `plugin_compile` events on `bus` and printing
/// them on stderr as they come, so that the first compile of a large
/// component is not a silent wait.
pub async fn load_showing_compiles(
    config: &Config,
    names: Option<&[String]>,
    bus: &EventBus,
) -> Result<Plugins, LoadError> {
    let mut events = bus.subscribe();
    let stderr = std::io::stderr();
    let color = stderr.is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let mut printer = TerminalPrinter::new(stderr, color, false);
    let mut show = |event: &protocol::Event| {
        if matches!(event.kind, protocol::EventKind::PluginCompile { .. }) {
            let _ = printer.print(event);
        }
    };
    let load = Plugins::load_reporting(config, names, Some(bus));
    tokio::pin!(load);
    let result = loop {
        tokio::select! {
            biased;
            Some(event) = events.recv() => show(&event),
            result = &mut load => break result,
        }
    };
    while let Ok(event) = events.try_recv() {
        show(&event);
    }
    result
}
