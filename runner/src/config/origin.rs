//! Web origins (`scheme://host[:port]`) and `Host` header values, as
//! `[server] allowed_origins` writes them and the server's guard checks them.

use std::net::IpAddr;

/// A web origin: `scheme://host[:port]`, lower-case, without the scheme's
/// default port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Origin {
    pub(crate) scheme: String,
    pub(crate) host: String,
    pub(crate) port: Option<u16>,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        Ok(())
    }
}

/// Reads `scheme://host[:port]` as browsers send it in `Origin`; the
/// error says what is wrong, for `[server] allowed_origins`.
pub(crate) fn parse_origin(text: &str) -> Result<Origin, String> {
    let Some((scheme, rest)) = text.split_once("://") else {
        return Err("write it as scheme://host[:port], for example \"https://app.example\"".into());
    };
    let scheme = scheme.to_ascii_lowercase();
    let rest = rest.to_ascii_lowercase();
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c));
    if !scheme_ok {
        return Err(format!("`{scheme}` is not a URL scheme"));
    }
    if rest.contains(['/', '?', '#']) {
        return Err(
            "an origin has no path, query or trailing `/`: write scheme://host[:port]".into(),
        );
    }
    if rest.contains('@') {
        return Err("an origin has no user name or password".into());
    }
    let Some(name) = host_name(&rest) else {
        return Err(format!("`{rest}` is not a host with an optional port"));
    };
    if name.starts_with('[') && host_ip(&name).is_none() {
        return Err(format!("`{name}` is not an IPv6 address"));
    }
    let port = match rest.strip_prefix(name.as_str()).unwrap_or_default() {
        "" => None,
        port => {
            let port: u16 = port[1..]
                .parse()
                .map_err(|_| format!("`{}` is not a port", &port[1..]))?;
            let default = match scheme.as_str() {
                "http" | "ws" => Some(80),
                "https" | "wss" => Some(443),
                _ => None,
            };
            (default != Some(port)).then_some(port)
        }
    };
    Ok(Origin {
        scheme,
        host: name,
        port,
    })
}

/// The host of a `Host` header value, lower-case and without the port:
/// `example.com`, `127.0.0.1`, `[::1]`. `None` when it is not a host.
pub(crate) fn host_name(host: &str) -> Option<String> {
    let host = host.to_ascii_lowercase();
    let name = if host.starts_with('[') {
        let end = host.find(']')?;
        let rest = &host[end + 1..];
        if !(rest.is_empty() || rest.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        &host[..=end]
    } else {
        match host.rsplit_once(':') {
            Some((name, port)) if is_port(port) => name,
            Some(_) => return None,
            None => &host,
        }
    };
    let valid = !name.is_empty()
        && !name
            .chars()
            .any(|c| c.is_whitespace() || "/?#@\\".contains(c));
    valid.then(|| name.to_string())
}

/// The address a host name spells, if it is an IP literal (`[::1]` bracketed).
pub(crate) fn host_ip(name: &str) -> Option<IpAddr> {
    match name.strip_prefix('[').and_then(|n| n.strip_suffix(']')) {
        Some(v6) => v6.parse().ok(),
        None => name.parse().ok(),
    }
}

fn is_port(text: &str) -> bool {
    !text.is_empty() && text.len() <= 5 && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_origins_and_says_what_is_wrong_with_others() {
        assert_eq!(
            parse_origin("HTTPS://App.Example:8443")
                .unwrap()
                .to_string(),
            "https://app.example:8443"
        );
        assert_eq!(
            parse_origin("http://[::1]:80").unwrap().to_string(),
            "http://[::1]"
        );
        for (bad, why) in [
            ("app.example", "scheme://host"),
            ("https://app.example/", "no path"),
            ("https://app.example/ui", "no path"),
            ("https://user@app.example", "user name"),
            ("https://app.example:99999", "not a port"),
            ("https://app.example:x", "not a host"),
            ("https://", "not a host"),
            ("1http://a", "scheme"),
        ] {
            let err = parse_origin(bad).unwrap_err();
            assert!(err.contains(why), "{bad}: {err}");
        }
    }
}
