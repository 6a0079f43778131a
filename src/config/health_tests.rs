//! Health and idle timeouts: their defaults, the file's keys and the flags, and what is
//! refused.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Duration;

use super::parse::format_duration;
use super::tests::{ISP1, ISP2, flags, load_err, write_temp};
use super::*;
use crate::engine::flow::Timeouts;
use crate::health::HealthSettings;

#[test]
fn health_defaults_and_flags() {
    let c = Config::load(&flags(&[ISP1, ISP2], &[])).unwrap();
    assert_eq!(c.health(), HealthSettings::default());
    assert_eq!(c.health().interval, Duration::from_millis(200));
    assert_eq!(c.health().timeout, Duration::from_millis(600));
    assert_eq!((c.health().down_after, c.health().up_after), (3, 10));
    assert_eq!(c.on_uplink_down, OnUplinkDown::Reset);
    assert!(c.targets_of(&c.uplinks[0]).is_empty());

    let mut f = flags(
        &[
            ISP1,
            "isp2,dev=eth2,gw=192.168.2.254,tier=2,check=198.19.255.9,check=198.19.255.10",
        ],
        &["174.143.119.91/32=isp2!", "10.0.0.0/8=isp1"],
    );
    f.health_target = vec!["198.19.255.1".into(), "198.19.255.2".into()];
    f.health_interval = Some("100ms".into());
    f.health_timeout = Some("1s".into());
    f.down_after = Some("2".into());
    f.up_after = Some("5".into());
    f.max_loss = Some("20%".into());
    f.max_rtt = Some("150ms".into());
    f.on_uplink_down = Some("keep".into());
    f.on_change = Some("logger wanlb".into());
    let c = Config::load(&f).unwrap();
    let targets = |i: usize| -> Vec<String> {
        c.targets_of(&c.uplinks[i])
            .iter()
            .map(|a| a.to_string())
            .collect()
    };
    assert_eq!(targets(0), ["198.19.255.1", "198.19.255.2"]);
    assert_eq!(
        targets(1),
        ["198.19.255.9", "198.19.255.10"],
        "check replaces the global list"
    );
    assert_eq!((c.uplinks[0].tier, c.uplinks[1].tier), (1, 2));
    assert!(c.pins.iter().any(|p| p.uplink == "isp2" && p.strict));
    assert!(c.pins.iter().any(|p| p.uplink == "isp1" && !p.strict));
    let h = c.health();
    assert_eq!(h.interval, Duration::from_millis(100));
    assert_eq!(h.timeout, Duration::from_secs(1));
    assert_eq!((h.down_after, h.up_after), (2, 5));
    assert_eq!(h.max_loss_pct, Some(20));
    assert_eq!(h.max_rtt, Some(Duration::from_millis(150)));
    assert_eq!(c.on_uplink_down, OnUplinkDown::Keep);
    assert_eq!(c.on_change.as_deref(), Some("logger wanlb"));
}

#[test]
fn bad_health_settings_are_refused_naming_the_flag() {
    type Set = fn(&mut Flags);
    let cases: [(Set, &str); 9] = [
        (
            |f| f.health_target = vec!["198.19.1".into()],
            r#"--health-target "198.19.1": health target "198.19.1" is not an IPv4 address"#,
        ),
        (
            |f| f.health_target = vec!["0.0.0.0".into()],
            "must be a unicast address",
        ),
        (
            |f| f.health_interval = Some("1ms".into()),
            r#"--health-interval "1ms": must be from"#,
        ),
        (
            |f| f.health_timeout = Some("soon".into()),
            r#"--health-timeout "soon": "soon" is not a duration"#,
        ),
        (
            |f| f.down_after = Some("0".into()),
            r#"--down-after "0": must be a whole number from 1 to 100"#,
        ),
        (|f| f.up_after = Some("many".into()), r#"--up-after "many""#),
        (
            |f| f.max_loss = Some("100".into()),
            r#"--max-loss "100": must be a whole number from 1 to 99"#,
        ),
        (
            |f| f.on_uplink_down = Some("drop".into()),
            r#"--on-uplink-down "drop": must be reset (the default) or keep"#,
        ),
        (|f| f.on_change = Some("  ".into()), "--on-change"),
    ];
    for (set, expected) in cases {
        let mut f = flags(&[ISP1], &[]);
        set(&mut f);
        let e = load_err(&f).to_string();
        assert!(e.contains(expected), "{e:?} should contain {expected:?}");
    }
    for (spec, expected) in [
        (
            "isp1,dev=eth1,gw=192.168.1.254,tier=0",
            "tier: must be a whole number from 1 to 9",
        ),
        (
            "isp1,dev=eth1,gw=192.168.1.254,check=nowhere",
            r#"health target "nowhere""#,
        ),
    ] {
        let e = load_err(&flags(&[spec], &[])).to_string();
        assert!(e.contains(expected), "{e:?} should contain {expected:?}");
    }
}

#[test]
fn health_keys_in_the_file_name_their_line() {
    let text = "lan = [\"eth0\"]\nhealth_target = [\"198.19.255.9\"]\nmax_loss = 30\n\n[[uplink]]\nname = \"lte\"\ndev = \"wwan0\"\ngw = \"192.168.8.1\"\ntier = 2\ncheck = [\"198.19.255.1\"]\n\n[[pin]]\ndst = \"198.19.9.0/24\"\nuplink = \"lte\"\nstrict = true\n";
    let path = write_temp("health.toml", text);
    let c = Config::load(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    })
    .unwrap();
    assert_eq!(c.health_target, [Ipv4Addr::new(198, 19, 255, 9)]);
    assert_eq!(c.health().max_loss_pct, Some(30));
    assert_eq!(c.uplinks[0].tier, 2);
    assert_eq!(
        c.targets_of(&c.uplinks[0]),
        [Ipv4Addr::new(198, 19, 255, 1)]
    );
    assert!(c.pins[0].strict);

    let bad = text.replace("tier = 2", "tier = 12");
    let path = write_temp("health-bad.toml", &bad);
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert_eq!(
        e.origin,
        format!("{} line 9, uplink \"lte\" tier", path.display())
    );
    let bad = text.replace("max_loss = 30", "max_loss = \"lots\"");
    let path = write_temp("health-bad2.toml", &bad);
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert_eq!(e.origin, format!("{} line 3, max_loss", path.display()));
}

#[test]
fn duplicate_targets_and_an_unreachable_rtt_limit_are_refused() {
    let mut f = flags(&[ISP1], &[]);
    f.health_target = vec!["198.19.255.1".into(), "198.19.255.1".into()];
    let e = load_err(&f).to_string();
    assert_eq!(
        e,
        r#"--health-target "198.19.255.1": health target 198.19.255.1 is listed twice"#
    );
    let e = load_err(&flags(
        &["isp1,dev=eth1,gw=192.168.1.254,check=198.19.255.1,check=198.19.255.1"],
        &[],
    ))
    .to_string();
    assert!(
        e.starts_with("--uplink \"isp1,") && e.contains("listed twice"),
        "{e}"
    );
    let mut f = flags(&[ISP1], &[]);
    f.max_rtt = Some("600ms".into());
    let e = load_err(&f).to_string();
    assert!(
        e.starts_with(r#"--max-rtt "600ms": 600ms can never be reached"#),
        "{e}"
    );
    f.health_timeout = Some("1s".into());
    assert!(Config::load(&f).is_ok());
}

#[test]
fn idle_timeouts_default_to_the_rfcs_and_come_from_the_file_then_the_flags() {
    // in milliseconds, as the engine takes them
    let timeouts = |c: &Config| Timeouts::from(&c.timeouts);
    let c = Config::load(&flags(&[ISP1], &[])).unwrap();
    assert_eq!(timeouts(&c), Timeouts::default());
    let t = timeouts(&c);
    assert_eq!(
        (
            t.tcp_established,
            t.tcp_transitory,
            t.tcp_reset,
            t.udp,
            t.icmp
        ),
        (7_440_000, 240_000, 240_000, 300_000, 60_000)
    );
    // the example's [timeouts] shows the defaults, commented out
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wanlb.toml");
    let c = Config::load(&Flags {
        config: Some(example),
        ..Flags::default()
    })
    .unwrap();
    assert_eq!(timeouts(&c), Timeouts::default());
    let text = "lan = [\"eth0\"]\n\n[timeouts]\ntcp_established = \"1d\"\ntcp_transitory = \"5m\"\ntcp_reset = \"30s\"\nudp = \"2m30s\"\nicmp = \"90s\"\n\n[[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\n";
    let file = write_temp("timeouts.toml", text);
    let mut f = Flags {
        config: Some(file.to_path_buf()),
        ..Flags::default()
    };
    let t = timeouts(&Config::load(&f).unwrap());
    assert_eq!(
        t,
        Timeouts {
            tcp_established: 86_400_000,
            tcp_transitory: 300_000,
            tcp_reset: 30_000,
            udp: 150_000,
            icmp: 90_000,
        }
    );
    // a flag overrides its key, the rest stay as the file says
    f.timeouts.tcp_established = Some("3h".into());
    f.timeouts.tcp_reset = Some("10s".into());
    let t = timeouts(&Config::load(&f).unwrap());
    assert_eq!((t.tcp_established, t.tcp_reset), (10_800_000, 10_000));
    assert_eq!(
        (t.tcp_transitory, t.udp, t.icmp),
        (300_000, 150_000, 90_000)
    );
    // the exact minimums pass
    let mut f = flags(&[ISP1], &[]);
    f.timeouts = TimeoutFlags {
        tcp_established: Some("2h4m".into()),
        tcp_transitory: Some("4m".into()),
        tcp_reset: Some("1s".into()),
        udp: Some("120s".into()),
        icmp: Some("1m".into()),
    };
    let t = timeouts(&Config::load(&f).unwrap());
    assert_eq!(
        (
            t.tcp_established,
            t.tcp_transitory,
            t.tcp_reset,
            t.udp,
            t.icmp
        ),
        (7_440_000, 240_000, 1000, 120_000, 60_000)
    );
}

#[test]
fn idle_timeouts_below_the_rfc_minimums_are_refused_naming_the_flag() {
    let cases = [
        (
            TimeoutFlags {
                tcp_established: Some("2h".into()),
                ..TimeoutFlags::default()
            },
            r#"--tcp-established-timeout "2h": must be at least 2h4m (RFC 5382 REQ-5), got "2h""#,
        ),
        (
            TimeoutFlags {
                tcp_transitory: Some("239s".into()),
                ..TimeoutFlags::default()
            },
            r#"--tcp-transitory-timeout "239s": must be at least 4m (RFC 5382 REQ-5)"#,
        ),
        (
            TimeoutFlags {
                tcp_reset: Some("500ms".into()),
                ..TimeoutFlags::default()
            },
            r#"--tcp-reset-timeout "500ms": must be at least 1s"#,
        ),
        (
            TimeoutFlags {
                udp: Some("1m".into()),
                ..TimeoutFlags::default()
            },
            r#"--udp-timeout "1m": must be at least 2m (RFC 4787 REQ-5)"#,
        ),
        (
            TimeoutFlags {
                icmp: Some("59s".into()),
                ..TimeoutFlags::default()
            },
            r#"--icmp-timeout "59s": must be at least 1m (RFC 5508 REQ-1)"#,
        ),
        (
            TimeoutFlags {
                udp: Some("8d".into()),
                ..TimeoutFlags::default()
            },
            r#"--udp-timeout "8d": can be at most 7d, got "8d""#,
        ),
        (
            TimeoutFlags {
                icmp: Some("soon".into()),
                ..TimeoutFlags::default()
            },
            r#"--icmp-timeout "soon": "soon" is not a duration"#,
        ),
    ];
    for (timeouts, expected) in cases {
        let mut f = flags(&[ISP1], &[]);
        f.timeouts = timeouts;
        let e = load_err(&f).to_string();
        assert!(
            e.starts_with(expected),
            "{e:?} should start with {expected:?}"
        );
    }
}

#[test]
fn idle_timeout_keys_in_the_file_name_their_line() {
    let base = "lan = [\"eth0\"]\n[timeouts]\nudp = \"5m\"\nKEY\n[[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\n";
    for (key, origin_key, message) in [
        (
            "tcp_established = \"1h\"",
            "timeouts.tcp_established",
            "must be at least 2h4m",
        ),
        ("icmp = \"10s\"", "timeouts.icmp", "must be at least 1m"),
        (
            "tcp_reset = \"forever\"",
            "timeouts.tcp_reset",
            "is not a duration",
        ),
    ] {
        let path = write_temp("timeouts-bad.toml", &base.replace("KEY", key));
        let e = load_err(&Flags {
            config: Some(path.clone()),
            ..Flags::default()
        });
        assert_eq!(e.origin, format!("{} line 4, {origin_key}", path.display()));
        assert!(e.message.contains(message), "{e}");
    }
    // a key that is not a timeout, or a number without a unit
    for (key, message) in [
        ("tcp_establshed = \"3h\"", "unknown field `tcp_establshed`"),
        ("udp = 300", "invalid type"),
    ] {
        let text = base.replace("udp = \"5m\"\nKEY", key);
        let path = write_temp("timeouts-bad2.toml", &text);
        let e = load_err(&Flags {
            config: Some(path.clone()),
            ..Flags::default()
        });
        assert_eq!(e.origin, format!("{} line 3", path.display()), "{e}");
        assert!(e.message.contains(message), "{e}");
    }
}

#[test]
fn durations_are_written_as_they_are_read() {
    for (ms, text) in [
        (7_440_000, "2h4m"),
        (240_000, "4m"),
        (60_000, "1m"),
        (90_500, "1m30s500ms"),
        (86_400_000 + 3_600_000, "1d1h"),
    ] {
        let d = Duration::from_millis(ms);
        assert_eq!(format_duration(d), text);
        assert_eq!(parse_duration(text, "x").unwrap(), d);
    }
}
