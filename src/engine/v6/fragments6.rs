//! Fragmented IPv6 datagrams in flight, both ways (an uplink's packet sockets reassemble
//! IPv4 only): the first piece (with the transport header) is translated as a whole packet
//! and its mapping kept here by (source, destination, identification) as it arrived; a later
//! piece follows it, or is dropped and counted. A
//! piece that overlaps another is left to the destination, which discards the whole datagram
//! (RFC 5722), so no runs are tracked as IPv4's are.

use ahash::AHashMap;

use crate::engine::fragment::{MAX_DATAGRAMS, TIMEOUT_MS};
use crate::engine::{DropReason, Timestamp, UplinkId};

/// A datagram named by its source, destination and identification.
pub(super) type DatagramKey = (u128, u128, u32);

#[derive(Clone, Copy, Debug)]
struct Datagram {
    uplink: UplinkId,
    /// The address its later pieces are translated to: their source going out, their
    /// destination coming in.
    to: u128,
    first_seen: Timestamp,
}

/// At most [`MAX_DATAGRAMS`] datagrams per shard, each for [`TIMEOUT_MS`] after its first
/// piece.
#[derive(Debug, Default)]
pub(super) struct Fragments6 {
    datagrams: AHashMap<DatagramKey, Datagram>,
}

impl Fragments6 {
    /// Remembers the mapping of a datagram whose first piece went through `uplink`,
    /// translated to `to`.
    pub(super) fn first(
        &mut self,
        now: Timestamp,
        key: DatagramKey,
        uplink: UplinkId,
        to: u128,
    ) -> Result<(), DropReason> {
        if self.datagrams.len() >= MAX_DATAGRAMS && !self.datagrams.contains_key(&key) {
            self.expire(now);
            if self.datagrams.len() >= MAX_DATAGRAMS {
                return Err(DropReason::FragmentTableFull);
            }
        }
        let first_seen = now;
        self.datagrams.insert(
            key,
            Datagram {
                uplink,
                to,
                first_seen,
            },
        );
        Ok(())
    }

    /// The uplink and the address of a later piece of `key`'s datagram.
    pub(super) fn later(
        &self,
        now: Timestamp,
        key: &DatagramKey,
    ) -> Result<(UplinkId, u128), DropReason> {
        match self.datagrams.get(key) {
            Some(d) if now.as_millis().saturating_sub(d.first_seen.as_millis()) < TIMEOUT_MS => {
                Ok((d.uplink, d.to))
            }
            _ => Err(DropReason::FragmentWithoutFirst),
        }
    }

    pub(super) fn expire(&mut self, now: Timestamp) {
        self.datagrams
            .retain(|_, d| now.as_millis().saturating_sub(d.first_seen.as_millis()) < TIMEOUT_MS);
    }
}
