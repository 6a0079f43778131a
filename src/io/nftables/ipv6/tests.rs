//! The IPv6 rules of wanlb's table, as JSON.

use super::*;

fn forward(proto: &'static str, port: u16, to: &str, translated: Option<&str>) -> Table6Forward {
    Table6Forward {
        proto,
        port,
        to: to.parse().unwrap(),
        translated: translated.map(|t| t.parse().unwrap()),
    }
}

#[test]
fn nat66_ports_and_the_delegated_prefix_are_kept_from_the_kernel() {
    let uplinks = [
        Table6Uplink {
            dev: "eth1".into(),
            addr: Some("2001:2:0:1::1".parse().unwrap()),
            prefix: None,
            forwards: vec![
                forward("tcp", 8080, "[fd00:3::10]:80", None),
                forward("udp", 51820, "[fd00:3::11]:51820", None),
                forward("tcp", 22, "[fd00:3::12]:22", Some("2001:2:2::12")),
            ],
        },
        Table6Uplink {
            dev: "eth2".into(),
            addr: None,
            prefix: Some(("2001:2:2::".parse().unwrap(), 48)),
            forwards: vec![forward("tcp", 22, "[fd00:3::12]:22", Some("2001:2:2::12"))],
        },
    ];
    let lans = ["eth0".to_string()];
    let lan = Table6Lan {
        interfaces: &lans,
        prefixes: &[("fd00:3::".parse().unwrap(), 64)],
    };
    let rules = ipv6_rules("wanlb_t", "wanlb0", lan, &uplinks, (1024, 32767));
    let text: Vec<String> = rules.iter().map(ToString::to_string).collect();
    // the TUN device's IPv6 out of conntrack, and the LAN's to wanlb; per NAT66 address its
    // forwarded ports dropped, an accept for the host's sockets and a drop; per prefix an
    // accept for neighbour discovery and a drop
    // then the hairpin: a nat chain, a DNAT per forward and address, a nat chain, an SNAT
    // per line with an address
    assert_eq!(text.len(), 8 + 7, "{text:#?}");
    assert!(text[0].contains(r#""right":"wanlb0""#) && text[0].contains("notrack"));
    let lan_to_wanlb = [
        r#""right":{"set":["eth0"]}"#,
        r#""right":"ipv6""#,
        r#""op":"!=","right":{"set":[{"prefix":{"addr":"fe80::","len":10}},{"prefix":{"addr":"ff00::","len":8}},{"prefix":{"addr":"fd00:3::","len":64}},{"prefix":{"addr":"2001:2:2::","len":48}}]}"#,
        r#"{"match":{"left":{"fib":{"flags":["daddr"],"result":"type"}},"op":"!=","right":"local"}}"#,
        r#"{"notrack":null}"#,
    ];
    for part in lan_to_wanlb {
        assert!(text[1].contains(part), "{part} in {}", text[1]);
    }
    assert!(text[2].contains(r#""right":"2001:2:0:1::1""#) && text[2].contains(r#""right":"tcp""#));
    assert!(text[2].contains(r#""right":{"set":[8080,22]}"#) && text[2].contains(r#""drop":null"#));
    assert!(text[3].contains(r#""right":"udp""#) && text[3].contains(r#""right":{"set":[51820]}"#));
    assert!(text[4].contains(r#""right":"2001:2:0:1::1""#) && text[4].contains("accept"));
    assert!(text[5].contains(r#""range":[1024,32767]"#) && text[5].contains(r#""drop":null"#));
    assert!(text[6].contains("nd-neighbor-solicit") && text[6].contains("accept"));
    assert!(text[7].contains(r#"{"prefix":{"addr":"2001:2:2::","len":48}}"#));
    assert!(text[7].contains(r#""right":"eth2""#) && text[7].contains(r#""drop":null"#));
    assert!(
        text[8].contains(r#""hook":"prerouting","name":"hairpin6""#)
            && text[8].contains(r#""type":"nat""#)
    );
    let dnat = |daddr: &str, port: u16, to: &str, to_port: u16| {
        [
            format!(r#""right":"{daddr}""#),
            format!(r#""right":{port}"#),
            format!(r#"{{"dnat":{{"addr":"{to}","family":"ip6","port":{to_port}}}}}"#),
        ]
    };
    let dnats = [
        dnat("2001:2:0:1::1", 8080, "fd00:3::10", 80),
        dnat("2001:2:0:1::1", 51820, "fd00:3::11", 51820),
        dnat("2001:2:0:1::1", 22, "fd00:3::12", 22),
        dnat("2001:2:2::12", 22, "fd00:3::12", 22),
    ];
    for (i, parts) in dnats.iter().enumerate() {
        for part in parts {
            assert!(
                text[9 + i].contains(part.as_str()),
                "{part} in {}",
                text[9 + i]
            );
        }
        assert!(text[9 + i].contains(r#""right":{"set":["eth0"]}"#));
    }
    assert!(text[13].contains(r#""hook":"postrouting","name":"hairpin6_source""#));
    assert!(text[14].contains(r#"{"snat":{"addr":"2001:2:0:1::1","family":"ip6"}}"#));
    assert!(text[14].contains(r#""right":{"set":["2001:2:0:1::1","2001:2:2::12"]}"#));
    for r in &rules[..8] {
        assert_eq!(r["add"]["rule"]["table"], "wanlb_t");
        assert_eq!(r["add"]["rule"]["chain"], "prerouting");
    }
}
