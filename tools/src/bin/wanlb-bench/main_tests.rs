use super::*;

#[test]
fn uplink_events_from_the_log() {
    let log = "2025-01-01T00:00:00.000001Z  INFO wanlb: ready lan=eth0\n\
               2025-01-01T00:00:00.1Z  INFO wanlb::health: uplink up uplink=isp1\n\
               2025-01-01T00:00:00.2Z  INFO wanlb::health: uplink up uplink=isp10\n\
               2025-01-01T00:00:01Z  WARN wanlb::health: uplink down uplink=isp1 missed=3\n\
               2025-01-01T00:00:02Z  INFO wanlb::health: uplink update uplink=isp1\n";
    assert!(!uplink_is_up(log, "isp1"));
    assert!(uplink_is_up(log, "isp10"));
    assert!(!uplink_is_up(log, "isp2"));
    assert_eq!(downs(log, "isp1"), 1);
    assert_eq!(
        uplink_event("uplink up uplink=\"isp2\",", "isp2"),
        Some(true)
    );
}

#[test]
fn gap_and_losses_from_udp_record() {
    let out = "listening\n0 198.18.1.1:61000 1000000\n1 198.18.1.1:61000 11000000\n\
               4 198.18.2.1:61000 51500000\n3 198.18.1.1:61000 52000000\nbad line\n";
    let got = arrivals(out);
    assert_eq!(got.len(), 4);
    assert_eq!(failover_gap(&got), Some(40.5));
    assert_eq!(lost(&got, 6), 2); // 2 and 5
    assert_eq!(failover_gap(&got[..2]), None);
}

#[test]
fn tcp_hold_outcomes() {
    let at = |out: &str| tcp_outcome(out, 1_000_000_000);
    assert_eq!(
        at("connected 198.18.3.10:5000\nreset 1250000000\n"),
        Ok(("reset".into(), Some(250.0)))
    );
    assert_eq!(
        at("connected 198.18.3.10:5000\nerror TimedOut 9\n"),
        Ok(("error TimedOut".into(), None))
    );
    assert_eq!(
        at("connected 198.18.3.10:5000\nalive\n"),
        Ok(("alive".into(), None))
    );
    assert!(at("connected 198.18.3.10:5000\n").is_err());
    assert!(at("reset soon\n").is_err());
}

#[test]
fn never_counts_as_worst() {
    assert_eq!(
        median_worst(&[Some(3.0), Some(1.0), Some(2.0)]),
        (Some(2.0), Some(3.0))
    );
    assert_eq!(
        median_worst(&[Some(3.0), None, Some(2.0)]),
        (Some(3.0), None)
    );
    assert_eq!(median_worst(&[None, None, Some(2.0)]), (None, None));
    assert_eq!(median_worst(&[]), (None, None));
}
