//! The NAT port pool and the ports one host may hold, as given (crate::preflight settles
//! the pool on the system), and where the status is served.

use super::*;

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
