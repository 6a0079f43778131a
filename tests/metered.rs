//! Metered lines, end to end: a line with a data cap of a few megabytes reaches it under real
//! traffic and leaves service, its count and state survive a restart and a `kill -9`, the
//! hook runs once per crossing, and `wanlb cap` sets and shows the count (root required).
//! Periods starting again on their day, and clock jumps, are the pure meter's tests
//! (src/metered/meter_tests.rs): this machine's clock is not the test's to set.

mod common;

use std::time::Duration;

use common::*;

/// The example network with isp2 capped at 3 MB (`on_cap`), counts in `data`, every hook
/// event appended to `hooks`, and the 198.19.2.0/24 destinations pinned to isp2.
fn args(on_cap: &str, data: &str, hooks: &str) -> Vec<String> {
    let mut a: Vec<String> = health_args()
        .into_iter()
        .filter(|a| !a.starts_with("isp2,"))
        .collect();
    // the --uplink before the removed isp2 SPEC takes the capped one
    let at = a.iter().rposition(|x| x == "--uplink").unwrap();
    if a.get(at + 1).is_none_or(|x| x.starts_with("--")) {
        a.remove(at);
    }
    a.extend(
        [
            "--uplink",
            &format!("isp2,dev=eth2,gw=198.18.2.254,cap=3MB,on_cap={on_cap}"),
            "--pin",
            "198.19.2.0/24=isp2",
            "--data-dir",
            data,
            "--on-change",
            &format!("echo \"$WANLB_EVENT $WANLB_UPLINK $WANLB_STATE\" >> {hooks}"),
        ]
        .map(String::from),
    );
    a
}

/// The hook's lines about cap events so far, sorted (each runs at once, in a process of its
/// own: two in the same second may finish in either order).
fn cap_events(hooks: &str) -> Vec<String> {
    let mut events: Vec<String> = std::fs::read_to_string(hooks)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("cap-"))
        .map(String::from)
        .collect();
    events.sort();
    events
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..100 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not happen within 10 s");
}

#[test]
fn a_line_at_its_cap_leaves_service_and_its_count_survives_a_restart_and_a_kill() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let scratch = Scratch::new();
    let data = format!("{}/data", scratch.0);
    let hooks = format!("{}/hooks", scratch.0);
    let gw = tb.start_wanlb(&args("off", &data, &hooks));
    gw.wait_for("uplink up", "isp2 up");
    // 2 MB each way through isp2, by its pin: past the warning (80% of 3 MB), then the cap
    tb.assert_tcp_echo("lan", "198.19.2.1:9000", 2_000_000);
    gw.wait_for("cap reached: out of service", "the cap taking effect");
    wait_for("the hook", || cap_events(&hooks).len() >= 2);
    assert_eq!(
        cap_events(&hooks),
        ["cap-reached isp2 up", "cap-warn isp2 up"]
    );
    // out of service: new destinations all leave through isp1, the pinned ones too
    let flows = tb.spread("198.19.0.1", 12, 1);
    assert_eq!(via_counts(&flows), (12, 0), "{flows:?}");
    let pinned = tb.spread(PINNED, 1, 1);
    assert_eq!(
        via_counts(&pinned),
        (1, 0),
        "the pin falls back: {pinned:?}"
    );
    let shown = tb.ok("gw", &[WANLB, "cap", "show", "isp2"]);
    assert!(shown.contains("cap reached"), "{shown}");
    let metrics = tb.metrics();
    assert!(
        metrics.contains("wanlb_uplink_cap_bytes{uplink=\"isp2\"} 3000000"),
        "{metrics}"
    );

    // a clean stop writes the count; the next run starts from it, still at the cap, and
    // does not tell the crossing again
    let (_, log) = gw.stop();
    assert!(!log.contains("cannot write"), "{log}");
    let kept = std::fs::read_to_string(format!("{data}/wanlb0.json")).unwrap();
    assert!(kept.contains("\"reached\": true"), "{kept}");
    let gw = tb.start_wanlb(&args("off", &data, &hooks));
    gw.wait_for("count of this period kept", "the kept count");
    gw.wait_for("cap reached: out of service", "the kept state");
    let flows = tb.spread("198.19.0.20", 6, 1);
    assert_eq!(via_counts(&flows), (6, 0), "{flows:?}");

    // the carrier says 1 MB: set, written at once; a kill -9 loses none of it
    let set = tb.ok("gw", &[WANLB, "cap", "set", "isp2", "1MB"]);
    assert!(set.contains("isp2: 1.00 MB of 3.00 MB"), "{set}");
    let refused = tb.run("gw", &[WANLB, "cap", "set", "dsl", "1MB"]);
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("no uplink is called \"dsl\""),
        "{refused:?}"
    );
    gw.signal("-KILL");
    let _ = gw.wait();
    let gw = tb.start_wanlb(&args("off", &data, &hooks));
    gw.wait_for("uplink up", "the lines up");
    let shown = tb.ok("gw", &[WANLB, "cap", "show", "isp2"]);
    assert!(shown.contains("under its cap"), "{shown}");
    assert!(shown.starts_with("isp2: 1.0"), "{shown}");
    // back in service: isp2 takes its share of new destinations again
    wait_for("isp2 in service", || {
        via_counts(&tb.spread("198.19.0.40", 9, 1)).1 > 0
    });
    assert_eq!(
        cap_events(&hooks),
        ["cap-reached isp2 up", "cap-warn isp2 up"],
        "each crossing told once"
    );
    gw.stop();
}

/// What the counts file says isp2 carried in this period.
fn saved_bytes(data: &str) -> u64 {
    let kept = std::fs::read_to_string(format!("{data}/wanlb0.json")).unwrap();
    let kept: serde_json::Value = serde_json::from_str(&kept).unwrap();
    kept["uplinks"]["isp2"]["bytes"]
        .as_u64()
        .expect("isp2's bytes")
}

#[test]
fn what_a_line_carried_just_before_a_stop_is_in_the_saved_count() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let scratch = Scratch::new();
    let data = format!("{}/data", scratch.0);
    let hooks = format!("{}/hooks", scratch.0);
    let mut a = args("warn", &data, &hooks);
    for x in a.iter_mut() {
        *x = x.replace("cap=3MB", "cap=1GB");
    }
    let gw = tb.start_wanlb(&a);
    gw.wait_for("uplink up", "isp2 up");
    // 2 MB each way through isp2 by its pin, and the stop at once: the monitor reads the
    // meters once a second, so the last of it is counted only by the reading at the stop
    tb.assert_tcp_echo("lan", "198.19.2.1:9000", 2_000_000);
    let (_, log) = gw.stop();
    assert!(!log.contains("cannot write"), "{log}");
    let saved = saved_bytes(&data);
    assert!(
        saved >= 4_000_000,
        "saved {saved} bytes of the 4 MB and more carried"
    );
}

#[test]
fn a_line_at_its_cap_as_backup_takes_new_destinations_only_while_the_other_is_cut() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let scratch = Scratch::new();
    let data = format!("{}/data", scratch.0);
    let hooks = format!("{}/hooks", scratch.0);
    let gw = tb.start_wanlb(&args("backup", &data, &hooks));
    gw.wait_for("uplink up", "the lines up");
    tb.assert_tcp_echo("lan", "198.19.2.1:9000", 2_000_000);
    gw.wait_for("cap reached: ranked below", "the cap taking effect");
    let flows = tb.spread("198.19.0.1", 12, 1);
    assert_eq!(via_counts(&flows), (12, 0), "{flows:?}");
    // its pin stays
    let pinned = tb.spread(PINNED, 1, 1);
    assert_eq!(via_counts(&pinned), (0, 1), "{pinned:?}");
    // isp1 cut beyond its modem: the capped line is all there is
    tb.cut_beyond("r1");
    gw.wait_for("uplink down", "isp1 down");
    let flows = tb.spread("198.19.0.50", 6, 1);
    assert_eq!(via_counts(&flows), (0, 6), "{flows:?}");
    gw.stop();
}

/// The value of `metric` (name and labels, as exposed) in what wanlb serves at /metrics.
fn metric(tb: &Testbed, metric: &str) -> Option<f64> {
    tb.metrics()
        .lines()
        .find_map(|l| l.strip_prefix(metric)?.trim().parse().ok())
}

const ISP2_BYTES: &str = "wanlb_uplink_period_bytes{uplink=\"isp2\"}";

/// The example network weighted 1:1, with the 198.19.2.0/24 destinations pinned to isp2 and
/// `more` flags.
fn one_to_one(more: &[&str]) -> Vec<String> {
    let mut a = health_args();
    let isp1 = a.iter().position(|x| x.starts_with("isp1,")).unwrap();
    a[isp1] = "isp1,dev=eth1,gw=198.18.1.254,weight=1".into();
    a.extend(["--pin", "198.19.2.0/24"].map(String::from));
    let pin = a.len() - 1;
    a[pin] += "=isp2";
    a.extend(more.iter().map(|s| s.to_string()));
    a
}

#[test]
fn by_bytes_new_destinations_go_to_the_line_below_its_share_by_destinations_as_before() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    for (balance, expected) in [("destinations", (6, 6)), ("bytes", (12, 0))] {
        let gw = tb.start_wanlb(&one_to_one(&["--balance", balance]));
        gw.wait_for_count("uplink up", 2, "both lines up");
        // one destination pulls 40 MB (20 MB each way) through isp2, by its pin
        let before = metric(&tb, ISP2_BYTES).unwrap_or(0.0);
        tb.assert_tcp_echo("lan", "198.19.2.1:9000", 20_000_000);
        wait_for("the count of the transfer", || {
            metric(&tb, ISP2_BYTES).unwrap_or(0.0) >= before + 40e6
        });
        // then a dozen new destinations, each on its own
        let flows = tb.spread("198.19.0.1", 12, 1);
        assert_eq!(
            via_counts(&flows),
            expected,
            "--balance {balance}: {flows:?}"
        );
        let status = tb.ok("gw", &[WANLB, "status"]);
        if balance == "bytes" {
            assert!(status.contains("bytes (weight)"), "{status}");
        }
        gw.stop();
    }
}

/// The TCP segments namespace `name` has sent so far (its stack's OutSegs: a GSO packet
/// counts as its segments, retransmissions included).
fn tcp_segments_sent(tb: &Testbed, name: &str) -> u64 {
    let snmp = tb.ok(name, &["cat", "/proc/net/snmp"]);
    let mut tcp = snmp.lines().filter(|l| l.starts_with("Tcp:"));
    let (names, values) = (tcp.next().expect("names"), tcp.next().expect("values"));
    let at = names
        .split_whitespace()
        .position(|n| n == "OutSegs")
        .expect("OutSegs");
    values.split_whitespace().nth(at).unwrap().parse().unwrap()
}

#[test]
fn what_a_line_is_counted_is_what_it_carries_segment_by_segment() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    for offload in ["off", "on"] {
        let scratch = Scratch::new();
        let gw = tb.start_wanlb(&one_to_one(&[
            "--offload",
            offload,
            "--data-dir",
            &scratch.0,
        ]));
        gw.wait_for_count("uplink up", 2, "both lines up");
        let counted_before = metric(&tb, ISP2_BYTES).unwrap_or(0.0);
        let sent_before = tcp_segments_sent(&tb, "lan") + tcp_segments_sent(&tb, "inet");
        // 20 MB each way through isp2, in GSO super-packets (the stacks' TSO, kept whole)
        tb.assert_tcp_echo("lan", "198.19.2.1:9000", 20_000_000);
        let segments = tcp_segments_sent(&tb, "lan") + tcp_segments_sent(&tb, "inet") - sent_before;
        // what crossed the line: the payload, and 52 bytes of headers a segment (IP, and TCP
        // with its timestamps; the handshake's few are larger)
        let crossed = 40e6 + segments as f64 * 52.0;
        // the count catches up within a second or two; it must come within 0.5% of what
        // crossed (the health probes meanwhile are a few kB)
        let close = |counted: f64| (counted - counted_before - crossed).abs() < crossed * 0.005;
        let mut counted = 0.0;
        for _ in 0..100 {
            counted = metric(&tb, ISP2_BYTES).unwrap_or(0.0);
            if close(counted) {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        println!(
            "--offload {offload}: counted {}, {crossed} crossed in {segments} segments ({:+.3}%)",
            counted - counted_before,
            ((counted - counted_before) / crossed - 1.0) * 100.0
        );
        assert!(
            close(counted),
            "--offload {offload}: counted {}, {crossed} crossed in {segments} segments ({:+.2}%)",
            counted - counted_before,
            ((counted - counted_before) / crossed - 1.0) * 100.0
        );
        if offload == "on" {
            let log = gw.output();
            assert!(log.contains("kernel fast path attached"), "{log}");
        }
        gw.stop();
    }
}

#[test]
fn the_status_page_shows_a_cap_used_and_its_reset_date_and_by_bytes_shares_of_bytes() {
    const TOKEN: &str = "page-test-token";
    let tb = Testbed::up();
    tb.add_web();
    let _inet = tb.start_internet();
    let listen = format!("{GW_WEB}:9911");
    let mut a: Vec<String> = health_args()
        .into_iter()
        .map(|x| {
            if x.starts_with("isp2,") {
                format!("{x},cap=3MB,cap_reset=5,on_cap=off")
            } else {
                x
            }
        })
        .collect();
    a.extend(
        [
            "--pin",
            "198.19.2.0/24=isp2",
            "--balance",
            "bytes",
            "--listen",
            &listen,
            "--listen-token",
            TOKEN,
        ]
        .map(String::from),
    );
    let gw = tb.start_wanlb(&a);
    gw.wait_for_count("uplink up", 2, "both lines up");
    tb.assert_tcp_echo("lan", "198.19.2.1:9000", 2_000_000);
    gw.wait_for("cap reached: out of service", "the cap taking effect");
    let url = format!("http://{listen}/#token={TOKEN}");
    let dom = tb.browse(&url, &["--virtual-time-budget=5000", "--dump-dom"]);
    let card = |name: &str| -> &str {
        let start = dom
            .find(&format!(r#"<article class="card" data-uplink="{name}""#))
            .unwrap_or_else(|| panic!("no card for {name} in:\n{dom}"));
        let len = dom[start..].find("</article>").expect("the card's end");
        &dom[start..start + len]
    };
    let isp2 = card("isp2");
    assert!(
        isp2.contains(r#"<p class="cap" data-cap="reached">"#),
        "{isp2}"
    );
    assert!(
        isp2.contains(" of 3 MB used (cap reached), starts again on 20"),
        "{isp2}"
    );
    assert!(isp2.contains("-05<"), "on the 5th: {isp2}");
    let isp1 = card("isp1");
    assert!(
        isp1.contains("of the recent bytes, 67% by weight"),
        "{isp1}"
    );
    assert!(!isp1.contains("class=\"cap\""), "isp1 has no cap: {isp1}");
    gw.stop();
}
