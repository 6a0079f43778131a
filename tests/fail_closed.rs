//! When wanlb dies (kill -9 stands in for an abort or the OOM killer) the LAN fails closed:
//! nothing it sends to the internet leaves, translated or not, and IPv6 between the LAN and
//! the uplinks stays dropped, until the next start or `wanlb cleanup` (root; CI runs as
//! root). Also: TUN names with a dot, and names that would once have shared a table.

mod common;

use common::*;

/// Kills wanlb with SIGKILL: nothing of its own clean-up runs.
fn kill(mut gw: Process) {
    gw.signal("-KILL");
    gw.child.wait().unwrap();
}

fn state_dir(tb: &Testbed) -> String {
    format!("/tmp/wanlb-test-{}", tb.prefix)
}

/// Runs `wanlb cleanup` on the gateway (for the test's state directory) with `args`.
fn cleanup(tb: &Testbed, args: &[&str]) -> std::process::Output {
    let dir = state_dir(tb);
    let mut cmd = vec![WANLB, "cleanup", "--state-dir", &dir];
    cmd.extend(args);
    tb.run("gw", &cmd)
}

fn text(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// `args` with `--tun NAME`.
fn with_tun(name: &str) -> Vec<String> {
    let mut args = example_args();
    args.extend(["--tun".into(), name.into()]);
    args
}

/// What the LAN host sends to the internet: nothing of it may reach a router or the internet.
const FROM_LAN: &str = "ip saddr 198.18.3.0/24";
const TO_INTERNET: &str = "ip daddr 198.19.0.0/16";

/// The LAN host pings, sends a datagram and opens a connection to the internet; asserts none
/// of it reached either router or the internet, translated or not, and that the host heard
/// at once that the network is unreachable.
fn assert_lan_is_closed(tb: &Testbed, context: &str) {
    for ns in ["r1", "r2", "inet"] {
        tb.watch(ns, &[FROM_LAN, TO_INTERNET]);
    }
    let ping = tb.run(
        "lan",
        &["ping", "-c", "2", "-i", "0.2", "-W", "1", "198.19.0.1"],
    );
    tb.run(
        "lan",
        &["bash", "-c", "echo datagram > /dev/udp/198.19.0.2/7"],
    );
    let tcp = tb.run(
        "lan",
        &[
            probe(),
            "tcp-check",
            "--dst",
            "198.19.0.9:9000",
            "--bytes",
            "10",
        ],
    );
    assert!(!tcp.status.success(), "{context}: {}", text(&tcp));
    for ns in ["r1", "r2", "inet"] {
        for what in [FROM_LAN, TO_INTERNET] {
            assert_eq!(tb.seen(ns, what), 0, "{context}: {ns} saw {what}");
        }
    }
    let said = text(&ping);
    assert!(!ping.status.success(), "{context}: {said}");
    assert!(
        said.contains("From 198.18.3.100") && said.contains("Destination Host Unreachable"),
        "{context}: the gateway refuses, and says so: {said}"
    );
}

#[test]
fn after_sigkill_nothing_from_the_lan_leaves_until_wanlb_starts_again() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    // the gateway's own default route, towards isp1's router, is what a LAN packet would
    // take untranslated once wanlb's table no longer has the TUN device's route
    let routes = tb.ok("gw", &["ip", "-4", "route", "show", "default"]);
    assert!(routes.contains("default via 198.18.1.254"), "{routes}");
    let before = tb.gateway_state();

    let gw = tb.start_wanlb(&example_args());
    tb.assert_pings("lan", "198.19.0.1", 1, "0.2");
    kill(gw);
    assert_lan_is_closed(&tb, "after kill -9");

    // the next start recovers: it undoes what the dead one left, and works
    let gw = tb.start_wanlb(&example_args());
    assert!(
        gw.output()
            .contains("undid what a previous run left behind"),
        "{}",
        gw.output()
    );
    tb.assert_pings("lan", "198.19.0.1", 2, "0.2");
    tb.assert_tcp_echo("lan", "198.19.0.9:9000", 100_000);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    tb.assert_gateway_state(&before, &log);
}

#[test]
fn cleanup_after_sigkill_leaves_the_gateway_as_it_was_and_then_has_nothing_to_do() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let before = tb.gateway_state();
    // with everything wanlb can add: a default route of its own in the main table, NAT
    // chains for a forward
    let mut args = example_args();
    args.extend([
        "--host-traffic".into(),
        "follow".into(),
        "--forward".into(),
        "tcp:8080=198.18.3.10:80@isp1".into(),
    ]);
    let gw = tb.start_wanlb(&args);
    gw.wait_for(
        "host default route switched",
        "wanlb taking the host's route",
    );
    let during = tb.gateway_state();

    // not while it runs: it is left alone, and says so
    let refused = cleanup(&tb, &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", text(&refused));
    assert!(text(&refused).contains("is running"), "{}", text(&refused));
    tb.assert_gateway_state(&during, "a cleanup beside a running wanlb");

    kill(gw);
    let out = cleanup(&tb, &[]);
    assert!(out.status.success(), "{}", text(&out));
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("left by the wanlb with TUN device wanlb0")
            && said.contains("as it was before wanlb started"),
        "{said}"
    );
    tb.assert_gateway_state(&before, &said);
    assert!(
        !std::path::Path::new(&state_dir(&tb)).exists(),
        "the journal, its lock and the state directory are gone"
    );

    let again = cleanup(&tb, &[]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).starts_with("nothing to clean up: "),
        "{}",
        text(&again)
    );
    tb.assert_gateway_state(&before, "a second cleanup");
}

#[test]
fn a_crash_before_the_local_rule_moved_leaves_one_local_rule_after_cleanup() {
    let tb = Testbed::up();
    let before = tb.gateway_state();
    let gw = tb.start_wanlb(&example_args());
    kill(gw);
    // as a crash between journaling the local rule's undo and moving it leaves the gateway:
    // the rule still at priority 0, its undo ("put it back at 0") in the journal
    tb.ok(
        "gw",
        &["ip", "rule", "add", "priority", "0", "lookup", "local"],
    );
    let out = cleanup(&tb, &[]);
    assert!(out.status.success(), "{}", text(&out));
    tb.assert_gateway_state(&before, "one local rule at 0, not two");
}

#[test]
fn ipv6_between_the_lan_and_the_uplinks_is_dropped_while_wanlb_runs_and_after_it_dies() {
    let tb = Testbed::up();
    tb.add_ipv6();
    // one echo answered within 5 s (a neighbour or an address may still be settling), or
    // one unanswered within 1 s
    let ping6 = |ns: &str, dst: &str| {
        let out = tb.run(ns, &["ping", "-6", "-c", "1", "-w", "5", dst]);
        out.status.success()
    };
    let no_ping6 = |ns: &str, dst: &str| {
        let out = tb.run(ns, &["ping", "-6", "-c", "1", "-W", "1", dst]);
        !out.status.success()
    };
    let from_lan = "ip6 saddr fd00:3::/64";
    let from_r1 = "ip6 saddr fd00:1::254";
    // Forwarded natively both ways while wanlb is not there: what this test closes.
    assert!(
        ping6("lan", R1_6) && ping6("r1", LAN6),
        "the test bed routes IPv6"
    );
    let before = tb.gateway_state();

    let assert_closed = |when: &str| {
        tb.watch("r1", &[from_lan]);
        tb.watch("lan", &[from_r1]);
        assert!(
            no_ping6("lan", R1_6),
            "{when}: the LAN reached isp1's router"
        );
        assert!(
            no_ping6("r1", LAN6),
            "{when}: isp1's router reached the LAN"
        );
        assert_eq!(tb.seen("r1", from_lan), 0, "{when}");
        assert_eq!(tb.seen("lan", from_r1), 0, "{when}");
        // the gateway's own IPv6, on the uplink (neighbour discovery included) and towards
        // the LAN, is not forwarded: it works
        assert!(ping6("gw", R1_6), "{when}: the gateway's own IPv6 on isp1");
        assert!(ping6("lan", GW_LAN6), "{when}: the LAN reaches the gateway");
        assert!(ping6("lan", GW_UPLINK6), "{when}: on any of its addresses");
    };

    let gw = tb.start_wanlb(&example_args());
    assert_closed("while wanlb runs");
    // counted, in the drops wanlb logs
    gw.signal("-USR1");
    gw.wait_for("ipv6_forward=", "wanlb's drops");
    let counted: u64 = gw
        .output()
        .split_whitespace()
        .find_map(|w| w.strip_prefix("ipv6_forward=")?.parse().ok())
        .unwrap();
    assert!(counted >= 2, "{}", gw.output());
    kill(gw);
    assert_closed("after kill -9");

    // cleaned up, the gateway forwards IPv6 as it did before
    let out = cleanup(&tb, &[]);
    assert!(out.status.success(), "{}", text(&out));
    tb.assert_gateway_state(&before, "after wanlb cleanup");
    assert!(ping6("lan", R1_6) && ping6("r1", LAN6));
}

#[test]
fn a_tun_name_with_a_dot_works_and_leaves_nothing() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let before = tb.gateway_state();
    let gw = tb.start_wanlb(&with_tun("wl.0-a"));
    let rp_filter = tb.ok("gw", &["cat", "/proc/sys/net/ipv4/conf/wl.0-a/rp_filter"]);
    assert_eq!(rp_filter.trim(), "2");
    let tables = tb.ok("gw", &["nft", "list", "tables"]);
    assert!(tables.contains("table inet wanlb_wl.0-a"), "{tables}");
    tb.assert_pings("lan", "198.19.0.1", 2, "0.2");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    tb.assert_gateway_state(&before, &log);
}

#[test]
fn a_start_with_another_tun_name_undoes_what_a_dead_one_left() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let before = tb.gateway_state();
    // two names that once folded to one nftables table (wanlb_w_l_0)
    let gw = tb.start_wanlb(&with_tun("w-l-0"));
    kill(gw);
    let gw = tb.start_wanlb(&with_tun("w_l_0"));
    assert!(
        gw.output()
            .contains("undid what a previous run left behind"),
        "{}",
        gw.output()
    );
    let tables = tb.ok("gw", &["nft", "list", "tables"]);
    assert_eq!(tables.trim(), "table inet wanlb_w_l_0", "{tables}");
    let during = tb.gateway_state();
    // one run's rules only: the reverse-path and hairpin rule, the one for what is given back
    // to the gateway's own stack, and the LAN's rule to the table
    assert_eq!(during.matches("lookup 7100").count(), 3, "{during}");
    tb.assert_pings("lan", "198.19.0.1", 2, "0.2");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    tb.assert_gateway_state(&before, &log);
}
