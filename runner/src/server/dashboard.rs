//! The dashboard: a page of plain ES modules embedded in the binary and
//! served at `/` on the server's own port, so nothing needs Node.js, a
//! bundler or a network to build or run it.
//!
//! ## Security
//! Every asset goes out with a Content-Security-Policy that allows scripts,
//! styles and connections from this origin only (the page has no inline
//! script or style attribute to allow), forbids framing, and sends no
//! referrer. The page speaks only the documented protocol: `/ws` on its
//! own origin (which [`super::guard`] lets in) and the `/api/` endpoints.

use super::http::{Body, text};
use hyper::header::{self, HeaderValue};
use hyper::{Response, StatusCode};

/// (URL path, content type, bytes).
const ASSETS: &[(&str, &str, &[u8])] = &[
    ("/", HTML, include_bytes!("dashboard/index.html")),
    ("/index.html", HTML, include_bytes!("dashboard/index.html")),
    (
        "/assets/style.css",
        CSS,
        include_bytes!("dashboard/style.css"),
    ),
    ("/assets/app.js", JS, include_bytes!("dashboard/app.js")),
    ("/assets/conn.js", JS, include_bytes!("dashboard/conn.js")),
    ("/assets/model.js", JS, include_bytes!("dashboard/model.js")),
    ("/assets/views.js", JS, include_bytes!("dashboard/views.js")),
    ("/assets/graph.js", JS, include_bytes!("dashboard/graph.js")),
    (
        "/assets/logview.js",
        JS,
        include_bytes!("dashboard/logview.js"),
    ),
    ("/assets/ansi.js", JS, include_bytes!("dashboard/ansi.js")),
    ("/assets/dom.js", JS, include_bytes!("dashboard/dom.js")),
    (
        "/assets/compare.js",
        JS,
        include_bytes!("dashboard/compare.js"),
    ),
    (
        "/assets/approvals.js",
        JS,
        include_bytes!("dashboard/approvals.js"),
    ),
    ("/favicon.svg", SVG, include_bytes!("dashboard/favicon.svg")),
];

const HTML: &str = "text/html; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const SVG: &str = "image/svg+xml";

/// The policy on every asset. `connect-src 'self'` covers `ws:` to the
/// same host and port in current browsers; the explicit `ws://HOST` is for
/// older ones.
fn policy(host: Option<&str>) -> String {
    let ws = host
        .filter(|h| {
            h.chars()
                .all(|c| c.is_ascii_alphanumeric() || ".-:[]".contains(c))
        })
        .map(|h| format!(" ws://{h}"))
        .unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'{ws}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
}

/// Whether `path` is one of the dashboard's.
pub(crate) fn serves(path: &str) -> bool {
    ASSETS.iter().any(|(p, _, _)| *p == path)
}

/// The asset at `path`, with its security headers; `host` is the checked `Host`.
pub(crate) fn asset(path: &str, host: Option<&str>) -> Response<Body> {
    let Some((_, content_type, bytes)) = ASSETS.iter().find(|(p, _, _)| *p == path) else {
        return text(
            StatusCode::NOT_FOUND,
            "text/plain; charset=utf-8",
            "not found\n",
        );
    };
    let mut response = text(StatusCode::OK, content_type, *bytes);
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&policy(host)) {
        headers.insert(header::CONTENT_SECURITY_POLICY, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_page_has_a_policy_and_no_inline_script() {
        let page = String::from_utf8_lossy(include_bytes!("dashboard/index.html"));
        for tag in page.split("<script").skip(1) {
            let open = &tag[..tag.find('>').expect("a closed tag")];
            assert!(open.contains("src="), "an inline script: <script{open}>");
        }
        assert!(!page.contains(" style="), "an inline style attribute");
        let handler = page.match_indices(" on").any(|(at, _)| {
            let rest = &page[at + 3..];
            let name: String = rest.chars().take_while(char::is_ascii_lowercase).collect();
            !name.is_empty() && rest[name.len()..].starts_with('=')
        });
        assert!(!handler, "an inline event handler");
        let response = asset("/", Some("127.0.0.1:7420"));
        let csp = response.headers()[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap();
        assert!(
            csp.contains("script-src 'self'") && !csp.contains("unsafe-inline"),
            "{csp}"
        );
        assert!(csp.contains("ws://127.0.0.1:7420"), "{csp}");
        let odd = policy(Some("evil\"; script-src *"));
        assert!(!odd.contains("evil"), "{odd}");
    }

    #[test]
    fn every_module_the_page_imports_is_served() {
        for (path, _, bytes) in ASSETS {
            let text = String::from_utf8_lossy(bytes);
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let Some(from) = line.split(['\'', '"']).nth(1) else {
                    continue;
                };
                let target = format!("/assets/{}", from.trim_start_matches("./"));
                assert!(
                    serves(&target),
                    "{path} imports {from}, which is not served"
                );
            }
        }
    }
}
