//! Failback off a backup line, end to end (root required): isp2 is a tier-2 backup, isp1 is
//! cut beyond its modem and comes back. A UDP stream that moved to the backup at the cut is
//! back on isp1 once isp1 is back; with `failback=move` a TCP connection left on the backup
//! is reset towards the LAN host once isp1 has been up for the grace, and not while isp1
//! flaps. "Not before the grace" is told by events: packets of the connection still crossing
//! the backup's router after isp1 came back, without a reset.

mod common;

use std::time::Duration;

use common::*;

/// The example network with isp2 a tier-2 backup, `spec` added to its SPEC.
fn backup_args(spec: &str) -> Vec<String> {
    let mut a = health_args();
    let isp2 = a.iter().position(|x| x.starts_with("isp2,")).unwrap();
    a[isp2] = format!("isp2,dev=eth2,gw=198.18.2.254,weight=1,tier=2{spec}");
    a
}

/// What `wanlb-probe udp-record` printed: the source address of each datagram, in order.
fn sources(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            w.next()?.parse::<u64>().ok()?;
            let (ip, _port) = w.next()?.split_once(':')?;
            Some(ip.to_string())
        })
        .collect()
}

/// `sources` with runs of the same address folded into one: the lines a stream took, in
/// order.
fn runs(sources: &[String]) -> Vec<&str> {
    let mut runs: Vec<&str> = Vec::new();
    for s in sources {
        if runs.last() != Some(&s.as_str()) {
            runs.push(s);
        }
    }
    runs
}

#[test]
fn a_udp_stream_moved_to_the_backup_is_back_on_the_primary_once_it_recovers() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let record = Process::start(tb.spawn(
        "inet",
        &[probe(), "udp-record", "--bind", "198.19.1.1:7000"],
    ));
    record.wait_for("listening", "udp-record");
    let gw = tb.start_wanlb(&backup_args(""));
    gw.wait_for("uplink up uplink=isp1", "isp1 up");
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
    let arrived_from = |ip: &str| {
        let ip = ip.to_string();
        let record = &record;
        move || sources(&record.output()).last() == Some(&ip)
    };
    wait_until("the stream through isp1", arrived_from(UPLINK_1));
    tb.cut_beyond("r1");
    gw.wait_for("uplink down uplink=isp1", "isp1 down");
    wait_until("the stream through isp2", arrived_from(UPLINK_2));
    tb.restore_beyond("r1");
    gw.wait_for_count("uplink up uplink=isp1", 2, "isp1 back");
    wait_until("the stream back through isp1", arrived_from(UPLINK_1));
    // a little more of it: it stays there
    let so_far = sources(&record.output()).len();
    wait_until("more of the stream", || {
        sources(&record.output()).len() > so_far + 50
    });
    let (_, sent) = stream.stop();
    let (_, got) = record.stop();
    let got = sources(&got);
    assert_eq!(
        runs(&got),
        [UPLINK_1, UPLINK_2, UPLINK_1],
        "isp1, the backup while isp1 was cut, then isp1 again; sent: {sent}"
    );
    gw.stop();
}

#[test]
fn with_move_a_tcp_connection_on_the_backup_is_reset_after_the_grace_and_not_while_isp1_flaps() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    // the held connection's packets towards the internet through the backup's router
    count(&tb, "r2", "forward", "held", "tcp dport 9000");
    let gw = tb.start_wanlb(&backup_args(",failback=move,failback_grace=8s"));
    gw.wait_for("uplink up uplink=isp1", "isp1 up");
    tb.cut_beyond("r1");
    gw.wait_for("uplink down uplink=isp1", "isp1 down");
    // isp1 is cut: the connection opens through the backup
    let hold = Process::start(tb.spawn("lan", &[probe(), "tcp-hold", "--dst", "198.19.1.2:9000"]));
    hold.wait_for("connected", "tcp-hold");
    let crossed = || counted(&tb, "r2", "held");
    assert!(crossed() > 0, "the connection went through the backup");
    // `packets` more of the connection cross the backup, with no reset at the LAN host and no
    // failback: the grace is not over
    let still_on_the_backup = |packets: u64, when: &str| {
        let from = crossed();
        wait_until(when, || {
            let seen = hold.output();
            assert!(
                !seen.contains("reset") && !seen.contains("error"),
                "{when}: the connection ended: {seen}\n{}",
                gw.output()
            );
            crossed() >= from + packets
        });
        assert_eq!(
            gw.count("failback: resetting"),
            0,
            "{when}: {}",
            gw.output()
        );
    };

    // isp1 flaps: back, and cut again before the grace is over, twice
    for (up, down) in [(2, 2), (3, 3)] {
        tb.restore_beyond("r1");
        gw.wait_for_count("uplink up uplink=isp1", up, "isp1 back");
        still_on_the_backup(10, "isp1 back for a moment");
        tb.cut_beyond("r1");
        gw.wait_for_count("uplink down uplink=isp1", down, "isp1 down again");
        still_on_the_backup(4, "isp1 down again");
    }
    // isp1 back for good: the grace starts again, from now
    tb.restore_beyond("r1");
    gw.wait_for_count("uplink up uplink=isp1", 4, "isp1 back for good");
    still_on_the_backup(80, "isp1 back for good, within the grace");
    // then the reset reaches the LAN host, by failback
    hold.wait_for("reset ", "tcp-hold");
    gw.wait_for("failback: resetting", "wanlb");
    assert_eq!(gw.count("failback: resetting"), 1, "{}", gw.output());
    // and the application's next connection goes through isp1
    let again = Process::start(tb.spawn("lan", &[probe(), "tcp-hold", "--dst", "198.19.1.2:9000"]));
    again.wait_for("connected", "tcp-hold");
    let before = crossed();
    count(&tb, "r1", "forward", "held_again", "tcp dport 9000");
    wait_until("the new connection through isp1", || {
        counted(&tb, "r1", "held_again") >= 10
    });
    assert_eq!(crossed(), before, "nothing more through the backup");
    let (_, held) = again.stop();
    assert!(held.contains("alive"), "{held}");
    gw.stop();
}

/// Waits until `done` (a wait, not a timing assertion: the bound is generous).
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    for _ in 0..300 {
        if done() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("{what} did not happen within 30 s");
}
