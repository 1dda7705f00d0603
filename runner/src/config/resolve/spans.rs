//! Where a mistake is: errors at a span, with the key and the line; values read with their own checks.

use super::{Resolver, Result};
use crate::config::raw::*;
use crate::config::*;
use crate::units::{format_size, parse_duration, parse_size};
use toml::Spanned;

/// The smallest memory limit a plugin may have.
const MIN_MEMORY: u64 = 1 << 20;
/// The largest memory limit a plugin may have: 4 GiB, all that a 32-bit
/// wasm memory can address.
const MAX_MEMORY: u64 = 4 << 30;

impl Resolver<'_> {
    pub(super) fn error(&self, key: Option<String>, message: impl Into<String>) -> ConfigError {
        ConfigError {
            file: self.file.to_path_buf(),
            location: None,
            key,
            message: message.into(),
            source_line: None,
        }
    }

    pub(super) fn error_at(
        &self,
        offset: usize,
        key: Option<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.source
            .error_at(self.file, self.source.location(offset), key, message)
    }

    pub(super) fn at<T>(
        &self,
        spanned: &Spanned<T>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> ConfigError {
        self.error_at(spanned.span().start, Some(key.into()), message)
    }

    pub(super) fn location<T>(&self, spanned: &Spanned<T>) -> Location {
        self.source.location(spanned.span().start)
    }

    pub(super) fn duration(&self, value: &Spanned<toml::Value>, key: &str) -> Result<Duration> {
        let toml::Value::String(text) = value.get_ref() else {
            return Err(self.at(
                value,
                key,
                "a duration is a string with a unit; write for example \"30s\"",
            ));
        };
        parse_duration(text).map_err(|msg| self.at(value, key, msg))
    }

    /// Where `prefix.name` (a table such as `[plugins.lint]`) is first
    /// written, pointing at `name`.
    pub(super) fn table_at(
        &self,
        prefix: &str,
        name: &str,
        key: String,
        message: impl Into<String>,
    ) -> ConfigError {
        let needle = format!("{prefix}.{name}");
        match self.text.find(&needle) {
            Some(at) => self.error_at(at + prefix.len() + 1, Some(key), message),
            None => self.error(Some(key), message),
        }
    }

    /// `server.heartbeat` when `offset` is inside the value of `heartbeat`
    /// under `[server]` (or `[git]`, `[history]`), whose types report their
    /// own mistakes without the key.
    pub(super) fn section_key_at(&self, offset: usize) -> Option<String> {
        let spans: RawSectionSpans = toml::from_str(self.text).ok()?;
        [
            ("server", &spans.server),
            ("git", &spans.git),
            ("history", &spans.history),
        ]
        .into_iter()
        .find_map(|(section, values)| {
            values
                .iter()
                .find(|(_, value)| value.span().contains(&offset))
                .map(|(key, _)| format!("{section}.{key}"))
        })
    }

    /// A section's own check, as an error at the refused value (or at the
    /// section's header when the value is a default).
    pub(super) fn section(
        &self,
        section: &str,
        spans: &IndexMap<String, Spanned<toml::Value>>,
        checked: std::result::Result<(), InvalidSetting>,
    ) -> Result<()> {
        let Err(invalid) = checked else {
            return Ok(());
        };
        let key = format!("{section}.{}", invalid.key);
        Err(match spans.get(invalid.key) {
            Some(value) => self.at(value, key, invalid.message),
            None => match self.text.find(&format!("[{section}]")) {
                Some(at) => self.error_at(at, Some(key), invalid.message),
                None => self.error(Some(key), invalid.message),
            },
        })
    }

    pub(super) fn size(&self, value: &Spanned<String>, key: &str) -> Result<u64> {
        parse_size(value.get_ref()).map_err(|msg| self.at(value, key, msg))
    }

    /// A plugin's memory limit: from 1 MiB to [`MAX_MEMORY`].
    pub(super) fn memory(&self, value: &Spanned<String>, key: &str) -> Result<u64> {
        let bytes = self.size(value, key)?;
        if bytes < MIN_MEMORY {
            return Err(self.at(value, key, "must be at least 1MiB"));
        }
        if bytes > MAX_MEMORY {
            return Err(self.at(
                value,
                key,
                format!(
                    "`{}` is too large; at most {} (all that a 32-bit wasm memory can address)",
                    value.get_ref(),
                    format_size(MAX_MEMORY)
                ),
            ));
        }
        Ok(bytes)
    }

    /// `[history]`: `max_size` checked and read.
    pub(super) fn history(
        &self,
        mut history: super::history::HistorySettings,
    ) -> Result<super::history::HistorySettings> {
        if let Some(max) = &history.max_size {
            let bytes = self.size(max, "history.max_size")?;
            if bytes < super::history::MIN_MAX_SIZE {
                return Err(self.at(max, "history.max_size", "must be at least 1MiB"));
            }
            history.max_size_bytes = Some(bytes);
        }
        Ok(history)
    }

    /// An output limit: a size of at least [`MIN_OUTPUT`].
    pub(super) fn output_limit(&self, value: &Spanned<String>, key: &str) -> Result<u64> {
        let limit = self.size(value, key)?;
        if limit < MIN_OUTPUT {
            return Err(self.at(value, key, "must be at least 1KiB"));
        }
        Ok(limit)
    }

    pub(super) fn priority(&self, value: &Spanned<String>, key: &str) -> Result<Priority> {
        Priority::parse(value.get_ref()).ok_or_else(|| {
            self.at(
                value,
                key,
                format!(
                    "unknown priority `{}`; use high, normal or low",
                    value.get_ref()
                ),
            )
        })
    }
}
