//! Tests of what the stress and soak runs read and how they sum it up.

use super::Gateway;
use super::report::{attack_cell, counter_rows, markdown};
use super::soak::{summarize, warmup};
use super::stress::{
    Conntrack, Honest, Phase, PhaseRun, Stop, conntrack_growth, counter_packets, parse_honest,
    sent_rate,
};
use super::watch::{
    Poll, Sample, Series, conntrack_stats, is_drop_or_eviction, log_report, metrics_flows,
    parse_metrics, proc_memory, state_diff, summarize_polls, warnings,
};

#[test]
fn memory_from_proc_status_and_none_for_a_zombie() {
    let status = "Name:\twanlb\nState:\tS (sleeping)\nVmHWM:\t  124328 kB\nVmRSS:\t   26940 kB\n\
                  Threads:\t9\n";
    let m = proc_memory(status).unwrap();
    assert_eq!((m.rss_kib, m.hwm_kib, m.threads), (26940, 124328, 9));
    assert_eq!(
        proc_memory("Name:\twanlb\nState:\tZ (zombie)\nThreads:\t1\n"),
        None
    );
}

#[test]
fn metrics_series_with_and_without_labels() {
    let text = "# HELP wanlb_flows_active Live flows, per protocol.\n\
                # TYPE wanlb_flows_active gauge\n\
                wanlb_flows_active{proto=\"tcp\"} 217.0\n\
                wanlb_flows_active{proto=\"udp\"} 543583.0\n\
                wanlb_affinity_entries 7.0\n\
                wanlb_drops_total{reason=\"host_port_limit\"} 12\n\
                wanlb_flow_evictions_total{reason=\"unanswered\",proto=\"udp\"} 3\n\
                garbage line\n\
                # EOF\n";
    let s = parse_metrics(text);
    assert_eq!(s.len(), 5, "{s:?}");
    assert_eq!(
        s[3],
        Series {
            name: "wanlb_drops_total".into(),
            labels: "{reason=\"host_port_limit\"}".into(),
            value: 12.0
        }
    );
    assert_eq!(s[2].key(), "wanlb_affinity_entries");
    assert_eq!(metrics_flows(&s), Some(543800.0));
    assert_eq!(metrics_flows(&s[2..]), None);
    let counted: Vec<&str> = s
        .iter()
        .filter(|x| is_drop_or_eviction(&x.name))
        .map(|x| x.name.as_str())
        .collect();
    assert_eq!(counted, ["wanlb_drops_total", "wanlb_flow_evictions_total"]);
    assert!(is_drop_or_eviction("wanlb_flows_refused_total"));
    assert!(is_drop_or_eviction("wanlb_packets_shed_total"));
    assert!(!is_drop_or_eviction("wanlb_flows_active"));
}

#[test]
fn flows_and_drops_from_the_sigusr1_log() {
    let log = "2026-12-07T19:09:40Z  INFO wanlb::gateway: status flows=12 mappings=1\n\
               2026-12-07T19:09:43Z  INFO wanlb::gateway: status flows=543801 mappings=498 \
               destinations=65515 moved=0 resets=0 unreachables=0\n\
               2026-12-07T19:09:43Z  INFO wanlb::gateway: uplink totals uplink=isp1 flows=365759\n\
               2026-12-07T19:09:43Z  INFO wanlb::gateway: drops engine=not_ipv4=2 \
               host_port_limit=7 forwarded_from_uplinks=0 no_gateway_mac=0\n";
    let (flows, drops) = log_report(log);
    assert_eq!(flows, Some(543801.0));
    let got: Vec<(String, f64)> = drops.iter().map(|d| (d.key(), d.value)).collect();
    assert_eq!(
        got,
        [
            ("wanlb_drops_total{reason=\"not_ipv4\"}".to_string(), 2.0),
            (
                "wanlb_drops_total{reason=\"host_port_limit\"}".to_string(),
                7.0
            ),
            (
                "wanlb_drops_total{reason=\"forwarded_from_uplinks\"}".to_string(),
                0.0
            ),
            (
                "wanlb_drops_total{reason=\"no_gateway_mac\"}".to_string(),
                0.0
            ),
        ]
    );
    assert_eq!(log_report("nothing logged\n"), (None, Vec::new()));
    // an empty engine list ("engine= forwarded...") is no reason
    let (_, drops) = log_report("x INFO wanlb::gateway: drops engine= truncated=1\n");
    assert_eq!(drops.len(), 1);
}

#[test]
fn conntrack_statistics_summed_over_cpus() {
    let text = "entries  clashres found new invalid ignore delete chainlength insert \
                insert_failed drop early_drop icmp_error  expect_new expect_create \
                expect_delete search_restart\n\
                0003e8ab  00000000 00000000 00000000 00000005 00000000 00000000 00000000 \
                00000000 00000000 00000010 00000100 00000000  00000000 00000000 00000000 00000001\n\
                0003e8ab  00000000 00000000 00000000 00000001 00000000 00000000 00000000 \
                00000000 00000002 00000001 000000ff 00000000  00000000 00000000 00000000 00000000\n";
    let s = conntrack_stats(text);
    let get = |n: &str| s.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
    assert_eq!(get("entries"), Some(0x3e8ab), "the table's size, not a sum");
    assert_eq!(get("invalid"), Some(6));
    assert_eq!(get("drop"), Some(0x11));
    assert_eq!(get("early_drop"), Some(0x1ff));
    assert_eq!(get("insert_failed"), Some(2));
    assert_eq!(get("search_restart"), Some(1));
    assert!(conntrack_stats("").is_empty());
    let before = vec![
        ("entries".to_string(), 5),
        ("drop".into(), 10),
        ("invalid".into(), 3),
    ];
    let after = vec![
        ("entries".to_string(), 900),
        ("drop".into(), 15),
        ("invalid".into(), 3),
        ("early_drop".into(), 4),
    ];
    assert_eq!(
        conntrack_growth(&before, &after),
        [("drop".to_string(), 5), ("early_drop".into(), 4)]
    );
}

#[test]
fn what_differs_in_the_gateway_namespace() {
    let before = "$ ip -4 rule\n0:\tfrom all lookup local\n$ nft list ruleset\n";
    let after = "$ ip -4 rule\n0:\tfrom all lookup local\n7100:\tfrom all iif eth0 lookup 7100\n\
                 $ nft list ruleset\ntable ip wanlb_wanlb0 {\n";
    assert_eq!(
        state_diff(before, after),
        [
            "+ 7100:\tfrom all iif eth0 lookup 7100",
            "+ table ip wanlb_wanlb0 {"
        ]
    );
    assert_eq!(
        state_diff(after, before),
        [
            "- 7100:\tfrom all iif eth0 lookup 7100",
            "- table ip wanlb_wanlb0 {"
        ]
    );
    assert!(state_diff(before, before).is_empty());
}

fn poll(t: f64, ms: Option<f64>) -> Poll {
    Poll {
        t,
        ms,
        error: ms.is_none().then(|| "no answer within 5 s".into()),
    }
}

#[test]
fn status_polls_summed_up() {
    let polls = [
        poll(0.0, Some(12.0)),
        poll(1.0, Some(30.0)),
        poll(2.0, None),
        poll(7.0, None),
        poll(12.0, Some(20.0)),
        poll(13.0, None),
    ];
    let s = summarize_polls(&polls);
    assert_eq!((s.polls, s.answered), (6, 3));
    assert_eq!(s.median_ms, Some(20.0));
    assert_eq!(s.max_ms, Some(30.0));
    // 2 s to 12 s; the last one alone counts to its deadline (5 s)
    assert_eq!(s.longest_silence_s, Some(10.0));
    let none = summarize_polls(&[poll(0.0, None)]);
    assert_eq!(
        (none.answered, none.median_ms, none.max_ms),
        (0, None, None)
    );
    assert_eq!(
        summarize_polls(&[poll(0.0, Some(1.0))]).longest_silence_s,
        None
    );
}

#[test]
fn the_second_hosts_totals_and_the_attack_rate() {
    let out = "second 0 udp_ok 20 udp_failed 0 tcp_ok 20 tcp_failed 0\n\
               total udp_ok 158 udp_failed 2 udp_p50_ms 150.00 udp_max_ms 1496.77 \
               udp_error_no_answer 2 tcp_ok 155 tcp_failed 4 tcp_p50_ms 306.87 tcp_max_ms \
               3268.13 tcp_error_connect_timeout 3 tcp_error_echo 1 sprayed 0 seconds 9.005\n";
    assert_eq!(
        parse_honest(out),
        Some(Honest {
            tcp_ok: 155,
            tcp_tried: 159,
            udp_ok: 158,
            udp_tried: 160,
            tcp_p50_ms: Some(306.87),
            tcp_max_ms: Some(3268.13),
            udp_p50_ms: Some(150.0),
            udp_max_ms: Some(1496.77),
            errors: vec![
                ("udp_error_no_answer".into(), 2),
                ("tcp_error_connect_timeout".into(), 3),
                ("tcp_error_echo".into(), 1),
            ],
        })
    );
    // nothing got through: no latencies
    let h = parse_honest("total udp_ok 0 udp_failed 20 tcp_ok 0 tcp_failed 20\n").unwrap();
    assert_eq!((h.udp_tried, h.tcp_p50_ms), (20, None));
    assert_eq!(parse_honest("wanlb-probe: connect: refused\n"), None);
    assert_eq!(
        sent_rate("sent 906880 seconds 8.000 rate 113357 refused_batches 0\n"),
        Some(113357.0)
    );
    assert_eq!(sent_rate("crowd started 0.001\n"), None);
    let counter = "table ip bench_leak {\n\tcounter lan_sources {\n\t\tpackets 1234 bytes \
                   56789\n\t}\n}\n";
    assert_eq!(counter_packets(counter), Some(1234));
    assert_eq!(counter_packets("Error: No such file or directory\n"), None);
    let crowd = "crowd started 0.105\nidle_connected 580 idle_failed 420 idle_closed_by_server \
                 19 first_closed_s 1.099 pipeline_connections 1 pipeline_requests 1388296 \
                 pipeline_bytes 63861616 pipeline_blocked_s 0.883\n";
    assert_eq!(
        attack_cell(None, crowd),
        "580/1000 idle connections, 1388296 requests pipelined"
    );
    assert_eq!(attack_cell(Some(113_357.0), ""), "113 k pps");
    assert_eq!(attack_cell(None, "wanlb-probe: raw socket: EPERM"), "n/a");
}

fn run(phase: Phase, path: Gateway, counters: &[(&str, f64)]) -> PhaseRun {
    let mut r = PhaseRun::new(phase, path, 30);
    r.counters = counters
        .iter()
        .map(|(k, v)| Series {
            name: "wanlb_drops_total".into(),
            labels: format!("{{reason=\"{k}\"}}"),
            value: *v,
        })
        .collect();
    r
}

#[test]
fn drop_counters_shown_when_not_zero_in_some_phase() {
    let a = run(
        Phase::Spray,
        Gateway::Wanlb,
        &[("no_flow", 0.0), ("host_port_limit", 5.0)],
    );
    let b = run(Phase::Spoofed, Gateway::Wanlb, &[("ports_exhausted", 9.0)]);
    let rows = counter_rows(&[&a, &b]);
    assert_eq!(
        rows,
        [
            (
                "wanlb_drops_total{reason=\"host_port_limit\"}".to_string(),
                vec![Some(5.0), None]
            ),
            (
                "wanlb_drops_total{reason=\"ports_exhausted\"}".to_string(),
                vec![None, Some(9.0)]
            ),
        ]
    );
}

#[test]
fn the_report_says_what_each_phase_did() {
    let mut spray = run(Phase::Spray, Gateway::Wanlb, &[("host_port_limit", 5.0)]);
    spray.attack_pps = Some(113_357.0);
    spray.rss_start_mib = Some(26.0);
    spray.rss_peak_mib = Some(420.5);
    spray.flows_peak = Some(1_234_567.0);
    spray.honest = Some(Honest {
        tcp_ok: 590,
        tcp_tried: 600,
        udp_ok: 600,
        udp_tried: 600,
        ..Honest::default()
    });
    spray.status = Some(summarize_polls(&[
        poll(0.0, Some(12.0)),
        poll(1.0, Some(40.0)),
    ]));
    spray.stop = Some(Stop {
        seconds: Some(0.31),
        how: "exited after SIGTERM (exit status: 0)".into(),
        clean: true,
        ..Stop::default()
    });
    spray.counters_from = "/metrics".into();
    spray.leaked = Some(0);
    spray.leaked_stopping = Some(7);
    let mut crowd = run(Phase::ControlCrowd, Gateway::Wanlb, &[]);
    crowd.status = Some(summarize_polls(&[poll(0.0, None), poll(5.0, None)]));
    crowd.stop = Some(Stop {
        seconds: None,
        how: "still running 30 s after SIGTERM: killed".into(),
        clean: false,
        leftover: vec!["+ 7100:\tfrom all iif eth0 lookup 7100".into()],
        recovered: Some(true),
    });
    crowd.leaked = Some(4242);
    crowd.counters_from = "nowhere: neither /metrics nor SIGUSR1 answered".into();
    let mut kernel = run(Phase::Spray, Gateway::Kernel, &[]);
    kernel.flows_peak = Some(262_144.0);
    kernel.conntrack = Some(Conntrack {
        max: Some(262_144),
        entries_peak: Some(262_144.0),
        entries_end: Some(262_000),
        grew: vec![("early_drop".into(), 1234)],
    });
    let mut failed = run(Phase::SynFlood, Gateway::Wanlb, &[]);
    failed.error = Some("wanlb did not start:\nno such device".into());
    let md = markdown(&[spray, kernel, crowd, failed], 30, "--lan eth0");
    for line in [
        "| 1 spray | wanlb | 113 k pps | 26.0 → 420 | 1.23 M | TCP 98 % (590/600), UDP 100 % \
         (600/600) | 2/2 | 26.0 / 40.0 | 0.31 s | nothing | 0 / 7 |",
        "| 1 spray | kernel | n/a | – | 262 k (conntrack) | n/a | – | – | – | – | n/a / – |",
        "| 4 control crowd | wanlb | n/a | n/a | n/a | n/a | 0/2 | – / – | killed after 30 s | 1 \
         lines differ; a restart cleaned up | 4242 / n/a |",
        "| 3 SYN flood | wanlb | could not run: wanlb did not start: ||||||||| ",
        "| `wanlb_drops_total{reason=\"host_port_limit\"}` | 5 | – |",
        "| 1 spray | 262144 | 262 k | 262000 | 0 | 1234 | 0 | 0 |",
        "  - `wanlb status` went unanswered for up to 10.0 s in a row",
        "  - left in the gateway namespace: `+ 7100:\tfrom all iif eth0 lookup 7100`",
        "Phase 4: the counters come from nowhere: neither /metrics nor SIGUSR1 answered.",
    ] {
        assert!(md.lines().any(|l| l == line), "{line:?} missing in:\n{md}");
    }
}

fn sample(t: f64, rss: Option<f64>, flows: Option<f64>) -> Sample {
    Sample {
        t,
        rss_mib: rss,
        flows,
        ..Sample::default()
    }
}

#[test]
fn soak_rss_change_after_the_warm_up() {
    let samples = [
        sample(0.0, Some(20.0), Some(0.0)),
        sample(180.0, Some(80.0), Some(400_000.0)),
        sample(360.0, Some(100.0), Some(600_000.0)),
        sample(370.0, None, None),
        sample(600.0, Some(98.0), Some(610_000.0)),
        sample(900.0, Some(102.0), Some(590_000.0)),
    ];
    let s = summarize(&samples, 360.0);
    assert_eq!(s.rss_after_warmup_mib, Some(100.0));
    assert_eq!(s.rss_end_mib, Some(102.0));
    assert!((s.rss_change_pct.unwrap() - 2.0).abs() < 1e-9);
    assert_eq!(s.rss_min_after_warmup_mib, Some(98.0));
    assert_eq!(s.rss_max_after_warmup_mib, Some(102.0));
    assert_eq!(s.flows_peak, Some(610_000.0));
    assert_eq!(s.flows_end, Some(590_000.0));
    let empty = summarize(&[], 360.0);
    assert_eq!((empty.rss_change_pct, empty.flows_peak), (None, None));
}

#[test]
fn soak_warm_up_fits_the_run() {
    assert_eq!(warmup(30, None), (360.0, None));
    assert_eq!(warmup(30, Some(5)), (300.0, None));
    let (short, note) = warmup(3, None);
    assert_eq!(short, 90.0);
    assert!(note.unwrap().contains("half"));
}

#[test]
fn warnings_once_each_with_their_count() {
    let log = "2026-12-07T19:38:40Z  INFO wanlb: ready lan=eth0\n\
               2026-12-07T19:38:43Z ERROR tiny_http: Error accepting new client: Too many open \
               files (os error 24)\n\
               2026-12-07T19:38:43Z  WARN wanlb::gateway: the status and metrics server stopped\n\
               2026-12-07T19:38:44Z ERROR tiny_http: Error accepting new client: Too many open \
               files (os error 24)\n\
               2026-12-07T19:38:45Z  WARN wanlb::health: uplink down uplink=isp1 missed=3\n";
    assert_eq!(
        warnings(log, 2),
        [
            "2 times: ERROR tiny_http: Error accepting new client: Too many open files (os error 24)",
            "WARN wanlb::gateway: the status and metrics server stopped",
        ]
    );
    assert_eq!(warnings(log, 10).len(), 3);
    assert!(warnings("2026 INFO all well\n", 5).is_empty());
}
