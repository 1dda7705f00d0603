//! Who may talk to the server from a browser: the `Origin` and `Host`
//! checks every request passes before it is routed.
//!
//! ## Why
//! A web page the user happens to visit can open `ws://127.0.0.1:7420/ws`
//! or, through DNS rebinding, fetch `http://evil.example:7420/api/state`
//! that resolves to loopback. Browsers always say where a request comes
//! from (`Origin` on WebSocket upgrades and cross-origin requests) and
//! which name they resolved (`Host`), so both are checked:
//!
//! - `Origin`, when present, must be the server's own origin
//!   (`http://127.0.0.1:PORT`, `http://localhost:PORT`, `http://[::1]:PORT`
//!   with the bound port, or `http://ADDR:PORT` for a specific listen
//!   address) or one of `[server] allowed_origins`. No `Origin` means a
//!   program that is not a browser (the CLI, a script): those are let in.
//! - `Host`, when present, must be a loopback name or address (`localhost`,
//!   `127.x.y.z`, `[::1]`, with or without a port), the listen address (any
//!   IP address when listening on `0.0.0.0` or `[::]`), or the host of an
//!   allowed origin. An IP address cannot be rebound; a name can.
//!
//! A refused request gets 403 with a plain-text reason naming the key to set.

use crate::config::origin::{host_ip, host_name, parse_origin};
use std::net::SocketAddr;

/// The checks, with the bound address known.
#[derive(Debug, Clone)]
pub(crate) struct Guard {
    /// Lower-case `scheme://host[:port]` values an `Origin` may have.
    origins: Vec<String>,
    /// Lower-case host names (or bracketed IPv6 literals) of allowed origins.
    origin_hosts: Vec<String>,
    listen: SocketAddr,
}

/// Why a request is refused, as the 403 body says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Refusal {
    Origin(String),
    Host(String),
}

impl Refusal {
    /// The 403 body.
    pub fn explain(&self, addr: SocketAddr) -> String {
        match self {
            Self::Origin(origin) => format!(
                "refused: requests from the web origin `{origin}` are not allowed (only this server's own origin, \
                 http://127.0.0.1:{port}). To let a web app at that origin use the runner, add it to \
                 `allowed_origins` under [server] in runner.toml, for example allowed_origins = [\"{example}\"]\n",
                port = addr.port(),
                example = if parse_origin(origin).is_ok() {
                    origin.as_str()
                } else {
                    "https://app.example"
                },
            ),
            Self::Host(host) => format!(
                "refused: the Host `{host}` is neither a loopback name or address nor this server's address \
                 (a guard against DNS rebinding). Connect to http://127.0.0.1:{port}, or add an origin with that host \
                 to `allowed_origins` under [server] in runner.toml\n",
                port = addr.port(),
            ),
        }
    }
}

impl Guard {
    /// `listen` is the bound address (with the real port); `allowed` the
    /// checked `[server] allowed_origins`.
    pub fn new(listen: SocketAddr, allowed: &[String]) -> Self {
        let port = listen.port();
        let mut origins = vec![
            format!("http://127.0.0.1:{port}"),
            format!("http://localhost:{port}"),
            format!("http://[::1]:{port}"),
        ];
        let ip = listen.ip().to_canonical();
        if !ip.is_unspecified() {
            origins.push(format!("http://{}", SocketAddr::new(ip, port)));
        }
        let mut origin_hosts = Vec::new();
        for entry in allowed {
            // Checked with the other [server] keys; a bad one here is skipped.
            if let Ok(origin) = parse_origin(entry) {
                origin_hosts.push(origin.host.clone());
                origins.push(origin.to_string());
            }
        }
        Self {
            origins,
            origin_hosts,
            listen,
        }
    }

    /// Checks a request's `Origin` and `Host` header values (`None` when absent).
    pub fn check(&self, origin: Option<&str>, host: Option<&str>) -> Result<(), Refusal> {
        if let Some(origin) = origin {
            let allowed = match parse_origin(origin.trim()) {
                Ok(parsed) => self.origins.contains(&parsed.to_string()),
                Err(_) => false,
            };
            if !allowed {
                return Err(Refusal::Origin(shorten(origin)));
            }
        }
        if let Some(host) = host
            && !self.host_allowed(host.trim())
        {
            return Err(Refusal::Host(shorten(host)));
        }
        Ok(())
    }

    fn host_allowed(&self, host: &str) -> bool {
        let Some(name) = host_name(host) else {
            return false;
        };
        if name == "localhost" || name == "localhost." {
            return true;
        }
        if let Some(ip) = host_ip(&name) {
            let ip = ip.to_canonical();
            let listen = self.listen.ip().to_canonical();
            return ip.is_loopback() || listen.is_unspecified() || ip == listen;
        }
        self.origin_hosts.contains(&name)
    }
}

/// Header values in a log line or a message: at most 200 characters.
fn shorten(value: &str) -> String {
    let mut short: String = value.chars().take(200).collect();
    if short.len() < value.len() {
        short.push('…');
    }
    short
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guard(listen: &str, allowed: &[&str]) -> Guard {
        let allowed: Vec<String> = allowed.iter().map(|s| s.to_string()).collect();
        Guard::new(listen.parse().unwrap(), &allowed)
    }

    #[test]
    fn lets_in_the_servers_own_origins_and_programs_without_one() {
        let guard = guard("127.0.0.1:7420", &[]);
        for origin in [
            "http://127.0.0.1:7420",
            "http://localhost:7420",
            "http://[::1]:7420",
            "HTTP://LocalHost:7420",
        ] {
            assert_eq!(guard.check(Some(origin), Some("127.0.0.1:7420")), Ok(()));
        }
        assert_eq!(guard.check(None, None), Ok(()));
        assert_eq!(guard.check(None, Some("localhost")), Ok(()));
    }

    #[test]
    fn refuses_foreign_origins_other_ports_and_null() {
        let guard = guard("127.0.0.1:7420", &[]);
        for origin in [
            "http://evil.example",
            "http://127.0.0.1:7421",
            "https://127.0.0.1:7420",
            "http://localhost",
            "null",
            "",
        ] {
            assert!(
                matches!(guard.check(Some(origin), None), Err(Refusal::Origin(_))),
                "{origin}"
            );
        }
    }

    #[test]
    fn lets_in_listed_origins_with_or_without_their_default_port() {
        let guard = guard(
            "127.0.0.1:7420",
            &["https://app.example", "http://dev.test:3000"],
        );
        assert_eq!(guard.check(Some("https://app.example"), None), Ok(()));
        assert_eq!(guard.check(Some("https://app.example:443"), None), Ok(()));
        assert_eq!(guard.check(Some("http://dev.test:3000"), None), Ok(()));
        assert!(guard.check(Some("http://app.example"), None).is_err());
        assert!(guard.check(Some("http://dev.test:3001"), None).is_err());
        // Their hosts may be the Host (behind a proxy).
        assert_eq!(guard.check(None, Some("app.example")), Ok(()));
    }

    #[test]
    fn refuses_names_that_are_not_loopback_as_host() {
        let guard = guard("127.0.0.1:7420", &[]);
        for host in [
            "127.0.0.1:7420",
            "127.1.2.3",
            "localhost:7420",
            "[::1]:7420",
            "[::1]",
        ] {
            assert_eq!(guard.check(None, Some(host)), Ok(()), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:7420",
            "localhost.evil.example",
            "192.168.1.5:7420",
            "",
            "a b",
        ] {
            assert!(
                matches!(guard.check(None, Some(host)), Err(Refusal::Host(_))),
                "{host}"
            );
        }
    }

    #[test]
    fn a_specific_or_unspecified_listen_address_is_a_host_too() {
        let specific = guard("192.168.1.5:7420", &[]);
        assert_eq!(
            specific.check(Some("http://192.168.1.5:7420"), Some("192.168.1.5:7420")),
            Ok(())
        );
        assert!(specific.check(None, Some("10.0.0.1:7420")).is_err());
        let any = guard("0.0.0.0:7420", &[]);
        assert_eq!(any.check(None, Some("10.0.0.1:7420")), Ok(()));
        assert!(any.check(None, Some("runner.lan:7420")).is_err());
    }
}
