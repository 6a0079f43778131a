//! `listen_hosts`: the names the control port answers to.

use super::listen::parse_listen_host;
use super::tests::write_temp;
use super::{Config, Flags};

#[test]
fn listen_hosts_come_from_the_file_and_the_flags_add_to_them() {
    let text = "lan = [\"eth0\"]\nlisten_hosts = [\"GW.example.net\", \"198.18.0.1\"]\n\
                [[uplink]]\nname = \"isp1\"\ndev = \"eth1\"\ngw = \"192.168.1.254\"\n";
    let file = write_temp("hosts.toml", text);
    let mut f = Flags {
        config: Some(file.to_path_buf()),
        ..Flags::default()
    };
    assert_eq!(
        Config::load(&f).unwrap().listen_hosts,
        ["gw.example.net", "198.18.0.1"]
    );
    f.listen_hosts = vec!["gw.example.net".into(), "status.example.net".into()];
    assert_eq!(
        Config::load(&f).unwrap().listen_hosts,
        ["gw.example.net", "198.18.0.1", "status.example.net"],
        "a name given twice is listed once"
    );
    f.listen_hosts = vec!["gw:9911".into()];
    let e = Config::load(&f).unwrap_err();
    assert_eq!(e.errors()[0].origin, "--listen-host \"gw:9911\"");
    let bad = write_temp("hosts-bad.toml", &text.replace("198.18.0.1", "a b"));
    let e = Config::load(&Flags {
        config: Some(bad.to_path_buf()),
        ..Flags::default()
    })
    .unwrap_err();
    assert_eq!(
        e.errors()[0].origin,
        format!("{} line 2, listen_hosts", bad.display())
    );
}

#[test]
fn names_and_addresses_are_kept_as_a_host_header_carries_them() {
    for (given, kept) in [
        ("gw.example.net", "gw.example.net"),
        ("GW.Example.NET.", "gw.example.net"),
        ("router", "router"),
        ("xn--bcher-kva.example", "xn--bcher-kva.example"),
        ("198.18.0.1", "198.18.0.1"),
        ("2001:2::1", "2001:2::1"),
        ("[2001:2::1]", "2001:2::1"),
        ("::ffff:198.18.0.1", "198.18.0.1"),
    ] {
        assert_eq!(parse_listen_host(given, "x"), Ok(kept.into()), "{given}");
    }
}

#[test]
fn what_no_host_header_can_name_is_refused_with_its_key() {
    for (given, why) in [
        ("gw.example.net:9911", "without a port"),
        ("[2001:2::1]:9911", "without a port"),
        ("", "not a host name"),
        ("*.example.net", "not a host name"),
        ("gw..example.net", "not a host name"),
        ("-gw.example.net", "not a host name"),
        ("gw_1.example.net", "not a host name"),
        ("user@gw.example.net", "not a host name"),
        ("gw.example.net/status", "not a host name"),
    ] {
        let e = parse_listen_host(given, "--listen-host").unwrap_err();
        assert_eq!(e.origin, "--listen-host", "{given}");
        assert!(e.message.contains(why), "{given}: {}", e.message);
    }
    let long = format!("{}.example", "a".repeat(64));
    assert!(parse_listen_host(&long, "x").is_err(), "a label of 64");
    let longest = vec!["a".repeat(63); 4].join(".");
    assert!(parse_listen_host(&longest, "x").is_err(), "255 characters");
}
