//! `--forward` and `[[forward]]`: parsed and checked against the other settings, every error
//! naming the flag or the file's line and key (against the system: crate::preflight's tests).

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
