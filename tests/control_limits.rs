//! The control port under attack (root; CI runs as root), on the testbed's gateway: requests
//! that announce huge bodies, a client that pipelines requests and never reads, a crowd of
//! idle connections, a web page that rebinds its name to the gateway or posts to it from
//! another site. Through all of it `wanlb status` answers, SIGTERM stops wanlb and the
//! cleanup is complete. And the clients take the token from a file or the environment.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::*;

const LISTEN: &str = "127.0.0.1:9911";

/// Starts wanlb on gw with `args` as systemd starts a service by default: with a soft limit
/// of 1024 open files (the hard one higher), and waits until it reports ready.
fn start_wanlb(tb: &Testbed, args: &[String]) -> Process {
    let state = format!("/tmp/wanlb-test-{}", tb.prefix);
    let mut cmd = vec!["prlimit", "--nofile=1024:4096", WANLB, "run"];
    let data = tb.data_dir();
    cmd.extend(["--state-dir", &state, "--data-dir", &data]);
    cmd.extend(args.iter().map(String::as_str));
    let p = Process::start(tb.spawn("gw", &cmd));
    p.wait_for(" ready ", "wanlb");
    p
}

/// What the control port answers to `request`, sent as it is from gw.
fn raw(tb: &Testbed, request: &str) -> String {
    tb.ok(
        "gw",
        &[probe(), "http-raw", "--addr", LISTEN, "--request", request],
    )
}

/// A probe on gw that sends `request` `repeat` times on each of `connections` connections
/// and then holds them, never reading (unless `more` says so).
fn hold(tb: &Testbed, request: &str, repeat: usize, connections: usize, more: &[&str]) -> Process {
    let (repeat, connections) = (repeat.to_string(), connections.to_string());
    let mut cmd = vec![
        "prlimit",
        "--nofile=4096:4096",
        probe(),
        "http-raw",
        "--addr",
        LISTEN,
        "--request",
        request,
        "--repeat",
        &repeat,
        "--connections",
        &connections,
        "--hold",
    ];
    cmd.extend(more);
    let p = Process::start(tb.spawn("gw", &cmd));
    p.wait_for("holding", "http-raw");
    p
}

/// Asserts `wanlb status` answers, with both lines.
fn assert_status_answers(tb: &Testbed, context: &str) {
    let out = tb.run("gw", &[WANLB, "status", "--json"]);
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "wanlb status {context}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_str(&said).expect("JSON");
    assert_eq!(
        status["uplinks"].as_array().map(Vec::len),
        Some(2),
        "{said}"
    );
}

/// Sends SIGTERM and waits (up to a generous bound, not a timing assertion) for wanlb to
/// exit; panics if it does not.
fn stop(mut gw: Process) -> String {
    gw.signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(60);
    while gw.is_running() {
        assert!(
            Instant::now() < deadline,
            "SIGTERM did not stop wanlb:\n{}",
            gw.output()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, out) = gw.wait();
    assert!(status.success(), "wanlb exited {status}:\n{out}");
    assert!(out.contains("stopped"), "{out}");
    out
}

/// The value of the metric line `series` (`name{labels}`) at /metrics.
fn metric(tb: &Testbed, series: &str) -> u64 {
    let text = tb.metrics();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

/// The status line of an HTTP answer.
fn status_line(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

#[test]
fn huge_bodies_and_a_client_that_never_reads_leave_the_port_answering_and_sigterm_works() {
    let tb = Testbed::up();
    let before = tb.gateway_state();
    let gw = start_wanlb(&tb, &example_args());

    // bodies that tiny_http drained into memory (and aborted on) or overflowed on: refused
    // unread, with the connection closed (the second is no length hyper takes: refused as
    // it reads the head)
    for (length, refused) in [
        ("9223372036854775807", "HTTP/1.1 413 "),
        ("18446744073709551615", "HTTP/1.1 4"),
    ] {
        for (method, path) in [("GET", "/"), ("POST", "/reload")] {
            let request = format!(
                "{method} {path} HTTP/1.1\r\nHost: localhost\r\nContent-Length: {length}\r\n\r\n"
            );
            let answer = raw(&tb, &request);
            assert_status_answers(&tb, &format!("after Content-Length {length}"));
            assert!(
                status_line(&answer).starts_with(refused),
                "{method} {path} with Content-Length {length}: {answer:?}"
            );
        }
    }
    assert_eq!(gw.count("reloaded"), 0, "a refused POST reloaded");

    // a body announced and never sent, the socket held open: nobody waits for it
    let bomb = hold(
        &tb,
        "POST /reload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100000000\r\n\r\n",
        1,
        1,
        &[],
    );
    assert_status_answers(&tb, "while a client holds a body of 100 MB back");
    drop(bomb);

    // a client that pipelines thousands of requests for the page (65 MB of answers) and
    // reads none of them: its connection stalls, the others do not
    let page = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    let pipeliner = hold(&tb, page, 5000, 1, &[]);
    assert_status_answers(&tb, "while a client pipelines and never reads");
    // and one that reads them a little at a time: slow, but never stalled long enough to be
    // timed out
    let trickler = hold(&tb, page, 5000, 1, &["--read-every", "50ms"]);
    assert_status_answers(&tb, "again");
    assert!(
        metric(
            &tb,
            r#"wanlb_control_requests_refused_total{reason="body"}"#
        ) >= 3
    );

    // and SIGTERM stops wanlb while they still hold on, with everything removed
    let out = stop(gw);
    assert!(!out.contains("panicked"), "{out}");
    tb.assert_gateway_state(&before, "after a stop with clients that never read");
    drop((pipeliner, trickler));
}

#[test]
fn a_crowd_of_idle_connections_locks_out_neither_wanlb_status_nor_the_cleanup() {
    let tb = Testbed::up();
    let before = tb.gateway_state();
    let gw = start_wanlb(&tb, &example_args());
    // more idle connections than the soft limit it started with
    let crowd = hold(&tb, "", 1, 1100, &[]);
    assert!(
        crowd.output().contains("holding 1100 connections"),
        "{}",
        crowd.output()
    );
    assert_status_answers(&tb, "with 1100 idle connections open");
    // the idlest made way for the newer ones
    let closed = metric(
        &tb,
        r#"wanlb_control_connections_closed_total{reason="idlest"}"#,
    ) + metric(
        &tb,
        r#"wanlb_control_connections_closed_total{reason="timeout"}"#,
    );
    assert!(closed >= 1100 - 64, "{closed} closed");
    assert_status_answers(&tb, "again");
    // wanlb raised its soft limit on open files (1024) to the hard one
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", gw.child.id())).unwrap();
    let open_files = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .expect("Max open files");
    assert_eq!(
        open_files.split_whitespace().collect::<Vec<_>>()[3..5],
        ["4096", "4096"],
        "{open_files}"
    );

    // the stop runs its ip and nft with the crowd still there, and removes everything
    let out = stop(gw);
    assert!(!out.contains("panicked"), "{out}");
    tb.assert_gateway_state(&before, "after a stop with 1100 idle connections");
    drop(crowd);
}

#[test]
fn only_names_of_this_gateway_are_answered_and_only_its_own_pages_may_post() {
    let tb = Testbed::up();
    let mut args = example_args();
    args.extend(["--listen-host".into(), "gw.example.test".into()]);
    let gw = start_wanlb(&tb, &args);
    let get = |host: &str| {
        raw(
            &tb,
            &format!("GET /status HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"),
        )
    };

    // a page whose name was rebound to 127.0.0.1 gets nothing
    for host in ["rebind.attacker.example", "rebind.attacker.example:9911"] {
        let answer = get(host);
        assert!(
            status_line(&answer).starts_with("HTTP/1.1 421 ") && !answer.contains("uplinks"),
            "Host: {host}: {answer:?}"
        );
    }
    // localhost, the address asked and the listed name: the status
    for host in [
        "localhost",
        "127.0.0.1:9911",
        "[::1]:9911",
        "gw.example.test",
    ] {
        let answer = get(host);
        assert!(
            status_line(&answer).starts_with("HTTP/1.1 200 ") && answer.contains("\"uplinks\""),
            "Host: {host}: {answer:?}"
        );
    }
    assert_eq!(
        metric(
            &tb,
            r#"wanlb_control_requests_refused_total{reason="host"}"#
        ),
        2
    );

    // a form or a script of another site posts nothing
    let post = |headers: &str| {
        raw(
            &tb,
            &format!(
                "POST /reload HTTP/1.1\r\nHost: 127.0.0.1:9911\r\n{headers}\
                 Content-Length: 0\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    for foreign in [
        "Origin: http://attacker.example\r\n",
        "Sec-Fetch-Site: cross-site\r\n",
        "Origin: null\r\n",
    ] {
        let answer = post(foreign);
        assert!(
            status_line(&answer).starts_with("HTTP/1.1 403 "),
            "{foreign:?}: {answer:?}"
        );
    }
    assert_eq!(
        gw.count("reloaded"),
        0,
        "a foreign POST reloaded:\n{}",
        gw.output()
    );
    // as wanlb reload sends it, and as the page of this origin would
    for ours in [
        "",
        "Origin: http://127.0.0.1:9911\r\nSec-Fetch-Site: same-origin\r\n",
    ] {
        let answer = post(ours);
        assert!(
            status_line(&answer).starts_with("HTTP/1.1 200 "),
            "{ours:?}: {answer:?}"
        );
    }
    gw.wait_for_count("reloaded: no setting changed", 2, "wanlb");
    let said = tb.ok("gw", &[WANLB, "reload"]);
    assert!(said.contains("no setting changed"), "{said}");
}

#[test]
fn wanlb_status_takes_the_token_from_a_file_or_the_environment() {
    const TOKEN: &str = "file-or-environment";
    let tb = Testbed::up();
    let mut args = example_args();
    args.extend(["--listen-token".into(), TOKEN.into()]);
    let _gw = start_wanlb(&tb, &args);
    let scratch = Scratch::new();
    let file = format!("{}/token", scratch.0);
    std::fs::write(&file, format!("{TOKEN}\n")).unwrap();
    let wrong = format!("{}/wrong", scratch.0);
    std::fs::write(&wrong, "another\n").unwrap();
    let status = |extra: &[&str], variable: Option<&str>| {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &tb.ns("gw"), WANLB, "status", "--json"]);
        cmd.args(extra).env_remove("WANLB_TOKEN");
        if let Some(v) = variable {
            cmd.env("WANLB_TOKEN", v);
        }
        cmd.output().expect("wanlb status")
    };
    let answered = |out: &std::process::Output| {
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("\"uplinks\"")
    };
    let refused = |out: &std::process::Output| {
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("401")
    };
    let out = status(&[], None);
    assert!(refused(&out), "without the token: {out:?}");
    let out = status(&["--token-file", &file], None);
    assert!(answered(&out), "--token-file: {out:?}");
    let out = status(&[], Some(TOKEN));
    assert!(answered(&out), "WANLB_TOKEN: {out:?}");
    let out = status(&["--token", TOKEN], None);
    assert!(answered(&out), "--token: {out:?}");
    // a flag wins over the environment
    let out = status(&["--token-file", &wrong], Some(TOKEN));
    assert!(refused(&out), "--token-file with another token: {out:?}");
    let out = status(&["--token-file", &format!("{}/missing", scratch.0)], None);
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--token-file"),
        "{out:?}"
    );
    // wanlb reload too
    let mut reload = Command::new("ip");
    reload
        .args(["netns", "exec", &tb.ns("gw"), WANLB, "reload"])
        .env("WANLB_TOKEN", TOKEN);
    let out = reload.output().expect("wanlb reload");
    assert!(out.status.success(), "{out:?}");
}
