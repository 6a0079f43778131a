//! The settings of metered lines: caps, failback, balance, a line's own probe interval.

use std::time::Duration;

use super::tests::{ISP1, flags, load_err, write_temp};
use super::*;
use crate::engine::failback::{FailbackMode, FailbackPolicy};
use crate::engine::select::Balance;
use crate::metered::{CapReset, CapSettings, OnCap};

#[test]
fn a_capped_line_from_the_file_and_from_a_flag() {
    let text = "lan = [\"eth0\"]\nbalance = \"bytes\"\nfailback_grace = \"2m\"\n\
        [[uplink]]\nname = \"fibre\"\ndev = \"eth1\"\ngw = \"198.18.1.254\"\n\
        [[uplink]]\nname = \"lte\"\ndev = \"wwan0\"\ntier = 2\ncap = \"20GB\"\ncap_reset = 5\n\
        interval = \"5s\"\n";
    let path = write_temp("lte.toml", text);
    let c = Config::load(&Flags {
        config: Some(path.clone()),
        uplinks: vec!["extra,dev=eth3,gw=198.18.3.254,cap=500MiB,cap_reset=never,on_cap=off,cap_warn=90%,failback=keep,failback_grace=30s".into()],
        ..Flags::default()
    })
    .unwrap();
    assert_eq!(c.balance, Balance::Bytes);
    assert_eq!(
        c.caps(),
        [
            CapSettings::default(),
            CapSettings {
                cap: Some(20_000_000_000),
                reset: CapReset::Day(5),
                ..CapSettings::default()
            },
            CapSettings {
                cap: Some(500 << 20),
                reset: CapReset::Never,
                on_cap: OnCap::Off,
                warn_pct: 90,
            },
        ]
    );
    let policy = |mode, secs: u64| FailbackPolicy {
        mode,
        grace_ms: secs * 1000,
    };
    // move by default for the capped line, keep for the uncapped one
    assert_eq!(
        c.failback(),
        [
            policy(FailbackMode::Keep, 120),
            policy(FailbackMode::Move, 120),
            policy(FailbackMode::Keep, 30),
        ]
    );
    let intervals: Vec<Duration> = c.uplink_health().iter().map(|h| h.interval).collect();
    assert_eq!(
        intervals,
        [
            Duration::from_millis(200),
            Duration::from_secs(5),
            Duration::from_millis(200)
        ]
    );
    assert_eq!(c.data_dir, std::path::PathBuf::from("/var/lib/wanlb"));
}

#[test]
fn bad_cap_settings_name_their_key() {
    for (spec, says) in [
        ("lte,dev=wwan0,cap=20XB", "unknown unit"),
        ("lte,dev=wwan0,cap=0", "nothing to use"),
        ("lte,dev=wwan0,cap_reset=31", "1 to 28"),
        ("lte,dev=wwan0,on_cap=stop", "backup"),
        ("lte,dev=wwan0,cap_warn=0", "1 to 100"),
        ("lte,dev=wwan0,failback=later", "keep or move"),
        ("lte,dev=wwan0,failback_grace=500ms", "from 1s"),
    ] {
        let e = load_err(&flags(&[ISP1, spec], &[]));
        let key = spec.split(',').nth(2).unwrap().split('=').next().unwrap();
        assert!(e.origin.ends_with(key), "{spec}: {e}");
        assert!(e.message.contains(says), "{spec}: {e}");
    }
    let e = load_err(&Flags {
        balance: Some("traffic".into()),
        ..flags(&[ISP1], &[])
    });
    assert_eq!(e.origin, "--balance \"traffic\"");
    let e = load_err(&Flags {
        data_dir: Some("var/lib".into()),
        ..flags(&[ISP1], &[])
    });
    assert!(e.message.contains("absolute"), "{e}");
}

#[test]
fn a_reload_applies_caps_and_failback_and_the_data_dir_waits() {
    let running = Config::load(&flags(&[ISP1, "lte,dev=wwan0,cap=20GB"], &[])).unwrap();
    let mut new_flags = flags(&[ISP1, "lte,dev=wwan0,cap=30GB,on_cap=warn"], &[]);
    new_flags.balance = Some("bytes".into());
    new_flags.data_dir = Some("/srv/wanlb".into());
    let new = Config::load(&new_flags).unwrap();
    let reload = running.reload(&new);
    assert_eq!(reload.config.caps()[1].cap, Some(30_000_000_000));
    assert_eq!(reload.config.caps()[1].on_cap, OnCap::Warn);
    assert_eq!(reload.config.balance, Balance::Bytes);
    assert_eq!(reload.config.data_dir, running.data_dir);
    assert!(
        reload.need_restart.iter().any(|r| r.contains("data_dir")),
        "{:?}",
        reload.need_restart
    );
}

#[test]
fn the_metered_example_is_a_fibre_line_and_a_capped_lte_backup() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/metered.toml");
    let c = Config::load(&Flags {
        config: Some(path),
        ..Flags::default()
    })
    .unwrap();
    assert_eq!(c.uplinks[1].name, "lte");
    assert_eq!(c.uplinks[1].tier, 2);
    assert_eq!(
        c.caps()[1],
        CapSettings {
            cap: Some(20_000_000_000),
            reset: CapReset::Day(5),
            on_cap: OnCap::Backup,
            warn_pct: 80,
        }
    );
    assert_eq!(c.failback()[1].mode, FailbackMode::Move);
    assert_eq!(c.uplink_health()[1].interval, Duration::from_secs(5));
}
