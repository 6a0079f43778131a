//! `--forward` and `[[forward]]`: parsed, checked against the other settings and the system,
//! every error naming the flag or the file's line and key.

use super::tests::{facts, service};
use super::*;

const ISP1: &str = "isp1,dev=eth1,gw=192.168.1.254";
const ISP2: &str = "isp2,dev=eth2,gw=192.168.2.254";

fn flags(forwards: &[&str]) -> Flags {
    Flags {
        lan: vec!["eth0".into()],
        uplinks: vec![ISP1.into(), ISP2.into()],
        forwards: forwards.iter().map(|s| s.to_string()).collect(),
        ..Flags::default()
    }
}

/// Every error loading `f` reports, one a line.
fn errors(f: &Flags) -> Vec<String> {
    let e = Config::load(f).expect_err("should be refused");
    e.errors().iter().map(ToString::to_string).collect()
}

use super::tests::write_temp;

#[test]
fn forward_flags_parse() {
    let c = Config::load(&flags(&[
        "tcp:8080=192.168.3.10:80@isp2",
        " udp : 5060 = 192.168.3.20:5060 @ isp1",
    ]))
    .unwrap();
    let f = &c.forwards;
    assert_eq!(f.len(), 2);
    assert_eq!(
        (f[0].proto, f[0].port, f[0].to, f[0].uplink.as_str()),
        (
            ForwardProto::Tcp,
            8080,
            "192.168.3.10:80".parse().unwrap(),
            "isp2"
        )
    );
    assert_eq!(f[0].to_string(), "tcp:8080=192.168.3.10:80@isp2");
    assert_eq!(f[1].to_string(), "udp:5060=192.168.3.20:5060@isp1");
    assert_eq!(f[0].origin, r#"--forward "tcp:8080=192.168.3.10:80@isp2""#);
}

#[test]
fn bad_forward_flags_are_refused_naming_the_flag() {
    for (spec, message) in [
        (
            "tcp:8080=192.168.3.10:80",
            "expected PROTO:PORT=HOST:PORT@UPLINK",
        ),
        (
            "tcp:8080=192.168.3.10:80@",
            "expected PROTO:PORT=HOST:PORT@UPLINK",
        ),
        (
            "8080=192.168.3.10:80@isp2",
            "expected PROTO:PORT=HOST:PORT@UPLINK",
        ),
        (
            "sctp:8080=192.168.3.10:80@isp2",
            r#"protocol "sctp" must be tcp or udp"#,
        ),
        ("tcp:0=192.168.3.10:80@isp2", r#"from 1 to 65535, got "0""#),
        ("tcp:70000=192.168.3.10:80@isp2", r#"got "70000""#),
        (
            "tcp:8080=192.168.3.10@isp2",
            r#""192.168.3.10" is not a LAN host's"#,
        ),
        ("tcp:8080=192.168.3.10:0@isp2", r#""192.168.3.10:0" is not"#),
        ("tcp:8080=printer:80@isp2", r#""printer:80" is not"#),
        (
            "tcp:8080=192.168.3.10:80@isp3",
            r#"unknown uplink "isp3" (uplinks: isp1, isp2)"#,
        ),
    ] {
        let found = errors(&flags(&[spec]));
        assert_eq!(found.len(), 1, "{spec}: {found:?}");
        let prefix = format!("--forward {spec:?}: ");
        assert!(
            found[0].starts_with(&prefix) && found[0].contains(message),
            "{spec}: {:?} should name the flag and say {message:?}",
            found[0]
        );
    }
    // the same port of the same line twice; the same port of another line, or of the other
    // protocol, is another forward
    let found = errors(&flags(&[
        "tcp:8080=192.168.3.10:80@isp2",
        "udp:8080=192.168.3.10:80@isp2",
        "tcp:8080=192.168.3.10:80@isp1",
        "tcp:8080=192.168.3.11:8080@isp2",
    ]));
    assert_eq!(
        found,
        [
            r#"--forward "tcp:8080=192.168.3.11:8080@isp2": tcp:8080 of isp2 is forwarded twice (also at --forward "tcp:8080=192.168.3.10:80@isp2")"#
        ]
    );
}

#[test]
fn forwards_in_the_file_name_their_line_and_key() {
    let text = r#"lan = ["eth0"]

[[uplink]]
name = "isp1"
dev = "eth1"
gw = "192.168.1.254"

[[forward]]
proto = "tcp"
port = 8080
to = "192.168.3.10:80"
uplink = "isp1"

[[forward]]
proto = "udp"
port = "5060"
to = "192.168.3.10:5060"
uplink = "isp1"
"#;
    let path = write_temp("forward.toml", text);
    let file = |path: &Path| Flags {
        config: Some(path.to_path_buf()),
        ..Flags::default()
    };
    let c = Config::load(&file(&path)).unwrap();
    let shown: Vec<String> = c.forwards.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "tcp:8080=192.168.3.10:80@isp1",
            "udp:5060=192.168.3.10:5060@isp1"
        ]
    );
    assert_eq!(
        c.forwards[0].origin,
        format!("{} line 10, [[forward]] port", path.display())
    );

    let bad = text
        .replace(r#"proto = "tcp""#, r#"proto = "icmp""#)
        .replace(r#"port = "5060""#, "port = 0")
        .replace(r#"to = "192.168.3.10:5060""#, r#"to = "192.168.3.10""#)
        + "\n[[forward]]\nproto = \"tcp\"\nport = 443\nto = \"192.168.3.10:443\"\nuplink = \"isp9\"\n"
        + "\n[[forward]]\nproto = \"tcp\"\nport = 443\nto = \"192.168.3.11:443\"\nuplink = \"isp9\"\n";
    let path = write_temp("forward-bad.toml", &bad);
    let e = Config::load(&file(&path)).unwrap_err();
    let found: Vec<(String, String)> = e
        .errors()
        .iter()
        .map(|e| (e.origin.clone(), e.message.clone()))
        .collect();
    let at = |line: u32, key: &str| format!("{} line {line}, [[forward]] {key}", path.display());
    let expected = [
        (at(9, "proto"), r#"protocol "icmp" must be tcp or udp"#),
        (
            at(16, "port"),
            "port must be a whole number from 1 to 65535",
        ),
        (at(17, "to"), r#""192.168.3.10" is not a LAN host's"#),
        (at(24, "uplink"), r#"unknown uplink "isp9" (uplinks: isp1)"#),
        (at(28, "port"), "tcp:443 of isp9 is forwarded twice"),
    ];
    assert_eq!(found.len(), expected.len(), "{found:#?}");
    for ((origin, message), (want_origin, want_message)) in found.iter().zip(&expected) {
        assert_eq!(origin, want_origin, "{message}");
        assert!(message.starts_with(want_message), "{message:?}");
    }

    // a key [[forward]] does not have
    let path = write_temp(
        "forward-key.toml",
        &text.replace(
            "uplink = \"isp1\"\n\n[[forward]]",
            "uplink = \"isp1\"\nhost = \"x\"\n\n[[forward]]",
        ),
    );
    let e = Config::load(&file(&path)).unwrap_err().to_string();
    assert!(e.starts_with(&format!("{} line 13", path.display())), "{e}");
    assert!(e.contains("unknown field `host`"), "{e}");

    // a flag replaces the file's forward of the same port and line
    let kept = write_temp("forward.toml", text);
    let mut f = file(&kept);
    f.forwards = vec!["tcp:8080=192.168.3.99:8000@isp1".into()];
    let c = Config::load(&f).unwrap();
    let shown: Vec<String> = c.forwards.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        [
            "udp:5060=192.168.3.10:5060@isp1",
            "tcp:8080=192.168.3.99:8000@isp1"
        ]
    );
}

#[test]
fn a_forward_goes_to_a_lan_host_from_a_port_no_service_of_the_gateway_holds() {
    // facts(): eth0 192.168.3.100/24 (the LAN), eth1 192.168.1.1, eth2 192.168.2.1; a TCP
    // service on port 80 of every address
    let resolve = |forwards: &[&str], extra: &[LocalService]| -> Vec<String> {
        let mut sys = facts();
        sys.services.extend_from_slice(extra);
        match Config::load(&flags(forwards)).unwrap().resolve(&sys) {
            Ok(_) => Vec::new(),
            Err(e) => e.errors().iter().map(ToString::to_string).collect(),
        }
    };
    assert!(resolve(&["tcp:8080=192.168.3.10:80@isp2"], &[]).is_empty());
    // outside the LAN, or the gateway itself
    let found = resolve(&["tcp:8080=10.1.2.3:80@isp2"], &[]);
    assert_eq!(
        found,
        [
            r#"--forward "tcp:8080=10.1.2.3:80@isp2": 10.1.2.3 is not in the LAN (192.168.3.0/24); a routed LAN's network is added with --lan-net"#
        ]
    );
    let found = resolve(&["tcp:8080=192.168.3.100:80@isp2"], &[]);
    assert!(
        found[0]
            .ends_with("192.168.3.100 is an address of this gateway; a forward goes to a LAN host"),
        "{found:?}"
    );
    // a routed LAN, once named, is the LAN
    let mut f = flags(&["tcp:8080=10.1.2.3:80@isp2"]);
    f.lan_nets = vec!["10.1.2.0/24".into()];
    assert!(Config::load(&f).unwrap().resolve(&facts()).is_ok());

    // a service on the port: on every address, or on that line's; not on the other line's,
    // nor of the other protocol
    let found = resolve(&["tcp:80=192.168.3.10:80@isp2"], &[]);
    assert_eq!(
        found,
        [
            r#"--forward "tcp:80=192.168.3.10:80@isp2": tcp/80 is used by a service on this host (0.0.0.0:80): the forward would cut it off from isp2; forward another port, or move the service"#
        ]
    );
    let on_isp2 = service("udp", 5060, [192, 168, 2, 1]);
    let on_isp1 = service("udp", 5060, [192, 168, 1, 1]);
    let forward = ["udp:5060=192.168.3.10:5060@isp2"];
    assert_eq!(resolve(&forward, &[on_isp2]).len(), 1);
    assert!(resolve(&forward, &[on_isp1]).is_empty());
    assert!(
        resolve(
            &["tcp:5060=192.168.3.10:5060@isp2"],
            &[service("udp", 5060, [0; 4])]
        )
        .is_empty()
    );
}

#[test]
fn forwarded_ports_leave_the_nat_pool_as_it_would_be() {
    // the pool keeps forwarded ports aside itself: the automatic range is not cut in two,
    // and a given range may hold one
    let c = Config::load(&flags(&["tcp:8080=192.168.3.10:80@isp2"])).unwrap();
    assert_eq!(c.nat_pool(&facts()), (1024, 32767));
    let mut f = flags(&["tcp:61000=192.168.3.10:80@isp2"]);
    f.nat_ports = Some("61000-65535".into());
    assert!(Config::load(&f).unwrap().resolve(&facts()).is_ok());
}
