//! Pruning: logs past their retention, and the oldest logs beyond the size budget.

use super::*;
use crate::store::Pruned;
use chrono::{DateTime, Duration as Days, Utc};
use protocol::format_time;

/// Event types whose rows the retention and the size budget prune.
const PRUNABLE: &str = "('log', 'terminal_output', 'agent_activity')";

/// What a pruned event row costs beyond its JSON: its row in `logs`, and
/// index entries.
const ROW_OVERHEAD: u64 = 160;

impl Writer {
    /// The bytes the database's pages hold (free pages not counted).
    pub(super) fn used_bytes(&self) -> rusqlite::Result<u64> {
        let pragma = |name: &str| -> rusqlite::Result<i64> {
            self.conn
                .query_row(&format!("PRAGMA {name}"), [], |row| row.get(0))
        };
        let pages = pragma("page_count")? - pragma("freelist_count")?;
        Ok((pages.max(0) as u64) * pragma("page_size")?.max(0) as u64)
    }

    /// Keeps the database within `max_size`: from 13/16 of it (so that what
    /// is written until the next check, and the WAL, still fit), deletes the
    /// oldest log lines, terminal output and agent activity (never those of
    /// the newest run) until it is back under 3/4 of it, and gives the pages
    /// back to the file system. Returns the events removed.
    pub fn fit_budget(&mut self) -> rusqlite::Result<usize> {
        self.since_budget_check = 0;
        let Some(max) = self.shared.retention.max_bytes else {
            return Ok(0);
        };
        if self.used_bytes()? <= max / 16 * 13 {
            self.truncate_wal()?;
            return Ok(0);
        }
        let target = max / 4 * 3;
        let newest_run: Option<i64> =
            self.conn
                .query_row("SELECT MAX(first_seq) FROM runs", [], |row| row.get(0))?;
        let mut removed = 0;
        // Estimates of what a row frees are rough: a few rounds at most.
        for _ in 0..8 {
            let used = self.used_bytes()?;
            if used <= target {
                break;
            }
            let to_free = used - target;
            let candidates: Vec<(i64, i64)> = self
                .conn
                .prepare_cached(&format!(
                    "SELECT seq, length(json) FROM events WHERE type IN {PRUNABLE} AND seq < ?1
                     ORDER BY seq LIMIT 20000"
                ))?
                .query_map([newest_run.unwrap_or(i64::MAX)], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            let mut freed = 0;
            let mut cutoff = None;
            for (seq, bytes) in candidates {
                freed += bytes.max(0) as u64 + ROW_OVERHEAD;
                cutoff = Some(seq);
                if freed >= to_free {
                    break;
                }
            }
            let Some(cutoff) = cutoff else {
                if !self.warned_over_budget {
                    self.warned_over_budget = true;
                    tracing::warn!(
                        "history: {} is over its max_size ({max} bytes) with only the newest run's logs left; they are kept until the next run",
                        self.shared.path.display()
                    );
                }
                break;
            };
            let tx = self.conn.transaction()?;
            removed += tx.execute(
                &format!("DELETE FROM events WHERE seq <= ?1 AND type IN {PRUNABLE}"),
                [cutoff],
            )?;
            tx.execute("DELETE FROM logs WHERE seq <= ?1", [cutoff])?;
            tx.commit()?;
            // One row per page freed: it frees them all only when read to the end.
            let mut vacuum = self.conn.prepare("PRAGMA incremental_vacuum")?;
            let mut pages = vacuum.query([])?;
            while pages.next()?.is_some() {}
        }
        self.truncate_wal()?;
        Ok(removed)
    }

    /// The size of the WAL file beside the database.
    pub(super) fn wal_len(&self) -> u64 {
        let mut path = self.shared.path.clone().into_os_string();
        path.push("-wal");
        std::fs::metadata(path).map_or(0, |m| m.len())
    }

    /// Moves what the WAL holds into the database file, without waiting
    /// for readers; the next write starts the WAL over.
    pub(super) fn checkpoint_wal(&self) -> rusqlite::Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(()))
    }

    /// Writes the WAL into the file and empties it: the file shrinks to
    /// what pruning left, and the WAL takes no room. A reader in another
    /// process can hold it back; the next check tries again.
    pub(super) fn truncate_wal(&self) -> rusqlite::Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
    }

    /// Deletes logs and the audit past their retention.
    pub fn prune(&mut self, now: DateTime<Utc>) -> rusqlite::Result<Pruned> {
        let retention = self.shared.retention;
        // Writing from the start: its first statement reads (the cutoff),
        // and a deferred transaction that read before another connection
        // committed cannot write after it (SQLite answers busy at once).
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let mut pruned = Pruned::default();
        if let Some(days) = retention.log_days {
            let cutoff = format_time(&(now - Days::days(days.into())));
            let before = crate::store::query::first_seq_since(&tx, &cutoff)?;
            pruned.logs = tx.execute("DELETE FROM logs WHERE seq < ?1", [before])?;
            pruned.events = tx.execute(
                &format!("DELETE FROM events WHERE seq < ?1 AND type IN {PRUNABLE}"),
                [before],
            )?;
        }
        let cutoff = format_time(&(now - Days::days(retention.audit_days.into())));
        pruned.connections = tx.execute("DELETE FROM connections WHERE time < ?1", [&cutoff])?;
        tx.commit()?;
        pruned.events += self.fit_budget()?;
        Ok(pruned)
    }
}
