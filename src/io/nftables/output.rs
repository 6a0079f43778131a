//! The output chain of wanlb's table: the gateway's own ICMP and ICMPv6 errors that would
//! leave through an uplink quoting a packet to a LAN address are dropped and counted. The
//! kernel makes those about what wanlb writes to its TUN device (a reply whose hop limit ends
//! on the gateway's hop, a LAN link too small for it, a LAN host gone): the quote is the
//! packet as wanlb translated it back, the LAN host's internal address and port, which NAT and
//! NPTv6 exist to keep from the internet. The engine drops replies with no hop left itself;
//! this covers the rest (Packet Too Big, address unreachable).

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::{Value, json};

/// The comment of the counted drop rules of the output chain.
pub(super) const ERROR_QUOTING_LAN: &str = "ICMP error quoting the LAN to an uplink";

/// Matches on the 32-bit words of the `len`-bit prefix `addr` (big-endian bytes), read from
/// the transport header at bit `offset` on (where an ICMP error quotes the destination).
fn prefix_words(offset: u32, addr: &[u8], len: u8) -> Vec<Value> {
    let mut matches = Vec::new();
    let mut left = u32::from(len);
    for (i, word) in addr.chunks_exact(4).enumerate() {
        if left == 0 {
            break;
        }
        let bits = left.min(32);
        left -= bits;
        let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
        let value = u32::from_be_bytes(word.try_into().expect("4 bytes")) & mask;
        let at = json!({"payload": {"base": "th", "offset": offset + 32 * i as u32, "len": 32}});
        let left = if mask == u32::MAX {
            at
        } else {
            json!({"&": [at, mask]})
        };
        matches.push(json!({"match": {"op": "==", "left": left, "right": value}}));
    }
    matches
}

/// The output chain of `table`, for uplinks `devs` and the LAN's networks `lan4` and `lan6`.
pub fn output_rules(
    table: &str,
    devs: &[&str],
    lan4: &[(Ipv4Addr, u8)],
    lan6: &[(Ipv6Addr, u8)],
) -> Vec<Value> {
    let mut items = vec![json!({"add": {"chain": {"family": "inet", "table": table,
        "name": "output", "type": "filter", "hook": "output", "prio": 0, "policy": "accept"}}})];
    let is =
        |left: Value, right: Value| json!({"match": {"op": "==", "left": left, "right": right}});
    let oif = is(json!({"meta": {"key": "oifname"}}), json!({"set": devs}));
    let v4_error = [
        is(json!({"meta": {"key": "l4proto"}}), json!("icmp")),
        is(
            json!({"payload": {"protocol": "icmp", "field": "type"}}),
            json!({"set": ["destination-unreachable", "time-exceeded", "parameter-problem"]}),
        ),
    ];
    let v6_error = [
        is(json!({"meta": {"key": "l4proto"}}), json!("ipv6-icmp")),
        is(
            json!({"payload": {"protocol": "icmpv6", "field": "type"}}),
            json!({"set": ["destination-unreachable", "packet-too-big", "time-exceeded",
                "parameter-problem"]}),
        ),
    ];
    // the quote follows the 8 bytes of the error's header: its destination 16 bytes into
    // an IPv4 header, 24 into an IPv6 one
    let quoting = lan4
        .iter()
        .filter(|(_, len)| *len > 0)
        .map(|(addr, len)| {
            (
                &v4_error,
                prefix_words(8 * 8 + 16 * 8, &addr.octets(), *len),
            )
        })
        .chain(lan6.iter().filter(|(_, len)| *len > 0).map(|(addr, len)| {
            (
                &v6_error,
                prefix_words(8 * 8 + 24 * 8, &addr.octets(), *len),
            )
        }));
    for (error, quoted_to_lan) in quoting {
        let expr: Vec<Value> = std::iter::once(oif.clone())
            .chain(error.iter().cloned())
            .chain(quoted_to_lan)
            .chain([
                json!({"counter": {"packets": 0, "bytes": 0}}),
                json!({"drop": null}),
            ])
            .collect();
        items.push(
            json!({"add": {"rule": {"family": "inet", "table": table, "chain": "output",
            "expr": expr, "comment": ERROR_QUOTING_LAN}}}),
        );
    }
    items
}
