//! The flow table, and what a flow is kept for.

use super::session::tests::established;
use super::*;
use crate::engine::Timestamp;
use crate::engine::wire::PROTO_UDP;
use TcpPhase::*;

fn flow(proto: u8, port: u16) -> Flow {
    Flow {
        key: FlowKey {
            int_addr: 1,
            rem_addr: 2,
            int_port: port,
            rem_port: 80,
            proto,
        },
        last_seen: Timestamp::from_millis(0).stamp(),
        hits: 0,
        on_fast_path: false,
        bytes: 0,
        epoch: 0,
        ext_port: 61000 + port,
        uplink: 0,
        tcp: TcpState::default(),
    }
}

#[test]
fn found_from_both_directions_and_expired_by_protocol_timeout() {
    let t = Timeouts::default();
    let mut table = FlowTable::default();
    let udp = flow(PROTO_UDP, 1);
    let mut tcp = flow(PROTO_TCP, 2);
    tcp.tcp = established();
    table.insert(udp);
    table.insert(tcp);
    assert_eq!(table.get_reply_mut(&udp.reply_key()).unwrap().key, udp.key);
    assert_eq!(table.get_mut(&tcp.key).unwrap().ext_port, 61002);

    let mut ended = vec![];
    table.expire(
        Timestamp::from_millis(t.udp),
        &t,
        Scale::FULL,
        |_| unreachable!("no flow is on the fast path"),
        |f, _| ended.push(f.key.int_port),
    );
    assert_eq!(ended, [1]);
    assert!(table.get_mut(&udp.key).is_none());
    assert!(table.get_reply_mut(&udp.reply_key()).is_none());
    assert_eq!(table.len(), 1);

    // the freed slot is reused
    table.insert(flow(PROTO_UDP, 3));
    assert_eq!(table.slots.len(), 2);

    let removed = table.remove(&tcp.key).expect("there");
    assert_eq!(removed.key, tcp.key);
    assert!(table.get_reply_mut(&tcp.reply_key()).is_none());
    let mut seen = vec![];
    table.for_each_mut(|f| seen.push(f.key.int_port));
    assert_eq!(seen, [3]);
}

#[test]
fn a_flow_on_the_fast_path_lives_as_long_as_the_fast_path_carries_it() {
    let t = Timeouts::default();
    let mut table = FlowTable::default();
    let mut f = flow(PROTO_UDP, 1);
    f.on_fast_path = true;
    table.insert(f);
    let mut asked = 0;
    let mut ended = 0;
    // idle for the engine, but the fast path carried a packet 1 s ago: kept and refreshed
    table.expire(
        Timestamp::from_millis(t.udp),
        &t,
        Scale::FULL,
        |_| {
            asked += 1;
            Some(1_000)
        },
        |_, _| ended += 1,
    );
    assert_eq!((asked, ended), (1, 0));
    // refreshed to 1 s before that expiry: not even asked until the timeout runs out again
    table.expire(
        Timestamp::from_millis(2 * t.udp - 1_001),
        &t,
        Scale::FULL,
        |_| unreachable!(),
        |_, _| ended += 1,
    );
    assert_eq!(ended, 0);
    // the fast path saw nothing since (or never): it ends
    table.expire(
        Timestamp::from_millis(2 * t.udp - 1_000),
        &t,
        Scale::FULL,
        |_| None,
        |_, _| ended += 1,
    );
    assert_eq!(ended, 1);
}

#[test]
fn a_flow_entry_stays_small() {
    // the TCP state and both receive windows in 15 bytes, the key packed in 13: 48 per
    // flow with its byte count and address epoch
    assert_eq!(std::mem::size_of::<TcpState>(), 15);
    assert_eq!(std::mem::size_of::<FlowKey>(), 13);
    assert_eq!(std::mem::size_of::<Flow>(), 48);
}

#[test]
fn each_phase_has_its_timeout() {
    let t = Timeouts {
        tcp_established: 1,
        tcp_transitory: 2,
        tcp_reset: 3,
        udp: 4,
        icmp: 5,
    };
    let timeouts = [
        (SynOut, 2),
        (SynIn, 2),
        (PickedUp, 2),
        (PickedUpIn, 2),
        (SynBoth, 2),
        (SynAckIn, 2),
        (SynAckOut, 2),
        (Established, 1),
        (FinOut, 1),
        (FinIn, 1),
        (Closing, 2),
        (Closed, 2),
        (Reset, 3),
    ];
    for (phase, timeout) in timeouts {
        assert_eq!(phase.timeout(&t), timeout, "{phase:?}");
    }
    // and a flow's timeout is its protocol's, for TCP its phase's
    let mut f = flow(PROTO_TCP, 1);
    f.tcp = established();
    assert_eq!(f.idle_timeout(&t), 1);
    assert_eq!(flow(PROTO_UDP, 1).idle_timeout(&t), 4);
    assert_eq!(flow(PROTO_ICMP, 1).idle_timeout(&t), 5);
    let defaults = Timeouts::default();
    assert!(defaults.tcp_established >= 124 * 60_000, "RFC 5382 REQ-5");
    assert_eq!(defaults.tcp_reset, 4 * 60_000, "RFC 7857 2.2");
}
