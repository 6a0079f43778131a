//! The HTTP side of the control plane: what the control port answers (the status page at
//! `GET /`, the data it draws at `GET /status` and `GET /history`, `GET /metrics` and `POST
//! /reload`), and the requests of `wanlb status` and `wanlb reload`. The server itself, with
//! its limits, is `server.rs`; who is answered, `access.rs`.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use http_body_util::Full;
use hyper::body::Bytes;
use hyper::header::{
    ALLOW, CONNECTION, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderValue, REFERRER_POLICY,
    X_CONTENT_TYPE_OPTIONS,
};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};

use super::access::{self, Access, Refusal};
use super::server::{Counters, MAX_BODY, RequestBody};
use super::{Gateway, ReloadReport, Snapshot, metrics};

/// The status page: one file, its style and script inline, nothing fetched from elsewhere
/// (the gateway may be what is offline). It carries no data, so it needs no token; it asks
/// for the data with the token it is given in its address.
const PAGE: &str = include_str!("page.html");

/// The page may run its own inline script and style and talk to this server, nothing else.
const PAGE_POLICY: &str = "default-src 'none'; script-src 'unsafe-inline'; \
    style-src 'unsafe-inline'; connect-src 'self'; base-uri 'none'; form-action 'none'; \
    frame-ancestors 'none'";

type Answer = Response<Full<Bytes>>;

fn answer(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Answer {
    let mut a = Response::new(Full::new(body.into()));
    *a.status_mut() = status;
    a.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    a
}

fn text(status: StatusCode, body: impl Into<Bytes>) -> Answer {
    answer(status, "text/plain; charset=utf-8", body)
}

fn json(status: StatusCode, body: Result<String, serde_json::Error>) -> Answer {
    match body {
        Ok(body) => answer(status, "application/json", body),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn error(status: StatusCode, message: &str) -> Answer {
    let body = serde_json::json!({ "error": message }).to_string();
    answer(status, "application/json", body)
}

/// The two ends of a connection to the control port.
#[derive(Clone, Copy, Debug)]
pub(super) struct Ends {
    /// The address it arrived at (the gateway's own).
    pub local: SocketAddr,
    /// The client's.
    pub client: SocketAddr,
}

/// The answer to the request `head` on a connection between `ends`; `counters` count the
/// refusals. With a token in `access`, every request but the page's must carry
/// `Authorization: Bearer TOKEN`; without one, a POST (a change) must come from root or
/// wanlb's own user.
pub(super) fn respond(
    head: &Parts,
    body: RequestBody,
    ends: Ends,
    access: &Access,
    gateway: &impl Gateway,
    counters: &Counters,
) -> Answer {
    let count = |c: &std::sync::atomic::AtomicU64| {
        c.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    };
    if body == RequestBody::TooLarge {
        count(&counters.refused_body);
        let mut a = text(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("wanlb takes no request body (at most {MAX_BODY} bytes are ignored)\n"),
        );
        // the body stays unread: nothing else can follow on this connection
        a.headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return a;
    }
    if access.host(&head.headers, ends.local.ip()) == Err(Refusal::Host) {
        count(&counters.refused_host);
        return text(
            StatusCode::MISDIRECTED_REQUEST,
            "wanlb answers for localhost, its own address and the names in listen_hosts \
             (--listen-host NAME) only: add the name this was sent to there\n",
        );
    }
    let path = head.uri.path();
    let (wanted, allow) = if matches!(path, "/reload" | "/cap/set" | "/cap/reset") {
        (Method::POST, "POST")
    } else {
        (Method::GET, "GET")
    };
    if head.method != wanted {
        let mut a = text(
            StatusCode::METHOD_NOT_ALLOWED,
            format!("{path} takes {wanted} only\n"),
        );
        a.headers_mut()
            .insert(ALLOW, HeaderValue::from_static(allow));
        return a;
    }
    if head.method == Method::POST && access::same_origin(&head.headers).is_err() {
        count(&counters.refused_origin);
        return text(
            StatusCode::FORBIDDEN,
            "wanlb takes a POST from its own page or from no page at all, not from another site\n",
        );
    }
    if path == "/" {
        let mut a = answer(StatusCode::OK, "text/html; charset=utf-8", PAGE);
        let h = a.headers_mut();
        h.insert(
            CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(PAGE_POLICY),
        );
        // a token in the query must not travel on in a Referer
        h.insert(REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
        h.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
        return a;
    }
    if access.token(&head.headers).is_err() {
        count(&counters.refused_token);
        return text(
            StatusCode::UNAUTHORIZED,
            "a token is needed: Authorization: Bearer TOKEN\n",
        );
    }
    // without a token, any local user reaches the port: they may read the status, but a
    // change (a reload, a line's count set or started again) is root's
    if head.method == Method::POST
        && !access.has_token()
        && !gateway.is_own_user(ends.client, ends.local)
    {
        count(&counters.refused_token);
        return text(
            StatusCode::FORBIDDEN,
            "without listen_token, only root (wanlb's own user) may change wanlb through the \
             control port; set listen_token to let others with the token do it\n",
        );
    }
    match path {
        "/metrics" => answer(
            StatusCode::OK,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
            metrics::render(&gateway.snapshot(false), &counters.counts()),
        ),
        "/status" => json(
            StatusCode::OK,
            serde_json::to_string_pretty(&gateway.snapshot(true)),
        ),
        "/history" => json(StatusCode::OK, serde_json::to_string(&gateway.history())),
        "/reload" => match gateway.reload() {
            Ok(report) => json(StatusCode::OK, serde_json::to_string_pretty(&report)),
            // the settings in the file are wrong, not the request
            Err(e) => error(StatusCode::UNPROCESSABLE_ENTITY, &e),
        },
        "/cap/set" | "/cap/reset" => set_count(head, gateway),
        _ => text(
            StatusCode::NOT_FOUND,
            "wanlb: try /, /metrics, /status, /history, or POST /reload, /cap/set, /cap/reset\n",
        ),
    }
}

/// `POST /cap/set?uplink=NAME&bytes=N` and `POST /cap/reset?uplink=NAME`.
fn set_count(head: &Parts, gateway: &impl Gateway) -> Answer {
    let query = head.uri.query().unwrap_or("");
    let value = |key: &str| {
        query
            .split('&')
            .filter_map(|pair| pair.split_once('='))
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    };
    let Some(uplink) = value("uplink") else {
        return error(StatusCode::BAD_REQUEST, "which uplink? (?uplink=NAME)");
    };
    let bytes = if head.uri.path() == "/cap/set" {
        match value("bytes").map(str::parse::<u64>) {
            Some(Ok(b)) if b <= crate::metered::size::MAX_SIZE => Some(b),
            _ => {
                return error(
                    StatusCode::BAD_REQUEST,
                    "bytes=N: the count in bytes, at most a petabyte",
                );
            }
        }
    } else {
        None
    };
    match gateway.set_count(uplink, bytes) {
        Ok(()) => json(StatusCode::OK, Ok("{}".to_string())),
        Err(e) => error(StatusCode::NOT_FOUND, &e),
    }
}

/// `GET /status` from a running wanlb at `listen`.
pub fn fetch_status(listen: SocketAddr, token: Option<&str>) -> io::Result<Snapshot> {
    let body = call(listen, token, Method::GET, "/status")?;
    serde_json::from_str(&body)
        .map_err(|e| io::Error::other(format!("{listen} sent a status wanlb cannot read: {e}")))
}

/// `POST /cap/set` (with `Some(bytes)`) or `/cap/reset` of `uplink` to a running wanlb at
/// `listen`.
pub fn request_count(
    listen: SocketAddr,
    token: Option<&str>,
    uplink: &str,
    bytes: Option<u64>,
) -> io::Result<()> {
    let path = match bytes {
        Some(b) => format!("/cap/set?uplink={uplink}&bytes={b}"),
        None => format!("/cap/reset?uplink={uplink}"),
    };
    call(listen, token, Method::POST, &path).map(|_| ())
}

/// `POST /reload` to a running wanlb at `listen`: what it applied and what waits for a
/// restart, or why it kept its settings.
pub fn request_reload(listen: SocketAddr, token: Option<&str>) -> io::Result<ReloadReport> {
    let body = call(listen, token, Method::POST, "/reload")?;
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
    let sent = if method == Method::POST {
        let mut request = agent.post(&url);
        if let Some(auth) = &auth {
            request = request.header("Authorization", auth);
        }
        request.send_empty()
    } else {
        let mut request = agent.get(&url);
        if let Some(auth) = &auth {
            request = request.header("Authorization", auth);
        }
        request.call()
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
    use std::cell::Cell;
    use std::sync::atomic::Ordering;

    use hyper::Request;

    use super::*;
    use crate::control::history::HistoryReport;

    /// A gateway that counts the reloads asked of it; `stranger`: its clients are local
    /// users other than root.
    #[derive(Default)]
    struct Fake {
        reloads: Cell<u32>,
        counts: std::cell::RefCell<Vec<Option<u64>>>,
        stranger: bool,
    }

    impl Gateway for Fake {
        fn snapshot(&self, _: bool) -> Snapshot {
            Snapshot {
                taken_at: 7,
                ..Snapshot::default()
            }
        }
        fn history(&self) -> HistoryReport {
            HistoryReport::default()
        }
        fn reload(&self) -> Result<ReloadReport, String> {
            self.reloads.set(self.reloads.get() + 1);
            Ok(ReloadReport::default())
        }
        fn set_count(&self, name: &str, bytes: Option<u64>) -> Result<(), String> {
            if name != "lte" {
                return Err(format!("no uplink is called {name:?}"));
            }
            self.counts.borrow_mut().push(bytes);
            Ok(())
        }
        fn is_own_user(&self, _: SocketAddr, _: SocketAddr) -> bool {
            !self.stranger
        }
    }

    fn body_of(a: &Answer) -> Bytes {
        use http_body_util::BodyExt;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let collected = runtime.block_on(a.body().clone().collect()).unwrap();
        collected.to_bytes()
    }

    /// A local client of the port at 127.0.0.1:9911.
    fn ends() -> Ends {
        Ends {
            local: "127.0.0.1:9911".parse().unwrap(),
            client: "127.0.0.1:41000".parse().unwrap(),
        }
    }

    fn ask(
        access: &Access,
        gateway: &Fake,
        counters: &Counters,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
    ) -> (StatusCode, String, Answer) {
        let mut request = Request::builder().method(method).uri(path);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let (head, ()) = request.body(()).unwrap().into_parts();
        let a = respond(
            &head,
            RequestBody::Ignored,
            ends(),
            access,
            gateway,
            counters,
        );
        let body = String::from_utf8_lossy(&body_of(&a)).into_owned();
        (a.status(), body, a)
    }

    #[test]
    fn a_rebound_name_gets_nothing_and_is_counted() {
        let (access, gateway, counters) =
            (Access::new(None, &[]), Fake::default(), Counters::default());
        for path in ["/", "/status", "/metrics", "/history"] {
            let host = [("host", "rebind.attacker.example:9911")];
            let (status, _, _) = ask(&access, &gateway, &counters, Method::GET, path, &host);
            assert_eq!(status, StatusCode::MISDIRECTED_REQUEST, "{path}");
        }
        let host = [("host", "rebind.attacker.example")];
        let (status, _, _) = ask(&access, &gateway, &counters, Method::POST, "/reload", &host);
        assert_eq!(status, StatusCode::MISDIRECTED_REQUEST);
        assert_eq!(gateway.reloads.get(), 0);
        assert_eq!(counters.refused_host.load(Ordering::Relaxed), 5);
        let (status, body, a) = ask(
            &access,
            &gateway,
            &counters,
            Method::GET,
            "/",
            &[("host", "localhost:9911")],
        );
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("<title>wanlb"), "{body}");
        assert_eq!(a.headers()[CONTENT_SECURITY_POLICY], PAGE_POLICY);
        let (status, body, _) = ask(
            &access,
            &gateway,
            &counters,
            Method::GET,
            "/status",
            &[("host", "127.0.0.1:9911")],
        );
        assert_eq!(status, StatusCode::OK);
        assert!(body.contains("taken_at"), "{body}");
    }

    #[test]
    fn a_post_from_another_site_reloads_nothing() {
        let (access, gateway, counters) =
            (Access::new(None, &[]), Fake::default(), Counters::default());
        let host = ("host", "127.0.0.1:9911");
        for foreign in [
            [host, ("origin", "http://attacker.example")],
            [host, ("sec-fetch-site", "cross-site")],
        ] {
            let (status, _, _) = ask(
                &access,
                &gateway,
                &counters,
                Method::POST,
                "/reload",
                &foreign,
            );
            assert_eq!(status, StatusCode::FORBIDDEN, "{foreign:?}");
        }
        assert_eq!(gateway.reloads.get(), 0);
        assert_eq!(counters.refused_origin.load(Ordering::Relaxed), 2);
        // as wanlb reload sends it, and as the page itself would
        for ours in [
            vec![host],
            vec![
                host,
                ("origin", "http://127.0.0.1:9911"),
                ("sec-fetch-site", "same-origin"),
            ],
        ] {
            let (status, _, _) = ask(&access, &gateway, &counters, Method::POST, "/reload", &ours);
            assert_eq!(status, StatusCode::OK, "{ours:?}");
        }
        assert_eq!(gateway.reloads.get(), 2);
    }

    #[test]
    fn the_token_guards_the_data_not_the_page() {
        let access = Access::new(Some("t0k3n".into()), &[]);
        let (gateway, counters) = (Fake::default(), Counters::default());
        let host = ("host", "localhost");
        let (status, _, _) = ask(&access, &gateway, &counters, Method::GET, "/", &[host]);
        assert_eq!(status, StatusCode::OK);
        for path in ["/status", "/metrics", "/history"] {
            let (status, _, _) = ask(&access, &gateway, &counters, Method::GET, path, &[host]);
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        }
        let (status, _, _) = ask(
            &access,
            &gateway,
            &counters,
            Method::POST,
            "/reload",
            &[host],
        );
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(gateway.reloads.get(), 0);
        assert_eq!(counters.refused_token.load(Ordering::Relaxed), 4);
        let auth = ("authorization", "Bearer t0k3n");
        let (status, body, _) = ask(
            &access,
            &gateway,
            &counters,
            Method::GET,
            "/metrics",
            &[host, auth],
        );
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.contains(r#"wanlb_control_requests_refused_total{reason="token"} 4"#),
            "{body}"
        );
    }

    #[test]
    fn a_body_is_refused_and_the_connection_closed_and_a_wrong_method_named() {
        let (access, gateway, counters) =
            (Access::new(None, &[]), Fake::default(), Counters::default());
        let (head, ()) = Request::builder()
            .method(Method::POST)
            .uri("/reload")
            .header("host", "localhost")
            .body(())
            .unwrap()
            .into_parts();
        let a = respond(
            &head,
            RequestBody::TooLarge,
            ends(),
            &access,
            &gateway,
            &counters,
        );
        assert_eq!(a.status(), StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(a.headers()[CONNECTION], "close");
        assert_eq!(gateway.reloads.get(), 0);
        assert_eq!(counters.refused_body.load(Ordering::Relaxed), 1);
        let host = [("host", "localhost")];
        let (status, _, a) = ask(&access, &gateway, &counters, Method::GET, "/reload", &host);
        assert_eq!(
            (status, &a.headers()[ALLOW]),
            (
                StatusCode::METHOD_NOT_ALLOWED,
                &HeaderValue::from_static("POST")
            )
        );
        let (status, _, a) = ask(&access, &gateway, &counters, Method::POST, "/status", &host);
        assert_eq!(
            (status, &a.headers()[ALLOW]),
            (
                StatusCode::METHOD_NOT_ALLOWED,
                &HeaderValue::from_static("GET")
            )
        );
        let (status, _, _) = ask(&access, &gateway, &counters, Method::GET, "/nothing", &host);
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[test]
    fn without_a_token_only_root_changes_wanlb_and_others_read_the_status() {
        let stranger = Fake {
            stranger: true,
            ..Fake::default()
        };
        let (access, counters) = (Access::new(None, &[]), Counters::default());
        let host = [("host", "localhost")];
        for change in [
            "/cap/reset?uplink=lte",
            "/cap/set?uplink=lte&bytes=0",
            "/reload",
        ] {
            let (status, body, _) = ask(&access, &stranger, &counters, Method::POST, change, &host);
            assert_eq!(status, StatusCode::FORBIDDEN, "{change}");
            assert!(body.contains("only root"), "{body}");
        }
        assert!(stranger.counts.borrow().is_empty());
        assert_eq!(stranger.reloads.get(), 0);
        assert_eq!(counters.refused_token.load(Ordering::Relaxed), 3);
        let (status, _, _) = ask(&access, &stranger, &counters, Method::GET, "/status", &host);
        assert_eq!(status, StatusCode::OK, "reading stays open");
        // root, without a token
        let root = Fake::default();
        let reset = "/cap/reset?uplink=lte";
        let (status, _, _) = ask(&access, &root, &counters, Method::POST, reset, &host);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(*root.counts.borrow(), [None]);
        // with a token, the token decides, whoever holds it
        let access = Access::new(Some("t0k3n".into()), &[]);
        let with = [("host", "localhost"), ("authorization", "Bearer t0k3n")];
        let (status, _, _) = ask(&access, &stranger, &counters, Method::POST, reset, &with);
        assert_eq!(status, StatusCode::OK);
        assert_eq!(*stranger.counts.borrow(), [None]);
    }

    #[test]
    fn a_count_is_set_by_a_post_with_the_token_from_no_other_site() {
        let access = Access::new(Some("t0k3n".into()), &[]);
        let (gateway, counters) = (Fake::default(), Counters::default());
        let host = ("host", "localhost");
        let auth = ("authorization", "Bearer t0k3n");
        let set = "/cap/set?uplink=lte&bytes=1500000000";
        let (status, _, _) = ask(&access, &gateway, &counters, Method::POST, set, &[host]);
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let foreign = [host, auth, ("origin", "http://attacker.example")];
        let (status, _, _) = ask(&access, &gateway, &counters, Method::POST, set, &foreign);
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _, _) = ask(
            &access,
            &gateway,
            &counters,
            Method::GET,
            set,
            &[host, auth],
        );
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert!(gateway.counts.borrow().is_empty());
        let (status, _, _) = ask(
            &access,
            &gateway,
            &counters,
            Method::POST,
            set,
            &[host, auth],
        );
        assert_eq!(status, StatusCode::OK);
        let reset = "/cap/reset?uplink=lte";
        let (status, _, _) = ask(
            &access,
            &gateway,
            &counters,
            Method::POST,
            reset,
            &[host, auth],
        );
        assert_eq!(status, StatusCode::OK);
        assert_eq!(*gateway.counts.borrow(), [Some(1_500_000_000), None]);
        for (bad, expected, says) in [
            (
                "/cap/set?uplink=lte&bytes=20GB",
                StatusCode::BAD_REQUEST,
                "bytes=N",
            ),
            ("/cap/set?uplink=lte", StatusCode::BAD_REQUEST, "bytes=N"),
            ("/cap/reset", StatusCode::BAD_REQUEST, "which uplink"),
            (
                "/cap/reset?uplink=dsl",
                StatusCode::NOT_FOUND,
                "no uplink is called",
            ),
        ] {
            let (status, body, _) = ask(
                &access,
                &gateway,
                &counters,
                Method::POST,
                bad,
                &[host, auth],
            );
            assert_eq!(status, expected, "{bad}");
            assert!(body.contains(says), "{bad}: {body}");
        }
        assert_eq!(gateway.counts.borrow().len(), 2);
    }

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
