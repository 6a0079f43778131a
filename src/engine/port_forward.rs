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

use super::family::{Family, V4};
use super::{UplinkId, lock};

/// The remote addresses that count as one source against a forward: a block, not one
/// address, as a client's provider hands out neighbouring addresses and an attacker holds a
/// block: an IPv4 /24, an IPv6 /48 (what one site is delegated at most).
fn source_of<F: Family>(remote: F::Addr) -> F::Addr {
    F::mask(remote, if F::BITS == 32 { 24 } else { 48 })
}

/// Why a forward takes no new connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Full {
    /// It has as many as it may.
    Forward,
    /// It has as many from the new one's source (its /24) as one source may.
    Source,
}

/// A port of an uplink's address whose inbound flows go to a LAN host's port (of the
/// uplink's IPv4 address to an IPv4 host, or of its IPv6 address to an IPv6 host).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Forward<F: Family = V4> {
    /// TCP or UDP (`wire::PROTO_TCP`, `wire::PROTO_UDP`).
    pub proto: u8,
    /// The port on the uplink's address.
    pub port: u16,
    pub uplink: UplinkId,
    /// Where its flows go in the LAN.
    pub host: F::Addr,
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
#[derive(Debug)]
pub(super) struct Forwards<F: Family = V4> {
    list: Vec<Forward<F>>,
    by_port: AHashMap<(u8, UplinkId, u16), usize>,
    live: Vec<AtomicU32>,
    opened: Vec<AtomicU64>,
    /// Live connections per forward and source block; an entry only while it has some, so
    /// at most as many as the forwards' live connections.
    sources: Mutex<AHashMap<(usize, F::Addr), u32>>,
}

impl<F: Family> Default for Forwards<F> {
    fn default() -> Forwards<F> {
        Forwards::new(Vec::new())
    }
}

impl<F: Family> Forwards<F> {
    /// The first of `forwards` for each protocol, uplink and port.
    pub(super) fn new(forwards: Vec<Forward<F>>) -> Forwards<F> {
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

    pub(super) fn list(&self) -> &[Forward<F>] {
        &self.list
    }

    /// The index of the forward of `port` on `uplink` for `proto`, if there is one.
    pub(super) fn find(&self, proto: u8, uplink: UplinkId, port: u16) -> Option<usize> {
        if self.list.is_empty() {
            return None;
        }
        self.by_port.get(&(proto, uplink, port)).copied()
    }

    pub(super) fn get(&self, index: usize) -> Forward<F> {
        self.list[index]
    }

    /// Counts one more flow through forward `index` from `remote`, unless the forward has
    /// `max` already, or `remote`'s block has `per_source` of them.
    pub(super) fn try_open(
        &self,
        index: usize,
        remote: F::Addr,
        max: u32,
        per_source: u32,
    ) -> Result<(), Full> {
        let mut sources = lock(&self.sources);
        let source = (index, source_of::<F>(remote));
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
    pub(super) fn closed(&self, index: usize, remote: F::Addr) {
        self.live[index].fetch_sub(1, Ordering::Relaxed);
        let mut sources = lock(&self.sources);
        let source = (index, source_of::<F>(remote));
        if let Some(n) = sources.get_mut(&source) {
            *n -= 1;
            if *n == 0 {
                sources.remove(&source);
            }
        }
    }

    /// Counts one more flow through forward `index` from `remote` that no limit may refuse:
    /// one its LAN host opened itself, from the forwarded port, on a line that keeps ports
    /// (NPTv6), so that it is the same connection the forward would have opened.
    pub(super) fn count_in(&self, index: usize, remote: F::Addr) {
        self.live[index].fetch_add(1, Ordering::Relaxed);
        *lock(&self.sources)
            .entry((index, source_of::<F>(remote)))
            .or_default() += 1;
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
