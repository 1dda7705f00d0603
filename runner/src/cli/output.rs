//! How events reach the terminal: as the terminal printer shows them, or as JSON lines.

use crate::printer::{TerminalPrinter, print_json};
use std::io::IsTerminal;

/// Prints events as the terminal printer does, or as JSON lines.
pub(super) struct Output {
    json: bool,
    printer: TerminalPrinter<std::io::StdoutLock<'static>>,
}

impl Output {
    pub(super) fn new(json: bool, verbose: bool) -> Self {
        let stdout = std::io::stdout();
        let color = !json && stdout.is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Self {
            json,
            printer: TerminalPrinter::new(stdout.lock(), color, verbose),
        }
    }

    pub(super) fn print(&mut self, event: &protocol::Event) {
        let result = if self.json {
            print_json(&mut std::io::stdout().lock(), event)
        } else {
            self.printer.print(event)
        };
        // A closed stdout (`runner run | head`) must not stop the work.
        let _ = result;
    }
}
