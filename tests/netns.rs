//! End-to-end tests: the real wanlb binary between a LAN host and two ISPs in network
//! namespaces (root required; CI runs as root).

mod common;

use common::*;

fn tun_counter(tb: &Testbed, name: &str) -> u64 {
    tb.ok(
        "gw",
        &["cat", &format!("/sys/class/net/wanlb0/statistics/{name}")],
    )
    .trim()
    .parse()
    .unwrap()
}

/// `example_args()` with the kernel fast path set to `mode`.
fn args_with_offload(mode: &str) -> Vec<String> {
    let mut args = example_args();
    args.extend(["--offload".into(), mode.into()]);
    args
}

/// One UDP GSO send of 20 datagrams, after `warmup` single exchanges on the same flow, must
/// come back answered and intact.
fn assert_udp_gso(tb: &Testbed, warmup: u32) {
    let warmup = warmup.to_string();
    let gso = tb.ok(
        "lan",
        &[
            probe(),
            "udp-gso-check",
            "--dst",
            "198.19.0.4:7",
            "--warmup",
            &warmup,
            "--segments",
            "20",
            "--size",
            "1000",
        ],
    );
    assert!(gso.starts_with("ok 20 segments"), "{gso}");
}

/// The numbers after `key=` on every log line containing `marker`.
fn logged(log: &str, marker: &str, key: &str) -> Vec<u64> {
    let prefix = format!("{key}=");
    log.lines()
        .filter(|l| l.contains(marker))
        .filter_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix(&prefix)?.parse().ok())
        })
        .collect()
}

#[test]
fn ping_tcp_and_udp_cross_wanlb_and_only_wanlb() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    // every packet through the userspace data path (TUN, engine, AF_PACKET)
    let gw = tb.start_wanlb(&args_with_offload("off"));
    // what wanlb sends to each router, and what reaches the LAN host from its TUN writes
    let watchers = [("r1", "eth0"), ("r2", "eth0"), ("lan", "eth0")]
        .map(|(ns, dev)| (ns, tb.watch_checksums(ns, dev)));

    // ICMP echo, both ways
    tb.assert_pings("lan", "198.19.0.1", 3, "0.2");

    // 20 MB through a TCP echo: every byte checked on its way back
    tb.assert_tcp_echo("lan", "198.19.0.9:9000", 20_000_000);

    // UDP request and response, translated to an uplink address and a NAT-pool port
    let out = tb.ok("lan", &[probe(), "spread", "--dst", "198.19.0.2"]);
    let first = out.lines().next().unwrap();
    let (dst, seen) = first.split_once(' ').unwrap();
    assert_eq!(dst, "198.19.0.2");
    let (addr, port) = seen.split_once(':').unwrap();
    assert!(addr == UPLINK_1 || addr == UPLINK_2, "{seen}");
    // the pool wanlb chose: the largest range clear of the namespace's ephemeral ports
    let pool = |key: &str| logged(&gw.output(), "NAT ports", key)[0];
    let (first, last) = (pool("first"), pool("last"));
    assert_eq!((first, last), (1024, 32767), "{}", gw.output());
    assert!(
        (first..=last).contains(&port.parse::<u64>().unwrap()),
        "{seen}"
    );

    // UDP GSO: one send of 20 datagrams crosses as one super-packet; all come back intact
    assert_udp_gso(&tb, 0);

    // every frame on the way had valid checksums: complete ones verify, partial ones (veth
    // offload, including GSO super-packets) hold the pseudo-header sum the device completes
    let (mut gso, mut segments) = (0, 0);
    for (ns, w) in watchers {
        let (checked, gso_here, segments_here, bad, out) = checksum_summary(w);
        assert_eq!(bad, 0, "{ns}: {out}");
        assert!(checked > 0 || ns == "r2", "{ns} saw nothing: {out}");
        gso += gso_here;
        segments += segments_here;
    }
    // GSO super-packets were cut into wire-sized segments and every segment verified
    assert!(
        gso > 0,
        "the 20 MB transfer should have crossed as GSO super-packets"
    );
    assert!(segments > gso, "{segments} segments from {gso} GSO packets");

    // the kernel did no NAT and has no multipath route; the packets went through the TUN
    let ruleset = tb.ok("gw", &["nft", "list", "ruleset"]);
    assert!(
        !ruleset.contains("masquerade") && !ruleset.contains("snat"),
        "{ruleset}"
    );
    let routes = tb.ok("gw", &["ip", "route", "show", "table", "all"]);
    assert!(!routes.contains("nexthop"), "{routes}");
    let (to_wanlb, from_wanlb) = (
        tun_counter(&tb, "tx_packets"),
        tun_counter(&tb, "rx_packets"),
    );
    assert!(
        to_wanlb >= 3 + 2 && from_wanlb >= 3 + 2,
        "TUN saw {to_wanlb} out, {from_wanlb} in"
    );

    // the gateway's own traffic and its own services keep working while wanlb runs
    tb.assert_pings("gw", "198.19.0.3", 1, "1");
    let service = tb.spawn("gw", &[probe(), "serve", "--tcp", "198.18.1.1:80"]);
    let service = Process::start(service);
    service.wait_for("listening", "gateway service");
    tb.assert_tcp_echo("inet", "198.18.1.1:80", 100_000);

    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn steady_flows_move_to_the_kernel_fast_path_unchanged() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    // "on": a kernel without TCX fails this test instead of quietly testing userspace
    let gw = tb.start_wanlb(&args_with_offload("on"));
    gw.wait_for("kernel fast path attached", "wanlb --offload on");
    let watchers = [("r1", "eth0"), ("r2", "eth0"), ("lan", "eth0")]
        .map(|(ns, dev)| (ns, tb.watch_checksums(ns, dev)));

    // One UDP flow, 200 exchanges: the first ones through the engine, the rest through the
    // kernel. The far end must see the same address and port throughout, and every reply
    // must come back to the LAN socket intact.
    let udp = tb.ok(
        "lan",
        &[
            probe(),
            "udp-check",
            "--dst",
            "198.19.0.5:7",
            "--count",
            "200",
        ],
    );
    assert!(udp.starts_with("ok 200 exchanges"), "{udp}");
    // the same with complete checksums computed in software (as from a NIC that offloads
    // nothing), which the kernel's helpers update instead of the pseudo-header sum
    let udp = tb.ok(
        "lan",
        &[
            probe(),
            "udp-check",
            "--dst",
            "198.19.0.8:7",
            "--count",
            "100",
            "--software-checksum",
        ],
    );
    assert!(udp.starts_with("ok 100 exchanges"), "{udp}");
    // a ping session: echo requests and replies cross the kernel once it is steady
    tb.assert_pings("lan", "198.19.0.6", 40, "0.01");
    // a UDP GSO super-packet on a flow the kernel already carries
    assert_udp_gso(&tb, 40);
    // 20 MB through a TCP echo, every byte checked
    tb.assert_tcp_echo("lan", "198.19.0.9:9000", 20_000_000);

    // frames the kernel path built are as valid as wanlb's: checksums, GSO segments
    let mut gso_seen = 0;
    for (ns, w) in watchers {
        let (checked, gso_here, _, bad, out) = checksum_summary(w);
        assert_eq!(bad, 0, "{ns}: {out}");
        assert!(checked > 0 || ns == "r2", "{ns} saw nothing: {out}");
        gso_seen += gso_here;
    }
    assert!(gso_seen > 0, "TCP crossed the fast path as GSO packets");

    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    let handed_over = logged(&log, "kernel fast path", "handed_over");
    assert!(
        handed_over.last().is_some_and(|n| *n >= 5),
        "the UDP flows, the ping and the TCP connection were handed over: {log}"
    );
    // most of the 20 MB went through the kernel, only the start of each flow through wanlb
    let fast: u64 = logged(&log, "uplink fast path totals", "outbound_bytes")
        .iter()
        .sum();
    let slow: u64 = logged(&log, "uplink totals", "outbound_bytes").iter().sum();
    assert!(
        fast > 15_000_000 && slow < 5_000_000,
        "fast path {fast} bytes out, userspace {slow}: {log}"
    );
    let fast_in: u64 = logged(&log, "uplink fast path totals", "inbound_bytes")
        .iter()
        .sum();
    assert!(fast_in > 15_000_000, "fast path {fast_in} bytes in: {log}");
}

#[test]
fn new_destinations_split_two_to_one() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let gw = tb.start_wanlb(&example_args());
    let flows = tb.spread("198.19.0.1", 90, 1);
    assert_eq!(flows.len(), 90);
    let (one, two) = via_counts(&flows);
    assert!(
        one.abs_diff(60) <= 1 && two.abs_diff(30) <= 1,
        "isp1 {one}, isp2 {two}: not within one of 2:1"
    );
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    // wanlb's own totals agree with what the far end saw
    assert!(
        log.contains("uplink=isp1") && log.contains(&format!("destinations={one}")),
        "{log}"
    );
}

#[test]
fn a_destination_keeps_its_uplink_and_pins_hold() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let gw = tb.start_wanlb(&example_args());
    // the pinned server first: the weighted choice would have sent it to isp1
    let pinned = tb.spread(PINNED, 1, 8);
    assert_eq!(via_counts(&pinned), (0, 8), "{pinned:?}");
    // eight flows to one destination share an uplink; do it for a few destinations
    for d in ["198.19.0.40", "198.19.0.41", "198.19.0.42"] {
        let flows = tb.spread(d, 1, 8);
        let (one, two) = via_counts(&flows);
        assert!(one == 8 || two == 8, "{d}: {flows:?}");
    }
    // the pin still holds after other destinations took weighted choices
    assert_eq!(via_counts(&tb.spread(PINNED, 1, 4)), (0, 4));
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

#[test]
fn sigterm_leaves_the_gateway_as_it_was() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let before = tb.gateway_state();
    let gw = tb.start_wanlb(&example_args());
    let during = tb.gateway_state();
    assert_ne!(
        before, during,
        "wanlb should have added its TUN, rules and nftables table"
    );
    assert!(
        during.contains("wanlb_wanlb0") && during.contains("lookup 7100"),
        "{during}"
    );
    tb.spread("198.19.0.1", 5, 1);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    tb.assert_gateway_state(&before, &log);
    let state_dir = format!("/tmp/wanlb-test-{}", tb.prefix);
    assert!(
        !std::path::Path::new(&state_dir).exists(),
        "the journal, its lock and the state directory are gone"
    );
}

#[test]
fn sigint_leaves_the_gateway_as_it_was() {
    let tb = Testbed::up();
    let before = tb.gateway_state();
    let gw = tb.start_wanlb(&example_args());
    gw.signal("-INT");
    let mut gw = gw;
    let status = gw.child.wait().unwrap();
    assert!(status.success());
    tb.assert_gateway_state(&before, "");
}

#[test]
fn after_sigkill_a_restart_cleans_up_and_works() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let before = tb.gateway_state();
    let mut gw = tb.start_wanlb(&example_args());
    gw.signal("-KILL");
    gw.child.wait().unwrap();
    let left = tb.gateway_state();
    assert!(
        left.contains("lookup 7100") && left.contains("wanlb_wanlb0"),
        "expected leftovers after SIGKILL:\n{left}"
    );

    let gw = tb.start_wanlb(&example_args());
    assert!(
        gw.output()
            .contains("undid what a previous run left behind"),
        "{}",
        gw.output()
    );
    let during = tb.gateway_state();
    // one rule for the LAN's traffic, one for the reverse-path check of what comes back (and
    // what the LAN sends to an uplink's NAT ports), one for that check of what wanlb gives
    // back to the gateway's own stack; and the local table's rule, moved, once (IPv6's stays)
    assert_eq!(
        during.matches("lookup 7100").count(),
        3,
        "no duplicate rules:\n{during}"
    );
    assert_eq!(
        during.matches("from all lookup local").count(),
        2,
        "one local rule each for IPv4 and IPv6:\n{during}"
    );
    tb.assert_pings("lan", "198.19.0.1", 2, "0.2");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    tb.assert_gateway_state(&before, "");
}

#[test]
fn bad_input_is_refused_before_anything_changes() {
    let tb = Testbed::up();
    let before = tb.gateway_state();
    let cases: [(&[&str], &str); 4] = [
        (
            &["--uplink", "isp1,dev=eth1,gw=198.18.9.254"],
            "gw 198.18.9.254 is not on eth1's subnet 198.18.1.0/24",
        ),
        (
            &["--uplink", "isp1,dev=eth9,gw=198.18.1.254"],
            "dev \"eth9\": no such interface",
        ),
        (
            &["--uplink", "isp1,dev=eth1,gw=198.18.1.254,weight=0"],
            "weight must be a whole number",
        ),
        (
            &[
                "--uplink",
                "isp1,dev=eth1,gw=198.18.1.254",
                "--pin",
                "198.19.0.0/16=isp7",
            ],
            "unknown uplink \"isp7\"",
        ),
    ];
    for (args, expected) in cases {
        let mut cmd = vec![WANLB, "run", "--lan", "eth0"];
        cmd.extend_from_slice(args);
        let out = tb.run("gw", &cmd);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(expected), "{args:?}: {stderr}");
        assert!(
            stderr.contains("--uplink") || stderr.contains("--pin"),
            "names the flag: {stderr}"
        );
    }
    tb.assert_gateway_state(&before, "");
}

#[test]
fn busy_polling_forwards_and_stops_cleanly() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let before = tb.gateway_state();
    let mut args = example_args();
    args.extend(["--busy-poll".to_string(), "20ms".to_string()]);
    let gw = tb.start_wanlb(&args);
    tb.assert_pings("lan", "198.19.0.1", 5, "0.01");
    tb.assert_tcp_echo("lan", "198.19.0.9:9000", 5_000_000);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    tb.assert_gateway_state(&before, &log);
}

#[test]
fn a_second_wanlb_is_refused_and_leaves_the_first_alone() {
    let tb = Testbed::up();
    let gw = tb.start_wanlb(&example_args());
    let during = tb.gateway_state();
    let state = format!("/tmp/wanlb-test-{}", tb.prefix);
    let mut cmd = vec![WANLB, "run", "--state-dir", &state];
    let args = example_args();
    cmd.extend(args.iter().map(String::as_str));
    let second = tb.run("gw", &cmd);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("another wanlb is running"), "{stderr}");
    tb.assert_gateway_state(&during, &stderr);
    // the first still forwards
    tb.assert_pings("lan", "198.19.0.1", 1, "1");
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
}

/// The number after `name` in a checksum watcher's summary line.
fn summary_field(out: &str, name: &str) -> u64 {
    let line = out.lines().find(|l| l.starts_with("checked ")).unwrap();
    let w: Vec<&str> = line.split_whitespace().collect();
    let i = w.iter().position(|x| *x == name).expect("field");
    w[i + 1].parse().expect("number")
}

/// `count` pings of 3000 bytes from the LAN host with "don't fragment" off (so in fragments,
/// and answered in fragments), 50 ms apart: all must be answered.
fn assert_big_pings(tb: &Testbed, dst: &str, count: u32) {
    let n = count.to_string();
    let ping = [
        "ping", "-c", &n, "-i", "0.05", "-W", "2", "-s", "3000", "-M", "dont", dst,
    ];
    let out = tb.ok("lan", &ping);
    assert!(out.contains(&format!("{count} received")), "{out}");
}

/// A LAN host's UDP datagrams and pings bigger than the path (3000 bytes, every link 1500),
/// sent with "don't fragment" off: the host sends them in IP fragments, wanlb translates
/// them piece by piece (the first by its flow, the later ones by the first one's mapping),
/// the far end reassembles them whole from the uplink's address and answers as big, and the
/// answers (reassembled by wanlb's packet sockets, cut again by the gateway's kernel towards
/// the LAN) come back intact.
fn assert_fragmented_datagrams_cross(offload: &str) {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let gw = tb.start_wanlb(&args_with_offload(offload));
    if offload != "off" {
        gw.wait_for("kernel fast path attached", "wanlb");
    }
    let watchers = [("r1", "eth0"), ("r2", "eth0"), ("lan", "eth0")]
        .map(|(ns, dev)| (ns, tb.watch_checksums(ns, dev)));

    // one flow, 20 datagrams of 3000 bytes between 20 of 100, every answer checked byte for
    // byte; the far end saw each whole (it reflects all it received), and all from one
    // uplink address and port, whether the engine or (once the flow is steady, for the small
    // ones) the kernel fast path translated them
    let udp = tb.ok(
        "lan",
        &[
            probe(),
            "udp-big-check",
            "--dst",
            "198.19.0.20:7",
            "--size",
            "3000",
            "--count",
            "40",
            "--alternate-small",
        ],
    );
    assert!(udp.starts_with("ok 40 datagrams of 3000 bytes"), "{udp}");
    let via = udp.trim().rsplit(' ').next().unwrap();
    let (addr, _port) = via.split_once(':').unwrap();
    assert!(addr == UPLINK_1 || addr == UPLINK_2, "{udp}");

    // ICMP echo in fragments both ways: long enough a session to be handed to the fast path
    assert_big_pings(&tb, "198.19.0.21", 20);

    // on the wire: the pieces crossed as pieces, each header checksum right
    let mut fragments = 0;
    for (ns, w) in watchers {
        let (_, _, _, bad, out) = checksum_summary(w);
        assert_eq!(bad, 0, "{ns}: {out}");
        let here = summary_field(&out, "fragments");
        if ns == "lan" {
            // the answers, cut by the gateway's kernel: 3 per answer at least
            assert!(here >= 3 * 40, "{ns}: {out}");
        }
        fragments += here;
    }
    assert!(
        fragments >= 2 * 3 * 40,
        "the requests crossed the uplinks in fragments: {fragments}"
    );

    // Now the LAN link carries 9000 bytes: the host sends each datagram whole (its UDP
    // checksum partial, left to the device), and the gateway's kernel cuts it for the TUN
    // device (MTU 1500), completing the checksum first; the answers reach the host whole.
    for ns in ["lan", "gw"] {
        tb.ok(ns, &["ip", "link", "set", "eth0", "mtu", "9000"]);
    }
    let watchers = [("r1", "eth0"), ("r2", "eth0"), ("lan", "eth0")]
        .map(|(ns, dev)| (ns, tb.watch_checksums(ns, dev)));
    let udp = tb.ok(
        "lan",
        &[
            probe(),
            "udp-big-check",
            "--dst",
            "198.19.0.22:7",
            "--size",
            "3000",
            "--count",
            "10",
        ],
    );
    assert!(udp.starts_with("ok 10 datagrams of 3000 bytes"), "{udp}");
    assert_big_pings(&tb, "198.19.0.23", 10);
    let mut on_uplinks = 0;
    for (ns, w) in watchers {
        let (_, _, _, bad, out) = checksum_summary(w);
        assert_eq!(bad, 0, "{ns}: {out}");
        let here = summary_field(&out, "fragments");
        if ns == "lan" {
            assert_eq!(here, 0, "the answers reach the host whole: {out}");
        } else {
            on_uplinks += here;
        }
    }
    // what wanlb sent (each router sees its own line's frames, arriving): 3 per request
    assert!(
        on_uplinks >= 3 * 20,
        "{on_uplinks} fragments on the uplinks"
    );

    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    // nothing of it was dropped, and the big answers went to TUN whole
    let drops: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("tun_write_errors="))
        .collect();
    assert!(!drops.is_empty(), "{log}");
    for line in drops {
        assert!(!line.contains("fragment"), "{line}");
        for counter in ["tun_write_errors", "send_errors", "truncated"] {
            assert!(line.contains(&format!(" {counter}=0")), "{line}");
        }
    }
    if offload != "off" {
        // the small datagrams of the UDP flow crossed the kernel, its fragments the engine
        let fast: u64 = logged(&log, "uplink fast path totals", "outbound_packets")
            .iter()
            .sum();
        assert!(fast > 0, "{log}");
    }
}

#[test]
fn fragmented_datagrams_cross_in_userspace() {
    assert_fragmented_datagrams_cross("off");
}

#[test]
fn fragmented_datagrams_cross_with_the_fast_path_on() {
    assert_fragmented_datagrams_cross("on");
}

/// A CPU list as /proc writes it ("0-2,5"), as numbers.
fn cpu_list(text: &str) -> Vec<usize> {
    let number = |s: &str| s.trim().parse::<usize>().expect("a CPU number");
    text.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => (number(a)..=number(b)).collect::<Vec<_>>(),
            None => vec![number(part)],
        })
        .collect()
}

/// The CPUs thread `name` of process `pid` may run on ("self" and "" for this process).
fn cpus_of_thread(pid: &str, name: &str) -> Vec<usize> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).expect("tasks");
    let dir = (tasks.map(|t| t.expect("task").path()))
        .find(|dir| {
            let comm = std::fs::read_to_string(dir.join("comm")).unwrap_or_default();
            name.is_empty() || comm.trim() == name
        })
        .unwrap_or_else(|| panic!("no thread {name} in {pid}"));
    let status = std::fs::read_to_string(dir.join("status")).expect("status");
    let list = (status.lines())
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list");
    cpu_list(list)
}

#[test]
fn each_worker_runs_on_its_own_cpu_and_takes_the_packets_arriving_there() {
    // wanlb inherits this process's CPUs; worker i gets those whose number modulo the
    // number of workers is i
    let allowed = cpus_of_thread("self", "");
    let cpus = allowed.len();
    if cpus < 2 || (0..cpus).any(|i| !allowed.iter().any(|c| c % cpus == i)) {
        eprintln!("CPUs {allowed:?}: no CPU of its own for every worker, nothing to steer");
        return;
    }
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let mut args = args_with_offload("off");
    args.extend([
        "--workers".into(),
        cpus.to_string(),
        "--steer".into(),
        "cpu".into(),
    ]);
    let gw = tb.start_wanlb(&args);
    let pid = gw.child.id().to_string();
    for worker in 0..cpus {
        let name = format!("wanlb-worker-{worker}");
        let own: Vec<usize> = allowed
            .iter()
            .copied()
            .filter(|c| c % cpus == worker)
            .collect();
        assert_eq!(cpus_of_thread(&pid, &name), own, "{name}");
    }
    // new flows sent from every CPU in turn (steered to that CPU's worker), and their answers
    // (taken by the worker of the CPU they arrive on, the packet sockets' fanout steered by
    // the same program), all arrive
    for cpu in allowed {
        let cpu = cpu.to_string();
        let out = tb.ok(
            "lan",
            &[
                "taskset",
                "-c",
                &cpu,
                probe(),
                "udp-first",
                "--dst",
                "198.19.0.2:7",
                "--count",
                "20",
                "--pause",
                "1ms",
            ],
        );
        assert!(out.contains("answered 20 of 20"), "from CPU {cpu}: {out}");
    }
    assert!(!gw.output().contains("cannot steer"), "{}", gw.output());
}
