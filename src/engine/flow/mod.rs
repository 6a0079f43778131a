//! Flows: one per (protocol, LAN endpoint, remote endpoint), found from either direction
//! ([`table`]), each running the state machine that says how long to keep it ([`session`]).

pub mod session;
pub mod table;

pub use session::{Acked, Segment, SessionChange, TcpPhase, TcpState};
pub use table::{EARLY_DROP_WINDOW, FlowTable};

use super::family::{Family, V4};
use super::limits::Scale;
use super::wire::{PROTO_ICMP, PROTO_TCP};
use super::{Stamp, UplinkId};

/// A flow as the LAN side sees it. For ICMP echo the "port" is the identifier and the remote
/// port is 0.
///
/// Packed (13 bytes for IPv4, not 16): it sits in every flow entry, whose size is the
/// table's. Its fields are read by value (`key.rem_addr`), never borrowed.
#[repr(C, packed)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FlowKey<F: Family = V4> {
    pub int_addr: F::Addr,
    pub rem_addr: F::Addr,
    pub int_port: u16,
    pub rem_port: u16,
    pub proto: u8,
}

/// A flow as a reply on an uplink names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ReplyKey<F: Family = V4> {
    pub rem_addr: F::Addr,
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

/// A flow entry: 48 bytes for IPv4.
#[derive(Clone, Copy, Debug)]
pub struct Flow<F: Family = V4> {
    pub key: FlowKey<F>,
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

impl<F: Family> Flow<F> {
    pub fn reply_key(&self) -> ReplyKey<F> {
        ReplyKey {
            rem_addr: self.key.rem_addr,
            rem_port: self.key.rem_port,
            ext_port: self.ext_port,
            proto: self.key.proto,
            uplink: self.uplink,
        }
    }

    pub(super) fn idle_timeout(&self, t: &Timeouts) -> u64 {
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
                self.tcp.phase(),
                TcpPhase::Established | TcpPhase::FinOut | TcpPhase::FinIn
            ),
            _ => !self.tcp.is_completed(),
        }
    }

    /// Its idle timeout, scaled by `scale` if pressure shortens it; and whether it was.
    pub(super) fn timeout_under(&self, t: &Timeouts, scale: Scale) -> (u64, bool) {
        let full = self.idle_timeout(t);
        if scale.is_full() || !self.is_shortened_under_pressure() {
            (full, false)
        } else {
            (scale.apply(full), true)
        }
    }
}

#[cfg(test)]
mod tests;
