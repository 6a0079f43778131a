//! Port forwarding end to end (root; CI runs as root): a service in the LAN reached from the
//! internet through one line, its answers leaving through that line whatever the weights and
//! pins say, reached from the LAN through that line's address too (hairpinning), and the ports
//! not forwarded as closed as before.

mod common;

use common::*;

/// Where the simulated internet's client connects from.
const CLIENT: &str = "198.19.0.5";
/// The LAN host that hairpins, beside the server's 198.18.3.10.
const LAN_CLIENT: &str = "198.18.3.11";

/// isp1 with all but all the weight, the client pinned to isp1, and ports 80 and 8080 of
/// isp2 forwarded to the LAN host's web server (80 below the NAT pool, 1024-32767 here; 8080
/// inside it, kept aside), and udp:500 to its UDP service on 5060.
fn args(offload: &str) -> Vec<String> {
    [
        "--lan",
        "eth0",
        "--uplink",
        "isp1,dev=eth1,gw=198.18.1.254,weight=100",
        "--uplink",
        "isp2,dev=eth2,gw=198.18.2.254,weight=1",
        "--pin",
        "198.19.0.5/32=isp1",
        "--forward",
        "tcp:80=198.18.3.10:80@isp2",
        "--forward",
        "tcp:8080=198.18.3.10:80@isp2",
        "--forward",
        "udp:500=198.18.3.10:5060@isp2",
        "--offload",
        offload,
    ]
    .map(String::from)
    .to_vec()
}

/// ICMP redirects a namespace's stack received.
fn redirects_received(tb: &Testbed, ns: &str) -> u64 {
    let snmp = tb.ok(ns, &["cat", "/proc/net/snmp"]);
    let rows: Vec<Vec<&str>> = snmp
        .lines()
        .filter(|l| l.starts_with("Icmp:"))
        .map(|l| l.split_whitespace().collect())
        .collect();
    let at = rows[0].iter().position(|w| *w == "InRedirects").unwrap();
    rows[1][at].parse().unwrap()
}

fn the_forward_works(offload: &str) {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let server = Process::start(tb.spawn(
        "lan",
        &[
            probe(),
            "serve",
            "--tcp",
            "198.18.3.10:80",
            "--udp",
            "198.18.3.10/32",
            "--udp-port",
            "5060",
        ],
    ));
    server.wait_for("listening", "the LAN's services");
    // the client connects from an internet address, whichever line it takes
    for (net, router) in [
        ("198.18.1.0/24", "198.18.101.1"),
        ("198.18.2.0/24", "198.18.102.1"),
    ] {
        tb.ok(
            "inet",
            &["ip", "route", "replace", net, "via", router, "src", CLIENT],
        );
    }
    // what each modem forwards from the gateway's forwarded ports: the forwards' answers
    for router in ["r1", "r2"] {
        count(&tb, router, "forward", "answers", "tcp sport { 80, 8080 }");
        count(&tb, router, "forward", "udp_answers", "udp sport 500");
    }
    // what reaches the internet from ports nobody forwarded: nothing at all, or (port 80 of
    // isp1, outside the NAT pool, the gateway's own as before) no connection
    count(
        &tb,
        "inet",
        "input",
        "isp1_8080",
        "ip saddr 198.18.1.1 tcp sport 8080",
    );
    count(&tb, "inet", "input", "any_8081", "tcp sport 8081");
    // the gateway's own stack must not answer what it hands to the LAN
    count(
        &tb,
        "inet",
        "input",
        "unreachable",
        "ip saddr 198.18.2.1 icmp type destination-unreachable",
    );
    count(
        &tb,
        "inet",
        "input",
        "isp1_80_open",
        "ip saddr 198.18.1.1 tcp sport 80 tcp flags & (syn | ack) == syn | ack",
    );
    // whom the server sees when a LAN host hairpins: the line's address
    count(
        &tb,
        "lan",
        "input",
        "from_isp2",
        "ip saddr 198.18.2.1 tcp dport 80",
    );
    let gw = tb.start_wanlb(&args(offload));
    if offload != "off" {
        gw.wait_for("kernel fast path attached", "wanlb with the fast path");
    }

    // the LAN host's own connection to the client binds the client to isp1, as the pin does
    tb.assert_tcp_echo("lan", &format!("{CLIENT}:9000"), 10_000);
    // the client reaches the server through isp2's address; every byte comes back intact,
    // and every answer left through isp2
    tb.assert_tcp_echo("inet", "198.18.2.1:80", 20_000_000);
    assert_eq!(
        counted(&tb, "r1", "answers"),
        0,
        "an answer left through isp1"
    );
    assert!(counted_bytes(&tb, "r2", "answers") > 20_000_000);
    // UDP too: every answer from the forwarded port, the client's own address seen
    let udp = tb.ok(
        "inet",
        &[
            probe(),
            "udp-check",
            "--dst",
            "198.18.2.1:500",
            "--count",
            "100",
        ],
    );
    assert!(
        udp.starts_with(&format!(
            "ok 100 exchanges answered intact, all via {CLIENT}:"
        )),
        "{udp}"
    );
    assert_eq!(counted(&tb, "r1", "udp_answers"), 0);
    assert!(counted(&tb, "r2", "udp_answers") >= 100);
    assert_eq!(counted(&tb, "inet", "unreachable"), 0);
    // the status, `wanlb status` and the metrics count them
    let json = tb.ok("gw", &[WANLB, "status", "--json"]);
    let status: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    let forwards: Vec<String> = status["forwards"]
        .as_array()
        .expect("forwards")
        .iter()
        .map(|f| {
            format!(
                "{}:{}={}@{} {}",
                f["proto"].as_str().unwrap(),
                f["port"],
                f["to"].as_str().unwrap(),
                f["uplink"].as_str().unwrap(),
                f["connections_total"]
            )
        })
        .collect();
    assert_eq!(
        forwards,
        [
            "tcp:80=198.18.3.10:80@isp2 1",
            "tcp:8080=198.18.3.10:80@isp2 0",
            "udp:500=198.18.3.10:5060@isp2 1"
        ]
    );
    let table = tb.ok("gw", &[WANLB, "status"]);
    assert!(
        table.contains("forward tcp:80 of isp2 -> 198.18.3.10:80: "),
        "{table}"
    );
    let metrics = tb.metrics();
    assert!(
        metrics
            .lines()
            .any(|l| l
                == r#"wanlb_forward_connections_total{uplink="isp2",proto="udp",port="500"} 1"#),
        "{metrics}"
    );

    // a LAN host reaches the server through isp2's address too, seen as coming from it
    tb.ok(
        "lan",
        &[
            "ip",
            "addr",
            "add",
            &format!("{LAN_CLIENT}/24"),
            "dev",
            "eth0",
        ],
    );
    tb.ok(
        "lan",
        &[
            "ip",
            "route",
            "add",
            "198.18.2.1/32",
            "via",
            "198.18.3.100",
            "src",
            LAN_CLIENT,
        ],
    );
    let through_r2 = counted(&tb, "r2", "answers");
    tb.assert_tcp_echo("lan", "198.18.2.1:8080", 1_000_000);
    assert!(counted(&tb, "lan", "from_isp2") > 0);
    assert_eq!(
        counted(&tb, "r2", "answers"),
        through_r2,
        "the hairpin stays in the LAN"
    );
    // the gateway, forwarding the connection back out of the LAN interface, must not tell
    // the LAN host to go to the server directly (a host that took that redirect would send
    // isp2's address to the server, which does not have it)
    assert_eq!(redirects_received(&tb, "lan"), 0);

    // a port nobody forwarded, on either line, and the forwarded port on the other line: no
    // answer at all, neither a connection nor a reset
    for dst in ["198.18.2.1:8081", "198.18.1.1:8081", "198.18.1.1:8080"] {
        let out = tb.run(
            "inet",
            &[probe(), "tcp-check", "--dst", dst, "--bytes", "10"],
        );
        let said = String::from_utf8_lossy(&out.stderr);
        assert!(
            !out.status.success() && said.contains("timed out"),
            "{dst}: {said}"
        );
    }
    assert_eq!(counted(&tb, "inet", "isp1_8080"), 0);
    assert_eq!(counted(&tb, "inet", "any_8081"), 0);
    let out = tb.run(
        "inet",
        &[
            probe(),
            "tcp-check",
            "--dst",
            "198.18.1.1:80",
            "--bytes",
            "10",
        ],
    );
    assert!(!out.status.success(), "isp1's port 80 reached the server");
    assert_eq!(counted(&tb, "inet", "isp1_80_open"), 0);

    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    if offload != "off" {
        // most of the 20 MB crossed the kernel fast path, through isp2
        let fast: Vec<u64> = log
            .lines()
            .filter(|l| l.contains("uplink fast path totals") && l.contains("uplink=isp2"))
            .filter_map(|l| {
                l.split_whitespace()
                    .find_map(|w| w.strip_prefix("outbound_bytes=")?.parse().ok())
            })
            .collect();
        assert!(
            fast.last().is_some_and(|b| *b > 15_000_000),
            "the forwarded connection did not cross the fast path: {log}"
        );
    }
}

#[test]
fn a_forward_reaches_the_lan_and_answers_through_its_line_in_userspace() {
    the_forward_works("off");
}

#[test]
fn a_forward_reaches_the_lan_and_answers_through_its_line_on_the_fast_path() {
    the_forward_works("on");
}

/// The probe's UDP check against `dst`, which must answer every exchange.
fn assert_udp_exchanges(tb: &Testbed, dst: &str) {
    let udp = tb.ok(
        "inet",
        &[probe(), "udp-check", "--dst", dst, "--count", "20"],
    );
    assert!(udp.starts_with("ok 20 exchanges answered intact"), "{udp}");
}

#[test]
fn a_forward_follows_its_lines_new_address() {
    let tb = Testbed::up();
    let server = Process::start(tb.spawn(
        "lan",
        &[
            probe(),
            "serve",
            "--tcp",
            "198.18.3.10:80",
            "--udp",
            "198.18.3.10/32",
            "--udp-port",
            "5060",
        ],
    ));
    server.wait_for("listening", "the LAN's services");
    let mut args = example_args();
    for forward in [
        "tcp:80=198.18.3.10:80@isp1",
        "udp:500=198.18.3.10:5060@isp1",
    ] {
        args.extend(["--forward".into(), forward.into()]);
    }
    let gw = tb.start_wanlb(&args);
    tb.assert_tcp_echo("inet", "198.18.1.1:80", 1_000_000);
    assert_udp_exchanges(&tb, "198.18.1.1:500");

    // a renewal: isp1's new address comes, the old one goes
    tb.ok(
        "gw",
        &["sysctl", "-qw", "net.ipv4.conf.eth1.promote_secondaries=1"],
    );
    tb.ok("gw", &["ip", "addr", "add", "198.18.1.2/24", "dev", "eth1"]);
    tb.ok("gw", &["ip", "addr", "del", "198.18.1.1/24", "dev", "eth1"]);
    gw.wait_for("uplink address changed", "wanlb following the renewal");
    // the forwards are on the new address, from outside and from the LAN
    tb.assert_tcp_echo("inet", "198.18.1.2:80", 1_000_000);
    assert_udp_exchanges(&tb, "198.18.1.2:500");
    tb.assert_tcp_echo("lan", "198.18.1.2:80", 100_000);

    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}
