//! A flow's session: the state machine each flow runs to know how long to keep it
//! ([`TcpState`]; for TCP the one RFC 5382 and RFC 7857 2.2 ask of a NAT, and UDP and ICMP run
//! it too, to know when they are answered).

use super::Timeouts;
use crate::engine::Direction;
use crate::engine::wire::tcp::{self, TcpSegment};
use crate::engine::wire::{Ipv4Packet, PROTO_TCP};

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
    /// The segment `ip` carries; flags and all 0 if it is not TCP.
    pub fn of<T: AsRef<[u8]>>(ip: &Ipv4Packet<T>) -> Segment {
        if ip.protocol() != PROTO_TCP {
            return Segment::default();
        }
        Segment::of_tcp(ip.payload())
    }

    /// The segment of the TCP header at the start of `l4` (checked to hold the fixed header).
    pub fn of_tcp(l4: &[u8]) -> Segment {
        let t = TcpSegment::new_unchecked(l4);
        let flags = t.flags();
        Segment {
            flags,
            seq: t.seq_number(),
            ack: t.ack_number(),
            window: t.window_len(),
            wscale: if flags & tcp::SYN != 0 {
                t.window_scale()
            } else {
                None
            },
        }
    }

    fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }
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
    pub(super) fn timeout(self, t: &Timeouts) -> u64 {
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
pub enum SessionChange {
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
/// those before it judges a reset ([`TcpState::refresh`], [`crate::engine::Carried::acks`]).
///
/// 15 bytes, all byte-aligned, so that the flow entry stays at 48 bytes (see [`super::Flow`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TcpState {
    phase: TcpPhase,
    flags: u8,
    /// Per side (low nibble: the LAN host's): its SYN's window scale plus one; 0 before its
    /// SYN is seen.
    wscale: u8,
    /// Per side ([`Direction`] order): the last acknowledgement number it sent, its RCV.NXT (or,
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
            phase: if seg.has(tcp::SYN) && !seg.has(tcp::ACK) {
                TcpPhase::SynOut
            } else {
                TcpPhase::PickedUp
            },
            ..TcpState::default()
        };
        t.record(Direction::Outbound, seg, true);
        t
    }

    pub fn phase(&self) -> TcpPhase {
        self.phase
    }

    /// The session opened by the remote end's segment `seg` to a forwarded port: its SYN
    /// (TCP), or its first datagram (UDP).
    pub fn opened_by_remote(seg: &Segment) -> TcpState {
        let mut t = TcpState {
            phase: if seg.has(tcp::SYN) {
                TcpPhase::SynIn
            } else {
                TcpPhase::PickedUpIn
            },
            ..TcpState::default()
        };
        t.record(Direction::Inbound, seg, true);
        t
    }

    /// Moves the session along by segment `seg`, sent `dir`.
    pub fn update(&mut self, dir: Direction, seg: &Segment) -> SessionChange {
        if seg.has(tcp::RST) {
            if self.phase == TcpPhase::Reset || !self.in_window(dir, seg) {
                return SessionChange::None;
            }
            self.phase = TcpPhase::Reset;
            self.set(Self::RESET_BY_IN, dir == Direction::Inbound);
            return SessionChange::Reset;
        }
        let syn = seg.has(tcp::SYN);
        // a closed or reset session may be opened again by either end; one picked up mid-way
        // only by the LAN host (from outside, a forged SYN would keep it from being
        // established)
        let starts_over = match self.phase {
            TcpPhase::Closing | TcpPhase::Closed | TcpPhase::Reset => true,
            TcpPhase::PickedUp => dir == Direction::Outbound,
            _ => false,
        };
        if syn && !seg.has(tcp::ACK) && starts_over {
            *self = TcpState {
                phase: match dir {
                    Direction::Outbound => TcpPhase::SynOut,
                    Direction::Inbound => TcpPhase::SynIn,
                },
                flags: self.flags & Self::RESETTING,
                ..TcpState::default()
            };
            self.record(dir, seg, true);
            return SessionChange::Restarted;
        }
        let next = self.next(dir, seg);
        self.record(dir, seg, self.phase.is_opening());
        self.phase = next;
        if next == TcpPhase::Established {
            self.flags |= Self::COMPLETED;
        }
        SessionChange::None
    }

    /// The phase after `seg` (not a reset, not a SYN that starts the session over).
    fn next(&self, dir: Direction, seg: &Segment) -> TcpPhase {
        use TcpPhase::*;
        let (syn, ack, fin) = (seg.has(tcp::SYN), seg.has(tcp::ACK), seg.has(tcp::FIN));
        // open, and maybe closed one way by the same segment
        let open = || match (fin, dir) {
            (false, _) => Established,
            (true, Direction::Outbound) => FinOut,
            (true, Direction::Inbound) => FinIn,
        };
        match (self.phase, dir) {
            (SynOut, Direction::Inbound) | (SynIn, Direction::Outbound) if syn => {
                if ack {
                    if dir == Direction::Inbound {
                        SynAckIn
                    } else {
                        SynAckOut
                    }
                } else {
                    SynBoth
                }
            }
            (SynBoth, Direction::Inbound) if ack => SynAckIn,
            (SynBoth, Direction::Outbound) if ack => SynAckOut,
            (SynAckIn, Direction::Outbound) | (SynAckOut, Direction::Inbound) if ack => open(),
            (PickedUp, Direction::Inbound) | (PickedUpIn, Direction::Outbound) if !syn => open(),
            (Established, _) if fin => open(),
            (FinOut, Direction::Inbound) | (FinIn, Direction::Outbound) if fin => Closing,
            // the last FIN acknowledged: nothing is sent after a FIN but acknowledgements,
            // so an acknowledgement number that moves on is that one
            (Closing, d) if ack && self.known(d) && seq_after(seg.ack, self.ack(d)) => Closed,
            // the side the reset came from is still there: the other end did not take it
            // (RFC 5961 challenge ACK), nor must wanlb
            (Reset, d) if !syn && self.has(Self::RESET_BY_IN) == (d == Direction::Inbound) => {
                Established
            }
            (phase, _) => phase,
        }
    }

    /// Keeps what `seg`, sent `dir`, says about the receive windows. While the session opens,
    /// a SYN tells its window scale and the other side's receive point (before that side's
    /// own acknowledgements say it); an acknowledgement number only moves forward.
    fn record(&mut self, dir: Direction, seg: &Segment, opening: bool) {
        let (d, o) = (dir.index(), dir.other().index());
        // a SYN once the session is open is stale or forged: its options and numbers are not
        // the connection's
        if seg.has(tcp::SYN) && opening {
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
            seg.has(tcp::ACK) && (!self.known(dir) || !seq_after(self.ack(dir), seg.ack));
        if takes_ack {
            self.ack[d] = seg.ack.to_ne_bytes();
            self.flags |= Self::KNOWN[d];
        }
        if takes_ack || (seg.has(tcp::SYN) && opening) {
            self.win[d] = seg.window.to_ne_bytes();
            self.set(Self::SYN_WINDOW[d], seg.has(tcp::SYN));
        }
    }

    /// Takes what the fast path last carried from side `dir`, if it carried anything since it
    /// took the flow over. The engine sees only the SYN, FIN and RST of such a flow, so the
    /// fast path's record is the newer one (or as old as the side's FIN, a few segments at
    /// most), however far the connection has gone since: no comparison in sequence space,
    /// which cannot tell 3 GB ahead from 1 GB behind.
    pub fn refresh(&mut self, dir: Direction, carried: Option<Acked>) {
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
    fn in_window(&self, dir: Direction, seg: &Segment) -> bool {
        let to = dir.other();
        if self.known(to) {
            let offset = seg.seq.wrapping_sub(self.ack(to));
            let window = u32::from(u16::from_ne_bytes(self.win[to.index()])) << self.shift(to);
            offset == 0 || offset < window
        } else {
            seg.has(tcp::ACK) && self.known(dir) && seg.ack == self.ack(dir)
        }
    }

    /// How far side `dir`'s window fields are shifted (RFC 7323 2.3): both SYNs must carry the
    /// option; a window from a SYN, or of a connection picked up without its SYNs, is taken as
    /// it is (a reset that does not fit it only leaves the session as it was).
    fn shift(&self, dir: Direction) -> u8 {
        let (out, back) = (self.wscale & 0x0f, self.wscale >> 4);
        if self.has(Self::SYN_WINDOW[dir.index()] | Self::NO_WSCALE) || out == 0 || back == 0 {
            return 0;
        }
        match dir {
            Direction::Outbound => out - 1,
            Direction::Inbound => back - 1,
        }
    }

    fn known(&self, dir: Direction) -> bool {
        self.flags & Self::KNOWN[dir.index()] != 0
    }

    fn ack(&self, dir: Direction) -> u32 {
        u32::from_ne_bytes(self.ack[dir.index()])
    }

    /// Side `dir`'s receive point (RCV.NXT): the next sequence number it expects.
    pub fn receive_point(&self, dir: Direction) -> Option<u32> {
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
    /// chose it tells it (see [`crate::engine::hosts`]).
    pub fn acknowledges_syn_ack(&self, seg: &Segment) -> bool {
        self.phase == TcpPhase::SynAckIn
            && seg.flags & (tcp::ACK | tcp::SYN | tcp::RST) == tcp::ACK
            && self.known(Direction::Outbound)
            && seg.ack == self.ack(Direction::Outbound)
    }

    /// FIN seen both ways.
    pub fn is_closed(self) -> bool {
        matches!(self.phase, TcpPhase::Closing | TcpPhase::Closed)
    }

    /// Established, no FIN or RST yet: nothing left that the engine must watch.
    pub fn is_steady(self) -> bool {
        self.phase == TcpPhase::Established
    }

    pub(super) fn timeout(self, t: &Timeouts) -> u64 {
        self.phase.timeout(t)
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
pub(super) mod tests;
