//! `[history]` in `runner.toml`: how long the store keeps what.

use super::InvalidSetting;
use serde::Deserialize;

/// The smallest `[history] max_size`.
pub const MIN_MAX_SIZE: u64 = 1 << 20;

/// `[history]` in `runner.toml`.
///
/// ```toml
/// [history]
/// log_retention_days = 14   # 0 keeps logs forever; default 30
/// audit_retention_days = 30
/// max_size = "500MiB"       # prune the oldest logs beyond it; default no budget
/// ```
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistorySettings {
    /// Days of log lines and terminal output to keep; 0 keeps them forever.
    /// Example: `log_retention_days = 14`
    pub log_retention_days: Option<u32>,
    /// Days of the WebSocket connection audit to keep. Example: `audit_retention_days = 30`
    pub audit_retention_days: Option<u32>,
    /// A size budget for `history.db`: beyond it the oldest log lines,
    /// terminal output and agent activity are pruned (runs, batches,
    /// executions, agent turns and merges stay). Example: `max_size = "500MiB"`
    pub max_size: Option<toml::Spanned<String>>,
    /// `max_size` in bytes, once the config has checked it.
    #[serde(skip)]
    pub max_size_bytes: Option<u64>,
}

/// The longest retention `[history]` accepts: a hundred years (a date that
/// far back is still one the clock can compute).
const MAX_RETENTION_DAYS: u32 = 36_500;

impl HistorySettings {
    /// The rules `[history]` has; `runner check` runs them.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        for (key, days) in [
            ("log_retention_days", self.log_retention_days),
            ("audit_retention_days", self.audit_retention_days),
        ] {
            if days.is_some_and(|days| days > MAX_RETENTION_DAYS) {
                return Err(InvalidSetting::new(
                    key,
                    format!("must be at most {MAX_RETENTION_DAYS} (a hundred years)"),
                ));
            }
        }
        Ok(())
    }
}
