//! Failover, end to end: lines cut where real lines die (beyond the modem, which still
//! answers ARP, or at carrier), with the real wanlb binary between a LAN host and two ISPs in
//! network namespaces (root required; CI runs as root). Bounds on gaps are generous: speed
//! is measured by `scripts/bench.sh failover`, not asserted here.

mod common;

use std::time::Duration;

use common::*;

/// What `wanlb-probe udp-record` printed: (sequence number, source address, arrival ns).
fn records(out: &str) -> Vec<(u64, String, u64)> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let seq = w.next()?.parse().ok()?;
            let (ip, _port) = w.next()?.split_once(':')?;
            let at = w.next()?.parse().ok()?;
            Some((seq, ip.to_string(), at))
        })
        .collect()
}

/// The numbers after `key=` on the last log line containing `marker`.
fn last_logged(log: &str, marker: &str, key: &str) -> Option<u64> {
    let prefix = format!("{key}=");
    log.lines()
        .rev()
        .filter(|l| l.contains(marker))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(&prefix)?.parse().ok())
        })
}

fn args(extra: &[&str]) -> Vec<String> {
    let mut a = health_args();
    a.extend(extra.iter().map(|s| s.to_string()));
    a
}

/// Asks wanlb for its status until the fast path reports `n` flows handed over.
fn wait_handed_over(gw: &Process, n: u64) {
    for _ in 0..50 {
        gw.signal("-USR1");
        std::thread::sleep(Duration::from_millis(200));
        if last_logged(&gw.output(), "kernel fast path", "handed_over").unwrap_or(0) >= n {
            return;
        }
    }
    panic!(
        "fewer than {n} flows reached the fast path:\n{}",
        gw.output()
    );
}

#[test]
fn a_line_dead_beyond_its_modem_is_left_and_used_again_when_it_returns() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let record = Process::start(tb.spawn(
        "inet",
        &[probe(), "udp-record", "--bind", "198.19.1.1:7000"],
    ));
    record.wait_for("listening", "udp-record");
    // the stream and the held connection start on isp1, the bulk transfer on isp2
    let gw = tb.start_wanlb(&args(&[
        "--pin",
        "198.19.1.0/24=isp1",
        "--pin",
        "198.19.2.0/24=isp2",
    ]));
    let stream = Process::start(tb.spawn(
        "lan",
        &[
            probe(),
            "udp-stream",
            "--dst",
            "198.19.1.1:7000",
            "--interval",
            "10ms",
            "--seconds",
            "60",
        ],
    ));
    let hold = Process::start(tb.spawn("lan", &[probe(), "tcp-hold", "--dst", "198.19.1.2:9000"]));
    hold.wait_for("connected", "tcp-hold");
    // a connection that went quiet (a download waiting for data): the host sends nothing
    // after the cut, so wanlb must ask its stack for the sequence number to reset it with
    let quiet = Process::start(tb.spawn(
        "lan",
        &[
            probe(),
            "tcp-hold",
            "--dst",
            "198.19.1.3:9000",
            "--idle-after",
            "5",
        ],
    ));
    quiet.wait_for("connected", "tcp-hold");
    // all three are steady: the kernel fast path carries them before the cut
    wait_handed_over(&gw, 3);

    std::thread::scope(|s| {
        // a transfer on isp2 crosses the cut undisturbed, every byte checked
        let bulk = s.spawn(|| tb.assert_tcp_echo("lan", "198.19.2.9:9000", 20_000_000));
        tb.cut_beyond("r1");
        gw.wait_for("uplink down uplink=isp1", "wanlb");
        // the connection on isp1 is reset at the LAN host, not left hanging
        hold.wait_for("reset ", "tcp-hold");
        quiet.wait_for("reset ", "quiet tcp-hold");
        bulk.join().expect("the transfer on isp2 went through");
    });
    assert_eq!(gw.count("uplink down uplink=isp2"), 0, "{}", gw.output());
    assert!(
        gw.output().contains("3 probe rounds in a row unanswered"),
        "the reason is logged: {}",
        gw.output()
    );

    // the line returns: used again for new destinations...
    tb.restore_beyond("r1");
    gw.wait_for_count("uplink up uplink=isp1", 2, "wanlb");
    let flows = tb.spread("198.19.0.100", 9, 1);
    assert!(
        flows.iter().any(|(_, seen)| seen == UPLINK_1),
        "no new destination on isp1 after it returned: {flows:?}"
    );
    // ...while the stream that moved stays on isp2
    std::thread::sleep(Duration::from_millis(500));
    let (_, sent) = stream.stop();
    let (_, got) = record.stop();
    let got = records(&got);
    let first_isp2 = got
        .iter()
        .position(|(_, ip, _)| ip == UPLINK_2)
        .unwrap_or_else(|| panic!("the stream never came through isp2; sent: {sent}"));
    assert!(first_isp2 > 0, "the stream started on isp1");
    assert!(
        got[..first_isp2].iter().all(|(_, ip, _)| ip == UPLINK_1),
        "before the move: isp1 only"
    );
    assert!(
        got[first_isp2..].iter().all(|(_, ip, _)| ip == UPLINK_2),
        "after the move: isp2 only, also after isp1 returned"
    );
    let gap_ms = (got[first_isp2].2 - got[first_isp2 - 1].2) / 1_000_000;
    assert!(gap_ms < 3_000, "the stream stopped for {gap_ms} ms");
    // the flows came back from the fast path to move or be reset
    let log = gw.stop().1;
    assert!(last_logged(&log, "status", "moved").unwrap() >= 1, "{log}");
    assert!(last_logged(&log, "status", "resets").unwrap() >= 1, "{log}");
    assert!(
        last_logged(&log, "kernel fast path", "withdrawn").unwrap() >= 2,
        "{log}"
    );
}

#[test]
fn keep_leaves_tcp_alone_a_carrier_cut_is_seen_at_once_and_hooks_never_delay_it() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let hook_log = format!("/tmp/wanlb-test-hook-{}", tb.prefix);
    let _ = std::fs::remove_file(&hook_log);
    // every change is written down, then the command sleeps: none of that may hold up wanlb
    let hook = format!(
        "echo \"$WANLB_UPLINK $WANLB_STATE $WANLB_REASON\" >> {hook_log}; sleep 10; echo done >> {hook_log}"
    );
    let gw = tb.start_wanlb(&args(&[
        "--pin",
        "198.19.1.0/24=isp1",
        "--on-uplink-down",
        "keep",
        "--on-change",
        &hook,
    ]));
    let hold = Process::start(tb.spawn("lan", &[probe(), "tcp-hold", "--dst", "198.19.1.2:9000"]));
    hold.wait_for("connected", "tcp-hold");

    tb.cut_carrier("r1", false);
    gw.wait_for("uplink down uplink=isp1 reason=carrier lost", "wanlb");
    // the start-up hooks are still asleep: the failover did not wait for them
    let seen = std::fs::read_to_string(&hook_log).unwrap_or_default();
    assert!(seen.contains("isp1 up"), "{seen}");
    assert!(
        !seen.contains("done"),
        "a hook finished before the failover: {seen}"
    );
    // new traffic leaves through isp2 at once
    tb.assert_pings("lan", "198.19.1.7", 2, "0.2");
    std::thread::sleep(Duration::from_millis(1000));
    let (_, held) = hold.stop();
    assert!(
        held.contains("alive") && !held.contains("reset"),
        "--on-uplink-down keep: {held}"
    );
    // the hook ran with the change in its environment
    for _ in 0..100 {
        if std::fs::read_to_string(&hook_log)
            .unwrap_or_default()
            .contains("isp1 down carrier lost")
        {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let seen = std::fs::read_to_string(&hook_log).unwrap_or_default();
    assert!(seen.contains("isp1 down carrier lost"), "{seen}");
    tb.cut_carrier("r1", true);
    gw.wait_for_count("uplink up uplink=isp1", 2, "wanlb");
    // each hook run ends by writing "done" 10 s after it started: remove the log only once
    // every run has, or the last would write it again after the test
    for _ in 0..600 {
        let log = std::fs::read_to_string(&hook_log).unwrap_or_default();
        let done = log.lines().filter(|l| *l == "done").count();
        if done * 2 >= log.lines().count() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_file(&hook_log);
}

#[test]
fn a_flapping_line_stays_out_until_it_is_steady() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let gw = tb.start_wanlb(&health_args());
    tb.cut_beyond("r1");
    gw.wait_for("uplink down uplink=isp1", "wanlb");
    // 300 ms up, 300 ms down, for 5 s
    for _ in 0..8 {
        tb.restore_beyond("r1");
        std::thread::sleep(Duration::from_millis(300));
        tb.cut_beyond("r1");
        std::thread::sleep(Duration::from_millis(300));
    }
    assert_eq!(
        gw.count("uplink up uplink=isp1"),
        1,
        "marked up while flapping: {}",
        gw.output()
    );
    tb.restore_beyond("r1");
    gw.wait_for_count("uplink up uplink=isp1", 2, "wanlb");
    assert!(
        gw.output().contains("10 probe rounds in a row answered"),
        "{}",
        gw.output()
    );
}

#[test]
fn loss_takes_a_line_down_only_with_a_loss_limit() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    // four targets: a round fails only when all four probes are lost
    let mut four = example_args();
    for t in [
        "198.19.255.1",
        "198.19.255.2",
        "198.19.255.3",
        "198.19.255.4",
    ] {
        four.extend(["--health-target".to_string(), t.to_string()]);
    }
    tb.lossy("r1", 40);
    let gw = tb.start_wanlb(&four);
    std::thread::sleep(Duration::from_secs(5));
    let (_, log) = gw.stop();
    assert!(!log.contains("uplink down uplink=isp1"), "{log}");
    // the loss shows in the status (that of the best of four targets over about 30 rounds:
    // near 40 %, give or take what 30 samples give)
    let loss = last_logged(&log, "uplink=isp1 state=", "loss_pct").expect("loss logged");
    assert!((10..=70).contains(&loss), "{log}");

    four.extend(["--max-loss".into(), "20".into()]);
    let gw = tb.start_wanlb(&four);
    gw.wait_for("uplink down uplink=isp1 reason=loss", "wanlb");
    assert_eq!(gw.count("uplink down uplink=isp2"), 0);
}

#[test]
fn a_backup_tier_carries_traffic_only_while_the_first_is_down_and_probes_use_their_own_line() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    // count echo requests from each uplink address at each router
    for r in ["r1", "r2"] {
        tb.ok(r, &["nft", "add", "table", "ip", "seen"]);
        tb.ok(
            r,
            &[
                "nft",
                "add chain ip seen counted { type filter hook forward priority -10; policy accept; }",
            ],
        );
        for src in [UPLINK_1, UPLINK_2] {
            tb.ok(
                r,
                &[
                    "nft",
                    &format!(
                        "add rule ip seen counted ip saddr {src} ip daddr 198.19.255.1 icmp type echo-request counter"
                    ),
                ],
            );
        }
    }
    let mut a = health_args();
    let isp2 = a.iter().position(|x| x.starts_with("isp2,")).unwrap();
    a[isp2] = "isp2,dev=eth2,gw=198.18.2.254,weight=1,tier=2".into();
    let gw = tb.start_wanlb(&a);
    let via = |flows: &[(String, String)]| {
        let one = flows.iter().filter(|(_, s)| s == UPLINK_1).count();
        (one, flows.len() - one)
    };
    assert_eq!(via(&tb.spread("198.19.0.10", 6, 1)), (6, 0));
    tb.cut_beyond("r1");
    gw.wait_for("uplink down uplink=isp1", "wanlb");
    assert_eq!(via(&tb.spread("198.19.0.20", 6, 1)), (0, 6));
    tb.restore_beyond("r1");
    gw.wait_for_count("uplink up uplink=isp1", 2, "wanlb");
    assert_eq!(via(&tb.spread("198.19.0.30", 6, 1)), (6, 0));

    // probes of isp1 crossed r1 only, isp2's r2 only (the gateway's main table routes
    // everything through r1)
    let counted = |r: &str, src: &str| -> u64 {
        let rules = tb.ok(r, &["nft", "list", "table", "ip", "seen"]);
        let line = rules
            .lines()
            .find(|l| l.contains(&format!("ip saddr {src} ")))
            .expect("rule");
        let w: Vec<&str> = line.split_whitespace().collect();
        let i = w.iter().position(|x| *x == "packets").expect("counter");
        w[i + 1].parse().unwrap()
    };
    assert!(counted("r1", UPLINK_1) > 10);
    assert!(counted("r2", UPLINK_2) > 10);
    assert_eq!(counted("r1", UPLINK_2), 0);
    assert_eq!(counted("r2", UPLINK_1), 0);
    drop(gw);
}

#[test]
fn with_every_line_down_hosts_hear_unreachable_and_a_strict_pin_refuses() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let mut a = args(&[]);
    let pin = a.iter().position(|x| x == "198.19.200.91/32=isp2").unwrap();
    a[pin] = "198.19.200.91/32=isp2!".into();
    let gw = tb.start_wanlb(&a);
    tb.cut_beyond("r2");
    gw.wait_for("uplink down uplink=isp2", "wanlb");
    // the strict pin is refused, other destinations go out through isp1
    let refused = tb.run("lan", &["ping", "-c", "1", "-W", "2", PINNED]);
    let text = String::from_utf8_lossy(&refused.stdout);
    assert!(text.contains("Destination Net Unreachable"), "{text}");
    tb.assert_pings("lan", "198.19.0.5", 1, "0.2");

    tb.cut_beyond("r1");
    gw.wait_for("uplink down uplink=isp1", "wanlb");
    let out = tb.run("lan", &["ping", "-c", "1", "-W", "2", "198.19.0.5"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Destination Net Unreachable"), "{text}");

    tb.restore_beyond("r1");
    gw.wait_for_count("uplink up uplink=isp1", 2, "wanlb");
    tb.assert_pings("lan", "198.19.0.5", 2, "0.2");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert!(
        last_logged(&log, "status", "unreachables").unwrap() >= 2,
        "{log}"
    );
}
