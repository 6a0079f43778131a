//! The HTTP side of the control plane (tiny_http): the status page at `GET /`, the data it
//! draws (`GET /status`, `GET /history`), `GET /metrics`, and `wanlb status`'s request for
//! `/status`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tiny_http::{Header, Response, Server};

use super::history::HistoryReport;
use super::{Snapshot, metrics};

/// The status page: one file, its style and script inline, nothing fetched from elsewhere
/// (the gateway may be what is offline). It carries no data, so it needs no token; it asks
/// for the data with the token it is given in its address.
const PAGE: &str = include_str!("page.html");

/// The page may run its own inline script and style and talk to this server, nothing else.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// Serves `snapshot()` and `history()` on `listen` until `stop` is set. With a `token`, every
/// request but the page's must carry `Authorization: Bearer TOKEN`.
pub fn serve(
    server: Server,
    token: Option<&str>,
    snapshot: impl Fn() -> Snapshot,
    history: impl Fn() -> HistoryReport,
    stop: &AtomicBool,
) -> io::Result<()> {
    let header = |name: &str, value: &str| {
        Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
    };
    let json = |body: Result<String, serde_json::Error>| {
        Response::from_string(body.unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}")))
            .with_header(header("Content-Type", "application/json"))
    };
    while !stop.load(Ordering::Relaxed) {
        let Some(request) = server.recv_timeout(Duration::from_millis(200))? else {
            continue;
        };
        let authorized = token.is_none_or(|t| {
            let expected = format!("Bearer {t}");
            request
                .headers()
                .iter()
                .any(|h| h.field.equiv("Authorization") && h.value.as_str() == expected)
        });
        let path = request.url().split('?').next().unwrap_or("").to_string();
        let response = if request.method() != &tiny_http::Method::Get {
            Response::from_string("only GET\n").with_status_code(405)
        } else if path == "/" {
            Response::from_string(PAGE)
                .with_header(header("Content-Type", "text/html; charset=utf-8"))
                .with_header(header("Content-Security-Policy", PAGE_POLICY))
                // a token in the query must not travel on in a Referer
                .with_header(header("Referrer-Policy", "no-referrer"))
                .with_header(header("X-Content-Type-Options", "nosniff"))
        } else if !authorized {
            Response::from_string("a token is needed: Authorization: Bearer TOKEN\n")
                .with_status_code(401)
        } else {
            match path.as_str() {
                "/metrics" => {
                    Response::from_string(metrics::render(&snapshot())).with_header(header(
                        "Content-Type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    ))
                }
                "/status" => json(serde_json::to_string_pretty(&snapshot())),
                "/history" => json(serde_json::to_string(&history())),
                _ => Response::from_string("wanlb: try /, /metrics, /status or /history\n")
                    .with_status_code(404),
            }
        };
        if let Err(e) = request.respond(response) {
            tracing::debug!(error = %e, "an HTTP client went away");
        }
    }
    Ok(())
}

/// `GET /status` from a running wanlb at `listen`.
pub fn fetch_status(listen: SocketAddr, token: Option<&str>) -> io::Result<Snapshot> {
    let mut stream = TcpStream::connect_timeout(&listen, Duration::from_secs(2)).map_err(|e| {
        io::Error::new(
            e.kind(),
            format!("no wanlb answers on {listen} ({e}); is it running, with --listen {listen}?"),
        )
    })?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET /status HTTP/1.0\r\nHost: {listen}\r\n{auth}\r\n"
    )?;
    let mut reply = Vec::new();
    stream.read_to_end(&mut reply)?;
    let text = String::from_utf8_lossy(&reply);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| io::Error::other(format!("{listen} did not answer in HTTP")))?;
    let status = head.lines().next().unwrap_or("");
    if !status.contains(" 200 ") {
        return Err(io::Error::other(format!(
            "{listen} answered {status}: {}",
            body.trim()
        )));
    }
    serde_json::from_str(body)
        .map_err(|e| io::Error::other(format!("{listen} sent a status wanlb cannot read: {e}")))
}

#[cfg(test)]
mod tests {
    use super::PAGE;

    #[test]
    fn the_page_loads_nothing_from_elsewhere() {
        for reference in ["src=", "href=", "url(", "@import", "//fonts", "https:"] {
            assert!(!PAGE.contains(reference), "the page has {reference:?}");
        }
        // the one address in it names SVG's namespace, fetched from nowhere
        assert_eq!(
            PAGE.matches("http://").collect::<Vec<_>>(),
            ["http://"],
            "the page names an address"
        );
        assert!(PAGE.contains(r#""http://www.w3.org/2000/svg""#));
    }
}
