//! Port forwards: connections from the internet to a port of an uplink's address, sent on to a
//! LAN host's port.
//!
//! A forwarded flow is opened by the remote end (for TCP by its SYN), holds the forwarded port
//! as its external port and stays on its uplink for life: the remote end knows only that
//! uplink's address, so a reply through another uplink would be dropped as unsolicited. It takes
//! no port from the NAT pool (the pool keeps forwarded ports aside, so the port alone tells a
//! forwarded flow from a translated one), binds no destination and counts toward no weight.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use ahash::AHashMap;

use super::{UplinkId, lock};

/// The remote addresses that count as one source against a forward: a /24, as a client's
/// provider hands out neighbouring addresses and an attacker holds a block, not one address.
const SOURCE_MASK: u32 = 0xffff_ff00;

/// Why a forward takes no new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Full {
    /// It has as many as it may.
    Forward,
    /// It has as many from the new one's source (its /24) as one source may.
    Source,
}

/// A port of an uplink's address whose inbound flows go to a LAN host's port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward {
    /// TCP or UDP (`wire::PROTO_TCP`, `wire::PROTO_UDP`).
    pub proto: u8,
    /// The port on the uplink's address.
    pub port: u16,
    pub uplink: UplinkId,
    /// Where its flows go in the LAN.
    pub host: u32,
    pub host_port: u16,
}

/// How busy a forward is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ForwardCount {
    /// Flows through it now.
    pub live: u64,
    /// Flows opened through it so far.
    pub opened: u64,
}

/// The forwards, found by protocol, uplink and port, with how many flows each has now and
/// has opened.
#[derive(Debug, Default)]
pub(super) struct Forwards {
    list: Vec<Forward>,
    by_port: AHashMap<(u8, UplinkId, u16), usize>,
    live: Vec<AtomicU32>,
    opened: Vec<AtomicU64>,
    /// Live connections per forward and source /24; an entry only while it has some, so at
    /// most as many as the forwards' live connections.
    sources: Mutex<AHashMap<(usize, u32), u32>>,
}

impl Forwards {
    /// The first of `forwards` for each protocol, uplink and port.
    pub(super) fn new(forwards: Vec<Forward>) -> Forwards {
        let mut by_port = AHashMap::new();
        for (i, f) in forwards.iter().enumerate() {
            by_port.entry((f.proto, f.uplink, f.port)).or_insert(i);
        }
        Forwards {
            live: forwards.iter().map(|_| AtomicU32::new(0)).collect(),
            opened: forwards.iter().map(|_| AtomicU64::new(0)).collect(),
            list: forwards,
            by_port,
            sources: Mutex::default(),
        }
    }

    pub(super) fn list(&self) -> &[Forward] {
        &self.list
    }

    /// The index of the forward of `port` on `uplink` for `proto`, if there is one.
    pub(super) fn find(&self, proto: u8, uplink: UplinkId, port: u16) -> Option<usize> {
        if self.list.is_empty() {
            return None;
        }
        self.by_port.get(&(proto, uplink, port)).copied()
    }

    pub(super) fn get(&self, index: usize) -> Forward {
        self.list[index]
    }

    /// Counts one more flow through forward `index` from `remote`, unless the forward has
    /// `max` already, or `remote`'s /24 has `per_source` of them.
    pub(super) fn try_open(
        &self,
        index: usize,
        remote: u32,
        max: u32,
        per_source: u32,
    ) -> Result<(), Full> {
        let mut sources = lock(&self.sources);
        let source = (index, remote & SOURCE_MASK);
        if sources.get(&source).is_some_and(|&n| n >= per_source) {
            return Err(Full::Source);
        }
        self.live[index]
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < max).then_some(n + 1)
            })
            .map_err(|_| Full::Forward)?;
        *sources.entry(source).or_default() += 1;
        Ok(())
    }

    /// A flow through forward `index` from `remote` ended (or was counted and then not
    /// opened).
    pub(super) fn closed(&self, index: usize, remote: u32) {
        self.live[index].fetch_sub(1, Ordering::Relaxed);
        let mut sources = lock(&self.sources);
        let source = (index, remote & SOURCE_MASK);
        if let Some(n) = sources.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                sources.remove(&source);
            }
        }
    }

    pub(super) fn count_opened(&self, index: usize) {
        self.opened[index].fetch_add(1, Ordering::Relaxed);
    }

    /// Flows through each forward now, and opened through it so far, in order.
    pub(super) fn counts(&self) -> impl Iterator<Item = ForwardCount> + '_ {
        self.live
            .iter()
            .zip(&self.opened)
            .map(|(live, opened)| ForwardCount {
                live: u64::from(live.load(Ordering::Relaxed)),
                opened: opened.load(Ordering::Relaxed),
            })
    }
}
