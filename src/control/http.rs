//! The HTTP side of the control plane (tiny_http): the status page at `GET /`, the data it
//! draws (`GET /status`, `GET /history`), `GET /metrics` and `POST /reload`; and the requests
//! of `wanlb status` and `wanlb reload`.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tiny_http::{Header, Method, Response, Server};

use super::{Gateway, ReloadReport, Snapshot, metrics};

/// The status page: one file, its style and script inline, nothing fetched from elsewhere
/// (the gateway may be what is offline). It carries no data, so it needs no token; it asks
/// for the data with the token it is given in its address.
const PAGE: &str = include_str!("page.html");

/// The page may run its own inline script and style and talk to this server, nothing else.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

/// Serves `gateway`'s status, history and metrics, and its reload, on `server` until `stop`
/// is set. With a `token`, every request but the page's must carry `Authorization: Bearer
/// TOKEN`.
pub fn serve(
    server: Server,
    token: Option<&str>,
    gateway: &impl Gateway,
    stop: &AtomicBool,
) -> io::Result<()> {
    let header = |name: &str, value: &str| {
        Header::from_bytes(name.as_bytes(), value.as_bytes()).expect("a valid header")
    };
    let json = |body: String| {
        Response::from_string(body).with_header(header("Content-Type", "application/json"))
    };
    let error = |code: u16, message: &str| {
        json(serde_json::json!({ "error": message }).to_string()).with_status_code(code)
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
        let method = request.method().clone();
        let wanted = if path == "/reload" {
            Method::Post
        } else {
            Method::Get
        };
        let response = if method != wanted {
            Response::from_string(format!("{path} takes {wanted} only\n"))
                .with_status_code(405)
                .with_header(header("Allow", wanted.as_str()))
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
            let body = |v: Result<String, serde_json::Error>| match v {
                Ok(text) => json(text),
                Err(e) => error(500, &e.to_string()),
            };
            match path.as_str() {
                "/metrics" => Response::from_string(metrics::render(&gateway.snapshot(false)))
                    .with_header(header(
                        "Content-Type",
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    )),
                "/status" => body(serde_json::to_string_pretty(&gateway.snapshot(true))),
                "/history" => body(serde_json::to_string(&gateway.history())),
                "/reload" => match gateway.reload() {
                    Ok(report) => body(serde_json::to_string_pretty(&report)),
                    // the settings in the file are wrong, not the request
                    Err(e) => error(422, &e),
                },
                _ => Response::from_string(
                    "wanlb: try /, /metrics, /status, /history, or POST /reload\n",
                )
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
    let body = call(listen, token, Method::Get, "/status")?;
    serde_json::from_str(&body)
        .map_err(|e| io::Error::other(format!("{listen} sent a status wanlb cannot read: {e}")))
}

/// `POST /reload` to a running wanlb at `listen`: what it applied and what waits for a
/// restart, or why it kept its settings.
pub fn request_reload(listen: SocketAddr, token: Option<&str>) -> io::Result<ReloadReport> {
    let body = call(listen, token, Method::Post, "/reload")?;
    serde_json::from_str(&body)
        .map_err(|e| io::Error::other(format!("{listen} sent an answer wanlb cannot read: {e}")))
}

/// The body of `method` `path` at `listen`; an error names what went wrong, with the
/// server's own message if it answered with one.
fn call(listen: SocketAddr, token: Option<&str>, method: Method, path: &str) -> io::Result<String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    let url = format!("http://{listen}{path}");
    let auth = token.map(|t| format!("Bearer {t}"));
    let sent = match method {
        Method::Post => {
            let mut request = agent.post(&url);
            if let Some(auth) = &auth {
                request = request.header("Authorization", auth);
            }
            request.send_empty()
        }
        _ => {
            let mut request = agent.get(&url);
            if let Some(auth) = &auth {
                request = request.header("Authorization", auth);
            }
            request.call()
        }
    };
    let mut response = sent.map_err(|e| {
        io::Error::other(format!(
            "no wanlb answers on {listen} ({e}); is it running, with --listen {listen}?"
        ))
    })?;
    let status = response.status();
    let body = response
        .body_mut()
        .read_to_string()
        .map_err(|e| io::Error::other(format!("reading {listen}'s answer: {e}")))?;
    if !status.is_success() {
        let said = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(String::from))
            .unwrap_or_else(|| body.trim().to_string());
        // 422: the request was fine, the settings it asked to use are not
        let kind = if status.as_u16() == 422 {
            io::ErrorKind::InvalidData
        } else {
            io::ErrorKind::Other
        };
        return Err(io::Error::new(
            kind,
            format!("{listen} answered {status}: {said}"),
        ));
    }
    Ok(body)
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
