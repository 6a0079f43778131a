//! The NAT port pool and the ports one host may hold, as given (crate::preflight settles
//! the pool on the system), the limits on flows, and where the status is served.

use super::*;

/// A pool as `auto` finds it on a system with the kernel's default ephemeral ports.
const POOL: (u16, u16) = (1024, 32767);

fn flags() -> Flags {
    Flags {
        lan: vec!["eth0".into()],
        uplinks: vec!["isp1,dev=eth1,gw=192.168.1.254".into()],
        ..Flags::default()
    }
}

#[test]
fn a_given_pool_and_host_limit_are_taken_and_bad_ones_named() {
    let mut f = flags();
    f.nat_ports = Some("40000-40999".into());
    f.max_ports_per_host = Some("100".into());
    let c = Config::load(&f).unwrap();
    assert_eq!(c.nat_ports, Some((40000, 40999)));
    assert_eq!(c.ports_per_host((40000, 40999)), 100);

    f.nat_ports = Some("auto".into());
    assert_eq!(Config::load(&f).unwrap().nat_ports, None, "auto");
    f.max_ports_per_host = Some("0".into());
    let e = Config::load(&f).unwrap_err().to_string();
    assert!(
        e.starts_with(r#"--max-ports-per-host "0": must be a whole number"#),
        "{e}"
    );
}

#[test]
fn the_flow_limits_follow_the_memory_unless_given() {
    const GIB: u64 = 1 << 30;
    let c = Config::load(&flags()).unwrap();
    let l = c.limits(POOL, GIB);
    assert_eq!(
        (
            l.max_flows,
            l.max_flows_per_host,
            l.max_embryonic_per_forward
        ),
        (65_536, 4_096, 4_096)
    );
    assert_eq!(l.max_ports_per_host, c.ports_per_host(POOL));
    assert_eq!(c.limits(POOL, 64 * GIB).max_flows, 1_048_576);

    let mut f = flags();
    f.max_flows = Some("20000".into());
    f.max_flows_per_host = Some("500".into());
    f.max_embryonic_per_forward = Some("256".into());
    f.max_ports_per_host = Some("77".into());
    let l = Config::load(&f).unwrap().limits(POOL, GIB);
    assert_eq!(
        (
            l.max_flows,
            l.max_flows_per_host,
            l.max_embryonic_per_forward
        ),
        (20_000, 500, 256)
    );
    assert_eq!(l.max_ports_per_host, 77);
    // the per-host default follows a given table size
    f.max_flows_per_host = None;
    assert_eq!(
        Config::load(&f)
            .unwrap()
            .limits(POOL, GIB)
            .max_flows_per_host,
        1_250
    );
}

#[test]
fn bad_flow_limits_are_refused_naming_the_flag_or_key() {
    let mut f = flags();
    f.max_flows = Some("100".into());
    let e = load_err(&f);
    assert_eq!(e.origin, r#"--max-flows "100""#);
    assert!(e.message.contains("from 1024 to 67108864"), "{e}");
    f.max_flows = Some("5000".into());
    f.max_flows_per_host = Some("6000".into());
    let e = load_err(&f);
    assert_eq!(e.origin, r#"--max-flows-per-host "6000""#);
    assert!(e.message.contains("more than max_flows (5000)"), "{e}");
    f.max_flows_per_host = None;
    f.max_embryonic_per_forward = Some("10".into());
    assert_eq!(load_err(&f).origin, r#"--max-embryonic-per-forward "10""#);

    let text = "lan = [\"eth0\"]\nmax_flows = 4096\nmax_flows_per_host = \"many\"\nmax_embryonic_per_forward = 64\n[[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\n";
    let path = super::tests::write_temp("limits.toml", text);
    let e = load_err(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    });
    assert_eq!(
        e.origin,
        format!("{} line 3, max_flows_per_host", path.display())
    );
    let path = super::tests::write_temp("limits-ok.toml", &text.replace("\"many\"", "512"));
    let c = Config::load(&Flags {
        config: Some(path.clone()),
        ..Flags::default()
    })
    .unwrap();
    let l = c.limits(POOL, 1 << 30);
    assert_eq!(
        (
            l.max_flows,
            l.max_flows_per_host,
            l.max_embryonic_per_forward
        ),
        (4096, 512, 64)
    );
}

#[test]
fn the_status_listens_on_loopback_unless_told_and_off_loopback_only_with_a_token() {
    let c = Config::load(&flags()).unwrap();
    assert_eq!(c.listen, Some("127.0.0.1:9911".parse().unwrap()));
    let mut f = flags();
    f.listen = Some("off".into());
    assert_eq!(Config::load(&f).unwrap().listen, None);
    f.listen = Some("0.0.0.0:9911".into());
    let e = load_err(&f);
    assert_eq!(e.origin, r#"--listen "0.0.0.0:9911""#);
    assert!(e.message.contains("--listen-token"), "{e}");
    f.listen_token = Some("s3cret".into());
    assert!(Config::load(&f).is_ok());
    f.listen = Some("9911".into());
    assert!(
        load_err(&f)
            .to_string()
            .starts_with(r#"--listen "9911": "9911" is not an address"#)
    );
}

/// The one error `f` makes: nothing else is reported with it.
fn load_err(f: &Flags) -> ConfigError {
    let errors = Config::load(f).expect_err("should be refused");
    assert_eq!(errors.errors().len(), 1, "one error only:\n{errors}");
    errors.errors()[0].clone()
}
