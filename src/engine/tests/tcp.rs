//! TCP sessions through the engine: the state machine of RFC 5382 and RFC 7857 2.2.

use super::*;

/// Timeouts far apart, so that each test shows which one applies.
pub(super) fn tcp_timeouts() -> Timeouts {
    Timeouts {
        tcp_established: 100 * MIN,
        tcp_transitory: 4 * MIN,
        tcp_reset: MIN,
        udp: 5 * MIN,
        icmp: MIN,
    }
}

pub(super) fn tcp_engine() -> Engine {
    let mut c = config((61000, 65535), vec![]);
    c.timeouts = tcp_timeouts();
    Engine::new(c)
}

/// A segment of LAN:40000 -> dst(1):443, window 65535 (no window scaling).
pub(super) fn seg_out(flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    Ipv4Packet::tcp(LAN, dst(1), 40000, 443, b"")
        .flags(flags)
        .seq(seq)
        .ack(ack)
        .build()
}

/// A segment of the remote end back to external port `port` of uplink 0.
pub(super) fn seg_in(port: u16, flags: u8, seq: u32, ack: u32) -> Vec<u8> {
    Ipv4Packet::tcp(dst(1), UPLINK_1, 443, port, b"")
        .flags(flags)
        .seq(seq)
        .ack(ack)
        .build()
}

/// Opens LAN:40000 -> dst(1):443 on uplink 0 as `established` does (the LAN host's ISS 100,
/// the server's 4999), at t(0) to t(3); returns the external port.
pub(super) fn open_tcp(e: &impl Gateway) -> u16 {
    let syn = &mut seg_out(tcp_flags::SYN, 100, 0);
    assert_eq!(out(e, t(0), syn), Verdict::Uplink(0));
    let port = read_u16(syn, 20);
    assert_eq!(
        inb(
            e,
            t(1),
            0,
            &mut seg_in(port, tcp_flags::SYN | ACK, 4999, 101)
        ),
        Verdict::Tun
    );
    assert_eq!(
        out(e, t(2), &mut seg_out(ACK, 101, 5000)),
        Verdict::Uplink(0)
    );
    assert_eq!(
        inb(e, t(3), 0, &mut seg_in(port, ACK, 5000, 101)),
        Verdict::Tun
    );
    port
}

/// Whether the flow is still there at `at` (after expiring what is idle by then).
pub(super) fn alive_at(e: &Engine, at: u64) -> bool {
    e.expire(t(at), &CarriedFlows::NONE);
    e.flow_count() == 1
}

#[test]
fn a_tcp_session_lives_as_long_as_its_phase_says() {
    let to = tcp_timeouts();
    // a SYN nobody answers: the transitory timeout
    let e = tcp_engine();
    out(&e, t(0), &mut seg_out(tcp_flags::SYN, 100, 0));
    assert!(alive_at(&e, to.tcp_transitory - 1));
    assert!(!alive_at(&e, to.tcp_transitory));
    assert_eq!(e.mapping_count(), 0, "its port went back");
    // open: the established one
    let e = tcp_engine();
    open_tcp(&e);
    assert!(alive_at(&e, 3 + to.tcp_established - 1));
    assert!(!alive_at(&e, 3 + to.tcp_established));
    // closed one way (half closed, RFC 5382 section 5): still the established one
    let e = tcp_engine();
    let port = open_tcp(&e);
    out(&e, t(10), &mut seg_out(ACK | tcp_flags::FIN, 101, 5000));
    assert!(alive_at(&e, 10 + to.tcp_transitory));
    // both ways: the transitory one again
    inb(
        &e,
        t(20),
        0,
        &mut seg_in(port, ACK | tcp_flags::FIN, 5000, 102),
    );
    assert!(alive_at(&e, 20 + to.tcp_transitory - 1));
    assert!(!alive_at(&e, 20 + to.tcp_transitory));
}

#[test]
fn a_reset_outside_the_window_is_forwarded_and_changes_nothing() {
    let to = tcp_timeouts();
    let e = tcp_engine();
    let port = open_tcp(&e);
    // the LAN host expects 5000 next, in a window of 65,535 bytes
    for seq in [4999, 5000 + 65_535, 5000 + (1 << 31)] {
        let rst = &mut seg_in(port, tcp_flags::RST, seq, 0);
        assert_eq!(inb(&e, t(10), 0, rst), Verdict::Tun, "the endpoint decides");
        assert_eq!(read_u16(rst, 22), 40000, "translated");
    }
    assert!(alive_at(&e, 10 + to.tcp_reset), "still established");
    // in the window: the session is kept for the reset timeout (RFC 7857 2.2), then ends
    let rst = &mut seg_in(port, tcp_flags::RST, 5000 + 65_534, 0);
    assert_eq!(inb(&e, t(20), 0, rst), Verdict::Tun);
    assert!(alive_at(&e, 20 + to.tcp_reset - 1));
    assert!(!alive_at(&e, 20 + to.tcp_reset));
    assert_eq!(e.mapping_count(), 0);
    // from the LAN host, checked against the remote end's window (it expects 101)
    let e = tcp_engine();
    open_tcp(&e);
    let rst = &mut seg_out(tcp_flags::RST | ACK, 100, 5000);
    assert_eq!(out(&e, t(10), rst), Verdict::Uplink(0));
    assert!(alive_at(&e, 10 + to.tcp_reset), "one before the window");
    out(&e, t(20), &mut seg_out(tcp_flags::RST | ACK, 101, 5000));
    assert!(!alive_at(&e, 20 + to.tcp_reset));
}

#[test]
fn a_reset_answering_a_syn_must_acknowledge_it() {
    let to = tcp_timeouts();
    let e = tcp_engine();
    let syn = &mut seg_out(tcp_flags::SYN, 100, 0);
    out(&e, t(0), syn);
    let port = read_u16(syn, 20);
    // a blind reset does not know the SYN's sequence number
    inb(&e, t(1), 0, &mut seg_in(port, tcp_flags::RST | ACK, 0, 7));
    inb(&e, t(1), 0, &mut seg_in(port, tcp_flags::RST, 0, 0));
    e.expire(t(1 + to.tcp_reset), &CarriedFlows::NONE);
    assert_eq!(e.flow_count(), 1);
    // the closed port's answer does (RFC 9293 3.10.7.3)
    inb(&e, t(2), 0, &mut seg_in(port, tcp_flags::RST | ACK, 0, 101));
    assert!(!alive_at(&e, 2 + to.tcp_reset));
}

#[test]
fn a_new_syn_on_a_closed_session_starts_it_over_with_the_same_mapping() {
    let to = tcp_timeouts();
    let e = tcp_engine();
    let port = open_tcp(&e);
    out(&e, t(10), &mut seg_out(ACK | tcp_flags::FIN, 101, 5000));
    inb(
        &e,
        t(11),
        0,
        &mut seg_in(port, ACK | tcp_flags::FIN, 5000, 102),
    );
    out(&e, t(12), &mut seg_out(ACK, 102, 5001));
    // the same four-tuple opens again (a client reusing its port)
    let syn = &mut seg_out(tcp_flags::SYN, 90_000, 0);
    assert_eq!(out(&e, t(20), syn), Verdict::Uplink(0));
    assert_eq!(read_u16(syn, 20), port, "the same mapping");
    let synack = &mut seg_in(port, tcp_flags::SYN | ACK, 70_000, 90_001);
    assert_eq!(inb(&e, t(21), 0, synack), Verdict::Tun);
    out(&e, t(22), &mut seg_out(ACK, 90_001, 70_001));
    // established again: it outlives the transitory timeout that held it while closing
    assert!(alive_at(&e, 22 + to.tcp_transitory));
    assert!(!alive_at(&e, 22 + to.tcp_established));
    // and after a reset too
    let e = tcp_engine();
    let port = open_tcp(&e);
    inb(&e, t(10), 0, &mut seg_in(port, tcp_flags::RST, 5000, 0));
    let syn = &mut seg_out(tcp_flags::SYN, 90_000, 0);
    assert_eq!(out(&e, t(20), syn), Verdict::Uplink(0));
    assert_eq!(read_u16(syn, 20), port);
    inb(
        &e,
        t(21),
        0,
        &mut seg_in(port, tcp_flags::SYN | ACK, 70_000, 90_001),
    );
    out(&e, t(22), &mut seg_out(ACK, 90_001, 70_001));
    assert!(alive_at(&e, 22 + to.tcp_transitory));
}

#[test]
fn a_simultaneous_open_goes_through_and_is_established() {
    let to = tcp_timeouts();
    let e = tcp_engine();
    let syn = &mut seg_out(tcp_flags::SYN, 100, 0);
    assert_eq!(out(&e, t(0), syn), Verdict::Uplink(0));
    let port = read_u16(syn, 20);
    // the remote end's own SYN crosses ours: it reaches the LAN host (RFC 5382 REQ-2)
    let their_syn = &mut seg_in(port, tcp_flags::SYN, 5000, 0);
    assert_eq!(inb(&e, t(1), 0, their_syn), Verdict::Tun);
    assert_eq!(read_u16(their_syn, 22), 40000);
    let synack = &mut seg_out(tcp_flags::SYN | ACK, 100, 5001);
    assert_eq!(out(&e, t(2), synack), Verdict::Uplink(0));
    let back = &mut seg_in(port, tcp_flags::SYN | ACK, 5000, 101);
    assert_eq!(inb(&e, t(3), 0, back), Verdict::Tun);
    assert!(alive_at(&e, 3 + to.tcp_transitory));
}
