//! Outbound IP fragments, translated as they come: no reassembly, no copy, no delay.
//!
//! A LAN host's datagram larger than the path, sent with "don't fragment" off, reaches wanlb
//! in pieces (the host or the gateway's kernel cut it; inbound, the packet sockets reassemble
//! before wanlb looks, so only outbound pieces get here). Only the first piece (offset 0)
//! carries the transport header: it is translated like any packet. Its transport checksum
//! covers the whole datagram, and the incremental update of a complete checksum stays right
//! for the whole datagram, because every word it changes (the source address in the pseudo
//! header, the port or echo identifier) is in the first piece. The later pieces carry data
//! only: they follow the first one's mapping, remembered here by (source, destination,
//! protocol, IP identification), and get the source address and the IP header checksum
//! rewritten, nothing else, on the same uplink. (The identification too, in the rare case
//! another LAN host's datagram in flight to the same destination already carries it once
//! translated: see [`Fragments::first`].)
//!
//! A partial checksum (CHECKSUM_PARTIAL) cannot be right on a fragment: the device would sum
//! that piece alone. The kernel completes the checksum before it fragments (`ip_do_fragment`
//! calls `skb_checksum_help`) and a socket's own fragments are summed in software, so such a
//! fragment is broken at its source; it is dropped and counted, never "fixed".
//!
//! What is kept per datagram in flight (about 64 bytes): its mapping, when its first piece
//! came, the byte ranges sent so far and its end once the last piece is seen. A piece that
//! overlaps what was sent is dropped, so the far end never reassembles bytes that differ from
//! what wanlb translated (RFC 1858: an overlap can rewrite the transport header past a
//! filter). The entry goes when every byte from 0 to the end has gone out, or [`TIMEOUT_MS`]
//! after its first piece, as the kernel's `ipfrag_time`. A table holds at most
//! [`MAX_DATAGRAMS`] entries: the engine keeps one per shard.
//!
//! Not handled: a later piece that arrives before its first one is dropped (counted as
//! [`DropReason::FragmentWithoutFirst`]), not held; Linux sends the pieces in order and one
//! datagram's pieces hash to one TUN queue, so one worker sees them in order.

use ahash::AHashMap;
use std::collections::hash_map::Entry;

use super::checksum::Delta;
use super::wire::icmp::{self, IcmpMessage};
use super::wire::{Ipv4Packet, PROTO_ICMP, PROTO_TCP, PROTO_UDP, TcpSegment, ipv4};
use super::{DropReason, Stamp, Timestamp, UplinkId};

/// How long after its first piece a datagram's mapping is kept (the kernel's `ipfrag_time`).
pub const TIMEOUT_MS: u64 = 30_000;
/// Datagrams in flight one table remembers; the engine has one table per shard (64), so at
/// most 8,192 in all, about half a megabyte.
pub const MAX_DATAGRAMS: usize = 128;
/// Separate runs of bytes one datagram may have sent at a time: pieces that come in order
/// keep one run; more disorder than this is dropped.
const MAX_RUNS: usize = 8;

/// What names one datagram's pieces (RFC 791: source, destination, protocol, identification).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DatagramKey {
    pub src: u32,
    pub dst: u32,
    pub id: u16,
    pub proto: u8,
}

/// One fragment's place in its datagram, from its IP header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fragment {
    pub key: DatagramKey,
    /// Where its data starts in the datagram's data, in bytes.
    pub offset: u16,
    /// Bytes of data it carries after its IP header (not 0).
    pub len: u16,
    /// "More fragments": not the last piece.
    pub more: bool,
}

impl Fragment {
    /// The place of `ip`, a piece of a fragmented datagram ([`Ipv4Packet::is_fragment`]).
    /// Malformed: a piece without data, one that is not the last and whose data is not a
    /// multiple of 8 bytes, one reaching past 64 KiB. Protocols other than TCP, UDP and ICMP
    /// are refused as they are whole.
    pub fn of<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) -> Result<Fragment, DropReason> {
        let more = ip.more_frags();
        let offset = ip.frag_offset();
        let len = u16::try_from(ip.payload().len()).expect("a total length is 16 bits");
        if !more && offset == 0 {
            return Err(DropReason::Malformed); // not a fragment: the caller's mistake
        }
        if len == 0
            || (more && !len.is_multiple_of(8))
            || usize::from(offset) + usize::from(len) > ipv4::MAX_DATA_LEN
        {
            return Err(DropReason::FragmentMalformed);
        }
        let proto = ip.protocol();
        if !matches!(proto, PROTO_TCP | PROTO_UDP | PROTO_ICMP) {
            return Err(DropReason::UnsupportedProtocol);
        }
        Ok(Fragment {
            key: DatagramKey {
                src: ip.src_addr(),
                dst: ip.dst_addr(),
                id: ip.ident(),
                proto,
            },
            offset,
            len,
            more,
        })
    }

    pub fn is_first(&self) -> bool {
        self.offset == 0
    }

    /// Whether a first piece `ip` (that `self` was read from) can be translated as a whole
    /// packet is: its transport header must be whole in it (RFC 1858's tiny fragments are
    /// refused), and of ICMP only echo requests are fragmented traffic wanlb translates.
    pub fn check_first<T: AsRef<[u8]>>(&self, ip: &Ipv4Packet<T>) -> Result<(), DropReason> {
        debug_assert!(self.is_first());
        let l4 = ip.payload();
        let whole = match self.key.proto {
            PROTO_TCP => TcpSegment::new_checked(l4).is_ok_and(|t| t.header_len() <= l4.len()),
            _ => l4.len() >= 8,
        };
        if !whole {
            return Err(DropReason::FragmentMalformed);
        }
        if self.key.proto == PROTO_ICMP
            && IcmpMessage::new_unchecked(l4).msg_type() != icmp::ECHO_REQUEST
        {
            return Err(DropReason::UnsupportedIcmp);
        }
        Ok(())
    }
}

/// Where a datagram's pieces go and how they are named there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DatagramMapping {
    pub uplink: UplinkId,
    /// The source address its pieces are translated to.
    pub addr: u32,
    /// The identification its pieces carry once translated.
    pub id: u16,
}

/// Rewrites the identification of a piece and updates its IP header checksum (RFC 1624).
pub fn rewrite_id(ip: &mut Ipv4Packet<&mut [u8]>, id: u16) {
    let delta = Delta::new().word(ip.ident(), id);
    ip.set_ident(id);
    ip.set_checksum(delta.apply_complete(ip.checksum()));
}

/// Translates a later piece by its datagram's mapping: source address, identification and
/// the IP header checksum (RFC 1624); it has no transport header to touch.
pub fn rewrite_later(ip: &mut Ipv4Packet<&mut [u8]>, to: &DatagramMapping) {
    let delta = Delta::new()
        .addr(ip.src_addr(), to.addr)
        .word(ip.ident(), to.id);
    ip.set_src_addr(to.addr);
    ip.set_ident(to.id);
    ip.set_checksum(delta.apply_complete(ip.checksum()));
}

/// A datagram whose first piece went out.
#[derive(Clone, Copy, Debug)]
struct Datagram {
    to: DatagramMapping,
    /// When its first piece came.
    since: Stamp,
    /// Byte ranges of its data sent so far: sorted, apart (never touching), `runs` of them.
    sent: [(u16, u16); MAX_RUNS],
    runs: u8,
    /// One past its last byte, once the last piece was seen.
    end: Option<u16>,
}

impl Datagram {
    fn sent(&self) -> &[(u16, u16)] {
        &self.sent[..usize::from(self.runs)]
    }

    /// Records a later piece, unless it is malformed against what was seen (past the end, or
    /// a second, different end), overlaps what was sent, or would be one run too many.
    fn add(&mut self, frag: &Fragment) -> Result<(), DropReason> {
        let (start, stop) = (frag.offset, frag.offset + frag.len);
        let last_sent = self.sent().last().map_or(0, |r| r.1);
        let past_end = match self.end {
            Some(end) => stop > end || (!frag.more && stop != end),
            None => !frag.more && stop < last_sent,
        };
        if past_end {
            return Err(DropReason::FragmentMalformed);
        }
        if self.sent().iter().any(|&(s, e)| start < e && s < stop) {
            return Err(DropReason::FragmentOverlap);
        }
        // where it goes: after every run that ends at or before its start
        let at = self.sent().iter().take_while(|r| r.1 <= start).count();
        let joins_before = at > 0 && self.sent[at - 1].1 == start;
        let joins_after = at < usize::from(self.runs) && self.sent[at].0 == stop;
        let runs = usize::from(self.runs);
        match (joins_before, joins_after) {
            (true, true) => {
                self.sent[at - 1].1 = self.sent[at].1;
                self.sent.copy_within(at + 1..runs, at);
                self.runs -= 1;
            }
            (true, false) => self.sent[at - 1].1 = stop,
            (false, true) => self.sent[at].0 = start,
            (false, false) => {
                if runs == MAX_RUNS {
                    return Err(DropReason::FragmentTableFull);
                }
                self.sent.copy_within(at..runs, at + 1);
                self.sent[at] = (start, stop);
                self.runs += 1;
            }
        }
        if !frag.more {
            self.end = Some(stop);
        }
        Ok(())
    }

    /// Every byte from the first to the last has gone out.
    fn complete(&self) -> bool {
        self.end.is_some_and(|end| self.sent() == [(0, end)])
    }
}

/// The mappings of datagrams whose first piece went out, for their later pieces.
#[derive(Debug, Default)]
pub struct Fragments {
    datagrams: AHashMap<DatagramKey, Datagram>,
}

impl Fragments {
    /// Remembers that the first piece of `frag`'s datagram goes out on `uplink`, translated to
    /// `addr`, and returns the identification its pieces carry there. A datagram already known
    /// under this key starts over (its identification was reused, or the first piece came
    /// twice). Refused when the table is full of datagrams younger than [`TIMEOUT_MS`].
    ///
    /// The identification stays the host's unless another datagram in flight from `addr` to
    /// the same destination and protocol (another LAN host's, translated to the same address)
    /// already carries it: then the next free one, so the far end never puts two hosts' pieces
    /// together (RFC 6864 section 5.3.1). Every such datagram is in this table: the engine
    /// keeps one per shard, by destination.
    pub fn first(
        &mut self,
        now: Timestamp,
        frag: &Fragment,
        uplink: UplinkId,
        addr: u32,
    ) -> Result<u16, DropReason> {
        let known = self.datagrams.get(&frag.key).map(|d| d.to);
        if known.is_none() && self.datagrams.len() >= MAX_DATAGRAMS {
            self.expire(now);
            if self.datagrams.len() >= MAX_DATAGRAMS {
                return Err(DropReason::FragmentTableFull);
            }
        }
        let id = match known {
            Some(to) if to.addr == addr => to.id,
            _ => {
                let taken = |id: u16| {
                    self.datagrams.iter().any(|(k, d)| {
                        d.to.id == id
                            && d.to.addr == addr
                            && k.dst == frag.key.dst
                            && k.proto == frag.key.proto
                            && *k != frag.key
                    })
                };
                // at most MAX_DATAGRAMS are taken: a free one is that close
                let mut id = frag.key.id;
                while taken(id) {
                    id = id.wrapping_add(1);
                }
                id
            }
        };
        let mut sent = [(0, 0); MAX_RUNS];
        sent[0] = (0, frag.len);
        let to = DatagramMapping { uplink, addr, id };
        self.datagrams.insert(
            frag.key,
            Datagram {
                to,
                since: now.stamp(),
                sent,
                runs: 1,
                end: None,
            },
        );
        Ok(id)
    }

    /// The mapping of a later piece: its first piece's. Its bytes are recorded as sent; the
    /// entry goes once the datagram is complete.
    pub fn later(
        &mut self,
        now: Timestamp,
        frag: &Fragment,
    ) -> Result<DatagramMapping, DropReason> {
        let Entry::Occupied(mut entry) = self.datagrams.entry(frag.key) else {
            return Err(DropReason::FragmentWithoutFirst);
        };
        if now.since_stamp(entry.get().since) >= TIMEOUT_MS {
            entry.remove();
            return Err(DropReason::FragmentWithoutFirst);
        }
        let datagram = entry.get_mut();
        datagram.add(frag)?;
        let to = datagram.to;
        if datagram.complete() {
            entry.remove();
        }
        Ok(to)
    }

    /// Forgets datagrams whose first piece came [`TIMEOUT_MS`] ago or more.
    pub fn expire(&mut self, now: Timestamp) {
        self.datagrams
            .retain(|_, d| now.since_stamp(d.since) < TIMEOUT_MS);
    }

    pub fn len(&self) -> usize {
        self.datagrams.len()
    }

    pub fn is_empty(&self) -> bool {
        self.datagrams.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(offset: u16, len: u16, more: bool) -> Fragment {
        Fragment {
            key: DatagramKey {
                src: 1,
                dst: 2,
                id: 3,
                proto: PROTO_UDP,
            },
            offset,
            len,
            more,
        }
    }

    fn runs(d: &Datagram) -> Vec<(u16, u16)> {
        d.sent().to_vec()
    }

    fn datagram(first_len: u16) -> Datagram {
        let mut t = Fragments::default();
        t.first(Timestamp::from_millis(0), &piece(0, first_len, true), 0, 9)
            .unwrap();
        *t.datagrams.values().next().unwrap()
    }

    #[test]
    fn pieces_in_order_keep_one_run_and_complete() {
        let mut d = datagram(16);
        d.add(&piece(16, 8, true)).unwrap();
        assert_eq!(runs(&d), [(0, 24)]);
        assert!(!d.complete());
        d.add(&piece(24, 3, false)).unwrap();
        assert_eq!((runs(&d), d.end), (vec![(0, 27)], Some(27)));
        assert!(d.complete());
    }

    #[test]
    fn pieces_out_of_order_merge_when_the_gap_fills() {
        let mut d = datagram(8);
        d.add(&piece(24, 5, false)).unwrap();
        d.add(&piece(16, 8, true)).unwrap();
        assert_eq!(runs(&d), [(0, 8), (16, 29)]);
        assert!(!d.complete());
        d.add(&piece(8, 8, true)).unwrap();
        assert_eq!(runs(&d), [(0, 29)]);
        assert!(d.complete());
    }

    #[test]
    fn overlaps_and_contradictions_are_refused_and_change_nothing() {
        let mut d = datagram(16);
        d.add(&piece(32, 8, true)).unwrap();
        let before = runs(&d);
        for (p, why) in [
            (piece(8, 8, true), DropReason::FragmentOverlap), // inside the first: RFC 1858
            (piece(16, 24, true), DropReason::FragmentOverlap),
            (piece(32, 8, true), DropReason::FragmentOverlap), // a duplicate
            (piece(16, 4, false), DropReason::FragmentMalformed), // ends before bytes sent
        ] {
            assert_eq!(d.add(&p), Err(why), "{p:?}");
            assert_eq!(runs(&d), before);
        }
        d.add(&piece(40, 4, false)).unwrap();
        assert_eq!(
            d.add(&piece(48, 8, true)),
            Err(DropReason::FragmentMalformed)
        );
        assert_eq!(
            d.add(&piece(16, 8, false)),
            Err(DropReason::FragmentMalformed)
        );
    }

    #[test]
    fn too_many_runs_are_refused() {
        let mut d = datagram(8);
        for i in 1..u16::try_from(MAX_RUNS).unwrap() {
            d.add(&piece(i * 16, 8, true)).unwrap();
        }
        assert_eq!(usize::from(d.runs), MAX_RUNS);
        let next = u16::try_from(MAX_RUNS).unwrap() * 16;
        assert_eq!(
            d.add(&piece(next, 8, true)),
            Err(DropReason::FragmentTableFull)
        );
        // a piece that joins a run still fits
        d.add(&piece(8, 8, true)).unwrap();
        assert_eq!(usize::from(d.runs), MAX_RUNS - 1);
    }
}
