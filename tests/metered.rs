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
