//! Reloading the settings while traffic flows (root; CI runs as root): SIGHUP applies new
//! weights without disturbing a running transfer, reports what needs a restart, and a file
//! that cannot be used leaves the running settings in place.

mod common;

use common::*;

/// The example network as a file, with isp1's weight `weight`.
fn settings(weight: u32, extra: &str) -> String {
    format!(
        r#"lan = ["eth0"]
{extra}
[[uplink]]
name = "isp1"
dev = "eth1"
gw = "198.18.1.254"
weight = {weight}

[[uplink]]
name = "isp2"
dev = "eth2"
gw = "198.18.2.254"
weight = 1
"#
    )
}

/// The bytes sent through both uplinks, from /metrics.
fn sent_bytes(tb: &Testbed) -> f64 {
    let text = tb.metrics();
    let both = |name: &str| -> f64 {
        ["isp1", "isp2"]
            .iter()
            .filter_map(|u| {
                let series = format!(r#"{name}{{uplink="{u}"}} "#);
                text.lines()
                    .find_map(|l| l.strip_prefix(&series)?.parse::<f64>().ok())
            })
            .sum()
    };
    both("wanlb_uplink_tx_bytes_total")
}

#[test]
fn sighup_applies_new_weights_during_a_transfer_and_a_broken_file_changes_nothing() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let scratch = Scratch::new();
    let dir = &scratch.0;
    let file = format!("{dir}/wanlb.toml");
    std::fs::write(&file, settings(2, "")).unwrap();
    let gw = tb.start_wanlb(&["--config".into(), file.clone()]);
    let before = via_counts(&tb.spread("198.19.0.1", 30, 1));
    assert_eq!(before, (20, 10), "2:1 before the reload");

    // a transfer that outlasts the reload: 1 GB through the TCP echo
    let mut transfer = Process::start(tb.spawn(
        "lan",
        &[
            probe(),
            "tcp-check",
            "--dst",
            "198.19.0.77:9000",
            "--bytes",
            "1000000000",
        ],
    ));
    let start = sent_bytes(&tb);
    while sent_bytes(&tb) < start + 50e6 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // 1:1, and a setting only a restart can change
    std::fs::write(&file, settings(1, "busy_poll = \"1ms\"")).unwrap();
    gw.signal("-HUP");
    gw.wait_for("uplink isp1 weight: 2 -> 1", "wanlb reloading");
    gw.wait_for(
        "busy_poll changed: restart wanlb to apply it",
        "wanlb reloading",
    );
    assert!(transfer.is_running(), "the transfer outlasts the reload");
    let after = via_counts(&tb.spread("198.19.0.100", 40, 1));
    assert_eq!(after, (20, 20), "1:1 for new destinations after the reload");
    let (status, out) = transfer.wait();
    assert!(status.success(), "{out}");
    assert!(
        out.starts_with("ok 1000000000 bytes echoed intact"),
        "{out}"
    );

    // a file that cannot be used: the running settings stay
    std::fs::write(
        &file,
        settings(1, "").replace("weight = 1\n", "weight = \"heavy\"\n"),
    )
    .unwrap();
    gw.signal("-HUP");
    gw.wait_for("reload refused", "wanlb refusing the broken file");
    let out = gw.output();
    let refusal = out.lines().find(|l| l.contains("reload refused")).unwrap();
    assert!(
        refusal.contains("line 7") && refusal.contains("weight"),
        "the error names the line and key: {refusal}"
    );
    let still = via_counts(&tb.spread("198.19.0.150", 10, 1));
    assert_eq!(still, (5, 5), "still 1:1");

    // `wanlb reload` asks the same and says what happened: refused, with why, exit 2...
    let refused = tb.run("gw", &[WANLB, "reload"]);
    let said = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(2), "{said}");
    assert!(said.contains("line 7") && said.contains("weight"), "{said}");
    // ...then, the file mended and isp1 back to 2, what it applied
    std::fs::write(&file, settings(2, "busy_poll = \"1ms\"")).unwrap();
    let applied = tb.ok("gw", &[WANLB, "reload"]);
    assert!(
        applied.contains("applied: uplink isp1 weight: 1 -> 2"),
        "{applied}"
    );
    assert!(
        applied.contains("needs a restart: busy_poll changed"),
        "{applied}"
    );
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("panicked"), "{log}");
}

#[test]
fn a_reload_adds_health_targets_and_a_hook_that_then_see_a_line_die() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let scratch = Scratch::new();
    let dir = &scratch.0;
    let file = format!("{dir}/wanlb.toml");
    let changes = format!("{dir}/changes");
    // without targets a line dead beyond its modem goes unnoticed: ARP still answers
    std::fs::write(&file, settings(2, "")).unwrap();
    let gw = tb.start_wanlb(&["--config".into(), file.clone()]);
    let extra = format!(
        "health_target = [\"{}\", \"{}\"]\non_change = \"echo $WANLB_UPLINK $WANLB_STATE >> {changes}\"",
        TARGETS[0], TARGETS[1]
    );
    std::fs::write(&file, settings(2, &extra)).unwrap();
    gw.signal("-HUP");
    gw.wait_for("on_change: None -> Some", "wanlb reloading");
    assert!(
        gw.output().contains("on_change: None -> Some"),
        "{}",
        gw.output()
    );
    tb.cut_beyond("r1");
    gw.wait_for("uplink down", "isp1 found dead by the reloaded targets");
    let out = gw.output();
    assert!(
        out.lines()
            .any(|l| l.contains("uplink down") && l.contains("uplink=isp1")),
        "{out}"
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&changes).is_ok_and(|c| c.contains("isp1 down")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the reloaded hook never ran"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // the other line is still up and carries everything
    let flows = via_counts(&tb.spread("198.19.0.1", 6, 1));
    assert_eq!(flows, (0, 6));
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
