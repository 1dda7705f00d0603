//! The `best_of_result` events of a run, as `runner show` prints them. They
//! live in `events` only (no table of their own), and are never pruned.

use super::records::BestOfRecord;
use protocol::{Event, EventKind};
use rusqlite::Connection;

/// Every `best_of_result` of run `run_id`, in the order they were published.
pub(super) fn best_of(conn: &Connection, run_id: &str) -> rusqlite::Result<Vec<BestOfRecord>> {
    let mut statement = conn.prepare_cached(
        "SELECT json FROM events WHERE run_id = ?1 AND type = 'best_of_result' ORDER BY seq",
    )?;
    let rows = statement.query_map([run_id], |row| row.get::<_, String>(0))?;
    let mut records = Vec::new();
    for json in rows {
        // An event this runner cannot read (a newer shape) is left out.
        let Ok(event) = serde_json::from_str::<Event>(&json?) else {
            continue;
        };
        if let EventKind::BestOfResult {
            batch_id,
            winner,
            winner_branch,
            reason,
            check,
            attempts,
            ..
        } = event.kind
        {
            records.push(BestOfRecord {
                batch_id,
                winner,
                winner_branch,
                reason,
                check,
                attempts,
            });
        }
    }
    Ok(records)
}
