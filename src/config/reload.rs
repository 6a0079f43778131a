//! What a reload may change while wanlb runs, and what only a restart can.
//!
//! Weights, tiers, per-uplink checks, pins, health settings and targets, timeouts, the
//! limits on flows and ports, what a dead line does to TCP, whether the host's default route
//! follows the lines, the hook and the log level are policy: the engine, the monitor and the
//! control loop take them between two packets, the logger at once. The interfaces, the uplinks themselves, the TUN device,
//! the workers, the NAT pool, the port forwards, the fast path and the HTTP listener are
//! built into the running process: a change to them is reported, and waits for a restart.

use std::fmt::Debug;

use super::{Config, format_duration};

/// A new configuration compared with the running one.
#[derive(Debug)]
pub struct Reload {
    /// What to run with from now: the running settings with every change a reload applies.
    pub config: Config,
    /// The changes applied, one line each, e.g. `uplink isp1 weight: 2 -> 1`.
    pub applied: Vec<String>,
    /// The changes that wait for a restart, one line each, naming the setting.
    pub need_restart: Vec<String>,
}

impl Config {
    /// Compares `new` (the file and flags read again) with `self`, the settings running.
    /// `started` is the configuration as loaded at start, before the system settled what it
    /// left open (the NAT pool): the settings fixed at start are compared with it.
    pub fn reload(&self, started: &Config, new: &Config) -> Reload {
        let mut r = Reload {
            config: self.clone(),
            applied: Vec::new(),
            need_restart: Vec::new(),
        };
        let mut fixed = |key: &str, changed: bool| {
            if changed {
                r.need_restart
                    .push(format!("{key} changed: restart wanlb to apply it"));
            }
        };
        fixed("lan", started.lan != new.lan);
        fixed("lan_net", started.lan_nets != new.lan_nets);
        fixed("tun", started.tun != new.tun);
        fixed("workers", started.workers != new.workers);
        fixed(
            "nat_ports",
            (started.nat_ports_auto, started.nat_ports) != (new.nat_ports_auto, new.nat_ports)
                && !(started.nat_ports_auto && new.nat_ports_auto),
        );
        fixed("offload", started.fast_path != new.fast_path);
        fixed("listen", started.listen != new.listen);
        fixed("listen_token", started.listen_token != new.listen_token);
        fixed("listen_hosts", started.listen_hosts != new.listen_hosts);
        fixed("busy_poll", started.busy_poll != new.busy_poll);

        let c = &mut r.config;
        for (u, before) in c.uplinks.iter_mut().zip(&started.uplinks) {
            let Some(n) = new.uplinks.iter().find(|n| n.name == u.name) else {
                r.need_restart.push(format!(
                    "uplink {} is no longer in the settings: restart wanlb to remove it",
                    u.name
                ));
                continue;
            };
            for (key, changed) in [
                ("dev", n.dev != before.dev),
                ("gw", n.gw != before.gw),
                ("src", n.src != before.src),
            ] {
                if changed {
                    r.need_restart.push(format!(
                        "uplink {} {key} changed: restart wanlb to apply it",
                        u.name
                    ));
                }
            }
            let name = &u.name;
            note(
                &mut r.applied,
                &format!("uplink {name} weight"),
                &u.weight,
                &n.weight,
            );
            note(
                &mut r.applied,
                &format!("uplink {name} tier"),
                &u.tier,
                &n.tier,
            );
            note(
                &mut r.applied,
                &format!("uplink {name} check"),
                &u.checks,
                &n.checks,
            );
            u.weight = n.weight;
            u.tier = n.tier;
            u.checks = n.checks.clone();
            u.origin = n.origin.clone();
        }
        for n in &new.uplinks {
            if !c.uplinks.iter().any(|u| u.name == n.name) {
                r.need_restart
                    .push(format!("uplink {} is new: restart wanlb to add it", n.name));
            }
        }
        // the NAT pools, the socket filters and the nftables table are made for the forwards
        let shown =
            |c: &Config| -> Vec<String> { c.forwards.iter().map(ToString::to_string).collect() };
        let (before, after) = (shown(started), shown(new));
        for f in after.iter().filter(|f| !before.contains(f)) {
            r.need_restart
                .push(format!("forward {f} is new: restart wanlb to add it"));
        }
        for f in before.iter().filter(|f| !after.contains(f)) {
            r.need_restart.push(format!(
                "forward {f} is no longer in the settings: restart wanlb to remove it"
            ));
        }

        let (mut pins, unknown): (Vec<_>, Vec<_>) = new
            .pins
            .iter()
            .cloned()
            .partition(|p| c.uplinks.iter().any(|u| u.name == p.uplink));
        for p in unknown {
            // until the restart, the prefix keeps the pin it runs with, if any: a strict pin
            // must not lapse into the weighted choice
            let kept = c.pins.iter().find(|old| old.prefix == p.prefix).cloned();
            r.need_restart.push(format!(
                "{}: pin to {}, which is not running: restart wanlb to add the uplink{}",
                p.origin,
                p.uplink,
                kept.as_ref().map_or(String::new(), |k| format!(
                    " (until then it stays on {})",
                    k.uplink
                ))
            ));
            pins.extend(kept);
        }
        let shown = |pins: &[super::PinSpec]| -> Vec<String> {
            pins.iter()
                .map(|p| {
                    format!(
                        "{}/{}={}{}",
                        std::net::Ipv4Addr::from(p.prefix.addr()),
                        p.prefix.prefix_len(),
                        p.uplink,
                        if p.strict { "!" } else { "" }
                    )
                })
                .collect()
        };
        note(&mut r.applied, "pins", &shown(&c.pins), &shown(&pins));
        c.pins = pins;

        let duration = |d: std::time::Duration| format_duration(d);
        note(
            &mut r.applied,
            "affinity_timeout",
            &duration(c.affinity_timeout),
            &duration(new.affinity_timeout),
        );
        note(&mut r.applied, "health", &c.health, &new.health);
        note(
            &mut r.applied,
            "health_target",
            &c.health_targets,
            &new.health_targets,
        );
        note(
            &mut r.applied,
            "on_uplink_down",
            &c.on_uplink_down,
            &new.on_uplink_down,
        );
        note(
            &mut r.applied,
            "host_traffic",
            &c.host_traffic,
            &new.host_traffic,
        );
        note(&mut r.applied, "on_change", &c.on_change, &new.on_change);
        note(&mut r.applied, "timeouts", &c.timeouts, &new.timeouts);
        // the engine judges new flows by them at once; what is held stays
        let limits = |c: &Config| {
            [
                ("max_flows", c.max_flows),
                ("max_flows_per_host", c.max_flows_per_host),
                ("max_ports_per_host", c.max_ports_per_host),
                (
                    "max_embryonic_per_forward",
                    Some(c.max_embryonic_per_forward),
                ),
            ]
        };
        for ((key, old), (_, now)) in limits(c).into_iter().zip(limits(new)) {
            note(&mut r.applied, key, &old, &now);
        }
        c.max_flows = new.max_flows;
        c.max_flows_per_host = new.max_flows_per_host;
        c.max_ports_per_host = new.max_ports_per_host;
        c.max_embryonic_per_forward = new.max_embryonic_per_forward;
        note(
            &mut r.applied,
            "log_level",
            &c.log_level.to_string(),
            &new.log_level.to_string(),
        );
        c.affinity_timeout = new.affinity_timeout;
        c.health = new.health.clone();
        c.health_targets = new.health_targets.clone();
        c.on_uplink_down = new.on_uplink_down;
        c.host_traffic = new.host_traffic;
        note(
            &mut r.applied,
            "udp_affinity",
            &c.udp_affinity,
            &new.udp_affinity,
        );
        c.udp_affinity = new.udp_affinity;
        c.on_change = new.on_change.clone();
        c.timeouts = new.timeouts;
        c.log_level = new.log_level;
        r
    }
}

/// Adds `key: old -> new` to `applied` when they differ.
fn note<T: Debug + PartialEq>(applied: &mut Vec<String>, key: &str, old: &T, new: &T) {
    if old != new {
        applied.push(format!("{key}: {old:?} -> {new:?}"));
    }
}

#[cfg(test)]
mod tests {
    use super::super::Flags;
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
        let r = started.reload(&started, &new);
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
        let r = started.reload(&started, &new);
        assert!(r.need_restart.is_empty(), "{:?}", r.need_restart);
        assert_eq!(
            r.applied,
            [
                "max_flows: None -> Some(5000)",
                "max_flows_per_host: None -> Some(100)",
                "max_ports_per_host: None -> Some(50)",
                "max_embryonic_per_forward: Some(4096) -> Some(128)",
            ]
        );
        let limits = r.config.limits(1 << 30);
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
        let r = started.reload(&started, &new);
        assert_eq!(r.applied, [r#"log_level: "info" -> "debug""#]);
        assert_eq!(r.config.log_level, LevelFilter::DEBUG);
    }

    #[test]
    fn the_same_settings_change_nothing() {
        let started = load(&[ISP1, ISP2], &["198.19.0.0/16=isp2"], |_| {});
        let r = started.reload(&started, &started.clone());
        assert!(r.applied.is_empty() && r.need_restart.is_empty(), "{r:?}");
        assert_eq!(r.config, started);
    }

    #[test]
    fn what_is_built_at_start_is_reported_and_kept() {
        let started = load(&[ISP1, ISP2], &[], |_| {});
        // the system settled the pool after loading: the running settings carry it
        let mut running = started.clone();
        running.nat_ports = (1024, 32767);
        running.nat_ports_auto = false;
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
        let r = running.reload(&started, &new);
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
        assert_eq!(r.config.nat_ports, (1024, 32767));
        assert!(r.config.pins.is_empty());
    }

    #[test]
    fn forwards_added_or_removed_wait_for_a_restart() {
        let web = "tcp:8080=198.18.3.10:80@isp2";
        let started = load(&[ISP1, ISP2], &[], |f| f.forwards = vec![web.into()]);
        let new = load(&[ISP1, ISP2], &[], |f| {
            f.forwards = vec!["tcp:8080=198.18.3.11:80@isp2".into()];
        });
        let r = started.reload(&started, &new);
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
        assert!(started.reload(&started, &again).need_restart.is_empty());
    }

    #[test]
    fn a_pin_moved_to_an_uplink_not_running_stays_where_it_runs() {
        let started = load(&[ISP1, ISP2], &["198.19.0.0/16=isp2!"], |_| {});
        let new = load(
            &[ISP1, ISP2, "isp3,dev=eth3,gw=198.18.3.254"],
            &["198.19.0.0/16=isp3!"],
            |_| {},
        );
        let r = started.reload(&started, &new);
        assert_eq!(r.config.pins, started.pins, "the strict pin to isp2 holds");
        assert!(
            r.need_restart
                .iter()
                .any(|l| l.contains("pin to isp3") && l.contains("until then it stays on isp2")),
            "{:?}",
            r.need_restart
        );
    }
}
