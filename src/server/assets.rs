//! The voice terminal's page and its scripts (`web/`), compiled into the binary
//! so a user needs neither a build step nor a second server: `GET /` is the
//! page, `GET /<file>` its assets.
//!
//! Every answer carries a Content-Security-Policy that allows scripts from this
//! origin only (no inline script, no `eval`) and connections to this origin and
//! its `ws:`/`wss:` twin only. Styles may be inline because xterm.js's DOM
//! renderer writes its theme into `<style>` elements; a style cannot run code.
//! Assets are not fingerprinted, so they are served `no-cache` with a strong
//! ETag (the blake3 of the bytes): a reload revalidates and gets a 304.

use std::sync::OnceLock;

/// One file of the page.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static [u8],
}

macro_rules! asset {
    ($path:literal, $file:literal, $type:expr) => {
        Asset {
            path: $path,
            content_type: $type,
            body: include_bytes!(concat!(env!("CARGO_MANIFEST_DIR"), "/web/", $file)),
        }
    };
}

const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";

static ASSETS: &[Asset] = &[
    asset!("/", "index.html", "text/html; charset=utf-8"),
    asset!("/style.css", "style.css", CSS),
    asset!("/app.js", "app.js", JS),
    asset!("/voxterm.js", "voxterm.js", JS),
    asset!("/normalize.js", "normalize.js", JS),
    asset!("/voice.js", "voice.js", JS),
    asset!("/confirm.js", "confirm.js", JS),
    asset!("/termview.js", "termview.js", JS),
    asset!("/suggest.js", "suggest.js", JS),
    asset!("/measure.js", "measure.js", JS),
    asset!("/vendor/xterm.mjs", "vendor/xterm.mjs", JS),
    asset!("/vendor/addon-fit.mjs", "vendor/addon-fit.mjs", JS),
    asset!("/vendor/xterm.css", "vendor/xterm.css", CSS),
];

/// A complete answer for one asset: the head (status line and headers, ending
/// with the blank line) and the body (empty for a 304).
pub(super) struct Response {
    pub head: String,
    pub body: &'static [u8],
}

/// The answer for `path` (without query), or `None` when it is no asset.
/// `host` is the request's `Host` header (it names the page's own origin in the
/// CSP); `if_none_match` its `If-None-Match`.
pub(super) fn get(path: &str, host: Option<&str>, if_none_match: Option<&str>) -> Option<Response> {
    let path = if path == "/index.html" { "/" } else { path };
    let index = ASSETS.iter().position(|a| a.path == path)?;
    let asset = &ASSETS[index];
    let etag = &etags()[index];
    let fresh =
        if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let (status, body) = if fresh {
        ("304 Not Modified", &[][..])
    } else {
        ("200 OK", asset.body)
    };
    // A 304's Content-Length would have to be the 200's; it is simply left out.
    let length = if fresh {
        String::new()
    } else {
        format!("Content-Length: {}\r\n", body.len())
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {}\r\n{length}ETag: {etag}\r\n\
         Cache-Control: no-cache\r\nContent-Security-Policy: {}\r\n\
         X-Content-Type-Options: nosniff\r\nReferrer-Policy: no-referrer\r\n\
         X-Frame-Options: DENY\r\nCross-Origin-Opener-Policy: same-origin\r\n\
         Connection: close\r\n\r\n",
        asset.content_type,
        csp(host),
    );
    Some(Response { head, body })
}

fn etags() -> &'static [String] {
    static ETAGS: OnceLock<Vec<String>> = OnceLock::new();
    ETAGS.get_or_init(|| {
        ASSETS
            .iter()
            .map(|a| format!("\"{}\"", &blake3::hash(a.body).to_hex()[..32]))
            .collect()
    })
}

/// The policy: this origin only. `'self'` covers `ws:`/`wss:` of the same host
/// in CSP 3 browsers; the explicit entries serve older ones. A `Host` with
/// characters outside a host name and port is left out rather than echoed.
fn csp(host: Option<&str>) -> String {
    let connect = match host {
        Some(h)
            if !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b)) =>
        {
            format!("'self' ws://{h} wss://{h}")
        }
        _ => "'self'".to_owned(),
    };
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
         img-src 'self' data:; connect-src {connect}; base-uri 'none'; form-action 'none'; \
         frame-ancestors 'none'"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn page_and_assets_with_types_and_policy() {
        let r = get("/", Some("127.0.0.1:7878"), None).expect("the page");
        assert!(r.head.starts_with("HTTP/1.1 200 OK\r\n"), "{}", r.head);
        assert!(r.head.contains("Content-Type: text/html; charset=utf-8"));
        assert!(r
            .head
            .contains("connect-src 'self' ws://127.0.0.1:7878 wss://127.0.0.1:7878;"));
        assert!(r.head.contains("script-src 'self';"));
        assert!(r.head.contains("X-Content-Type-Options: nosniff"));
        assert!(!r.body.is_empty());
        let js = get("/voxterm.js", None, None).expect("the client");
        assert!(js.head.contains("text/javascript"), "{}", js.head);
        assert!(js.head.contains("connect-src 'self';"), "{}", js.head);
        assert!(get("/nope.js", None, None).is_none());
        assert!(get("/../Cargo.toml", None, None).is_none());
    }

    #[test]
    fn etag_revalidates_to_304() {
        let r = get("/app.js", None, None).expect("asset");
        let etag = r
            .head
            .lines()
            .find_map(|l| l.strip_prefix("ETag: "))
            .expect("an ETag")
            .to_owned();
        let again = get("/app.js", None, Some(&etag)).expect("asset");
        assert!(again.head.starts_with("HTTP/1.1 304"), "{}", again.head);
        assert!(again.body.is_empty());
        let other = get("/app.js", None, Some("\"something-else\"")).expect("asset");
        assert!(other.head.starts_with("HTTP/1.1 200"));
    }

    #[test]
    fn a_strange_host_is_not_echoed() {
        let r = get("/", Some("x\r\nSet-Cookie: a=b"), None).expect("page");
        assert!(!r.head.contains("Set-Cookie"), "{}", r.head);
        assert!(r.head.contains("connect-src 'self';"));
    }
}
