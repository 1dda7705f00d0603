//! How events reach the terminal: as the terminal printer shows them, or as JSON lines.

use crate::events::Subscription;
use crate::printer::{TerminalPrinter, print_json};
use crate::watch::WatchEvent;
use std::io::IsTerminal;
use tokio::sync::mpsc::UnboundedReceiver;

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

    /// What `runner watch` tells, as a `[watch]` line; nothing with `--json`,
    /// where the watcher's `watch_status` events say it.
    fn tell(&mut self, event: &WatchEvent) {
        use std::io::Write;
        if !self.json {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(out, "[watch] {event}");
            let _ = out.flush();
        }
    }

    /// Prints `events` (and what `watch` tells, when given) while `work`
    /// goes on, then what is still queued of both; returns what `work`
    /// returned. Events come first, so a line never shows before the events
    /// that led to it.
    pub(super) async fn print_while<T>(
        &mut self,
        events: &mut Subscription,
        mut watch: Option<&mut UnboundedReceiver<WatchEvent>>,
        work: impl Future<Output = T>,
    ) -> T {
        tokio::pin!(work);
        let result = loop {
            let told = async {
                match watch.as_deref_mut() {
                    Some(watch) => watch.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                Some(event) = events.recv() => self.print(&event),
                Some(event) = told => self.tell(&event),
                result = &mut work => break result,
            }
        };
        while let Ok(event) = events.try_recv() {
            self.print(&event);
        }
        if let Some(watch) = watch {
            while let Ok(event) = watch.try_recv() {
                self.tell(&event);
            }
        }
        result
    }
}
