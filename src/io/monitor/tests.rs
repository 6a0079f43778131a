//! Health probes as they leave and as their answers are read.

use super::*;
use crate::engine::checksum::checksum;
use crate::uplink::LinkKind;

fn uplink(link: LinkKind) -> Uplink {
    Uplink::new(0, "isp1", "eth1", link)
        .on_interface(3, [2, 0, 0, 0, 0, 1])
        .with_address(
            Ipv4Addr::new(198, 18, 1, 1),
            Some(Ipv4Addr::new(198, 18, 1, 254)),
        )
}

const TARGET: Ipv4Addr = Ipv4Addr::new(198, 19, 255, 1);

fn key() -> ProbeKey {
    ProbeKey::new([9; probe::RANDOM_LEN], (1024, 32767))
}

#[test]
fn an_echo_request_leaves_from_the_uplink_to_its_gateway() {
    let key = key();
    let (seq, payload) = key.probe(0, TARGET, 7);
    let mut frame = [0u8; ECHO_FRAME];
    let f = echo_request(
        &mut frame,
        &uplink(LinkKind::Ethernet),
        NextHop::Gateway([2, 0, 0, 0, 0, 0xfe]),
        TARGET,
        (key.id(), seq),
        &payload,
    )
    .to_vec();
    assert_eq!(f.len(), ECHO_FRAME);
    assert_eq!(f[..14], [2, 0, 0, 0, 0, 0xfe, 2, 0, 0, 0, 0, 1, 8, 0]);
    assert_eq!(f[26..30], [198, 18, 1, 1]);
    assert_eq!(f[30..34], TARGET.octets());
    assert_eq!(checksum(&f[14..34], 0), 0);
    assert_eq!(checksum(&f[34..], 0), 0);
    assert_eq!(f[34], 8);
    assert_eq!(u16::from_be_bytes([f[38], f[39]]), key.id());
    assert_eq!(u16::from_be_bytes([f[40], f[41]]), seq);
    assert_eq!(f[42..], payload);
    // its answer, as the target sends it back (padded to Ethernet's minimum)
    let mut reply = f.clone();
    reply[26..30].copy_from_slice(&TARGET.octets());
    reply[30..34].copy_from_slice(&[198, 18, 1, 1]);
    reply[34] = 0;
    reply.resize(60, 0);
    let answer = echo_reply(&reply[ETH_HEADER..]).expect("an echo reply");
    assert_eq!(
        answer,
        EchoReply {
            from: TARGET,
            id: key.id(),
            seq,
            payload: &payload,
        }
    );
    assert_eq!(
        key.round_of(0, answer.from, answer.id, answer.seq, answer.payload),
        Some(7)
    );
    assert_eq!(echo_reply(&reply[ETH_HEADER..ETH_HEADER + 16]), None);
    assert_eq!(echo_reply(&f[ETH_HEADER..]), None, "a request is no answer");
}

#[test]
fn a_header_that_claims_less_than_its_minimum_is_no_echo_reply() {
    // what anyone on the uplink's segment can send to the gateway's MAC, and what the
    // probes' socket filter keeps when the identifier ends in 0x01: a header length of
    // 4 bytes, a total length of 12, the "ICMP header" at the IP identification field
    // (its high byte 0: an echo reply) and the "identifier" at the TTL and the protocol
    for ihl in 0..5u8 {
        for total in 0..20u16 {
            let mut ip = [0u8; 20];
            ip[0] = 0x40 | ihl;
            ip[2..4].copy_from_slice(&total.to_be_bytes());
            ip[8] = 0x12;
            ip[9] = 1;
            assert_eq!(echo_reply(&ip), None, "ihl {ihl}, total length {total}");
        }
    }
}

#[test]
fn on_a_point_to_point_link_the_echo_request_is_the_bare_packet() {
    let key = key();
    let (seq, payload) = key.probe(0, TARGET, 7);
    let mut frame = [0u8; ECHO_FRAME];
    let ip = echo_request(
        &mut frame,
        &uplink(LinkKind::PointToPoint),
        NextHop::Peer,
        TARGET,
        (key.id(), seq),
        &payload,
    );
    assert_eq!(ip.len(), ECHO_FRAME - ETH_HEADER);
    assert_eq!(ip[0], 0x45);
    assert_eq!(ip[12..16], [198, 18, 1, 1]);
    assert_eq!(ip[16..20], TARGET.octets());
    assert_eq!(checksum(&ip[..20], 0), 0);
    assert_eq!(checksum(&ip[20..], 0), 0);
}
