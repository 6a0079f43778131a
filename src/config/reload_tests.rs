//! What a reload applies, and what waits for a restart.

use super::*;
use tracing::level_filters::LevelFilter;

fn load(uplinks: &[&str], pins: &[&str], extra: impl FnOnce(&mut Flags)) -> Config {
    let mut flags = Flags {
        lan: vec!["eth0".into()],
        uplinks: uplinks.iter().map(|s| s.to_string()).collect(),
        pins: pins.iter().map(|s| s.to_string()).collect(),
        ..Flags::default()
    };
    extra(&mut flags);
    Config::load(&flags).expect("valid")
}

const ISP1: &str = "isp1,dev=eth1,gw=198.18.1.254,weight=2";
const ISP2: &str = "isp2,dev=eth2,gw=198.18.2.254";

#[test]
fn policy_changes_are_applied_and_listed() {
    let started = load(&[ISP1, ISP2], &[], |_| {});
    let new = load(
        &[
            "isp1,dev=eth1,gw=198.18.1.254,weight=1",
            "isp2,dev=eth2,gw=198.18.2.254,tier=2",
        ],
        &["198.19.0.0/16=isp2!"],
        |f| {
            f.health_interval = Some("1s".into());
            f.on_uplink_down = Some("keep".into());
            f.host_traffic = Some("follow".into());
            f.affinity_timeout = Some("1h".into());
            f.on_change = Some("logger wanlb".into());
        },
    );
    let r = started.reload(&new);
    assert!(r.need_restart.is_empty(), "{:?}", r.need_restart);
    assert_eq!(r.config, new);
    let applied = r.applied.join("\n");
    for expected in [
        "uplink isp1 weight: 2 -> 1",
        "uplink isp2 tier: 1 -> 2",
        r#"pins: [] -> ["198.19.0.0/16=isp2!"]"#,
        r#"affinity_timeout: "10m" -> "1h""#,
        "on_uplink_down: Reset -> Keep",
        "host_traffic: Off -> Follow",
        r#"on_change: None -> Some("logger wanlb")"#,
    ] {
        assert!(applied.contains(expected), "{expected:?} not in\n{applied}");
    }
    assert_eq!(r.applied.len(), 8, "and health:\n{applied}");
}

#[test]
fn the_limits_change_on_reload() {
    let started = load(&[ISP1], &[], |_| {});
    let new = load(&[ISP1], &[], |f| {
        f.max_flows = Some("5000".into());
        f.max_flows_per_host = Some("100".into());
        f.max_ports_per_host = Some("50".into());
        f.max_embryonic_per_forward = Some("128".into());
    });
    let r = started.reload(&new);
    assert!(r.need_restart.is_empty(), "{:?}", r.need_restart);
    assert_eq!(
        r.applied,
        [
            "max_flows: None -> Some(5000)",
            "max_flows_per_host: None -> Some(100)",
            "max_ports_per_host: None -> Some(50)",
            "max_embryonic_per_forward: 4096 -> 128",
        ]
    );
    let limits = r.config.limits((1024, 32767), 1 << 30);
    assert_eq!((limits.max_flows, limits.max_flows_per_host), (5000, 100));
    assert_eq!(
        (limits.max_ports_per_host, limits.max_embryonic_per_forward),
        (50, 128)
    );
}

#[test]
fn the_log_level_changes_on_reload() {
    let started = load(&[ISP1], &[], |_| {});
    let new = load(&[ISP1], &[], |f| f.log_level = Some("debug".into()));
    let r = started.reload(&new);
    assert_eq!(r.applied, [r#"log_level: "info" -> "debug""#]);
    assert_eq!(r.config.log_level, LevelFilter::DEBUG);
}

#[test]
fn the_same_settings_change_nothing() {
    let started = load(&[ISP1, ISP2], &["198.19.0.0/16=isp2"], |_| {});
    let r = started.reload(&started.clone());
    assert!(r.applied.is_empty() && r.need_restart.is_empty(), "{r:?}");
    assert_eq!(r.config, started);
}

#[test]
fn what_is_built_at_start_is_reported_and_kept() {
    // the system settles the automatic pool at start, in the plan: the settings keep `auto`
    let running = load(&[ISP1, ISP2], &[], |_| {});
    let new = load(
        &[
            "isp1,dev=eth9,gw=198.18.1.254,weight=1",
            "isp3,dev=eth3,gw=198.18.3.254",
        ],
        &["198.19.0.0/16=isp3"],
        |f| {
            f.tun = Some("other0".into());
            f.workers = Some(7);
            f.listen = Some("off".into());
            f.listen_hosts = vec!["gw.example.net".into()];
        },
    );
    let r = running.reload(&new);
    let restart = r.need_restart.join("\n");
    for key in [
        "tun changed",
        "workers changed",
        "listen changed",
        "listen_hosts changed",
        "uplink isp1 dev changed",
        "uplink isp2 is no longer in the settings",
        "uplink isp3 is new",
        "pin to isp3, which is not running",
    ] {
        assert!(restart.contains(key), "{key:?} not in\n{restart}");
    }
    assert!(
        !restart.contains("nat_ports"),
        "an automatic pool is the same pool"
    );
    // what can change still does; the rest stays as it runs
    assert_eq!(r.config.uplinks[0].weight, 1);
    assert_eq!(r.config.uplinks[0].dev, "eth1");
    assert_eq!(r.config.uplinks.len(), 2);
    assert_eq!(
        (r.config.tun.as_str(), r.config.workers),
        ("wanlb0", running.workers)
    );
    assert_eq!(r.config.nat_ports, None);
    assert!(r.config.pins.is_empty());
}

#[test]
fn a_pool_given_anew_waits_for_a_restart() {
    let running = load(&[ISP1], &[], |_| {});
    let new = load(&[ISP1], &[], |f| f.nat_ports = Some("40000-40999".into()));
    let r = running.reload(&new);
    assert_eq!(
        r.need_restart,
        ["nat_ports changed: restart wanlb to apply it"]
    );
    assert_eq!(r.config.nat_ports, None, "the running pool stays");
}

#[test]
fn forwards_added_or_removed_wait_for_a_restart() {
    let web = "tcp:8080=198.18.3.10:80@isp2";
    let started = load(&[ISP1, ISP2], &[], |f| f.forwards = vec![web.into()]);
    let new = load(&[ISP1, ISP2], &[], |f| {
        f.forwards = vec!["tcp:8080=198.18.3.11:80@isp2".into()];
    });
    let r = started.reload(&new);
    assert_eq!(
        r.need_restart,
        [
            "forward tcp:8080=198.18.3.11:80@isp2 is new: restart wanlb to add it",
            "forward tcp:8080=198.18.3.10:80@isp2 is no longer in the settings: restart wanlb to remove it",
        ]
    );
    assert!(r.applied.is_empty());
    assert_eq!(r.config.forwards, started.forwards, "the running ones stay");
    // the same forwards change nothing
    let again = load(&[ISP1, ISP2], &[], |f| f.forwards = vec![web.into()]);
    assert!(started.reload(&again).need_restart.is_empty());
}

#[test]
fn a_pin_moved_to_an_uplink_not_running_stays_where_it_runs() {
    let started = load(&[ISP1, ISP2], &["198.19.0.0/16=isp2!"], |_| {});
    let new = load(
        &[ISP1, ISP2, "isp3,dev=eth3,gw=198.18.3.254"],
        &["198.19.0.0/16=isp3!"],
        |_| {},
    );
    let r = started.reload(&new);
    assert_eq!(r.config.pins, started.pins, "the strict pin to isp2 holds");
    assert!(
        r.need_restart
            .iter()
            .any(|l| l.contains("pin to isp3") && l.contains("until then it stays on isp2")),
        "{:?}",
        r.need_restart
    );
}
