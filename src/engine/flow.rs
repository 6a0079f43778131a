//! The flow table: one entry per (protocol, LAN endpoint, remote endpoint), found from
//! either direction.

use ahash::AHashMap;

use super::packet::{PROTO_ICMP, PROTO_TCP, TCP_FIN, TCP_RST};
use super::{Stamp, Timestamp, UplinkId};

/// A flow as the LAN side sees it. For ICMP echo the "port" is the identifier and the remote
/// port is 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey {
    pub int_addr: u32,
    pub rem_addr: u32,
    pub int_port: u16,
    pub rem_port: u16,
    pub proto: u8,
}

/// A flow as a reply on an uplink names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReplyKey {
    pub rem_addr: u32,
    pub rem_port: u16,
    pub ext_port: u16,
    pub proto: u8,
    pub uplink: UplinkId,
}

/// Idle timeouts in milliseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// RFC 5382 REQ-5: at least 2 h 4 min.
    pub tcp_established: u64,
    /// Opening and closing connections (RFC 5382: 4 min).
    pub tcp_transitory: u64,
    /// After a reset.
    pub tcp_reset: u64,
    /// RFC 4787 REQ-5: at least 2 min, 5 min recommended.
    pub udp: u64,
    /// RFC 5508 REQ-1: at least 60 s.
    pub icmp: u64,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            tcp_established: 7_440_000,
            tcp_transitory: 240_000,
            tcp_reset: 10_000,
            udp: 300_000,
            icmp: 60_000,
        }
    }
}

/// What has been seen of a TCP connection: enough to pick a timeout. The table carries it
/// per flow so a full state machine can replace it without changing the layout.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpSeen(u8);

impl TcpSeen {
    const OUT: u8 = 1;
    const IN: u8 = 2;
    const FIN_OUT: u8 = 4;
    const FIN_IN: u8 = 8;
    const RST: u8 = 16;
    /// Its uplink died: the engine is ending it with a reset to the LAN host.
    const RESETTING: u8 = 32;

    pub fn update(&mut self, outbound: bool, flags: u8) {
        let (seen, fin) = if outbound {
            (Self::OUT, Self::FIN_OUT)
        } else {
            (Self::IN, Self::FIN_IN)
        };
        self.0 |= seen;
        if flags & TCP_FIN != 0 {
            self.0 |= fin;
        }
        if flags & TCP_RST != 0 {
            self.0 |= Self::RST;
        }
    }

    pub fn set_resetting(&mut self) {
        self.0 |= Self::RESETTING;
    }

    pub fn is_resetting(self) -> bool {
        self.0 & Self::RESETTING != 0
    }

    pub fn is_reset_or_resetting(self) -> bool {
        self.0 & (Self::RST | Self::RESETTING) != 0
    }

    /// Both directions seen: the LAN host has a connection whose sequence numbers it will
    /// tell when asked.
    pub fn is_answered(self) -> bool {
        self.0 & (Self::OUT | Self::IN) == Self::OUT | Self::IN
    }

    /// FIN seen both ways.
    pub fn is_closed(self) -> bool {
        self.0 & (Self::FIN_OUT | Self::FIN_IN) == Self::FIN_OUT | Self::FIN_IN
    }

    /// Both directions seen, no FIN or RST: nothing left that the engine must watch.
    pub fn is_steady(self) -> bool {
        self.0 & (Self::OUT | Self::IN | Self::FIN_OUT | Self::FIN_IN | Self::RST)
            == Self::OUT | Self::IN
    }

    fn timeout(self, t: &Timeouts) -> u64 {
        let has = |bits: u8| self.0 & bits == bits;
        if has(Self::RST) {
            t.tcp_reset
        } else if has(Self::FIN_OUT | Self::FIN_IN) || !has(Self::OUT | Self::IN) {
            t.tcp_transitory
        } else {
            t.tcp_established
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub key: FlowKey,
    pub last_seen: Stamp,
    pub ext_port: u16,
    pub uplink: UplinkId,
    pub tcp: TcpSeen,
    /// Packets the engine has seen, saturating: a flow is offered to the fast path once it
    /// has shown it is more than a brief exchange.
    pub hits: u8,
    /// The fast path carries this flow, so `last_seen` may lag behind its traffic.
    pub on_fast_path: bool,
    /// TCP: the last sequence number seen from the remote end (where to aim a probe that
    /// must miss the LAN host's window).
    pub peer_seq: u32,
}

impl Flow {
    pub fn reply_key(&self) -> ReplyKey {
        ReplyKey {
            rem_addr: self.key.rem_addr,
            rem_port: self.key.rem_port,
            ext_port: self.ext_port,
            proto: self.key.proto,
            uplink: self.uplink,
        }
    }

    fn idle_timeout(&self, t: &Timeouts) -> u64 {
        match self.key.proto {
            PROTO_TCP => self.tcp.timeout(t),
            PROTO_ICMP => t.icmp,
            _ => t.udp,
        }
    }
}

/// Flows in a slab, indexed by both keys. A bitmap says which slots are live, so a slot costs
/// no more than its flow.
#[derive(Debug, Default)]
pub struct FlowTable {
    slots: Vec<Flow>,
    live: Vec<u64>,
    free: Vec<u32>,
    by_key: AHashMap<FlowKey, u32>,
    by_reply: AHashMap<ReplyKey, u32>,
}

impl FlowTable {
    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut Flow> {
        let slot = *self.by_key.get(key)?;
        Some(&mut self.slots[slot as usize])
    }

    pub fn get_reply_mut(&mut self, key: &ReplyKey) -> Option<&mut Flow> {
        let slot = *self.by_reply.get(key)?;
        Some(&mut self.slots[slot as usize])
    }

    fn set_live(&mut self, slot: usize, live: bool) {
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        if live {
            self.live[word] |= bit
        } else {
            self.live[word] &= !bit
        }
    }

    /// Adds a flow whose key is not in the table yet.
    pub fn insert(&mut self, flow: Flow) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = flow;
                s
            }
            None => {
                self.slots.push(flow);
                if self.slots.len() > self.live.len() * 64 {
                    self.live.push(0);
                }
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 flows")
            }
        };
        self.set_live(slot as usize, true);
        self.by_key.insert(flow.key, slot);
        self.by_reply.insert(flow.reply_key(), slot);
    }

    /// Takes the flow with `key` out of the table.
    pub fn remove(&mut self, key: &FlowKey) -> Option<Flow> {
        let slot = self.by_key.remove(key)?;
        let flow = self.slots[slot as usize];
        self.by_reply.remove(&flow.reply_key());
        self.set_live(slot as usize, false);
        self.free.push(slot);
        Some(flow)
    }

    /// Every live flow, to be looked at or changed (not re-keyed).
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut Flow)) {
        for word in 0..self.live.len() {
            let mut bits = self.live[word];
            while bits != 0 {
                let slot = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                f(&mut self.slots[slot]);
            }
        }
    }

    /// Removes every flow idle for longer than its timeout, handing each to `ended`. For an
    /// flow on the fast path that looks idle, `idle_elsewhere` says how long ago the fast path last
    /// carried a packet of it (if it did), which may keep it.
    pub fn expire(
        &mut self,
        now: Timestamp,
        timeouts: &Timeouts,
        mut idle_elsewhere: impl FnMut(&Flow) -> Option<u64>,
        mut ended: impl FnMut(&Flow),
    ) {
        for word in 0..self.live.len() {
            let mut bits = self.live[word];
            while bits != 0 {
                let slot = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let flow = &mut self.slots[slot];
                let timeout = flow.idle_timeout(timeouts);
                if now.since_stamp(flow.last_seen) < timeout {
                    continue;
                }
                if flow.on_fast_path
                    && let Some(idle) = idle_elsewhere(flow)
                    && idle < timeout
                {
                    let seen = Timestamp::from_millis(now.as_millis().saturating_sub(idle));
                    flow.last_seen = flow.last_seen.later(seen.stamp());
                    continue;
                }
                let flow = *flow;
                self.by_key.remove(&flow.key);
                self.by_reply.remove(&flow.reply_key());
                ended(&flow);
                self.set_live(slot, false);
                self.free
                    .push(u32::try_from(slot).expect("fewer than 2^32 flows"));
            }
        }
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::packet::{PROTO_UDP, TCP_SYN};

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
            peer_seq: 0,
            ext_port: 61000 + port,
            uplink: 0,
            tcp: TcpSeen::default(),
        }
    }

    #[test]
    fn found_from_both_directions_and_expired_by_protocol_timeout() {
        let t = Timeouts::default();
        let mut table = FlowTable::default();
        let udp = flow(PROTO_UDP, 1);
        let mut tcp = flow(PROTO_TCP, 2);
        tcp.tcp.update(true, TCP_SYN);
        tcp.tcp.update(false, TCP_SYN);
        table.insert(udp);
        table.insert(tcp);
        assert_eq!(table.get_reply_mut(&udp.reply_key()).unwrap().key, udp.key);
        assert_eq!(table.get_mut(&tcp.key).unwrap().ext_port, 61002);

        let mut ended = vec![];
        table.expire(
            Timestamp::from_millis(t.udp),
            &t,
            |_| unreachable!("no flow is on the fast path"),
            |f| ended.push(f.key.int_port),
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
            |_| {
                asked += 1;
                Some(1_000)
            },
            |_| ended += 1,
        );
        assert_eq!((asked, ended), (1, 0));
        // refreshed to 1 s before that expiry: not even asked until the timeout runs out again
        table.expire(
            Timestamp::from_millis(2 * t.udp - 1_001),
            &t,
            |_| unreachable!(),
            |_| ended += 1,
        );
        assert_eq!(ended, 0);
        // the fast path saw nothing since (or never): it ends
        table.expire(
            Timestamp::from_millis(2 * t.udp - 1_000),
            &t,
            |_| None,
            |_| ended += 1,
        );
        assert_eq!(ended, 1);
    }

    #[test]
    fn steady_means_both_ways_and_not_closing() {
        let mut seen = TcpSeen::default();
        seen.update(true, TCP_SYN);
        assert!(!seen.is_steady());
        seen.update(false, TCP_SYN | 0x10);
        assert!(seen.is_steady());
        seen.update(true, TCP_FIN);
        assert!(!seen.is_steady());
    }

    #[test]
    fn tcp_timeout_follows_what_was_seen() {
        let t = Timeouts::default();
        let mut seen = TcpSeen::default();
        seen.update(true, TCP_SYN);
        assert_eq!(seen.timeout(&t), t.tcp_transitory);
        seen.update(false, TCP_SYN);
        assert_eq!(seen.timeout(&t), t.tcp_established);
        seen.update(true, TCP_FIN);
        assert_eq!(seen.timeout(&t), t.tcp_established);
        seen.update(false, TCP_FIN);
        assert_eq!(seen.timeout(&t), t.tcp_transitory);
        seen.update(false, TCP_RST);
        assert_eq!(seen.timeout(&t), t.tcp_reset);
    }
}
