//! The flow table: one entry per (protocol, LAN endpoint, remote endpoint), found from
//! either direction; and the state machine each entry runs to know how long to keep it
//! ([`TcpState`], for TCP the one RFC 5382 and RFC 7857 2.2 ask of a NAT).

use ahash::AHashMap;

use super::limits::Scale;
use super::packet::{Ipv4, PROTO_ICMP, PROTO_TCP, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, read_u16};
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
    /// An open connection, or one closed one way only (RFC 5382 REQ-5: at least 2 h 4 min).
    pub tcp_established: u64,
    /// A connection opening, or closed both ways (RFC 5382 REQ-5: at least 4 min).
    pub tcp_transitory: u64,
    /// After a reset in the receiver's window (RFC 7857 2.2 recommends 4 min).
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
            tcp_reset: 240_000,
            udp: 300_000,
            icmp: 60_000,
        }
    }
}

/// Which way a packet goes: sent by the LAN host, or by the remote end.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    Out = 0,
    In = 1,
}

impl Dir {
    pub fn index(self) -> usize {
        self as usize
    }

    pub fn other(self) -> Dir {
        match self {
            Dir::Out => Dir::In,
            Dir::In => Dir::Out,
        }
    }
}

/// What the state machine reads of a TCP segment (all zero for UDP and ICMP).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub flags: u8,
    pub seq: u32,
    pub ack: u32,
    /// The window field as sent: scaled by its sender's window scale, except in a SYN.
    pub window: u16,
    /// A SYN's window scale option (RFC 7323 2.2; above 14 taken as 14); `None` without one.
    pub wscale: Option<u8>,
}

impl Segment {
    /// The segment in `pkt`, validated as `ip`; flags and all 0 if it is not TCP.
    pub fn parse(pkt: &[u8], ip: &Ipv4) -> Segment {
        if ip.proto != PROTO_TCP {
            return Segment::default();
        }
        let (seq, ack) = ip.tcp_seq_ack(pkt);
        let flags = ip.tcp_flags(pkt);
        Segment {
            flags,
            seq,
            ack,
            window: read_u16(pkt, ip.l4 + 14),
            wscale: if flags & TCP_SYN != 0 {
                window_scale(pkt, ip)
            } else {
                None
            },
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
}

/// The window scale option among the TCP options of the segment in `pkt`, if it has one.
fn window_scale(pkt: &[u8], ip: &Ipv4) -> Option<u8> {
    let header = usize::from(pkt[ip.l4 + 12] >> 4) * 4;
    let mut options = pkt.get(ip.l4 + 20..(ip.l4 + header).min(ip.end))?;
    while let [kind, rest @ ..] = options {
        match *kind {
            0 => return None, // end of the option list
            1 => options = rest,
            _ => {
                let len = usize::from(*rest.first()?);
                if len < 2 || len > options.len() {
                    return None;
                }
                if *kind == 3 && len == 3 {
                    return Some(options[2].min(14));
                }
                options = &options[len..];
            }
        }
    }
    None
}

/// `a` comes after `b` in sequence space (RFC 9293 3.4: modulo 2^32).
fn seq_after(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) > 0
}

/// Where a TCP connection is, as a NAT in its path can tell (RFC 5382 section 5, RFC 7857
/// 2.2). The LAN host opens a session (or wanlb picks one up mid-way); the remote end may reopen
/// one that has closed, or open one to a forwarded port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TcpPhase {
    /// The LAN host sent a SYN; the remote end has not answered.
    #[default]
    SynOut,
    /// The remote end sent a SYN, to a forwarded port or reopening a session that had closed;
    /// the LAN host has not answered.
    SynIn,
    /// The LAN host sent something other than a SYN on a connection wanlb did not see open
    /// (wanlb restarted, or the session expired while the connection idled); the remote end
    /// has not answered. UDP and ICMP flows start here too.
    PickedUp,
    /// The remote end sent the first datagram of a flow to a forwarded port (UDP: there is no
    /// handshake to see); the LAN host has not answered.
    PickedUpIn,
    /// A SYN each way, neither acknowledged: a simultaneous open (RFC 9293 3.5).
    SynBoth,
    /// The remote end acknowledged the LAN host's SYN (its SYN-ACK); the LAN host's
    /// acknowledgement of the remote's SYN is due.
    SynAckIn,
    /// The LAN host acknowledged the remote end's SYN; the remote's acknowledgement is due.
    SynAckOut,
    /// Each SYN acknowledged (or, for a session picked up, both ends heard).
    Established,
    /// The LAN host closed its half (FIN); the remote end may go on sending.
    FinOut,
    /// The remote end closed its half.
    FinIn,
    /// FIN both ways, the last not yet acknowledged.
    Closing,
    /// FIN both ways, acknowledged: kept, as TIME-WAIT, for late segments.
    Closed,
    /// A reset in the receiver's window.
    Reset,
}

impl TcpPhase {
    fn timeout(self, t: &Timeouts) -> u64 {
        match self {
            TcpPhase::Established | TcpPhase::FinOut | TcpPhase::FinIn => t.tcp_established,
            TcpPhase::Reset => t.tcp_reset,
            _ => t.tcp_transitory,
        }
    }

    fn is_opening(self) -> bool {
        matches!(
            self,
            TcpPhase::SynOut
                | TcpPhase::SynIn
                | TcpPhase::SynBoth
                | TcpPhase::SynAckIn
                | TcpPhase::SynAckOut
        )
    }
}

/// What the last segment did to a session, beyond moving it along.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    None,
    /// A reset in the receiver's window: the session is kept [`Timeouts::tcp_reset`] longer.
    Reset,
    /// A SYN on a session that had closed or been reset: the session starts over, with the
    /// same mapping.
    Restarted,
}

/// What one side of a connection last told the other: the acknowledgement number (the next
/// byte it expects) and the window field of the same segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Acked {
    pub ack: u32,
    pub window: u16,
}

/// A TCP session's state machine, with what it needs to judge a reset: each side's receive
/// window, taken from the acknowledgements and windows it sends (a reset is taken only when
/// its sequence number is in the window of the side it is sent to, RFC 5961 3.2, RFC 7857
/// 2.2; otherwise it is forwarded but changes nothing, and the endpoint decides). UDP and ICMP
/// flows run it too, on segments without flags: picked up, then established once answered,
/// which is what the fast path needs to know.
///
/// A flow the kernel fast path carries shows the engine only its SYN, FIN and RST, so the
/// engine's idea of the windows goes stale as the connection moves on. Rather than guess (any
/// rule of thumb fails a long transfer, whose window has moved gigabytes, or takes forged
/// resets), the kernel programs record per direction the acknowledgement number and window of
/// the last segment they carried (`struct flow_value`, ebpf/wanlb.h), and the engine takes
/// those before it judges a reset ([`TcpState::refresh`], [`super::FastPath::acks`]).
///
/// 15 bytes, all byte-aligned, so that the flow entry stays at 40 bytes (it was 32 with a
/// byte of flags and the remote's last sequence number).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpState {
    phase: TcpPhase,
    flags: u8,
    /// Per side (low nibble: the LAN host's): its SYN's window scale plus one; 0 before its
    /// SYN is seen.
    wscale: u8,
    /// Per side ([`Dir`] order): the last acknowledgement number it sent, its RCV.NXT (or,
    /// before it sent one, the number the other side's SYN says it will send).
    ack: [[u8; 4]; 2],
    /// Per side: the window field of that segment.
    win: [[u8; 2]; 2],
}

impl TcpState {
    /// Per side: its receive point (`ack`) is known.
    const KNOWN: [u8; 2] = [1, 2];
    /// Per side: its window came from a SYN, so it is not scaled.
    const SYN_WINDOW: [u8; 2] = [4, 8];
    /// A SYN came without the window scale option: windows are not scaled, either way.
    const NO_WSCALE: u8 = 16;
    /// Its uplink died: the engine is ending it with a reset to the LAN host.
    const RESETTING: u8 = 32;
    /// The reset came from the remote end.
    const RESET_BY_IN: u8 = 64;
    /// The session got as far as established once (TCP: its handshake completed; UDP and
    /// ICMP: answered): conntrack's "assured". What never got there is what a full table
    /// gives up first.
    const COMPLETED: u8 = 128;

    /// The session opened by the LAN host's segment `seg`.
    pub fn opened(seg: &Segment) -> TcpState {
        let mut t = TcpState {
            phase: if seg.has(TCP_SYN) && !seg.has(TCP_ACK) {
                TcpPhase::SynOut
            } else {
                TcpPhase::PickedUp
            },
            ..TcpState::default()
        };
        t.record(Dir::Out, seg, true);
        t
    }

    pub fn phase(&self) -> TcpPhase {
        self.phase
    }

    /// The session opened by the remote end's segment `seg` to a forwarded port: its SYN
    /// (TCP), or its first datagram (UDP).
    pub fn opened_by_remote(seg: &Segment) -> TcpState {
        let mut t = TcpState {
            phase: if seg.has(TCP_SYN) {
                TcpPhase::SynIn
            } else {
                TcpPhase::PickedUpIn
            },
            ..TcpState::default()
        };
        t.record(Dir::In, seg, true);
        t
    }

    /// Moves the session along by segment `seg`, sent `dir`.
    pub fn update(&mut self, dir: Dir, seg: &Segment) -> Change {
        if seg.has(TCP_RST) {
            if self.phase == TcpPhase::Reset || !self.in_window(dir, seg) {
                return Change::None;
            }
            self.phase = TcpPhase::Reset;
            self.set(Self::RESET_BY_IN, dir == Dir::In);
            return Change::Reset;
        }
        let syn = seg.has(TCP_SYN);
        // a closed or reset session may be opened again by either end; one picked up mid-way
        // only by the LAN host (from outside, a forged SYN would keep it from being
        // established)
        let starts_over = match self.phase {
            TcpPhase::Closing | TcpPhase::Closed | TcpPhase::Reset => true,
            TcpPhase::PickedUp => dir == Dir::Out,
            _ => false,
        };
        if syn && !seg.has(TCP_ACK) && starts_over {
            *self = TcpState {
                phase: match dir {
                    Dir::Out => TcpPhase::SynOut,
                    Dir::In => TcpPhase::SynIn,
                },
                flags: self.flags & Self::RESETTING,
                ..TcpState::default()
            };
            self.record(dir, seg, true);
            return Change::Restarted;
        }
        let next = self.next(dir, seg);
        self.record(dir, seg, self.phase.is_opening());
        self.phase = next;
        if next == TcpPhase::Established {
            self.flags |= Self::COMPLETED;
        }
        Change::None
    }

    /// The phase after `seg` (not a reset, not a SYN that starts the session over).
    fn next(&self, dir: Dir, seg: &Segment) -> TcpPhase {
        use TcpPhase::*;
        let (syn, ack, fin) = (seg.has(TCP_SYN), seg.has(TCP_ACK), seg.has(TCP_FIN));
        // open, and maybe closed one way by the same segment
        let open = || match (fin, dir) {
            (false, _) => Established,
            (true, Dir::Out) => FinOut,
            (true, Dir::In) => FinIn,
        };
        match (self.phase, dir) {
            (SynOut, Dir::In) | (SynIn, Dir::Out) if syn => {
                if ack {
                    if dir == Dir::In { SynAckIn } else { SynAckOut }
                } else {
                    SynBoth
                }
            }
            (SynBoth, Dir::In) if ack => SynAckIn,
            (SynBoth, Dir::Out) if ack => SynAckOut,
            (SynAckIn, Dir::Out) | (SynAckOut, Dir::In) if ack => open(),
            (PickedUp, Dir::In) | (PickedUpIn, Dir::Out) if !syn => open(),
            (Established, _) if fin => open(),
            (FinOut, Dir::In) | (FinIn, Dir::Out) if fin => Closing,
            // the last FIN acknowledged: nothing is sent after a FIN but acknowledgements,
            // so an acknowledgement number that moves on is that one
            (Closing, d) if ack && self.known(d) && seq_after(seg.ack, self.ack(d)) => Closed,
            // the side the reset came from is still there: the other end did not take it
            // (RFC 5961 challenge ACK), nor must wanlb
            (Reset, d) if !syn && self.has(Self::RESET_BY_IN) == (d == Dir::In) => Established,
            (phase, _) => phase,
        }
    }

    /// Keeps what `seg`, sent `dir`, says about the receive windows. While the session opens,
    /// a SYN tells its window scale and the other side's receive point (before that side's
    /// own acknowledgements say it); an acknowledgement number only moves forward.
    fn record(&mut self, dir: Dir, seg: &Segment, opening: bool) {
        let (d, o) = (dir.index(), dir.other().index());
        // a SYN once the session is open is stale or forged: its options and numbers are not
        // the connection's
        if seg.has(TCP_SYN) && opening {
            let v = seg.wscale.map_or(1, |s| s + 1);
            self.wscale = if d == 0 {
                (self.wscale & 0xf0) | v
            } else {
                (self.wscale & 0x0f) | (v << 4)
            };
            if seg.wscale.is_none() {
                self.flags |= Self::NO_WSCALE;
            }
            self.ack[o] = seg.seq.wrapping_add(1).to_ne_bytes();
            self.flags |= Self::KNOWN[o];
        }
        let takes_ack =
            seg.has(TCP_ACK) && (!self.known(dir) || !seq_after(self.ack(dir), seg.ack));
        if takes_ack {
            self.ack[d] = seg.ack.to_ne_bytes();
            self.flags |= Self::KNOWN[d];
        }
        if takes_ack || (seg.has(TCP_SYN) && opening) {
            self.win[d] = seg.window.to_ne_bytes();
            self.set(Self::SYN_WINDOW[d], seg.has(TCP_SYN));
        }
    }

    /// Takes what the fast path last carried from side `dir`, if it carried anything since it
    /// took the flow over. The engine sees only the SYN, FIN and RST of such a flow, so the
    /// fast path's record is the newer one (or as old as the side's FIN, a few segments at
    /// most), however far the connection has gone since: no comparison in sequence space,
    /// which cannot tell 3 GB ahead from 1 GB behind.
    pub fn refresh(&mut self, dir: Dir, carried: Option<Acked>) {
        let Some(a) = carried else { return };
        let d = dir.index();
        self.ack[d] = a.ack.to_ne_bytes();
        self.win[d] = a.window.to_ne_bytes();
        self.flags = (self.flags | Self::KNOWN[d]) & !Self::SYN_WINDOW[d];
    }

    /// Whether a reset sent `dir` is in the receive window of the side it goes to (RFC 9293
    /// 3.10.7.4: RCV.NXT =< SEG.SEQ < RCV.NXT+RCV.WND, or = RCV.NXT for a zero window). A side
    /// that has heard no SYN yet (SYN-SENT) takes only a reset that acknowledges its own SYN
    /// (RFC 9293 3.10.7.3). Without either, the reset cannot be placed and changes nothing.
    fn in_window(&self, dir: Dir, seg: &Segment) -> bool {
        let to = dir.other();
        if self.known(to) {
            let offset = seg.seq.wrapping_sub(self.ack(to));
            let window = u32::from(u16::from_ne_bytes(self.win[to.index()])) << self.shift(to);
            offset == 0 || offset < window
        } else {
            seg.has(TCP_ACK) && self.known(dir) && seg.ack == self.ack(dir)
        }
    }

    /// How far side `dir`'s window fields are shifted (RFC 7323 2.3): both SYNs must carry the
    /// option; a window from a SYN, or of a connection picked up without its SYNs, is taken as
    /// it is (a reset that does not fit it only leaves the session as it was).
    fn shift(&self, dir: Dir) -> u8 {
        let (out, back) = (self.wscale & 0x0f, self.wscale >> 4);
        if self.has(Self::SYN_WINDOW[dir.index()] | Self::NO_WSCALE) || out == 0 || back == 0 {
            return 0;
        }
        match dir {
            Dir::Out => out - 1,
            Dir::In => back - 1,
        }
    }

    fn known(&self, dir: Dir) -> bool {
        self.flags & Self::KNOWN[dir.index()] != 0
    }

    fn ack(&self, dir: Dir) -> u32 {
        u32::from_ne_bytes(self.ack[dir.index()])
    }

    /// Side `dir`'s receive point (RCV.NXT): the next sequence number it expects.
    pub fn receive_point(&self, dir: Dir) -> Option<u32> {
        self.known(dir).then(|| self.ack(dir))
    }

    fn has(&self, bits: u8) -> bool {
        self.flags & bits != 0
    }

    fn set(&mut self, bit: u8, on: bool) {
        if on {
            self.flags |= bit;
        } else {
            self.flags &= !bit;
        }
    }

    pub fn set_resetting(&mut self) {
        self.flags |= Self::RESETTING;
    }

    pub fn is_resetting(self) -> bool {
        self.has(Self::RESETTING)
    }

    pub fn is_reset_or_resetting(self) -> bool {
        self.phase == TcpPhase::Reset || self.is_resetting()
    }

    /// Both ends have spoken: the LAN host has a connection whose sequence numbers it will
    /// tell when asked.
    pub fn is_answered(self) -> bool {
        !matches!(
            self.phase,
            TcpPhase::SynOut | TcpPhase::SynIn | TcpPhase::PickedUp | TcpPhase::PickedUpIn
        )
    }

    /// It got as far as established once since it (last) opened: a TCP handshake completed,
    /// a UDP or ping flow answered.
    pub fn is_completed(self) -> bool {
        self.has(Self::COMPLETED)
    }

    /// Whether `seg`, from the LAN host, acknowledges the remote end's SYN-ACK with the
    /// sequence number that SYN-ACK carried: the host got what was sent to its address. A
    /// host that only claims the address never sees that number, unless the remote end that
    /// chose it tells it (see [`super::hosts`]).
    pub fn acknowledges_syn_ack(&self, seg: &Segment) -> bool {
        self.phase == TcpPhase::SynAckIn
            && seg.flags & (TCP_ACK | TCP_SYN | TCP_RST) == TCP_ACK
            && self.known(Dir::Out)
            && seg.ack == self.ack(Dir::Out)
    }

    /// FIN seen both ways.
    pub fn is_closed(self) -> bool {
        matches!(self.phase, TcpPhase::Closing | TcpPhase::Closed)
    }

    /// Established, no FIN or RST yet: nothing left that the engine must watch.
    pub fn is_steady(self) -> bool {
        self.phase == TcpPhase::Established
    }

    fn timeout(self, t: &Timeouts) -> u64 {
        self.phase.timeout(t)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Flow {
    pub key: FlowKey,
    pub last_seen: Stamp,
    pub ext_port: u16,
    pub uplink: UplinkId,
    pub tcp: TcpState,
    /// Packets the engine has seen, saturating: a flow is offered to the fast path once it
    /// has shown it is more than a brief exchange.
    pub hits: u8,
    /// The fast path carries this flow, so `last_seen` may lag behind its traffic.
    pub on_fast_path: bool,
    /// IP bytes of it carried both ways (not the ICMP errors about it): those the engine
    /// translated, and those the fast path carried before it was taken back. While it is on
    /// the fast path, the fast path counts the rest.
    pub bytes: u64,
    /// Its uplink's address epoch when it opened: a flow of an earlier one names an address
    /// the uplink no longer has.
    pub epoch: u8,
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

    /// Whether a full table shortens its timeout (pf's adaptive timeouts): a flow never
    /// answered, or a TCP session opening, closing, closed or reset. An open connection and
    /// an answered UDP or ping flow keep theirs.
    fn is_shortened_under_pressure(&self) -> bool {
        match self.key.proto {
            PROTO_TCP => !matches!(
                self.tcp.phase,
                TcpPhase::Established | TcpPhase::FinOut | TcpPhase::FinIn
            ),
            _ => !self.tcp.is_completed(),
        }
    }

    /// Its idle timeout, scaled by `scale` if pressure shortens it; and whether it was.
    fn timeout_under(&self, t: &Timeouts, scale: Scale) -> (u64, bool) {
        let full = self.idle_timeout(t);
        if scale.is_full() || !self.is_shortened_under_pressure() {
            (full, false)
        } else {
            (scale.apply(full), true)
        }
    }
}

/// Live flows [`FlowTable::early_drop_candidate`] looks at.
pub const EARLY_DROP_WINDOW: usize = 64;

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
    pub fn get(&self, key: &FlowKey) -> Option<&Flow> {
        let slot = *self.by_key.get(key)?;
        Some(&self.slots[slot as usize])
    }

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

    /// Removes every flow idle for longer than its timeout, handing each to `ended` with
    /// whether it ended early: only because `scale` shortened its timeout. For a flow on the
    /// fast path that looks idle, `idle_elsewhere` says how long ago the fast path last carried
    /// a packet of it (if it did), which may keep it.
    pub fn expire(
        &mut self,
        now: Timestamp,
        timeouts: &Timeouts,
        scale: Scale,
        mut idle_elsewhere: impl FnMut(&Flow) -> Option<u64>,
        mut ended: impl FnMut(&Flow, bool),
    ) {
        for word in 0..self.live.len() {
            let mut bits = self.live[word];
            while bits != 0 {
                let slot = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let flow = &mut self.slots[slot];
                let (timeout, shortened) = flow.timeout_under(timeouts, scale);
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
                let early =
                    shortened && now.since_stamp(flow.last_seen) < flow.idle_timeout(timeouts);
                self.by_key.remove(&flow.key);
                self.by_reply.remove(&flow.reply_key());
                ended(&flow, early);
                self.set_live(slot, false);
                self.free
                    .push(u32::try_from(slot).expect("fewer than 2^32 flows"));
            }
        }
    }

    /// The flow a nearly full table gives up: of the next [`EARLY_DROP_WINDOW`] live flows
    /// from slot `from` on (wrapping; at most 16 times as many slots looked at), the one that
    /// never completed and was idle longest. Returns its key, if any, and where the next look
    /// starts. A bounded look, as conntrack's early_drop looks at a few buckets; a flow that
    /// completed is never taken.
    pub fn early_drop_candidate(&self, from: usize, now: Timestamp) -> (Option<FlowKey>, usize) {
        let words = self.live.len();
        if words == 0 {
            return (None, 0);
        }
        let mut best: Option<(u64, FlowKey)> = None;
        let mut looked = 0;
        let mut word = (from / 64) % words;
        for _ in 0..words.min(EARLY_DROP_WINDOW / 4) {
            let mut bits = self.live[word];
            while bits != 0 && looked < EARLY_DROP_WINDOW {
                let f = &self.slots[word * 64 + bits.trailing_zeros() as usize];
                bits &= bits - 1;
                looked += 1;
                let idle = now.since_stamp(f.last_seen);
                if !f.tcp.is_completed() && best.is_none_or(|(most, _)| idle > most) {
                    best = Some((idle, f.key));
                }
            }
            word = (word + 1) % words;
            if looked == EARLY_DROP_WINDOW {
                break;
            }
        }
        (best.map(|(_, key)| key), word * 64)
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
    use crate::engine::packet::PROTO_UDP;
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
            ..seg(TCP_SYN, seq, 0, 64240)
        }
    }

    fn syn_ack(seq: u32, ack: u32, wscale: Option<u8>) -> Segment {
        Segment {
            wscale,
            ..seg(TCP_SYN | TCP_ACK, seq, ack, 65160)
        }
    }

    const ACK: u8 = TCP_ACK;

    /// The LAN host's ISS is 100, the remote's 5000; both scale windows by 7 (x128); after
    /// the handshake the LAN host's window field says 1000 (128,000 bytes), the remote's 500.
    fn established() -> TcpState {
        let mut t = TcpState::opened(&syn(100, Some(7)));
        assert_eq!(t.phase(), SynOut);
        assert_eq!(
            t.update(Dir::In, &syn_ack(5000, 101, Some(7))),
            Change::None
        );
        assert_eq!(t.phase(), SynAckIn);
        t.update(Dir::Out, &seg(ACK, 101, 5001, 1000));
        assert_eq!(t.phase(), Established);
        t.update(Dir::In, &seg(ACK, 5001, 101, 500));
        t
    }

    fn phases(t: &mut TcpState, steps: &[(Dir, Segment, TcpPhase)]) {
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
                (Dir::Out, seg(ACK, 101, 5001, 1000), Established),
                (Dir::In, seg(ACK, 5001, 111, 500), Established),
                (Dir::Out, seg(ACK | TCP_FIN, 111, 5001, 1000), FinOut),
                // the remote acknowledges the FIN, and may go on sending: half closed
                (Dir::In, seg(ACK, 5001, 112, 500), FinOut),
                (Dir::In, seg(ACK, 5001, 112, 500), FinOut),
                (Dir::Out, seg(ACK, 112, 5101, 1000), FinOut),
                (Dir::In, seg(ACK | TCP_FIN, 5101, 112, 500), Closing),
                // a retransmitted FIN is no acknowledgement of the other one
                (Dir::In, seg(ACK | TCP_FIN, 5101, 112, 500), Closing),
                (Dir::Out, seg(ACK, 112, 5102, 1000), Closed),
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
                (Dir::In, seg(ACK | TCP_FIN, 5001, 101, 500), FinIn),
                (Dir::Out, seg(ACK | TCP_FIN, 101, 5002, 1000), Closing),
                (Dir::In, seg(ACK, 5002, 102, 500), Closed),
            ],
        );
        // FINs that cross: neither acknowledges the other yet
        let mut t = established();
        phases(
            &mut t,
            &[
                (Dir::Out, seg(ACK | TCP_FIN, 101, 5001, 1000), FinOut),
                (Dir::In, seg(ACK | TCP_FIN, 5001, 101, 500), Closing),
                (Dir::In, seg(ACK, 5002, 102, 500), Closed),
            ],
        );
    }

    #[test]
    fn a_simultaneous_open_is_established_once_both_syns_are_acknowledged() {
        // each end sends a SYN, then a SYN-ACK (RFC 9293 figure 8), in either order
        for lan_first in [true, false] {
            let mut t = TcpState::opened(&syn(100, Some(7)));
            t.update(Dir::In, &syn(5000, Some(7)));
            assert_eq!(t.phase(), SynBoth);
            assert!(t.is_answered() && !t.is_steady());
            let out = (Dir::Out, syn_ack(100, 5001, Some(7)));
            let back = (Dir::In, syn_ack(5000, 101, Some(7)));
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
        t.update(Dir::In, &seg(ACK, 9000, 77, 500));
        assert_eq!(t.phase(), SynOut);
        assert!(!t.is_answered());
        // retransmitted SYNs neither
        t.update(Dir::Out, &syn(100, None));
        assert_eq!(t.phase(), SynOut);
        // a reopened session: the remote's SYN, the LAN host's SYN-ACK, the remote's ACK
        let mut t = established();
        t.update(Dir::In, &seg(TCP_RST, 5001, 0, 0));
        assert_eq!(t.update(Dir::In, &syn(8000, None)), Change::Restarted);
        phases(
            &mut t,
            &[
                (Dir::In, syn(8000, None), SynIn),
                (Dir::Out, syn_ack(300, 8001, None), SynAckOut),
                (Dir::Out, syn_ack(300, 8001, None), SynAckOut),
                (Dir::In, seg(ACK, 8001, 301, 500), Established),
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
            t.update(Dir::Out, &first);
            assert_eq!(t.phase(), PickedUp);
            t.update(Dir::In, &Segment::default());
            assert!(t.is_steady());
        }
        // closed by its first answer
        let mut t = TcpState::opened(&seg(ACK, 7, 9, 100));
        t.update(Dir::In, &seg(ACK | TCP_FIN, 9, 7, 100));
        assert_eq!(t.phase(), FinIn);
        // the LAN host opens anew on that port; a SYN from outside does not
        let mut t = TcpState::opened(&seg(ACK, 7, 9, 100));
        assert_eq!(t.update(Dir::In, &syn(1, None)), Change::None);
        assert_eq!(t.phase(), PickedUp);
        assert_eq!(t.update(Dir::Out, &syn(1, None)), Change::Restarted);
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
                (Dir::In, syn(8000, Some(7)), SynIn),
                (Dir::Out, syn_ack(300, 8001, Some(7)), SynAckOut),
                (Dir::In, seg(ACK, 8001, 301, 500), Established),
            ],
        );
        assert!(t.is_steady());
        // the LAN host's receive point is known from the SYN: a reset to it is judged
        assert_eq!(t.receive_point(Dir::Out), Some(8001));
        // a closed port answers the SYN with a reset that acknowledges it
        let mut refused = TcpState::opened_by_remote(&syn(8000, None));
        assert_eq!(
            refused.update(Dir::Out, &seg(TCP_RST | ACK, 0, 8001, 0)),
            Change::Reset
        );
        // UDP: established once the LAN host answers, not by more from outside
        let mut u = TcpState::opened_by_remote(&Segment::default());
        assert_eq!(u.phase(), PickedUpIn);
        u.update(Dir::In, &Segment::default());
        assert!(!u.is_answered());
        u.update(Dir::Out, &Segment::default());
        assert!(u.is_steady());
    }

    #[test]
    fn a_reset_counts_only_in_the_window_of_the_side_it_is_sent_to() {
        // the LAN host expects 5001 next, in a window of 1000 << 7 = 128,000 bytes
        let to_lan = |seq| {
            let mut t = established();
            let change = t.update(Dir::In, &seg(TCP_RST, seq, 0, 0));
            assert_eq!(change == Change::Reset, t.phase() == Reset);
            change == Change::Reset
        };
        assert!(to_lan(5001), "at RCV.NXT");
        assert!(to_lan(5001 + 127_999), "at the window's last byte");
        assert!(!to_lan(5001 + 128_000), "just past the window");
        assert!(!to_lan(5000), "just before it");
        assert!(!to_lan(5001 + (1 << 31)), "half the sequence space away");
        // the remote end expects 101 next, in a window of 500 << 7 = 64,000 bytes
        let to_remote = |seq| {
            let mut t = established();
            t.update(Dir::Out, &seg(TCP_RST | ACK, seq, 5001, 0)) == Change::Reset
        };
        assert!(to_remote(101) && to_remote(101 + 63_999));
        assert!(!to_remote(101 + 64_000) && !to_remote(100));
        // the reset that is taken sets the session's timeout
        let t = Timeouts::default();
        let mut s = established();
        assert_eq!(s.timeout(&t), t.tcp_established);
        s.update(Dir::In, &seg(TCP_RST, 6000, 0, 0));
        assert!(s.is_reset_or_resetting() && !s.is_steady());
        assert_eq!(s.timeout(&t), t.tcp_reset);
        // another one changes nothing
        assert_eq!(s.update(Dir::Out, &seg(TCP_RST, 101, 0, 0)), Change::None);
    }

    #[test]
    fn a_zero_window_takes_a_reset_at_its_edge_only() {
        let mut t = established();
        t.update(Dir::Out, &seg(ACK, 101, 5001, 0));
        assert_eq!(t.update(Dir::In, &seg(TCP_RST, 5002, 0, 0)), Change::None);
        assert_eq!(t.update(Dir::In, &seg(TCP_RST, 5001, 0, 0)), Change::Reset);
    }

    #[test]
    fn windows_are_scaled_only_when_both_syns_ask_for_it() {
        // the remote's SYN-ACK carries no window scale: 1000 means 1000 bytes
        let mut t = TcpState::opened(&syn(100, Some(7)));
        t.update(Dir::In, &syn_ack(5000, 101, None));
        t.update(Dir::Out, &seg(ACK, 101, 5001, 1000));
        let mut far = t;
        assert_eq!(far.update(Dir::In, &seg(TCP_RST, 6001, 0, 0)), Change::None);
        assert_eq!(t.update(Dir::In, &seg(TCP_RST, 6000, 0, 0)), Change::Reset);
        // while the LAN host has sent only its SYN's window, unscaled, that one counts
        let mut t = TcpState::opened(&syn(100, Some(7)));
        t.update(Dir::In, &syn_ack(5000, 101, Some(7)));
        let mut far = t;
        assert_eq!(
            far.update(Dir::In, &seg(TCP_RST, 5001 + 64_240, 0, 0)),
            Change::None
        );
        assert_eq!(
            t.update(Dir::In, &seg(TCP_RST, 5001 + 64_239, 0, 0)),
            Change::Reset
        );
    }

    #[test]
    fn a_reset_to_a_syn_must_acknowledge_it() {
        // RFC 9293 3.10.7.3: in SYN-SENT, a reset is acceptable if its ACK acknowledges the SYN
        let answer = |s: Segment| {
            let mut t = TcpState::opened(&syn(100, None));
            t.update(Dir::In, &s) == Change::Reset
        };
        assert!(answer(seg(TCP_RST | ACK, 0, 101, 0)));
        assert!(!answer(seg(TCP_RST | ACK, 0, 102, 0)));
        assert!(!answer(seg(TCP_RST, 0, 101, 0)), "no ACK: no way to tell");
        // a retransmitted SYN with a new ISS is the one to acknowledge
        let mut t = TcpState::opened(&syn(100, None));
        t.update(Dir::Out, &syn(700, None));
        assert_eq!(
            t.update(Dir::In, &seg(TCP_RST | ACK, 0, 701, 0)),
            Change::Reset
        );
    }

    #[test]
    fn acknowledgements_only_move_forward() {
        let mut t = established();
        // a late segment with an older acknowledgement does not pull the window back
        t.update(Dir::Out, &seg(ACK, 101, 4001, 1000));
        assert_eq!(t.receive_point(Dir::Out), Some(5001));
        t.update(Dir::Out, &seg(ACK, 101, 9001, 1000));
        assert_eq!(t.receive_point(Dir::Out), Some(9001));
        // a SYN once open is not the connection's: it predicts nothing
        t.update(Dir::In, &syn(123, None));
        assert_eq!(t.receive_point(Dir::Out), Some(9001));
        assert_eq!(t.phase(), Established);
        assert_eq!(
            t.update(Dir::In, &seg(TCP_RST, 9001 + 100_000, 0, 0)),
            Change::Reset,
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
                    (Dir::In, seg(ACK | TCP_FIN, 5001, 101, 500), FinIn),
                    (Dir::Out, seg(ACK | TCP_FIN, 101, 5002, 1000), Closing),
                ],
            );
            t
        };
        let reset = {
            let mut t = established();
            t.update(Dir::Out, &seg(TCP_RST, 101, 0, 0));
            assert_eq!(t.phase(), Reset);
            t
        };
        let mut done = closed;
        done.update(Dir::In, &seg(ACK, 5002, 102, 500));
        assert_eq!(done.phase(), Closed);
        for (t, dir, phase) in [
            (closed, Dir::Out, SynOut),
            (done, Dir::Out, SynOut),
            (reset, Dir::Out, SynOut),
            (done, Dir::In, SynIn),
            (reset, Dir::In, SynIn),
        ] {
            let mut t = t;
            t.set_resetting();
            assert_eq!(t.update(dir, &syn(40_000, Some(2))), Change::Restarted);
            assert_eq!(t.phase(), phase);
            assert!(t.is_resetting(), "a dying line's session stays dying");
            // with what the new SYN says, not what the old connection said
            assert_eq!(t.receive_point(dir.other()), Some(40_001));
            assert_eq!(t.receive_point(dir), None);
        }
        // an open or half-closed session takes a SYN as the endpoint will: not as a new one
        let mut t = established();
        for phase in [Established, FinOut] {
            assert_eq!(t.update(Dir::Out, &syn(1, None)), Change::None);
            assert_eq!(t.update(Dir::In, &syn(1, None)), Change::None);
            assert_eq!(t.phase(), phase);
            t.update(Dir::Out, &seg(ACK | TCP_FIN, 101, 5001, 1000));
        }
    }

    #[test]
    fn a_reset_the_other_end_did_not_take_is_undone_when_its_sender_speaks_again() {
        // a forged reset from outside, in the window: the LAN host answers with a challenge
        // ACK (RFC 5961), the real remote end goes on
        let mut t = established();
        assert_eq!(t.update(Dir::In, &seg(TCP_RST, 5001, 0, 0)), Change::Reset);
        t.update(Dir::Out, &seg(ACK, 101, 5001, 1000));
        assert_eq!(t.phase(), Reset, "the LAN host's answer proves nothing");
        t.update(Dir::In, &seg(ACK, 5001, 101, 500));
        assert_eq!(t.phase(), Established);
        // the same for a reset from the LAN host
        let mut t = established();
        t.update(Dir::Out, &seg(TCP_RST, 101, 0, 0));
        t.update(Dir::In, &seg(ACK, 5001, 101, 500));
        assert_eq!(t.phase(), Reset);
        t.update(Dir::Out, &seg(ACK, 101, 5001, 1000));
        assert_eq!(t.phase(), Established);
    }

    #[test]
    fn what_the_fast_path_carried_replaces_what_the_engine_saw() {
        let mut t = established();
        // the fast path carried the LAN host's later acknowledgements: 1 MB further
        let mut stale = t;
        assert_eq!(
            stale.update(Dir::In, &seg(TCP_RST, 1_005_001, 0, 0)),
            Change::None
        );
        t.refresh(
            Dir::Out,
            Some(Acked {
                ack: 1_005_001,
                window: 10,
            }),
        );
        assert_eq!(t.receive_point(Dir::Out), Some(1_005_001));
        // its window is scaled like any other (10 << 7)
        let mut past = t;
        assert_eq!(
            past.update(Dir::In, &seg(TCP_RST, 1_005_001 + 1280, 0, 0)),
            Change::None
        );
        // nothing carried: kept as it was
        t.refresh(Dir::Out, None);
        assert_eq!(t.receive_point(Dir::Out), Some(1_005_001));
        assert_eq!(
            t.update(Dir::In, &seg(TCP_RST, 1_005_001 + 1279, 0, 0)),
            Change::Reset
        );
        // 3 GB on, which in sequence space looks like 1 GB back: taken all the same
        let far = 5001u32.wrapping_add(3 << 30);
        let mut t = established();
        t.refresh(
            Dir::Out,
            Some(Acked {
                ack: far,
                window: 10,
            }),
        );
        assert_eq!(t.receive_point(Dir::Out), Some(far));
    }

    #[test]
    fn a_flow_entry_stays_small() {
        // the TCP state and both receive windows in 15 bytes: 56 per flow with its byte count
        // and address epoch
        assert_eq!(std::mem::size_of::<TcpState>(), 15);
        assert_eq!(std::mem::size_of::<Flow>(), 56);
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

    #[test]
    fn the_window_scale_option_is_read_from_a_syn() {
        use wanlb_testkit::Ipv4Packet;
        let with = |options: &[u8], flags: u8| {
            let mut p = Ipv4Packet::tcp([198, 18, 3, 10], [198, 19, 0, 1], 40000, 443, b"")
                .flags(flags)
                .seq(77)
                .ack(88)
                .window(4321)
                .build();
            p.splice(40..40, options.iter().copied());
            p[32] = u8::try_from((20 + options.len()) / 4 * 16).unwrap();
            let total = u16::try_from(p.len()).unwrap();
            p[2..4].copy_from_slice(&total.to_be_bytes());
            let ip = Ipv4::parse(&p, 0).unwrap();
            Segment::parse(&p, &ip)
        };
        // MSS, SACK permitted, timestamps, NOP, window scale 7: as Linux sends it
        let linux = [
            2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7,
        ];
        let s = with(&linux, TCP_SYN);
        assert_eq!((s.seq, s.ack, s.window, s.wscale), (77, 88, 4321, Some(7)));
        assert_eq!(with(&[1, 3, 3, 15], TCP_SYN).wscale, Some(14), "at most 14");
        assert_eq!(with(&[2, 4, 5, 0xb4], TCP_SYN).wscale, None);
        assert_eq!(with(&[0, 3, 3, 7], TCP_SYN).wscale, None, "after the end");
        assert_eq!(with(&[3, 3, 7, 0], ACK).wscale, None, "only in a SYN");
        // an option whose length runs past the header is the end of it
        assert_eq!(with(&[1, 1, 8, 9], TCP_SYN).wscale, None);
        assert_eq!(with(&[2, 0, 3, 3], TCP_SYN).wscale, None);
        // UDP has none of it
        let p = Ipv4Packet::udp([198, 18, 3, 10], [198, 19, 0, 1], 1, 2, b"x").build();
        let ip = Ipv4::parse(&p, 0).unwrap();
        assert_eq!(Segment::parse(&p, &ip), Segment::default());
    }
}
