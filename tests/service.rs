//! The systemd unit's capability set, tested without systemd (root; CI runs as root, and its
//! PID 1 need not be systemd): wanlb started the way the unit starts it, as root with exactly
//! the capabilities of contrib/wanlb.service (bounding, inheritable and ambient sets, as
//! CapabilityBoundingSet= and AmbientCapabilities= make them) and no new privileges
//! (NoNewPrivileges=yes), carries traffic and stops cleanly; with any one of them fewer it
//! refuses to start, says what failed, and leaves the namespace as it found it. So the unit
//! grants nothing wanlb does not use, and lacks nothing it does.

mod common;

use std::time::{Duration, Instant};

use common::*;

/// The capabilities the unit grants, as setpriv names them (net_admin ...).
fn unit_capabilities() -> Vec<String> {
    let unit = include_str!("../contrib/wanlb.service");
    let setting = |key: &str| -> Vec<String> {
        let values: Vec<&str> = unit
            .lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .collect();
        assert_eq!(values.len(), 1, "one {key}= line in the unit");
        values[0]
            .split_whitespace()
            .map(|c| c.strip_prefix("CAP_").expect("CAP_ names").to_lowercase())
            .collect()
    };
    let bounding = setting("CapabilityBoundingSet");
    assert_eq!(
        bounding,
        setting("AmbientCapabilities"),
        "the unit bounds and grants the same set"
    );
    bounding
}

/// `setpriv` arguments that leave a root process exactly `caps`, as systemd does for the unit.
fn setpriv(caps: &[String]) -> Vec<String> {
    let set: String = caps.iter().map(|c| format!(",+{c}")).collect();
    vec![
        "setpriv".into(),
        format!("--bounding-set=-all{set}"),
        format!("--inh-caps=-all{set}"),
        format!("--ambient-caps=-all{set}"),
        "--no-new-privs".into(),
        "--".into(),
    ]
}

/// wanlb on the test bed's gateway under `caps`. `--offload on`: without it a missing
/// capability of the fast path would only turn the fast path off (with a warning), where the
/// unit's default (auto) is meant to get it.
fn start(tb: &Testbed, caps: &[String]) -> Process {
    let state = format!("/tmp/wanlb-test-{}", tb.prefix);
    let mut cmd = setpriv(caps);
    let data = tb.data_dir();
    cmd.extend([WANLB.into(), "run".into(), "--state-dir".into(), state]);
    cmd.extend(["--data-dir".into(), data]);
    cmd.extend(health_args());
    cmd.extend(["--offload".into(), "on".into()]);
    let cmd: Vec<&str> = cmd.iter().map(String::as_str).collect();
    Process::start(tb.spawn("gw", &cmd))
}

#[test]
fn wanlb_needs_exactly_the_capabilities_of_its_unit() {
    let caps = unit_capabilities();
    // each capability, and the first step that fails without it
    let needed_for = [
        ("net_admin", "creating TUN device"),
        ("net_raw", "opening a packet socket"),
        ("bpf", "map error"),
        // the verifier lets only privileged programs do the fast path's pointer arithmetic
        ("perfmon", "pointer arithmetic with it prohibited"),
    ];
    let mut listed: Vec<&str> = needed_for.iter().map(|(c, _)| *c).collect();
    listed.sort_unstable();
    let mut granted: Vec<&str> = caps.iter().map(String::as_str).collect();
    granted.sort_unstable();
    assert_eq!(granted, listed, "the unit's set is the one this test knows");

    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let before = tb.gateway_state();

    let gw = start(&tb, &caps);
    gw.wait_for(" ready ", "wanlb with the unit's capabilities");
    assert!(
        gw.output().contains("kernel fast path attached"),
        "{}",
        gw.output()
    );
    tb.assert_pings("lan", "198.19.0.1", 3, "0.2");
    tb.assert_tcp_echo("lan", "198.19.0.2:9000", 1_000_000);
    let (status, out) = gw.stop();
    assert!(status.success(), "wanlb did not stop cleanly: {out}");
    assert!(
        out.contains("removed routes, rules and nftables table"),
        "{out}"
    );
    tb.assert_gateway_state(&before, "after a stop under the unit's capabilities");

    for (missing, failing_step) in needed_for {
        let fewer: Vec<String> = caps.iter().filter(|c| *c != missing).cloned().collect();
        let mut gw = start(&tb, &fewer);
        // a wait for wanlb to give up, not a timing assertion
        let deadline = Instant::now() + Duration::from_secs(30);
        let status = loop {
            if let Some(status) = gw.child.try_wait().expect("waiting for wanlb") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "wanlb runs without CAP_{}: the unit grants it for nothing (or grants another \
                 that does its work)\n{}",
                missing.to_uppercase(),
                gw.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        };
        // its last words may still be on their way through the pipe
        gw.wait_for(failing_step, &format!("wanlb without {missing}"));
        let out = gw.output();
        assert_eq!(status.code(), Some(1), "without {missing}: {out}");
        assert!(
            out.lines().any(|l| l.starts_with("wanlb: ")),
            "without {missing}, no error line:\n{out}"
        );
        tb.assert_gateway_state(&before, &format!("after failing without {missing}"));
    }
}
