//! The IPv6 rules of wanlb's table, as JSON.

use super::*;

#[test]
fn nat66_ports_and_the_delegated_prefix_are_kept_from_the_kernel() {
    let uplinks = [
        Table6Uplink {
            dev: "eth1".into(),
            addr: Some("2001:2:0:1::1".parse().unwrap()),
            prefix: None,
        },
        Table6Uplink {
            dev: "eth2".into(),
            addr: None,
            prefix: Some(("2001:2:2::".parse().unwrap(), 48)),
        },
    ];
    let rules = ipv6_rules("wanlb_t", "wanlb0", &uplinks, (1024, 32767));
    let text: Vec<String> = rules.iter().map(ToString::to_string).collect();
    // the TUN device's IPv6 out of conntrack; per NAT66 address an accept for the host's
    // sockets and a drop; per prefix an accept for neighbour discovery and a drop
    assert_eq!(text.len(), 5, "{text:#?}");
    assert!(text[0].contains(r#""right":"wanlb0""#) && text[0].contains("notrack"));
    assert!(text[1].contains(r#""right":"2001:2:0:1::1""#) && text[1].contains("accept"));
    assert!(text[2].contains(r#""range":[1024,32767]"#) && text[2].contains(r#""drop":null"#));
    assert!(text[3].contains("nd-neighbor-solicit") && text[3].contains("accept"));
    assert!(text[4].contains(r#"{"prefix":{"addr":"2001:2:2::","len":48}}"#));
    assert!(text[4].contains(r#""right":"eth2""#) && text[4].contains(r#""drop":null"#));
    for r in &rules {
        assert_eq!(r["add"]["rule"]["table"], "wanlb_t");
        assert_eq!(r["add"]["rule"]["chain"], "prerouting");
    }
}
