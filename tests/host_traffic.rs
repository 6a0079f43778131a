//! The gateway's own traffic (root, network namespaces; CI runs as root): with
//! `--host-traffic follow` the gateway's default route follows the best line up, and the
//! system's own default route is as it was once wanlb stops, after a reload that turns it off,
//! and after a crash. Without it the main table is left alone. The test bed's gateway has the
//! system's default route a real one gets from DHCP: via isp1's modem.

mod common;

use common::*;

/// The gateway's default routes, as `ip -j` lists them.
fn default_routes(tb: &Testbed) -> String {
    tb.ok("gw", &["ip", "-4", "-j", "route", "show", "default"])
}

/// The main table, as `ip -j` lists it.
fn main_table(tb: &Testbed) -> String {
    tb.ok("gw", &["ip", "-4", "-j", "route", "show", "table", "main"])
}

/// The address the internet sees the gateway's own traffic come from (a UDP exchange with the
/// reflector from an ephemeral port, as the host's own programs use).
fn seen_from_gateway(tb: &Testbed) -> String {
    let out = tb.ok(
        "gw",
        &[
            probe(),
            "spread",
            "--dst",
            "198.19.0.100",
            "--count",
            "1",
            "--flows",
            "1",
        ],
    );
    let line = out.lines().next().unwrap_or_default();
    let seen = line.split_whitespace().nth(1).unwrap_or_default();
    seen.split_once(':')
        .map(|(ip, _port)| ip.to_string())
        .unwrap_or_else(|| panic!("no address seen: {out}"))
}

/// An echo identifier inside wanlb's NAT pool, from its start-up log: the gateway's own ping
/// with it must still get its replies, with the pool closed to the uplinks.
fn identifier_in_pool(gw: &Process) -> String {
    let out = gw.output();
    let line = out
        .lines()
        .find(|l| l.contains("NAT ports"))
        .unwrap_or_else(|| panic!("no NAT ports line: {out}"));
    let field = |key: &str| -> u32 {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key)?.parse().ok())
            .unwrap_or_else(|| panic!("no {key} in {line}"))
    };
    ((field("first=") + field("last=")) / 2).to_string()
}

/// The gateway pings the internet with echo identifier `id`, and every echo is answered.
fn gateway_pings(tb: &Testbed, id: &str) {
    let out = tb.ok(
        "gw",
        &[
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "2",
            "-e",
            id,
            "198.19.0.1",
        ],
    );
    assert!(out.contains("3 received"), "{out}");
}

#[test]
fn the_gateways_own_traffic_follows_the_line_up_and_its_route_comes_back_after() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let routes_before = default_routes(&tb);
    assert!(routes_before.contains("198.18.1.254"), "{routes_before}");
    let before = tb.gateway_state();

    let mut args = health_args();
    args.extend(["--host-traffic".into(), "follow".into()]);
    let gw = tb.start_wanlb(&args);
    gw.wait_for("host default route switched uplink=isp1", "wanlb");
    let routes = default_routes(&tb);
    assert!(
        routes.starts_with(r#"[{"dst":"default","gateway":"198.18.1.254","dev":"eth1","protocol":"113","prefsrc":"198.18.1.1""#),
        "wanlb's route comes first: {routes}"
    );
    let id = identifier_in_pool(&gw);
    gateway_pings(&tb, &id);
    assert_eq!(seen_from_gateway(&tb), UPLINK_1);

    tb.cut_beyond("r1");
    gw.wait_for("uplink down uplink=isp1", "wanlb");
    gw.wait_for("host default route switched uplink=isp2", "wanlb");
    assert!(
        gw.output().contains("reason=isp1 is down"),
        "the switch says why: {}",
        gw.output()
    );
    gateway_pings(&tb, &id);
    assert_eq!(seen_from_gateway(&tb), UPLINK_2, "through isp2 now");

    // isp1 back: the route follows it back
    tb.restore_beyond("r1");
    gw.wait_for_count("host default route switched uplink=isp1", 2, "wanlb");
    gateway_pings(&tb, &id);
    assert_eq!(seen_from_gateway(&tb), UPLINK_1);

    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert_eq!(
        default_routes(&tb),
        routes_before,
        "the system's default route is back"
    );
    tb.assert_gateway_state(&before, &log);
}

#[test]
fn without_the_setting_the_main_table_is_untouched_and_a_reload_turns_it_on_and_off() {
    let tb = Testbed::up();
    let _inet = tb.start_internet();
    let table_before = main_table(&tb);
    let before = tb.gateway_state();
    let dir = Scratch::new();
    let file = format!("{}/wanlb.toml", dir.0);
    let settings = |host_traffic: &str| {
        let mut text = format!(
            "lan = [\"eth0\"]\nhealth_target = [\"{}\", \"{}\"]\n",
            TARGETS[0], TARGETS[1]
        );
        if !host_traffic.is_empty() {
            text += &format!("host_traffic = \"{host_traffic}\"\n");
        }
        text + "[[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"198.18.1.254\"\nweight = 2\n\
                [[uplink]]\nname = \"isp2\"\ndev = \"eth2\"\ngw = \"198.18.2.254\"\n"
    };
    std::fs::write(&file, settings("")).unwrap();
    let gw = tb.start_wanlb(&["--config".into(), file.clone()]);
    tb.cut_beyond("r1");
    gw.wait_for("uplink down uplink=isp1", "wanlb");
    assert_eq!(
        main_table(&tb),
        table_before,
        "off: the main table stays the system's, dead line or not"
    );

    std::fs::write(&file, settings("follow")).unwrap();
    gw.signal("-HUP");
    gw.wait_for("host_traffic: Off -> Follow", "wanlb reloading");
    gw.wait_for("host default route switched uplink=isp2", "wanlb");
    assert_eq!(seen_from_gateway(&tb), UPLINK_2);

    std::fs::write(&file, settings("off")).unwrap();
    gw.signal("-HUP");
    gw.wait_for("the system's own in use again", "wanlb reloading");
    assert_eq!(main_table(&tb), table_before, "off again: as it was");

    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    assert!(!log.contains("undo failed"), "{log}");
    tb.assert_gateway_state(&before, &log);
}

#[test]
fn after_a_crash_the_next_start_puts_the_system_route_back() {
    let tb = Testbed::up();
    let routes_before = default_routes(&tb);
    let before = tb.gateway_state();
    let mut args = health_args();
    args.extend(["--host-traffic".into(), "follow".into()]);
    let gw = tb.start_wanlb(&args);
    gw.wait_for("host default route switched uplink=isp1", "wanlb");
    gw.signal("-KILL");
    let (_, log) = gw.wait();
    assert!(
        default_routes(&tb).contains(r#""protocol":"113""#),
        "wanlb's route outlives it: {log}"
    );

    // the next start, without the setting, undoes what the crashed one left
    let gw = tb.start_wanlb(&health_args());
    assert!(
        gw.output()
            .contains("undid what a previous run left behind"),
        "{}",
        gw.output()
    );
    assert_eq!(default_routes(&tb), routes_before);
    let (status, log) = gw.stop();
    assert!(status.success(), "{log}");
    tb.assert_gateway_state(&before, &log);
}
