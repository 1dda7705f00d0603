//! Every id the runner mints: runs, agent commands, WebSocket clients.
//!
//! ## Unique across processes and time
//!
//! Ids come from UUIDv7s: 48 bits of Unix milliseconds followed by 74 bits
//! that are random (the crate keeps a counter inside them, reseeded at random
//! every millisecond, so ids minted by one process also sort in order). Two
//! processes started in the same millisecond, or the same time on another
//! day, never collide the way a clock reading plus a per-process counter did.
//!
//! ## Forms
//!
//! - a run: `YYYYmmdd-HHMMSS-xxxxxxxxxxxx` (UTC), readable, sortable to the
//!   second, and its twelve hex digits (the UUID's last 48 bits) tell runs
//!   of the same second apart; `runner show` takes a unique prefix of the
//!   id or of that tail;
//! - an agent command: `cmd-<uuidv7>`;
//! - a permission prompt: `approval-<uuidv7>`;
//! - a WebSocket client: `client-<uuidv7>`.
//!
//! Histories written before these forms keep their old ids
//! (`YYYYmmdd-HHMMSS-xxxx`, `cmd-HHMMSS-N`); ids are opaque text everywhere.

use uuid::Uuid;

/// The digits of a run id after its date and time.
pub const RUN_TAIL_LEN: usize = 12;

/// A new run id: `YYYYmmdd-HHMMSS-xxxxxxxxxxxx`.
pub fn run_id() -> String {
    let uuid = Uuid::now_v7();
    let millis = uuid
        .get_timestamp()
        .map(|ts| {
            let (secs, nanos) = ts.to_unix();
            secs as i64 * 1000 + i64::from(nanos / 1_000_000)
        })
        .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
    let time = chrono::DateTime::from_timestamp_millis(millis).unwrap_or_else(chrono::Utc::now);
    let hex = uuid.simple().to_string();
    format!(
        "{}-{}",
        time.format("%Y%m%d-%H%M%S"),
        &hex[hex.len() - RUN_TAIL_LEN..]
    )
}

/// A new agent command id: `cmd-<uuidv7>`.
pub fn command_id() -> String {
    format!("cmd-{}", Uuid::now_v7())
}

/// A new permission prompt id: `approval-<uuidv7>`.
pub fn approval_id() -> String {
    format!("approval-{}", Uuid::now_v7())
}

/// A new WebSocket client id: `client-<uuidv7>`.
pub fn client_id() -> String {
    format!("client-{}", Uuid::now_v7())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn run_ids_are_readable_and_distinct_within_one_second() {
        let ids: Vec<String> = (0..1000).map(|_| run_id()).collect();
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), ids.len());
        for id in &ids {
            let parts: Vec<&str> = id.split('-').collect();
            assert_eq!(parts.len(), 3, "{id}");
            assert_eq!(parts[0].len(), 8, "{id}");
            assert_eq!(parts[1].len(), 6, "{id}");
            assert_eq!(parts[2].len(), RUN_TAIL_LEN, "{id}");
            assert!(
                id.chars().all(|c| c.is_ascii_hexdigit() || c == '-'),
                "{id}"
            );
        }
        let today = chrono::Utc::now().format("%Y%m%d").to_string();
        assert!(ids[0].starts_with(&today) || ids[999].starts_with(&today));
    }

    #[test]
    fn command_and_client_ids_are_uuidv7s_that_sort_in_minting_order() {
        let ids: Vec<String> = (0..1000).map(|_| command_id()).collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(sorted, ids);
        let uuid = Uuid::parse_str(ids[0].strip_prefix("cmd-").unwrap()).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
        let client = client_id();
        let uuid = Uuid::parse_str(client.strip_prefix("client-").unwrap()).unwrap();
        assert_eq!(uuid.get_version_num(), 7);
    }
}
