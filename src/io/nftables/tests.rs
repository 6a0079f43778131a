//! wanlb's nftables table, as JSON, rule by rule.

use std::net::Ipv4Addr;

use super::*;

#[test]
fn the_table_is_one_batch_with_a_rule_per_uplink() {
    let json = table_json(
        "wanlb_t",
        "wanlb0",
        &["eth0".into()],
        &[(Ipv4Addr::new(198, 18, 3, 0), 24)],
        &[
            ("eth1".into(), Ipv4Addr::new(198, 18, 1, 1)),
            ("eth2".into(), Ipv4Addr::new(198, 18, 2, 1)),
        ],
        (61000, 65535),
        &[],
    );
    assert!(
        json.starts_with(r#"{"nftables":[{"add":{"table":{"family":"inet","name":"wanlb_t"}}}"#)
    );
    // a NAT-port rule per uplink, the forward rule for both, IPv6 both ways, TUN to uplinks
    assert_eq!(json.matches(r#""drop":null"#).count(), 6);
    assert!(json.contains(r#""elem":[{"prefix":{"addr":"198.18.3.0","len":24}}]"#));
    assert!(json.contains(r#""right":{"set":["eth1","eth2"]}"#));
    assert!(json.contains(r#""value":28928"#));
    assert!(json.contains(r#""right":"198.18.2.1""#));
    assert!(json.contains(r#""range":[61000,65535]"#));
    assert!(
        !json.contains(r#""type":"nat""#),
        "no NAT chains without forwards"
    );
}

#[test]
fn lan_packets_to_the_uplinks_nat_ports_go_to_wanlb_unless_forwarded_or_the_hosts() {
    let json = table_json(
        "wanlb_t",
        "wanlb0",
        &["eth0".into(), "eth3".into()],
        &[(Ipv4Addr::new(198, 18, 3, 0), 24)],
        &[
            ("eth1".into(), Ipv4Addr::new(198, 18, 1, 1)),
            ("eth2".into(), Ipv4Addr::new(198, 18, 2, 1)),
        ],
        (1024, 32767),
        &[TableForward {
            uplink: 1,
            proto: "tcp",
            port: 8080,
            to: "198.18.3.10:80".parse().unwrap(),
        }],
    );
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rules: Vec<String> = parsed["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["add"]["rule"].as_object())
        .filter(|r| r["chain"] == "prerouting")
        .map(|r| r["expr"].to_string())
        .collect();
    let from_lans = r#""right":{"set":["eth0","eth3"]}"#;
    let marked = r#"{"mangle":{"key":{"meta":{"key":"mark"}},"value":28928}},{"notrack":null}"#;
    let to_wanlb: Vec<&String> = rules
        .iter()
        .filter(|r| r.contains(from_lans) && r.contains(marked))
        .collect();
    // TCP and UDP to each uplink's NAT ports, and ICMP to either address
    assert_eq!(to_wanlb.len(), 5, "{to_wanlb:#?}");
    for (i, addr) in ["198.18.1.1", "198.18.2.1"].iter().enumerate() {
        for proto in ["tcp", "udp"] {
            let r = to_wanlb[2 * i + usize::from(proto == "udp")];
            assert!(r.contains(&format!(r#""right":"{addr}""#)), "{r}");
            assert!(r.contains(&format!(r#""right":"{proto}""#)), "{r}");
            assert!(r.contains(r#""range":[1024,32767]"#), "{r}");
            // isp2's forwarded port stays the kernel's to hairpin (DNAT)
            let forwarded = r#"{"match":{"left":{"payload":{"field":"dport","protocol":"th"}},"op":"!=","right":{"set":[8080]}}}"#;
            assert_eq!(r.contains(forwarded), i == 1 && proto == "tcp", "{r}");
        }
    }
    let icmp = to_wanlb[4];
    assert!(icmp.contains(r#""right":{"set":["198.18.1.1","198.18.2.1"]}"#));
    for t in [
        "echo-request",
        "echo-reply",
        "destination-unreachable",
        "time-exceeded",
    ] {
        assert!(icmp.contains(t), "{icmp}");
    }
    // a port a socket of this host has is its own, from the LAN as from the uplinks: the
    // rule that says so comes first
    let at = |parts: &[&str]| {
        rules
            .iter()
            .position(|r| parts.iter().all(|p| r.contains(p)))
    };
    let own = at(&[from_lans, "198.18.1.1", r#""right":"udp""#, "socket"]).unwrap();
    let wanlbs = at(&[from_lans, "198.18.1.1", r#""right":"udp""#, marked]).unwrap();
    assert!(own < wanlbs, "{rules:#?}");
    // all before what the LAN sends elsewhere is kept out of conntrack
    let elsewhere = at(&[from_lans, "@kernel_routed"]).unwrap();
    assert!(rules.iter().position(|r| r == icmp).unwrap() < elsewhere);
}

/// The rules of `json` as "CHAIN EXPR COMMENT", in order.
fn rules_of(json: &str) -> Vec<String> {
    let parsed: serde_json::Value = serde_json::from_str(json).unwrap();
    parsed["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["add"]["rule"].as_object())
        .map(|r| {
            let comment = r.get("comment").cloned().unwrap_or_default();
            format!("{} {} {comment}", r["chain"].as_str().unwrap(), r["expr"])
        })
        .collect()
}

#[test]
fn ipv6_from_an_uplink_and_from_the_lan_past_the_tun_device_is_dropped_and_every_other_rule_is_ipv4()
 {
    let json = table_json(
        "wanlb_t",
        "wanlb0",
        &["eth0".into(), "eth3".into()],
        &[(Ipv4Addr::new(198, 18, 3, 0), 24)],
        &[
            ("eth1".into(), Ipv4Addr::new(198, 18, 1, 1)),
            ("eth2".into(), Ipv4Addr::new(198, 18, 2, 1)),
        ],
        (61000, 65535),
        &[TableForward {
            uplink: 0,
            proto: "tcp",
            port: 443,
            to: "198.18.3.10:443".parse().unwrap(),
        }],
    );
    let rules = rules_of(&json);
    let ipv6 = r#"{"match":{"left":{"meta":{"key":"nfproto"}},"op":"==","right":"ipv6"}}"#;
    let ipv6_rules: Vec<&String> = rules.iter().filter(|r| r.contains(ipv6)).collect();
    let lans = r#""right":{"set":["eth0","eth3"]}"#;
    let uplinks = r#""right":{"set":["eth1","eth2"]}"#;
    let counted = r#"{"counter":{"bytes":0,"packets":0}},{"drop":null}]"#;
    assert_eq!(ipv6_rules.len(), 2, "{rules:#?}");
    // from the LAN: to anything but the LAN and the TUN device
    let from_lan = ipv6_rules[0];
    assert!(from_lan.starts_with("forward "), "{from_lan}");
    let oif = from_lan.find("oifname").unwrap();
    assert!(from_lan[..oif].contains(lans), "{from_lan}");
    assert!(
        from_lan[oif..].contains(r#""op":"!=","right":{"set":["eth0","eth3","wanlb0"]}"#),
        "{from_lan}"
    );
    assert!(
        from_lan.ends_with(&format!("{counted} \"{IPV6_FROM_LAN}\"")),
        "{from_lan}"
    );
    // from an uplink: to anywhere (another line's segment, an interface not named --lan)
    let from_uplink = ipv6_rules[1];
    assert!(from_uplink.starts_with("forward "), "{from_uplink}");
    assert!(from_uplink.contains(uplinks), "{from_uplink}");
    assert!(!from_uplink.contains("oifname"), "{from_uplink}");
    assert!(
        from_uplink.ends_with(&format!("{counted} \"{IPV6_FROM_UPLINK}\"")),
        "{from_uplink}"
    );
    // what wanlb wrote to the TUN device never goes on to an uplink, either family
    let from_tun: Vec<&String> = rules.iter().filter(|r| r.contains(FROM_TUN)).collect();
    assert_eq!(from_tun.len(), 1, "{rules:#?}");
    assert!(
        from_tun[0].starts_with("forward ")
            && from_tun[0].contains(r#""right":{"set":["wanlb0"]}"#)
            && from_tun[0].contains(&format!("oifname\"}}}},\"op\":\"==\",{uplinks}"))
            && from_tun[0].contains(r#"{"drop":null}"#),
        "{}",
        from_tun[0]
    );
    // the rest is IPv4's: by an explicit match or an IPv4 address (nft then adds it)
    let ipv4 = r#""right":"ipv4""#;
    for rule in rules
        .iter()
        .filter(|r| !r.contains(ipv6) && !r.contains(FROM_TUN))
    {
        assert!(
            rule.contains(ipv4) || rule.contains(r#""protocol":"ip""#),
            "{rule}"
        );
    }
    assert!(json.contains(r#"{"dnat":{"addr":"198.18.3.10","family":"ip","port":443}}"#));
}

#[test]
fn forwarded_ports_are_kept_from_the_kernel_and_hairpinned() {
    let forward = |uplink, proto, port, to: &str| TableForward {
        uplink,
        proto,
        port,
        to: to.parse().unwrap(),
    };
    let json = table_json(
        "wanlb_t",
        "wanlb0",
        &["eth0".into()],
        &[(Ipv4Addr::new(198, 18, 3, 0), 24)],
        &[
            ("eth1".into(), Ipv4Addr::new(198, 18, 1, 1)),
            ("eth2".into(), Ipv4Addr::new(198, 18, 2, 1)),
        ],
        (61000, 65535),
        &[
            forward(1, "tcp", 8080, "198.18.3.10:80"),
            forward(0, "udp", 5060, "198.18.3.20:5060"),
            forward(1, "tcp", 8443, "198.18.3.10:443"),
        ],
    );
    let parsed: serde_json::Value = serde_json::from_str(&json).unwrap();
    let rules: Vec<String> = parsed["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["add"]["rule"].as_object())
        .map(|r| format!("{} {}", r["chain"].as_str().unwrap(), r["expr"]))
        .collect();
    let has = |chain: &str, parts: &[&str]| {
        rules
            .iter()
            .any(|r| r.starts_with(chain) && parts.iter().all(|p| r.contains(p)))
    };
    // dropped on their uplink, before the NAT ports' rules let a host socket have them
    let isp2_tcp = [
        r#""right":{"set":["eth2"]}"#,
        r#""right":"198.18.2.1""#,
        r#""right":"tcp""#,
        r#""right":{"set":[8080,8443]}"#,
        r#"{"drop":null}"#,
    ];
    assert!(has("prerouting", &isp2_tcp), "{rules:#?}");
    let at = |parts: &[&str]| {
        rules
            .iter()
            .position(|r| parts.iter().all(|p| r.contains(p)))
    };
    assert!(
        at(&["eth2", "8080"]) < at(&["eth2", "socket"]),
        "{rules:#?}"
    );
    assert!(has(
        "prerouting",
        &[
            r#""right":{"set":["eth1"]}"#,
            r#""right":"udp""#,
            r#""right":{"set":[5060]}"#
        ]
    ));
    // from the LAN to a forwarded port of an uplink's address: to the LAN host...
    assert!(has(
        "hairpin ",
        &[
            r#""right":{"set":["eth0"]}"#,
            r#""right":"198.18.2.1""#,
            r#""right":8443"#,
            r#"{"dnat":{"addr":"198.18.3.10","family":"ip","port":443}}"#
        ]
    ));
    // ...from that uplink's address, one rule per uplink
    assert!(has(
        "hairpin_source",
        &[
            r#""dir":"original""#,
            r#"{"snat":{"addr":"198.18.2.1","family":"ip"}}"#
        ]
    ));
    assert_eq!(
        rules
            .iter()
            .filter(|r| r.starts_with("hairpin_source"))
            .count(),
        2
    );
    // in NAT chains at the usual priorities (dstnat, srcnat)
    let chains: Vec<String> = parsed["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["add"]["chain"].as_object())
        .map(|c| format!("{} {} {} {}", c["name"], c["type"], c["hook"], c["prio"]))
        .collect();
    assert!(chains.contains(&r#""hairpin" "nat" "prerouting" -100"#.to_string()));
    assert!(chains.contains(&r#""hairpin_source" "nat" "postrouting" 100"#.to_string()));
}

#[test]
fn the_gateways_errors_quoting_a_lan_address_never_leave_through_an_uplink() {
    let items = output_rules(
        "wanlb_t",
        &["eth1", "eth2"],
        &[(Ipv4Addr::new(198, 18, 3, 0), 24)],
        &[
            ("fd00:3::".parse().unwrap(), 64),
            ("::".parse().unwrap(), 0),
        ],
    );
    let rules: Vec<String> = items[1..].iter().map(|r| r.to_string()).collect();
    // one rule per LAN network; a /0 would take every error, so it takes none
    assert_eq!(rules.len(), 2, "{rules:#?}");
    let quote =
        |offset: u32| format!(r#"{{"payload":{{"base":"th","len":32,"offset":{offset}}}}}"#);
    // IPv4: the quoted destination 8 + 16 bytes in, its /24
    assert!(rules[0].contains(r#""right":"icmp""#), "{}", rules[0]);
    assert!(
        rules[0].contains(&format!(r#"{{"&":[{},4294967040]}}"#, quote(192)))
            && rules[0].contains(&format!(r#""right":{}"#, 0xc612_0300_u32)),
        "{}",
        rules[0]
    );
    // IPv6: 8 + 24 bytes in, its first two words whole
    assert!(rules[1].contains(r#""right":"ipv6-icmp""#), "{}", rules[1]);
    assert!(rules[1].contains("packet-too-big"), "{}", rules[1]);
    for (offset, word) in [(256, 0xfd00_0003_u32), (288, 0)] {
        assert!(
            rules[1].contains(&format!(
                r#""left":{},"op":"==","right":{word}}}"#,
                quote(offset)
            )),
            "{}",
            rules[1]
        );
    }
    for rule in &rules {
        assert!(
            rule.contains(r#""right":{"set":["eth1","eth2"]}"#),
            "{rule}"
        );
        assert!(
            rule.contains(r#"{"counter":{"bytes":0,"packets":0}},{"drop":null}"#),
            "{rule}"
        );
    }
}
