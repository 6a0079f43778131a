//! Loading: the file, then the flags, every error with its flag or line and key.

use std::path::PathBuf;
use std::time::Duration;

use tracing::level_filters::LevelFilter;

use super::parse::parse_log_level;
use super::*;
use crate::engine::select::Prefix;

pub(super) fn flags(uplinks: &[&str], pins: &[&str]) -> Flags {
    Flags {
        lan: vec!["eth0".into()],
        uplinks: uplinks.iter().map(|s| s.to_string()).collect(),
        pins: pins.iter().map(|s| s.to_string()).collect(),
        ..Flags::default()
    }
}

pub(super) const ISP1: &str = "isp1,dev=eth1,gw=192.168.1.254,weight=2";
pub(super) const ISP2: &str = "isp2,dev=eth2,gw=192.168.2.254";

/// The one error `f` makes: nothing else is reported with it.
pub(super) fn load_err(f: &Flags) -> ConfigError {
    let errors = Config::load(f).expect_err("should be refused");
    assert_eq!(errors.errors().len(), 1, "one error only:\n{errors}");
    errors.errors()[0].clone()
}

#[test]
fn the_documented_command_line_parses() {
    let c = Config::load(&flags(&[ISP1, ISP2], &["174.143.119.91/32=isp2"])).unwrap();
    assert_eq!(c.lan, ["eth0"]);
    assert_eq!(c.uplinks.len(), 2);
    assert_eq!((c.uplinks[0].weight, c.uplinks[1].weight), (2, 1));
    assert_eq!(
        c.uplinks[1].gw,
        Some(GatewaySpec::Address(Ipv4Addr::new(192, 168, 2, 254)))
    );
    assert_eq!(c.pins[0].uplink, "isp2");
    assert_eq!(c.affinity_timeout, Duration::from_secs(600));
    assert_eq!(c.tun, "wanlb0");
}

#[test]
fn the_example_file_parses_to_the_example_network() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/wanlb.toml");
    let c = Config::load(&Flags {
        config: Some(path),
        ..Flags::default()
    })
    .unwrap();
    assert_eq!(c.lan, ["eth0"]);
    let u: Vec<_> = c
        .uplinks
        .iter()
        .map(|u| (u.name.as_str(), u.dev.as_str(), u.gw, u.weight))
        .collect();
    assert_eq!(
        u,
        [
            (
                "isp1",
                "eth1",
                Some(GatewaySpec::Address(Ipv4Addr::new(192, 168, 1, 254))),
                2
            ),
            (
                "isp2",
                "eth2",
                Some(GatewaySpec::Address(Ipv4Addr::new(192, 168, 2, 254))),
                1
            )
        ]
    );
    assert_eq!(c.pins.len(), 1);
    assert_eq!(
        c.pins[0].prefix,
        super::Cidr::V4(Prefix::new(u32::from(Ipv4Addr::new(174, 143, 119, 91)), 32).unwrap())
    );
}

#[test]
fn bad_flags_are_refused_naming_the_flag() {
    let cases: [(&[&str], &[&str], &str); 8] = [
        (
            &[ISP1, ISP2],
            &["174.143.119.91/32=isp3"],
            r#"--pin "174.143.119.91/32=isp3": unknown uplink "isp3""#,
        ),
        (
            &["isp1,dev=eth1,gw=192.168.1.254,weight=0"],
            &[],
            "--uplink \"isp1,dev=eth1,gw=192.168.1.254,weight=0\": weight must be",
        ),
        (
            &["isp1,dev=eth1,gw=192.168.1.254,weight=two"],
            &[],
            "weight must be a whole number",
        ),
        (&["isp1,gw=192.168.1.254"], &[], "dev=IFACE is missing"),
        (
            &["isp1,dev=eth1,gw=192.168.1.999"],
            &[],
            r#"gw "192.168.1.999" is not an IPv4 address"#,
        ),
        (
            &[ISP1, "isp1,dev=eth2,gw=192.168.2.254"],
            &[],
            r#"uplink name "isp1" is given twice"#,
        ),
        (
            &[ISP1, "isp9,dev=eth1,gw=192.168.2.254"],
            &[],
            r#"dev "eth1" is already used"#,
        ),
        (
            &[ISP1],
            &["174.143.119.91/33=isp1"],
            "prefix length must be 0 to 32",
        ),
    ];
    for (uplinks, pins, expected) in cases {
        let e = load_err(&flags(uplinks, pins)).to_string();
        assert!(e.contains(expected), "{e:?} should contain {expected:?}");
    }
    let mut f = flags(&[ISP1], &[]);
    f.affinity_timeout = Some("10 minutes".into());
    assert!(
        load_err(&f)
            .to_string()
            .starts_with(r#"--affinity-timeout "10 minutes": "10 minutes" is not a duration"#)
    );
    assert!(
        load_err(&flags(&[], &[]))
            .to_string()
            .starts_with("--uplink: at least one uplink")
    );
}

/// A settings file a test writes; removed, with its directory, when dropped.
pub(crate) struct TempFile(PathBuf);

impl std::ops::Deref for TempFile {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(dir) = self.0.parent() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

/// Writes `text` to a file called `name` in a directory of its own.
pub(crate) fn write_temp(name: &str, text: &str) -> TempFile {
    // tests run at once in one process: each file has a directory of its own
    static WRITTEN: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = WRITTEN.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!("wanlb-config-test-{}-{n}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    TempFile(path)
}

#[test]
fn file_errors_name_the_line_and_key() {
    let text = "lan = [\"eth0\"]\n\n[[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\nweight = 0\n";
    let path = write_temp("weight0.toml", text);
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert_eq!(
        e.origin,
        format!("{} line 7, uplink \"isp1\" weight", path.display())
    );

    let text = "lan = [\"eth0\"]\n[[uplink]]\nname = \"a\"\ndev = \"eth1\"\ngw = \"1.1.1.1\"\n[[uplink]]\nname = \"a\"\ndev = \"eth2\"\ngw = \"2.2.2.2\"\n";
    let path = write_temp("dup.toml", text);
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert_eq!(
        e.to_string(),
        format!(
            "{} line 7, [[uplink]] #2: uplink name \"a\" is used twice",
            path.display()
        )
    );

    let path = write_temp("unknown.toml", "lan = [\"eth0\"]\nlans = 3\n");
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert!(e.origin.ends_with("line 2"), "{e}");
    assert!(e.message.contains("lans"), "{e}");

    let text = "lan = [\"eth0\"]\n[[uplink]]\nname = \"a\"\ndev = \"eth1\"\ngw = \"1.1.1.1\"\n[[pin]]\ndst = \"9.9.9.9/32\"\nuplink = \"b\"\n";
    let path = write_temp("pin.toml", text);
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert_eq!(
        e.origin,
        format!("{} line 8, [[pin]] uplink", path.display())
    );
}

#[test]
fn flags_override_file_uplinks_by_name_and_add_new_ones() {
    let text =
        "lan = [\"eth0\"]\n[[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\n";
    let path = write_temp("override.toml", text);
    let mut f = flags(&["isp1,dev=eth1,gw=192.168.1.254,weight=5", ISP2], &[]);
    f.config = Some(path.to_path_buf());
    let c = Config::load(&f).unwrap();
    assert_eq!(
        c.uplinks
            .iter()
            .map(|u| (u.name.as_str(), u.weight))
            .collect::<Vec<_>>(),
        [("isp1", 5), ("isp2", 1)]
    );
    assert_eq!(
        c.lan,
        ["eth0"],
        "the same LAN from file and flag is listed once"
    );
}

#[test]
fn steering_by_cpu_unless_told_by_flow() {
    use crate::config::Steering;
    assert_eq!(
        Config::load(&flags(&[ISP1], &[])).unwrap().steer,
        Steering::Cpu
    );
    let mut f = flags(&[ISP1], &[]);
    f.steer = Some("flow".into());
    assert_eq!(Config::load(&f).unwrap().steer, Steering::Flow);
    f.steer = Some("rss".into());
    let e = load_err(&f).to_string();
    assert!(e.contains("--steer") && e.contains("flow or cpu"), "{e}");
}

#[test]
fn busy_poll_is_off_by_default_and_bounded() {
    assert_eq!(
        Config::load(&flags(&[ISP1], &[])).unwrap().busy_poll,
        Duration::ZERO
    );
    let mut f = flags(&[ISP1], &[]);
    f.busy_poll = Some("50us".into());
    assert_eq!(
        Config::load(&f).unwrap().busy_poll,
        Duration::from_micros(50)
    );
    f.busy_poll = Some("20ms".into());
    assert_eq!(
        Config::load(&f).unwrap().busy_poll,
        Duration::from_millis(20)
    );
    f.busy_poll = Some("0".into());
    assert_eq!(Config::load(&f).unwrap().busy_poll, Duration::ZERO);
    f.busy_poll = Some("2s".into());
    assert!(load_err(&f).to_string().contains("at most 1s"));
}

#[test]
fn offload_is_auto_by_default_and_named_when_wrong() {
    assert_eq!(
        Config::load(&flags(&[ISP1], &[])).unwrap().offload,
        FastPathMode::Auto
    );
    let mut f = flags(&[ISP1], &[]);
    f.offload = Some("off".into());
    assert_eq!(Config::load(&f).unwrap().offload, FastPathMode::Off);
    f.offload = Some("yes".into());
    let e = load_err(&f).to_string();
    assert!(
        e.contains("--offload \"yes\"") && e.contains("auto, on or off"),
        "{e}"
    );
}

#[test]
fn durations() {
    let d = |s| parse_duration(s, "x");
    assert_eq!(d("600s").unwrap(), Duration::from_secs(600));
    assert_eq!(d("10m").unwrap(), Duration::from_secs(600));
    assert_eq!(d("1h30m").unwrap(), Duration::from_secs(5400));
    assert_eq!(d("250ms").unwrap(), Duration::from_millis(250));
    for bad in ["", "10", "m", "10x", "-5s", "0s"] {
        assert!(d(bad).is_err(), "{bad:?}");
    }
}

/// Every error `f` makes, origin and message apart, in the order reported.
fn all_errors(f: &Flags) -> Vec<(String, String)> {
    let errors = Config::load(f).expect_err("should be refused");
    errors
        .errors()
        .iter()
        .map(|e| (e.origin.clone(), e.message.clone()))
        .collect()
}

#[test]
fn a_file_with_several_errors_has_each_reported_with_its_line_and_key_in_order() {
    let text = r#"lan = ["eth0"]
workers = 0
health_interval = "soon"

[timeouts]
udp = "1m"

[[uplink]]
name = "isp1"
dev = "eth1"
gw = "192.168.1.999"
tier = 0

[[uplink]]
name = "isp2"
dev = "eth2"
gw = "192.168.2.254"

[[pin]]
dst = "174.143.119.91/32"
uplink = "isp1"

[[pin]]
dst = "10.0.0.0/8"
uplink = "isp9"
"#;
    let path = write_temp("several.toml", text);
    let f = Flags {
        config: Some(path.clone()),
        affinity_timeout: Some("forever".into()),
        ..Flags::default()
    };
    let errors = all_errors(&f);
    let at = |line: u32, key: &str| format!("{} line {line}, {key}", path.display());
    let expected = [
        (
            at(2, "workers"),
            r#"must be a whole number from 1 to 64, got "0""#,
        ),
        (at(3, "health_interval"), r#""soon" is not a duration"#),
        (
            at(6, "timeouts.udp"),
            "must be at least 2m (RFC 4787 REQ-5)",
        ),
        (
            at(11, r#"uplink "isp1" gw"#),
            r#"gw "192.168.1.999" is not an IPv4 address"#,
        ),
        (
            at(12, r#"uplink "isp1" tier"#),
            r#"must be a whole number from 1 to 9, got "0""#,
        ),
        // the pin to isp1, refused above, is not an "unknown uplink" too
        (
            at(25, "[[pin]] uplink"),
            r#"unknown uplink "isp9" (uplinks: isp1, isp2)"#,
        ),
        // the flags after the file
        (
            r#"--affinity-timeout "forever""#.to_string(),
            r#""forever" is not a duration"#,
        ),
    ];
    assert_eq!(errors.len(), expected.len(), "{errors:#?}");
    for ((origin, message), (want_origin, want_message)) in errors.iter().zip(&expected) {
        assert_eq!(origin, want_origin);
        assert!(message.starts_with(want_message), "{message:?}");
    }
    // one a line, as check-config and run print them
    let shown = Config::load(&f).unwrap_err().to_string();
    let lines: Vec<_> = shown.lines().collect();
    assert_eq!(lines.len(), expected.len(), "{shown}");
    assert!(lines[3].starts_with(&format!("{}: gw ", at(11, r#"uplink "isp1" gw"#))));
}

#[test]
fn several_bad_flags_are_all_reported() {
    let mut f = flags(
        &[
            "isp1,dev=eth1,gw=192.168.1.999,weight=0",
            "isp2,dev=eth2,gw=192.168.2.254",
        ],
        &["174.143.119.91/33=isp2"],
    );
    f.health_interval = Some("soon".into());
    f.offload = Some("yes".into());
    let errors = all_errors(&f);
    let origins: Vec<_> = errors.iter().map(|(o, _)| o.as_str()).collect();
    assert_eq!(
        origins,
        [
            r#"--health-interval "soon""#,
            r#"--uplink "isp1,dev=eth1,gw=192.168.1.999,weight=0""#,
            r#"--uplink "isp1,dev=eth1,gw=192.168.1.999,weight=0""#,
            r#"--pin "174.143.119.91/33=isp2""#,
            r#"--offload "yes""#,
        ]
    );
    assert!(
        errors[1].1.starts_with(r#"gw "192.168.1.999""#),
        "{errors:?}"
    );
    assert!(errors[2].1.starts_with("weight must be"), "{errors:?}");
    assert!(errors[4].1.contains("auto, on or off"), "{errors:?}");
}

#[test]
fn an_error_is_not_followed_by_what_only_follows_from_it() {
    // a pin to an uplink refused, and no usable uplink left
    let e = load_err(&flags(&["isp1,gw=192.168.1.254"], &["10.0.0.0/8=isp1"]));
    assert_eq!(e.message, "dev=IFACE is missing");
    // no LAN interface left, but one was given
    let mut f = flags(&[ISP1], &[]);
    f.lan = vec!["eth 0".into()];
    assert!(load_err(&f).message.contains("must be 1 to 15 letters"));
    // the RTT limit is not measured against the default timeout standing in for a bad one
    let mut f = flags(&[ISP1], &[]);
    f.health_timeout = Some("700".into());
    f.max_rtt = Some("650ms".into());
    assert!(load_err(&f).message.contains("is not a duration"));
    // nor is an empty token taken for none
    let mut f = flags(&[ISP1], &[]);
    f.listen = Some("0.0.0.0:9911".into());
    f.listen_token = Some(" ".into());
    let e = load_err(&f);
    assert_eq!(
        (e.origin.as_str(), e.message.as_str()),
        ("--listen-token", "the token is empty")
    );
    // a second flag of the same name is reported, not the first's override
    let errors = all_errors(&flags(
        &[
            ISP1,
            "isp1,dev=eth2,gw=192.168.2.254",
            "isp1,dev=eth3,gw=1.1.1.1",
        ],
        &[],
    ));
    assert_eq!(errors.len(), 2, "{errors:?}");
}

#[test]
fn a_file_that_is_not_toml_stops_there_and_the_flags_are_still_checked() {
    let path = write_temp(
        "syntax.toml",
        "lan = [\"eth0\"]\nworkers = 2\n[[uplink]\nname = \"isp1\"\n",
    );
    let mut f = Flags {
        config: Some(path.clone()),
        ..Flags::default()
    };
    f.workers = Some(0);
    let errors = all_errors(&f);
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_eq!(errors[0].0, format!("{} line 3", path.display()));
    assert_eq!(errors[1].0, "--workers 0");
}

#[test]
fn the_log_level_comes_from_the_file_then_the_flag() {
    assert_eq!(
        Config::load(&flags(&[ISP1], &[])).unwrap().log_level,
        LevelFilter::INFO
    );
    let text = "lan = [\"eth0\"]\nlog_level = \"warn\"\n[[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\n";
    let file = write_temp("level.toml", text);
    let mut f = Flags {
        config: Some(file.to_path_buf()),
        ..Flags::default()
    };
    assert_eq!(Config::load(&f).unwrap().log_level, LevelFilter::WARN);
    f.log_level = Some("debug".into());
    assert_eq!(Config::load(&f).unwrap().log_level, LevelFilter::DEBUG);
    for (text, level) in [
        ("error", LevelFilter::ERROR),
        ("warn", LevelFilter::WARN),
        ("info", LevelFilter::INFO),
        ("debug", LevelFilter::DEBUG),
        ("trace", LevelFilter::TRACE),
    ] {
        assert_eq!(parse_log_level(text, "x"), Ok(level));
    }
    for bad in ["", "off", "INFO", "verbose", "4"] {
        assert!(parse_log_level(bad, "x").is_err(), "{bad:?}");
    }
    let bad = text.replace("\"warn\"", "\"loud\"");
    let path = write_temp("level-bad.toml", &bad);
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert_eq!(e.origin, format!("{} line 2, log_level", path.display()));
}

#[test]
fn host_traffic_is_off_by_default_and_named_when_wrong() {
    assert_eq!(
        Config::load(&flags(&[ISP1], &[])).unwrap().host_traffic,
        HostTraffic::Off
    );
    let mut f = flags(&[ISP1], &[]);
    f.host_traffic = Some("follow".into());
    assert_eq!(Config::load(&f).unwrap().host_traffic, HostTraffic::Follow);
    f.host_traffic = Some("balance".into());
    assert_eq!(
        load_err(&f).to_string(),
        r#"--host-traffic "balance": must be off (the default) or follow"#
    );

    let text = "lan = [\"eth0\"]\nhost_traffic = \"follow\"\n[[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\n";
    let path = write_temp("host-traffic.toml", text);
    let mut f = Flags {
        config: Some(path.clone()),
        ..Flags::default()
    };
    assert_eq!(Config::load(&f).unwrap().host_traffic, HostTraffic::Follow);
    f.host_traffic = Some("off".into());
    assert_eq!(
        Config::load(&f).unwrap().host_traffic,
        HostTraffic::Off,
        "the flag wins over the file"
    );
    let path = write_temp("host-traffic-bad.toml", &text.replace("follow", "always"));
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert_eq!(
        e.to_string(),
        format!(
            "{} line 2, host_traffic: must be off (the default) or follow",
            path.display()
        )
    );
}

#[test]
fn tun_names_are_taken_with_dots_and_dashes_but_not_as_a_path() {
    for name in ["wan.0", "wan-0", "wan_0", "w.l-0"] {
        let mut f = flags(&[ISP1], &[]);
        f.tun = Some(name.into());
        assert_eq!(Config::load(&f).unwrap().tun, name);
    }
    for name in [".", "..", "wan/0", "", "a-name-too-long-0"] {
        let mut f = flags(&[ISP1], &[]);
        f.tun = Some(name.into());
        let e = load_err(&f);
        assert_eq!(e.origin, format!("--tun {name:?}"), "{e}");
        assert!(e.message.contains("TUN name"), "{e}");
    }
}
