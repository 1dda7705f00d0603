//! `[server]` in `runner.toml` (the token it points to is read by the server).

use super::InvalidSetting;
use super::origin::parse_origin;
use crate::units::{parse_duration, parse_size};
use serde::{Deserialize, Deserializer};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the server listens and what it allows. Every field has a default;
/// `[server]` may be left out.
///
/// ```toml
/// [server]
/// listen = "127.0.0.1:7420"
/// token_env = "RUNNER_TOKEN"
/// allow_loopback_without_token = true
/// max_dashboards = 50
/// max_agents = 10
/// heartbeat = "30s"
/// max_message_bytes = "1MiB"
/// client_queue = 4096
/// allowed_origins = ["https://dashboard.example"]
/// ```
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// The address to listen on; any address but loopback needs a token.
    /// Example: `listen = "127.0.0.1:7420"`
    pub listen: SocketAddr,
    /// The environment variable holding the token. Example: `token_env = "RUNNER_TOKEN"`
    pub token_env: Option<String>,
    /// A file holding the token (surrounding whitespace is ignored); relative
    /// to `runner.toml` once [`ServerSettings::resolve_paths`] ran.
    /// Example: `token_file = ".runner/token"`
    pub token_file: Option<PathBuf>,
    /// Loopback clients may leave out the token. Example: `allow_loopback_without_token = true`
    pub allow_loopback_without_token: bool,
    /// Dashboards connected at once; one more is closed with 1013. Example: `max_dashboards = 50`
    pub max_dashboards: usize,
    /// Agent clients connected at once; one more is closed with 1013. Example: `max_agents = 10`
    pub max_agents: usize,
    /// How often the server pings; a client silent for a whole interval is
    /// dropped. Example: `heartbeat = "30s"`
    #[serde(deserialize_with = "duration")]
    pub heartbeat: Duration,
    /// Larger client messages close the connection with 1009.
    /// Example: `max_message_bytes = "1MiB"` (or a number of bytes)
    #[serde(deserialize_with = "size")]
    pub max_message_bytes: usize,
    /// How many messages may wait for one client before it is told it
    /// lagged and replayed from the server's ring. Example: `client_queue = 4096`
    pub client_queue: usize,
    /// Web origins (`scheme://host[:port]`, no path) whose pages may use the
    /// server besides its own (`http://127.0.0.1:PORT`, `http://localhost:PORT`);
    /// a request with any other `Origin` is refused with 403.
    /// Example: `allowed_origins = ["https://dashboard.example"]`
    #[serde(deserialize_with = "origins")]
    pub allowed_origins: Vec<String>,
}

/// Where `runner serve` listens unless told otherwise.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:7420";

/// The largest `max_message_bytes`: larger messages are not a protocol's.
const MAX_MESSAGE_BYTES: usize = 256 << 20;
/// The longest `heartbeat`: a dead peer is noticed within two of them.
const MAX_HEARTBEAT: Duration = Duration::from_secs(3600);
/// The largest `client_queue`.
const MAX_CLIENT_QUEUE: usize = 1_000_000;
/// The largest `max_dashboards` and `max_agents`.
const MAX_CLIENTS: usize = 10_000;

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("a socket address"),
            token_env: None,
            token_file: None,
            allow_loopback_without_token: true,
            max_dashboards: 50,
            max_agents: 10,
            heartbeat: Duration::from_secs(30),
            max_message_bytes: 1 << 20,
            client_queue: 4096,
            allowed_origins: Vec::new(),
        }
    }
}

impl ServerSettings {
    /// Makes `token_file` absolute, relative to `base_dir` (the directory of `runner.toml`).
    pub fn resolve_paths(&mut self, base_dir: &Path) {
        if let Some(file) = &self.token_file
            && file.is_relative()
        {
            self.token_file = Some(base_dir.join(file));
        }
    }

    /// Every rule `[server]` has that needs nothing but the file itself;
    /// run by `runner check` (config resolution) and again by the server.
    /// Whether the token variable or file exists is checked at start.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        let invalid = |key: &'static str, why: &str| Err(InvalidSetting::new(key, why));
        if self.max_message_bytes < 1024 {
            return invalid("max_message_bytes", "must be at least 1KiB");
        }
        if self.max_message_bytes > MAX_MESSAGE_BYTES {
            return invalid("max_message_bytes", "must be at most 256MiB");
        }
        if self.client_queue == 0 {
            return invalid("client_queue", "must be at least 1");
        }
        if self.client_queue > MAX_CLIENT_QUEUE {
            return invalid("client_queue", "must be at most 1000000");
        }
        if self.heartbeat < Duration::from_millis(10) {
            return invalid("heartbeat", "must be at least 10ms");
        }
        if self.heartbeat > MAX_HEARTBEAT {
            return invalid("heartbeat", "must be at most 1h");
        }
        if self.max_dashboards > MAX_CLIENTS {
            return invalid("max_dashboards", "must be at most 10000");
        }
        if self.max_agents > MAX_CLIENTS {
            return invalid("max_agents", "must be at most 10000");
        }
        let no_token = self.token_env.is_none() && self.token_file.is_none();
        if no_token && !self.listen.ip().to_canonical().is_loopback() {
            return invalid(
                "listen",
                &format!(
                    "{} is not a loopback address, so it needs a token: set `token_env` or `token_file`",
                    self.listen
                ),
            );
        }
        if no_token && !self.allow_loopback_without_token {
            return invalid(
                "allow_loopback_without_token",
                "false needs a token: set `token_env` or `token_file`",
            );
        }
        for origin in &self.allowed_origins {
            if let Err(why) = parse_origin(origin) {
                return invalid("allowed_origins", &format!("`{origin}`: {why}"));
            }
        }
        Ok(())
    }
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    parse_duration(&String::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// `allowed_origins`: each entry checked here, so `runner.toml` errors point at it.
fn origins<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    let entries = Vec::<String>::deserialize(d)?;
    for origin in &entries {
        if let Err(why) = parse_origin(origin) {
            return Err(serde::de::Error::custom(format!("`{origin}`: {why}")));
        }
    }
    Ok(entries)
}

fn size<'de, D: Deserializer<'de>>(d: D) -> Result<usize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    let bytes = match Size::deserialize(d)? {
        Size::Bytes(bytes) => bytes,
        Size::Text(text) => parse_size(&text).map_err(serde::de::Error::custom)?,
    };
    usize::try_from(bytes).map_err(|_| serde::de::Error::custom("too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_field_from_toml() {
        let settings: ServerSettings = toml::from_str(
            r#"
            listen = "0.0.0.0:9000"
            token_env = "MY_TOKEN"
            allow_loopback_without_token = false
            max_dashboards = 3
            max_agents = 1
            heartbeat = "5s"
            max_message_bytes = "64KiB"
            client_queue = 16
            allowed_origins = ["https://dashboard.example", "http://localhost:3000"]
            "#,
        )
        .unwrap();
        assert_eq!(settings.listen, "0.0.0.0:9000".parse().unwrap());
        assert_eq!(settings.heartbeat, Duration::from_secs(5));
        assert_eq!(settings.max_message_bytes, 64 << 10);
        assert_eq!(settings.client_queue, 16);
        assert_eq!(
            settings.allowed_origins,
            ["https://dashboard.example", "http://localhost:3000"]
        );
    }

    #[test]
    fn an_empty_table_means_the_defaults() {
        let settings: ServerSettings = toml::from_str("").unwrap();
        assert_eq!(settings, ServerSettings::default());
        assert_eq!(settings.listen.port(), 7420);
    }

    #[test]
    fn refuses_unknown_keys() {
        let err = toml::from_str::<ServerSettings>("port = 1")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown field `port`"), "{err}");
    }

    #[test]
    fn refuses_an_allowed_origin_with_a_path_naming_the_key() {
        let err =
            toml::from_str::<ServerSettings>(r#"allowed_origins = ["https://x.example/app"]"#)
                .unwrap_err()
                .to_string();
        assert!(err.contains("`https://x.example/app`"), "{err}");
        assert!(err.contains("no path"), "{err}");
        let settings = ServerSettings {
            allowed_origins: vec!["x.example".into()],
            ..ServerSettings::default()
        };
        let err = settings.check().unwrap_err().to_string();
        assert!(err.contains("allowed_origins: `x.example`"), "{err}");
    }
}
