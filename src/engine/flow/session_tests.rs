//! The session state machine, segment by segment.

use super::*;
use TcpPhase::*;

fn seg(flags: u8, seq: u32, ack: u32, window: u16) -> Segment {
    Segment {
        flags,
        seq,
        ack,
        window,
        wscale: None,
    }
}

fn syn(seq: u32, wscale: Option<u8>) -> Segment {
    Segment {
        wscale,
        ..seg(tcp::SYN, seq, 0, 64240)
    }
}

fn syn_ack(seq: u32, ack: u32, wscale: Option<u8>) -> Segment {
    Segment {
        wscale,
        ..seg(tcp::SYN | tcp::ACK, seq, ack, 65160)
    }
}

const ACK: u8 = tcp::ACK;

/// The LAN host's ISS is 100, the remote's 5000; both scale windows by 7 (x128); after
/// the handshake the LAN host's window field says 1000 (128,000 bytes), the remote's 500.
pub(crate) fn established() -> TcpState {
    let mut t = TcpState::opened(&syn(100, Some(7)));
    assert_eq!(t.phase(), SynOut);
    assert_eq!(
        t.update(Direction::Inbound, &syn_ack(5000, 101, Some(7))),
        SessionChange::None
    );
    assert_eq!(t.phase(), SynAckIn);
    t.update(Direction::Outbound, &seg(ACK, 101, 5001, 1000));
    assert_eq!(t.phase(), Established);
    t.update(Direction::Inbound, &seg(ACK, 5001, 101, 500));
    t
}

fn phases(t: &mut TcpState, steps: &[(Direction, Segment, TcpPhase)]) {
    for (i, (dir, s, phase)) in steps.iter().enumerate() {
        t.update(*dir, s);
        assert_eq!(t.phase(), *phase, "step {i}: {dir:?} {s:?}");
    }
}

#[test]
fn a_handshake_then_a_close_from_the_lan() {
    let mut t = established();
    assert!(t.is_steady() && t.is_answered() && !t.is_closed());
    phases(
        &mut t,
        &[
            // data both ways changes nothing
            (Direction::Outbound, seg(ACK, 101, 5001, 1000), Established),
            (Direction::Inbound, seg(ACK, 5001, 111, 500), Established),
            (
                Direction::Outbound,
                seg(ACK | tcp::FIN, 111, 5001, 1000),
                FinOut,
            ),
            // the remote acknowledges the FIN, and may go on sending: half closed
            (Direction::Inbound, seg(ACK, 5001, 112, 500), FinOut),
            (Direction::Inbound, seg(ACK, 5001, 112, 500), FinOut),
            (Direction::Outbound, seg(ACK, 112, 5101, 1000), FinOut),
            (
                Direction::Inbound,
                seg(ACK | tcp::FIN, 5101, 112, 500),
                Closing,
            ),
            // a retransmitted FIN is no acknowledgement of the other one
            (
                Direction::Inbound,
                seg(ACK | tcp::FIN, 5101, 112, 500),
                Closing,
            ),
            (Direction::Outbound, seg(ACK, 112, 5102, 1000), Closed),
        ],
    );
    assert!(t.is_closed() && !t.is_steady());
}

#[test]
fn a_close_from_the_remote_and_a_simultaneous_one() {
    let mut t = established();
    phases(
        &mut t,
        &[
            (
                Direction::Inbound,
                seg(ACK | tcp::FIN, 5001, 101, 500),
                FinIn,
            ),
            (
                Direction::Outbound,
                seg(ACK | tcp::FIN, 101, 5002, 1000),
                Closing,
            ),
            (Direction::Inbound, seg(ACK, 5002, 102, 500), Closed),
        ],
    );
    // FINs that cross: neither acknowledges the other yet
    let mut t = established();
    phases(
        &mut t,
        &[
            (
                Direction::Outbound,
                seg(ACK | tcp::FIN, 101, 5001, 1000),
                FinOut,
            ),
            (
                Direction::Inbound,
                seg(ACK | tcp::FIN, 5001, 101, 500),
                Closing,
            ),
            (Direction::Inbound, seg(ACK, 5002, 102, 500), Closed),
        ],
    );
}

#[test]
fn a_simultaneous_open_is_established_once_both_syns_are_acknowledged() {
    // each end sends a SYN, then a SYN-ACK (RFC 9293 figure 8), in either order
    for lan_first in [true, false] {
        let mut t = TcpState::opened(&syn(100, Some(7)));
        t.update(Direction::Inbound, &syn(5000, Some(7)));
        assert_eq!(t.phase(), SynBoth);
        assert!(t.is_answered() && !t.is_steady());
        let out = (Direction::Outbound, syn_ack(100, 5001, Some(7)));
        let back = (Direction::Inbound, syn_ack(5000, 101, Some(7)));
        let (first, second, between) = if lan_first {
            (out, back, SynAckOut)
        } else {
            (back, out, SynAckIn)
        };
        phases(
            &mut t,
            &[
                (first.0, first.1, between),
                (second.0, second.1, Established),
            ],
        );
    }
}

#[test]
fn only_a_syn_answered_in_kind_counts_as_an_answer() {
    // a bare acknowledgement to a SYN (a stale connection at the remote end) opens nothing
    let mut t = TcpState::opened(&syn(100, None));
    t.update(Direction::Inbound, &seg(ACK, 9000, 77, 500));
    assert_eq!(t.phase(), SynOut);
    assert!(!t.is_answered());
    // retransmitted SYNs neither
    t.update(Direction::Outbound, &syn(100, None));
    assert_eq!(t.phase(), SynOut);
    // a reopened session: the remote's SYN, the LAN host's SYN-ACK, the remote's ACK
    let mut t = established();
    t.update(Direction::Inbound, &seg(tcp::RST, 5001, 0, 0));
    assert_eq!(
        t.update(Direction::Inbound, &syn(8000, None)),
        SessionChange::Restarted
    );
    phases(
        &mut t,
        &[
            (Direction::Inbound, syn(8000, None), SynIn),
            (Direction::Outbound, syn_ack(300, 8001, None), SynAckOut),
            (Direction::Outbound, syn_ack(300, 8001, None), SynAckOut),
            (Direction::Inbound, seg(ACK, 8001, 301, 500), Established),
        ],
    );
}

#[test]
fn a_session_picked_up_mid_way_is_established_once_answered() {
    // what wanlb sees of a connection after a restart, or of a UDP flow
    for first in [seg(ACK, 7, 9, 100), Segment::default()] {
        let mut t = TcpState::opened(&first);
        assert_eq!(t.phase(), PickedUp);
        assert!(!t.is_answered());
        t.update(Direction::Outbound, &first);
        assert_eq!(t.phase(), PickedUp);
        t.update(Direction::Inbound, &Segment::default());
        assert!(t.is_steady());
    }
    // closed by its first answer
    let mut t = TcpState::opened(&seg(ACK, 7, 9, 100));
    t.update(Direction::Inbound, &seg(ACK | tcp::FIN, 9, 7, 100));
    assert_eq!(t.phase(), FinIn);
    // the LAN host opens anew on that port; a SYN from outside does not
    let mut t = TcpState::opened(&seg(ACK, 7, 9, 100));
    assert_eq!(
        t.update(Direction::Inbound, &syn(1, None)),
        SessionChange::None
    );
    assert_eq!(t.phase(), PickedUp);
    assert_eq!(
        t.update(Direction::Outbound, &syn(1, None)),
        SessionChange::Restarted
    );
    assert_eq!(t.phase(), SynOut);
}

#[test]
fn a_session_opened_from_outside_is_established_by_the_lan_hosts_answer() {
    // a connection to a forwarded port: the remote's SYN, the LAN host's SYN-ACK, the
    // remote's ACK
    let mut t = TcpState::opened_by_remote(&syn(8000, Some(7)));
    assert_eq!(t.phase(), SynIn);
    assert!(!t.is_answered());
    phases(
        &mut t,
        &[
            (Direction::Inbound, syn(8000, Some(7)), SynIn),
            (Direction::Outbound, syn_ack(300, 8001, Some(7)), SynAckOut),
            (Direction::Inbound, seg(ACK, 8001, 301, 500), Established),
        ],
    );
    assert!(t.is_steady());
    // the LAN host's receive point is known from the SYN: a reset to it is judged
    assert_eq!(t.receive_point(Direction::Outbound), Some(8001));
    // a closed port answers the SYN with a reset that acknowledges it
    let mut refused = TcpState::opened_by_remote(&syn(8000, None));
    assert_eq!(
        refused.update(Direction::Outbound, &seg(tcp::RST | ACK, 0, 8001, 0)),
        SessionChange::Reset
    );
    // UDP: established once the LAN host answers, not by more from outside
    let mut u = TcpState::opened_by_remote(&Segment::default());
    assert_eq!(u.phase(), PickedUpIn);
    u.update(Direction::Inbound, &Segment::default());
    assert!(!u.is_answered());
    u.update(Direction::Outbound, &Segment::default());
    assert!(u.is_steady());
}

#[test]
fn a_reset_counts_only_in_the_window_of_the_side_it_is_sent_to() {
    // the LAN host expects 5001 next, in a window of 1000 << 7 = 128,000 bytes
    let to_lan = |seq| {
        let mut t = established();
        let change = t.update(Direction::Inbound, &seg(tcp::RST, seq, 0, 0));
        assert_eq!(change == SessionChange::Reset, t.phase() == Reset);
        change == SessionChange::Reset
    };
    assert!(to_lan(5001), "at RCV.NXT");
    assert!(to_lan(5001 + 127_999), "at the window's last byte");
    assert!(!to_lan(5001 + 128_000), "just past the window");
    assert!(!to_lan(5000), "just before it");
    assert!(!to_lan(5001 + (1 << 31)), "half the sequence space away");
    // the remote end expects 101 next, in a window of 500 << 7 = 64,000 bytes
    let to_remote = |seq| {
        let mut t = established();
        t.update(Direction::Outbound, &seg(tcp::RST | ACK, seq, 5001, 0)) == SessionChange::Reset
    };
    assert!(to_remote(101) && to_remote(101 + 63_999));
    assert!(!to_remote(101 + 64_000) && !to_remote(100));
    // the reset that is taken sets the session's timeout
    let t = Timeouts::default();
    let mut s = established();
    assert_eq!(s.timeout(&t), t.tcp_established);
    s.update(Direction::Inbound, &seg(tcp::RST, 6000, 0, 0));
    assert!(s.is_reset_or_resetting() && !s.is_steady());
    assert_eq!(s.timeout(&t), t.tcp_reset);
    // another one changes nothing
    assert_eq!(
        s.update(Direction::Outbound, &seg(tcp::RST, 101, 0, 0)),
        SessionChange::None
    );
}

#[test]
fn a_zero_window_takes_a_reset_at_its_edge_only() {
    let mut t = established();
    t.update(Direction::Outbound, &seg(ACK, 101, 5001, 0));
    assert_eq!(
        t.update(Direction::Inbound, &seg(tcp::RST, 5002, 0, 0)),
        SessionChange::None
    );
    assert_eq!(
        t.update(Direction::Inbound, &seg(tcp::RST, 5001, 0, 0)),
        SessionChange::Reset
    );
}

#[test]
fn windows_are_scaled_only_when_both_syns_ask_for_it() {
    // the remote's SYN-ACK carries no window scale: 1000 means 1000 bytes
    let mut t = TcpState::opened(&syn(100, Some(7)));
    t.update(Direction::Inbound, &syn_ack(5000, 101, None));
    t.update(Direction::Outbound, &seg(ACK, 101, 5001, 1000));
    let mut far = t;
    assert_eq!(
        far.update(Direction::Inbound, &seg(tcp::RST, 6001, 0, 0)),
        SessionChange::None
    );
    assert_eq!(
        t.update(Direction::Inbound, &seg(tcp::RST, 6000, 0, 0)),
        SessionChange::Reset
    );
    // while the LAN host has sent only its SYN's window, unscaled, that one counts
    let mut t = TcpState::opened(&syn(100, Some(7)));
    t.update(Direction::Inbound, &syn_ack(5000, 101, Some(7)));
    let mut far = t;
    assert_eq!(
        far.update(Direction::Inbound, &seg(tcp::RST, 5001 + 64_240, 0, 0)),
        SessionChange::None
    );
    assert_eq!(
        t.update(Direction::Inbound, &seg(tcp::RST, 5001 + 64_239, 0, 0)),
        SessionChange::Reset
    );
}

#[test]
fn a_reset_to_a_syn_must_acknowledge_it() {
    // RFC 9293 3.10.7.3: in SYN-SENT, a reset is acceptable if its ACK acknowledges the SYN
    let answer = |s: Segment| {
        let mut t = TcpState::opened(&syn(100, None));
        t.update(Direction::Inbound, &s) == SessionChange::Reset
    };
    assert!(answer(seg(tcp::RST | ACK, 0, 101, 0)));
    assert!(!answer(seg(tcp::RST | ACK, 0, 102, 0)));
    assert!(!answer(seg(tcp::RST, 0, 101, 0)), "no ACK: no way to tell");
    // a retransmitted SYN with a new ISS is the one to acknowledge
    let mut t = TcpState::opened(&syn(100, None));
    t.update(Direction::Outbound, &syn(700, None));
    assert_eq!(
        t.update(Direction::Inbound, &seg(tcp::RST | ACK, 0, 701, 0)),
        SessionChange::Reset
    );
}

#[test]
fn acknowledgements_only_move_forward() {
    let mut t = established();
    // a late segment with an older acknowledgement does not pull the window back
    t.update(Direction::Outbound, &seg(ACK, 101, 4001, 1000));
    assert_eq!(t.receive_point(Direction::Outbound), Some(5001));
    t.update(Direction::Outbound, &seg(ACK, 101, 9001, 1000));
    assert_eq!(t.receive_point(Direction::Outbound), Some(9001));
    // a SYN once open is not the connection's: it predicts nothing
    t.update(Direction::Inbound, &syn(123, None));
    assert_eq!(t.receive_point(Direction::Outbound), Some(9001));
    assert_eq!(t.phase(), Established);
    assert_eq!(
        t.update(Direction::Inbound, &seg(tcp::RST, 9001 + 100_000, 0, 0)),
        SessionChange::Reset,
        "and its missing window scale option does not unscale the windows"
    );
}

#[test]
fn a_syn_starts_a_closed_or_reset_session_over_and_nothing_else() {
    let closed = {
        let mut t = established();
        phases(
            &mut t,
            &[
                (
                    Direction::Inbound,
                    seg(ACK | tcp::FIN, 5001, 101, 500),
                    FinIn,
                ),
                (
                    Direction::Outbound,
                    seg(ACK | tcp::FIN, 101, 5002, 1000),
                    Closing,
                ),
            ],
        );
        t
    };
    let reset = {
        let mut t = established();
        t.update(Direction::Outbound, &seg(tcp::RST, 101, 0, 0));
        assert_eq!(t.phase(), Reset);
        t
    };
    let mut done = closed;
    done.update(Direction::Inbound, &seg(ACK, 5002, 102, 500));
    assert_eq!(done.phase(), Closed);
    for (t, dir, phase) in [
        (closed, Direction::Outbound, SynOut),
        (done, Direction::Outbound, SynOut),
        (reset, Direction::Outbound, SynOut),
        (done, Direction::Inbound, SynIn),
        (reset, Direction::Inbound, SynIn),
    ] {
        let mut t = t;
        t.set_resetting();
        assert_eq!(
            t.update(dir, &syn(40_000, Some(2))),
            SessionChange::Restarted
        );
        assert_eq!(t.phase(), phase);
        assert!(t.is_resetting(), "a dying uplink's session stays dying");
        // with what the new SYN says, not what the old connection said
        assert_eq!(t.receive_point(dir.other()), Some(40_001));
        assert_eq!(t.receive_point(dir), None);
    }
    // an open or half-closed session takes a SYN as the endpoint will: not as a new one
    let mut t = established();
    for phase in [Established, FinOut] {
        assert_eq!(
            t.update(Direction::Outbound, &syn(1, None)),
            SessionChange::None
        );
        assert_eq!(
            t.update(Direction::Inbound, &syn(1, None)),
            SessionChange::None
        );
        assert_eq!(t.phase(), phase);
        t.update(Direction::Outbound, &seg(ACK | tcp::FIN, 101, 5001, 1000));
    }
}

#[test]
fn a_reset_the_other_end_did_not_take_is_undone_when_its_sender_speaks_again() {
    // a forged reset from outside, in the window: the LAN host answers with a challenge
    // ACK (RFC 5961), the real remote end goes on
    let mut t = established();
    assert_eq!(
        t.update(Direction::Inbound, &seg(tcp::RST, 5001, 0, 0)),
        SessionChange::Reset
    );
    t.update(Direction::Outbound, &seg(ACK, 101, 5001, 1000));
    assert_eq!(t.phase(), Reset, "the LAN host's answer proves nothing");
    t.update(Direction::Inbound, &seg(ACK, 5001, 101, 500));
    assert_eq!(t.phase(), Established);
    // the same for a reset from the LAN host
    let mut t = established();
    t.update(Direction::Outbound, &seg(tcp::RST, 101, 0, 0));
    t.update(Direction::Inbound, &seg(ACK, 5001, 101, 500));
    assert_eq!(t.phase(), Reset);
    t.update(Direction::Outbound, &seg(ACK, 101, 5001, 1000));
    assert_eq!(t.phase(), Established);
}

#[test]
fn what_the_fast_path_carried_replaces_what_the_engine_saw() {
    let mut t = established();
    // the fast path carried the LAN host's later acknowledgements: 1 MB further
    let mut stale = t;
    assert_eq!(
        stale.update(Direction::Inbound, &seg(tcp::RST, 1_005_001, 0, 0)),
        SessionChange::None
    );
    t.refresh(
        Direction::Outbound,
        Some(Acked {
            ack: 1_005_001,
            window: 10,
        }),
    );
    assert_eq!(t.receive_point(Direction::Outbound), Some(1_005_001));
    // its window is scaled like any other (10 << 7)
    let mut past = t;
    assert_eq!(
        past.update(Direction::Inbound, &seg(tcp::RST, 1_005_001 + 1280, 0, 0)),
        SessionChange::None
    );
    // nothing carried: kept as it was
    t.refresh(Direction::Outbound, None);
    assert_eq!(t.receive_point(Direction::Outbound), Some(1_005_001));
    assert_eq!(
        t.update(Direction::Inbound, &seg(tcp::RST, 1_005_001 + 1279, 0, 0)),
        SessionChange::Reset
    );
    // 3 GB on, which in sequence space looks like 1 GB back: taken all the same
    let far = 5001u32.wrapping_add(3 << 30);
    let mut t = established();
    t.refresh(
        Direction::Outbound,
        Some(Acked {
            ack: far,
            window: 10,
        }),
    );
    assert_eq!(t.receive_point(Direction::Outbound), Some(far));
}

#[test]
fn the_window_scale_option_is_read_from_a_syn() {
    use wanlb_testkit::Ipv4Packet as Builder;
    let with = |options: &[u8], flags: u8| {
        let mut p = Builder::tcp([198, 18, 3, 10], [198, 19, 0, 1], 40000, 443, b"")
            .flags(flags)
            .seq(77)
            .ack(88)
            .window(4321)
            .build();
        p.splice(40..40, options.iter().copied());
        p[32] = u8::try_from((20 + options.len()) / 4 * 16).unwrap();
        let total = u16::try_from(p.len()).unwrap();
        p[2..4].copy_from_slice(&total.to_be_bytes());
        Segment::of(&Ipv4Packet::new_checked(&p[..]).unwrap())
    };
    // MSS, SACK permitted, timestamps, NOP, window scale 7: as Linux sends it
    let linux = [
        2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
    ];
    let s = with(&linux, tcp::SYN);
    assert_eq!((s.seq, s.ack, s.window, s.wscale), (77, 88, 4321, Some(7)));
    assert_eq!(
        with(&[1, 3, 3, 15], tcp::SYN).wscale,
        Some(14),
        "at most 14"
    );
    assert_eq!(with(&[2, 4, 5, 0xb4], tcp::SYN).wscale, None);
    assert_eq!(with(&[0, 3, 3, 7], tcp::SYN).wscale, None, "after the end");
    assert_eq!(with(&[3, 3, 7, 0], ACK).wscale, None, "only in a SYN");
    // an option whose length runs past the header is the end of it
    assert_eq!(with(&[1, 1, 8, 9], tcp::SYN).wscale, None);
    assert_eq!(with(&[2, 0, 3, 3], tcp::SYN).wscale, None);
    // UDP has none of it
    let p = Builder::udp([198, 18, 3, 10], [198, 19, 0, 1], 1, 2, b"x").build();
    let ip = Ipv4Packet::new_checked(&p[..]).unwrap();
    assert_eq!(Segment::of(&ip), Segment::default());
}
