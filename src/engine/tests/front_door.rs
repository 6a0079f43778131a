//! The engine as the office's front door: only the LAN's own sources are translated, ICMP
//! errors are taken only with a right checksum (RFC 5508 REQ-3), and one from the LAN only
//! about a packet wanlb delivered, back to its sender.

use super::config;
use super::*;
use wanlb_testkit::Ipv4Packet;

const LAN_HOST: [u8; 4] = [198, 18, 3, 10];
const ROUTED_HOST: [u8; 4] = [198, 18, 50, 1];
const SERVER: [u8; 4] = [198, 19, 0, 1];
const UPLINK_1: [u8; 4] = [198, 18, 1, 1];
const ELSEWHERE: [u8; 4] = [198, 19, 0, 99];

fn net(addr: [u8; 4], len: u8) -> Prefix {
    Prefix::new(u32::from_be_bytes(addr), len).unwrap()
}

fn engine() -> Engine {
    Engine::new(config((61000, 61000), vec![])).with_lan_nets(vec![net([198, 18, 3, 0], 24)])
}

fn out(e: &Engine, p: &mut [u8]) -> Verdict {
    e.outbound(Timestamp::from_millis(0), p, &mut L4Checksum::Complete)
}

#[test]
fn sources_outside_the_lan_networks_are_dropped_and_counted() {
    let e = engine();
    let mut spoofed = Ipv4Packet::udp(ROUTED_HOST, SERVER, 5000, 53, b"q").build();
    assert_eq!(out(&e, &mut spoofed), Verdict::Drop(DropReason::NotFromLan));
    assert_eq!(e.counters().drop_count(DropReason::NotFromLan), 1);
    assert_eq!(e.mapping_count(), 0, "no port taken for it");
    // an ICMP error claiming to come from outside the LAN is no better
    let quoted = Ipv4Packet::udp(SERVER, ROUTED_HOST, 53, 5000, b"a").build();
    let mut error = Ipv4Packet::icmp(ROUTED_HOST, SERVER, 3, 3, [0; 4], &quoted[..28]).build();
    assert_eq!(out(&e, &mut error), Verdict::Drop(DropReason::NotFromLan));
    // the LAN's own hosts go out
    let mut own = Ipv4Packet::udp(LAN_HOST, SERVER, 5000, 53, b"q").build();
    assert_eq!(out(&e, &mut own), Verdict::Uplink(0));

    // a routed LAN behind another router, once named, is translated too
    let e = Engine::new(config((61000, 61000), vec![]))
        .with_lan_nets(vec![net([198, 18, 3, 0], 24), net([198, 18, 50, 0], 24)]);
    let mut routed = Ipv4Packet::udp(ROUTED_HOST, SERVER, 5000, 53, b"q").build();
    assert_eq!(out(&e, &mut routed), Verdict::Uplink(0));
}

#[test]
fn icmp_errors_with_a_wrong_checksum_are_dropped_not_repaired() {
    let e = engine();
    let mut request = Ipv4Packet::udp(LAN_HOST, SERVER, 5000, 53, b"q").build();
    assert_eq!(out(&e, &mut request), Verdict::Uplink(0));
    // the server's port unreachable, quoting the translated datagram
    let error = |corrupt: bool| {
        let mut p = Ipv4Packet::icmp(SERVER, UPLINK_1, 3, 3, [0; 4], &request[..28]).build();
        if corrupt {
            p[22] ^= 0x40;
        }
        p
    };
    let now = Timestamp::from_millis(1);
    let mut bad = error(true);
    let v = e.inbound(now, 0, &mut bad, &mut L4Checksum::Complete);
    assert_eq!(v, Verdict::Drop(DropReason::BadIcmpChecksum));
    assert_eq!(e.counters().drop_count(DropReason::BadIcmpChecksum), 1);
    let mut good = error(false);
    assert_eq!(
        e.inbound(now, 0, &mut good, &mut L4Checksum::Complete),
        Verdict::Tun
    );
    // the same error, claiming to come from a LAN neighbour: forged
    let mut forged = Ipv4Packet::icmp(LAN_HOST, UPLINK_1, 3, 3, [0; 4], &request[..28]).build();
    assert_eq!(
        e.inbound(now, 0, &mut forged, &mut L4Checksum::Complete),
        Verdict::Drop(DropReason::LanSourceFromUplink)
    );

    // and from the LAN: a host's port unreachable about a reply wanlb delivered
    let reply = Ipv4Packet::udp(SERVER, LAN_HOST, 53, 5000, b"a").build();
    let mut lan_error = Ipv4Packet::icmp(LAN_HOST, SERVER, 3, 3, [0; 4], &reply[..28]).build();
    lan_error[23] ^= 0x01;
    assert_eq!(
        out(&e, &mut lan_error),
        Verdict::Drop(DropReason::BadIcmpChecksum)
    );
}

fn udp(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    Ipv4Packet::udp(src, dst, sport, dport, payload).build()
}

#[test]
fn an_error_from_the_lan_must_quote_a_live_flows_packet_and_go_back_to_its_sender() {
    let e = Engine::new(config((61000, 61000), vec![]));
    let mut request = Ipv4Packet::udp(LAN_HOST, SERVER, 4000, 3478, b"stun").build();
    let Verdict::Uplink(u) = out(&e, &mut request) else {
        panic!("the request did not leave")
    };
    let uplink_addr = [198, 18, u + 1, 1];
    // what the server's answer looked like when wanlb delivered it to the host
    let answer = udp(SERVER, LAN_HOST, 3478, 4000, b"answer");
    let error =
        |dst, quote: &[u8]| Ipv4Packet::icmp(LAN_HOST, dst, 3, 3, [0; 4], &quote[..28]).build();
    // to anyone but the answer's sender: not translated, not sent
    let mut p = error(ELSEWHERE, &answer);
    assert_eq!(out(&e, &mut p), Verdict::Drop(DropReason::ForgedIcmpError));
    assert_eq!(p, error(ELSEWHERE, &answer), "left as it was");
    // quoting a packet of no flow: another port, another server, what the host itself sent
    for quote in [
        udp(SERVER, LAN_HOST, 3479, 4000, b"answer"),
        udp(ELSEWHERE, LAN_HOST, 3478, 4000, b"answer"),
        udp(LAN_HOST, SERVER, 4000, 3478, b"stun"),
    ] {
        let src = [quote[12], quote[13], quote[14], quote[15]];
        let mut p = error(src, &quote);
        assert_eq!(out(&e, &mut p), Verdict::Drop(DropReason::ForgedIcmpError));
    }
    assert_eq!(e.counters().drop_count(DropReason::ForgedIcmpError), 4);
    // the honest one leaves from the uplink's address, quoting what the server sent
    let mut p = error(SERVER, &answer);
    assert_eq!(out(&e, &mut p), Verdict::Uplink(u));
    let sent = udp(SERVER, uplink_addr, 3478, 61000, b"answer");
    let translated = Ipv4Packet::icmp(uplink_addr, SERVER, 3, 3, [0; 4], &sent[..28]).build();
    assert_eq!(p, translated);
}

#[test]
fn a_reply_with_no_hop_left_is_dropped_and_counted_not_handed_to_the_kernel() {
    let e = engine();
    let mut request = Ipv4Packet::udp(LAN_HOST, SERVER, 5556, 7000, b"q").build();
    assert_eq!(out(&e, &mut request), Verdict::Uplink(0));
    let reply = |ttl: u8| {
        let mut p = Ipv4Packet::udp(SERVER, UPLINK_1, 7000, 61000, b"answer").build();
        p[8] = ttl;
        wanlb_testkit::fix_ip_checksum(&mut p);
        p
    };
    // the kernel would end it on the gateway's own hop, and tell the internet the LAN
    // host's address and port in its time exceeded
    for ttl in [1, 0] {
        let mut p = reply(ttl);
        let sent = p.clone();
        assert_eq!(
            e.inbound(
                Timestamp::from_millis(1),
                0,
                &mut p,
                &mut L4Checksum::Complete
            ),
            Verdict::Drop(DropReason::TtlExceeded)
        );
        assert_eq!(p, sent, "not translated");
    }
    assert_eq!(e.counters().drop_count(DropReason::TtlExceeded), 2);
    // one hop left: it reaches the host, its TTL the kernel's to take
    let mut p = reply(2);
    assert_eq!(
        e.inbound(
            Timestamp::from_millis(1),
            0,
            &mut p,
            &mut L4Checksum::Complete
        ),
        Verdict::Tun
    );
    assert_eq!((p[8], &p[16..20]), (2, &LAN_HOST[..]));
}
