//! The control plane, end to end (root; CI runs as root): the metrics agree with the traffic
//! that crossed, with and without the kernel fast path, the status lists the lines,
//! `wanlb status` shows them (and says so when no wanlb listens), and the status page shows
//! them in a real browser.

mod common;

use common::*;

/// A metric's value on the line `name{labels} value` of an OpenMetrics text.
fn metric(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {series} in:\n{text}"))
}

fn counter(tb: &Testbed, ns: &str, dev: &str, name: &str) -> f64 {
    tb.ok(
        ns,
        &["cat", &format!("/sys/class/net/{dev}/statistics/{name}")],
    )
    .trim()
    .parse()
    .unwrap()
}

fn metrics_agree_with_the_traffic(offload: &str) {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let mut args = example_args();
    args.extend(["--offload".into(), offload.into()]);
    let gw = tb.start_wanlb(&args);
    assert!(
        gw.output()
            .contains("serving the status page (/) and /metrics"),
        "{}",
        gw.output()
    );
    // 4 MB each way to the pinned destination: all of it through isp2
    tb.assert_tcp_echo("lan", &format!("{PINNED}:9000"), 4_000_000);
    let text = tb.metrics();
    let tx = metric(&text, r#"wanlb_uplink_tx_bytes_total{uplink="isp2"}"#);
    let rx = metric(&text, r#"wanlb_uplink_rx_bytes_total{uplink="isp2"}"#);
    assert!(
        (4.0e6..4.4e6).contains(&tx),
        "isp2 sent {tx} IP bytes for 4 MB of data"
    );
    assert!((4.0e6..4.4e6).contains(&rx), "isp2 received {rx}");
    // what r2 saw from the gateway: the same, plus an Ethernet header per frame and ARP
    let seen = counter(&tb, "r2", "eth0", "rx_bytes");
    assert!(
        (seen - tx).abs() / tx < 0.05,
        "r2 saw {seen} bytes, wanlb counted {tx}"
    );
    // the pinned server is the busiest destination: 4 MB each way through isp2
    let json = tb.ok("gw", &[WANLB, "status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let top = &status["top_destinations"][0];
    assert_eq!(
        (&top["address"], &top["uplink"]),
        (&PINNED.into(), &"isp2".into()),
        "{json}"
    );
    let bytes = top["bytes"].as_f64().unwrap();
    assert!(
        (8.0e6..8.8e6).contains(&bytes),
        "{bytes} bytes for 8 MB of data: {json}"
    );
    let isp1 = metric(&text, r#"wanlb_uplink_tx_bytes_total{uplink="isp1"}"#);
    assert!(isp1 < 10_000.0, "isp1 carried {isp1}");
    assert_eq!(metric(&text, r#"wanlb_uplink_up{uplink="isp2"}"#), 1.0);
    assert_eq!(metric(&text, r#"wanlb_uplink_weight{uplink="isp1"}"#), 2.0);
    assert!(
        text.contains(r#"wanlb_flows_active{proto="tcp"}"#),
        "{text}"
    );
    assert!(
        text.contains(r#"wanlb_drops_total{reason="no_flow"}"#),
        "{text}"
    );
    drop(gw);
}

#[test]
fn metrics_agree_with_the_traffic_in_userspace() {
    metrics_agree_with_the_traffic("off");
}

#[test]
fn metrics_agree_with_the_traffic_on_the_fast_path() {
    metrics_agree_with_the_traffic("on");
}

#[test]
fn the_status_lists_both_lines_and_wanlb_status_shows_them() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    // nothing listens yet: a clear error
    let none = tb.run("gw", &[WANLB, "status"]);
    let said = String::from_utf8_lossy(&none.stderr);
    assert!(
        !none.status.success() && said.contains("no wanlb answers on 127.0.0.1:9911"),
        "{said}"
    );
    let gw = tb.start_wanlb(&health_args());
    tb.spread("198.19.0.1", 9, 1);
    let json = tb.ok("gw", &[WANLB, "status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let uplinks = status["uplinks"].as_array().expect("uplinks");
    let names: Vec<&str> = uplinks
        .iter()
        .map(|u| u["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["isp1", "isp2"]);
    assert!(uplinks.iter().all(|u| u["state"] == "up"), "{json}");
    assert_eq!(uplinks[0]["address"], "198.18.1.1");
    assert_eq!(uplinks[1]["gateway"], "198.18.2.254");
    assert_eq!(uplinks[0]["destinations"], 6, "{json}");
    assert_eq!(status["pins"][0]["uplink"], "isp2");
    let table = tb.ok("gw", &[WANLB, "status"]);
    let lines: Vec<&str> = table.lines().collect();
    assert!(
        lines[1].starts_with("isp1") && lines[1].contains(" up "),
        "{table}"
    );
    assert!(
        lines[2].starts_with("isp2") && lines[2].contains(" up "),
        "{table}"
    );
    assert!(
        table.contains("67% (67%)"),
        "isp1's share against its weight: {table}"
    );

    // a line cut beyond the modem shows as down, with why
    tb.cut_beyond("r1");
    gw.wait_for("uplink down uplink=isp1", "wanlb");
    let table = tb.ok("gw", &[WANLB, "status"]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("isp1") && l.contains(" down ")),
        "{table}"
    );
    assert!(
        table.contains("probe rounds in a row unanswered"),
        "{table}"
    );
}

/// Uplink `name`'s card in the DOM a browser made of the status page: the page writes
/// `<article class="card" data-uplink="NAME" data-state="STATE">...</article>`.
fn card<'a>(dom: &'a str, name: &str) -> &'a str {
    let start = dom
        .find(&format!(r#"<article class="card" data-uplink="{name}""#))
        .unwrap_or_else(|| panic!("no card for {name} in:\n{dom}"));
    let len = dom[start..].find("</article>").expect("the card's end");
    &dom[start..start + len]
}

fn assert_card(dom: &str, name: &str, state: &str) {
    let card = card(dom, name);
    let opening = format!(r#"<article class="card" data-uplink="{name}" data-state="{state}">"#);
    assert!(card.starts_with(&opening), "{name} is not {state}: {card}");
    // what a person reads: the name, and the state in words as well as in colour
    assert!(
        card.contains(&format!(r#"<span class="name">{name}</span>"#)),
        "{card}"
    );
    assert!(
        card.contains(&format!(r#"<span class="badge">{state}</span>"#)),
        "{card}"
    );
}

#[test]
fn the_status_page_in_a_browser_shows_both_lines_up_then_isp1_down_after_a_cut() {
    const TOKEN: &str = "page-test-token";
    let tb = Testbed::up();
    tb.add_web();
    let _inet = tb.start_internet();
    let listen = format!("{GW_WEB}:9911");
    let mut args = health_args();
    // where the browser's namespace reaches it; not loopback, so with a token
    args.extend(["--listen".into(), listen.clone()]);
    args.extend(["--listen-token".into(), TOKEN.into()]);
    args.extend(["--forward".into(), "tcp:8080=198.18.3.10:80@isp2".into()]);
    let gw = tb.start_wanlb(&args);
    // the page carries no data and is served without the token; the data is not
    let get = |path: &str| {
        tb.run(
            "gw",
            &[probe(), "http-get", "--addr", &listen, "--path", path],
        )
    };
    let page = get("/");
    assert!(
        page.status.success() && String::from_utf8_lossy(&page.stdout).contains("<title>wanlb"),
        "{page:?}"
    );
    for path in ["/status", "/history", "/metrics"] {
        let refused = get(path);
        assert!(
            !refused.status.success() && String::from_utf8_lossy(&refused.stderr).contains(" 401 "),
            "{path} without the token: {refused:?}"
        );
    }

    // the page takes the token from its address and sends it with its requests; the
    // virtual time lets its script fetch and draw before the DOM is printed
    let url = format!("http://{listen}/#token={TOKEN}");
    let load = || tb.browse(&url, &["--virtual-time-budget=5000", "--dump-dom"]);
    let dom = load();
    assert_card(&dom, "isp1", "up");
    assert_card(&dom, "isp2", "up");
    let forward = "<td>tcp:8080</td><td>198.18.3.10:80</td><td>isp2</td>";
    assert!(dom.contains(forward), "the port forward is listed: {dom}");

    tb.cut_beyond("r1");
    gw.wait_for("uplink down uplink=isp1", "wanlb");
    let dom = load();
    assert_card(&dom, "isp1", "down");
    assert_card(&dom, "isp2", "up");
    assert!(
        card(&dom, "isp1").contains("probe rounds in a row unanswered"),
        "why it is down: {}",
        card(&dom, "isp1")
    );
}
