//! The HTTP side of the control plane (tiny_http): `GET /metrics`, `GET /status`,
//! `GET /history`, and `wanlb status`'s request for `/status`.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tiny_http::{Header, Response, Server};

use super::history::HistoryReport;
use super::{Snapshot, metrics};

/// Serves `snapshot()` and `history()` on `listen` until `stop` is set. With a `token`, every
/// request must carry `Authorization: Bearer TOKEN`.
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
        let response = if !authorized {
            Response::from_string("a token is needed: Authorization: Bearer TOKEN\n")
                .with_status_code(401)
        } else if request.method() != &tiny_http::Method::Get {
            Response::from_string("only GET\n").with_status_code(405)
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
                _ => Response::from_string("wanlb: try /metrics, /status or /history\n")
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
