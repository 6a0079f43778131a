//! One public address per UDP socket across the uplinks (root; CI runs as root): a socket
//! that talks to destinations the weighted choice would spread over both lines is seen by
//! all of them at one address and port (RFC 4787 REQ-1, what STUN and WebRTC rely on), and a
//! real RFC 5780 client, coturn's `turnutils_natdiscovery`, finds endpoint-independent
//! mapping through wanlb.

mod common;

use common::*;

/// `wanlb-probe spread --one-socket` from the LAN host to `count` destinations from `dst`:
/// each destination and the `address:port` it saw.
fn one_socket(tb: &Testbed, dst: &str, count: u32) -> Vec<(String, String)> {
    let out = tb.ok(
        "lan",
        &[
            probe(),
            "spread",
            "--one-socket",
            "--dst",
            dst,
            "--count",
            &count.to_string(),
        ],
    );
    out.lines()
        .filter(|l| !l.starts_with("via "))
        .map(|l| {
            let (d, seen) = l.split_once(' ').expect("DST SEEN");
            (d.to_string(), seen.to_string())
        })
        .collect()
}

fn distinct(seen: &[(String, String)]) -> Vec<String> {
    let mut s: Vec<String> = seen.iter().map(|(_, a)| a.clone()).collect();
    s.sort();
    s.dedup();
    s
}

#[test]
fn one_socket_is_seen_at_one_address_and_port_by_every_destination() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let gw = tb.start_wanlb(&example_args());
    // new destinations by weight go isp1, isp2, isp1 ...: one socket keeps its first line
    let seen = one_socket(&tb, "198.19.0.1", 6);
    assert_eq!(seen.len(), 6);
    let at = distinct(&seen);
    assert_eq!(
        at.len(),
        1,
        "one address and port for every destination: {seen:?}"
    );
    assert!(at[0].starts_with(&format!("{UPLINK_1}:")), "{at:?}");
    // sockets of their own still split by weight
    let flows = tb.spread("198.19.0.50", 9, 1);
    let via_isp2 = flows.iter().filter(|(_, s)| s == UPLINK_2).count();
    assert_eq!(via_isp2, 3, "{flows:?}");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn with_destination_affinity_one_sockets_destinations_spread() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let mut args = example_args();
    args.extend(["--udp-affinity".into(), "destination".into()]);
    let gw = tb.start_wanlb(&args);
    let seen = one_socket(&tb, "198.19.0.1", 6);
    let addresses: Vec<&str> = distinct(&seen)
        .iter()
        .map(|a| {
            if a.starts_with(UPLINK_1) {
                "isp1"
            } else {
                "isp2"
            }
        })
        .collect();
    assert_eq!(addresses, ["isp1", "isp2"], "{seen:?}");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

/// `turnutils_natdiscovery -m` (RFC 5780 mapping behaviour) from the LAN host against a
/// STUN server at two addresses of the simulated internet, through wanlb started with
/// `extra` flags: what it concludes.
fn nat_discovery(extra: &[&str]) -> String {
    let tb = Testbed::up();
    // coturn, STUN only, on two addresses (RFC 5780 needs both) and its two ports, with no
    // configuration file and its files in a directory of the test's own
    let dir = Scratch::new();
    let pid_file = format!("{}/turnserver.pid", dir.0);
    let db = format!("{}/turndb", dir.0);
    let stun = Process::start(tb.spawn(
        "inet",
        &[
            "turnserver",
            "-n",
            "--stun-only",
            "--listening-ip",
            "198.19.1.1",
            "--listening-ip",
            "198.19.1.2",
            "--listening-port",
            "3478",
            "--alt-listening-port",
            "3479",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--pidfile",
            &pid_file,
            "--db",
            &db,
            "--log-file=stdout",
            "-v",
        ],
    ));
    stun.wait_for("IPv4. UDP listener opened on", "turnserver");
    let mut args = example_args();
    args.extend(extra.iter().map(|s| s.to_string()));
    let gw = tb.start_wanlb(&args);
    let found = tb.run("lan", &["turnutils_natdiscovery", "-m", "198.19.1.1"]);
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&found.stdout),
        String::from_utf8_lossy(&found.stderr)
    );
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    drop(stun);
    said
}

#[test]
fn coturns_nat_discovery_finds_endpoint_independent_mapping() {
    let said = nat_discovery(&[]);
    assert!(
        said.contains("NAT with Endpoint Independent Mapping"),
        "{said}"
    );
    // and with every destination placed on its own, the two server addresses take two
    // lines: the socket has two public addresses
    let said = nat_discovery(&["--udp-affinity", "destination"]);
    assert!(
        said.contains("NAT with Address Dependent Mapping"),
        "{said}"
    );
}
