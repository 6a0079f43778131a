//! Endpoint-independent port mappings (RFC 4787 REQ-1) from per-uplink, per-protocol pools.
//!
//! A LAN endpoint (address, port) keeps one external port on an uplink for as long as any
//! flow uses it, whatever the remote end. Ports come from a configured range that must not
//! overlap the kernel's own ephemeral range, so the gateway's sockets and wanlb never collide.

use std::collections::hash_map::Entry;

use ahash::AHashMap;

use super::UplinkId;
use super::packet::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};

/// A LAN endpoint as seen on one uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub addr: u32,
    pub port: u16,
    pub proto: u8,
    pub uplink: UplinkId,
}

#[derive(Clone, Copy, Debug)]
struct Mapping {
    ext_port: u16,
    flows: u32,
    /// When it was made, in mappings made so far: the newest of an endpoint's is where it
    /// talks now.
    made: u64,
}

/// A bitmap of the ports `first..=last` that are taken, some of them for good (forwarded).
#[derive(Debug)]
struct PortPool {
    first: u16,
    size: u32,
    taken: Vec<u64>,
    /// Ports kept aside for good: taken, but by no mapping.
    reserved: u32,
}

impl PortPool {
    fn new(first: u16, last: u16) -> PortPool {
        let size = u32::from(last - first) + 1;
        PortPool {
            first,
            size,
            taken: vec![0; size.div_ceil(64) as usize],
            reserved: 0,
        }
    }

    /// Keeps `port` out of every mapping, if it is in the pool and free.
    fn reserve(&mut self, port: u16) {
        let Some(i) = port.checked_sub(self.first).map(u32::from) else {
            return;
        };
        if i < self.size && !self.is_taken(i) {
            self.taken[(i / 64) as usize] |= 1 << (i % 64);
            self.reserved += 1;
        }
    }

    /// Ports that mappings hold.
    fn in_use(&self) -> u64 {
        let taken: u64 = self.taken.iter().map(|w| u64::from(w.count_ones())).sum();
        taken - u64::from(self.reserved)
    }

    fn is_taken(&self, i: u32) -> bool {
        self.taken[(i / 64) as usize] & (1 << (i % 64)) != 0
    }

    /// Takes the first free port at or after `start` (wrapping), if any.
    fn take(&mut self, start: u32) -> Option<u16> {
        let start = start % self.size;
        let i = (start..self.size)
            .chain(0..start)
            .find(|&i| !self.is_taken(i))?;
        self.taken[(i / 64) as usize] |= 1 << (i % 64);
        Some(self.first + u16::try_from(i).ok()?)
    }

    fn give_back(&mut self, port: u16) {
        let i = u32::from(port - self.first);
        self.taken[(i / 64) as usize] &= !(1 << (i % 64));
    }
}

fn proto_index(proto: u8) -> usize {
    match proto {
        PROTO_TCP => 0,
        PROTO_UDP => 1,
        PROTO_ICMP => 2,
        _ => unreachable!("the parser admits only TCP, UDP and ICMP"),
    }
}

/// Why no port could be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exhausted {
    /// The uplink's pool for the protocol is used up.
    Pool,
    /// The LAN host already holds as many ports of that pool as one host may.
    HostLimit,
}

#[derive(Debug)]
pub struct Nat {
    mappings: AHashMap<Endpoint, Mapping>,
    pools: Vec<[PortPool; 3]>,
    /// Ports each LAN host holds, per uplink and protocol, and how many it may.
    per_host: AHashMap<(u32, UplinkId, u8), u32>,
    max_per_host: u32,
    rng: u64,
    /// Mappings made so far.
    made: u64,
}

impl Nat {
    pub fn new(uplinks: usize, ports: (u16, u16), seed: u64) -> Nat {
        let pools = (0..uplinks)
            .map(|_| std::array::from_fn(|_| PortPool::new(ports.0, ports.1)))
            .collect();
        Nat {
            mappings: AHashMap::new(),
            pools,
            per_host: AHashMap::new(),
            max_per_host: u32::MAX,
            rng: seed | 1,
            made: 0,
        }
    }

    /// Lets one LAN host hold at most `limit` ports of each pool (uplink and protocol), so a
    /// busy resolver or a torrent client cannot take every port from everyone else.
    pub fn limit_per_host(&mut self, limit: u32) {
        self.max_per_host = limit.max(1);
    }

    /// Keeps `port` of `proto` out of the pools of every uplink: a forwarded port, whose
    /// inbound flows must never be taken for a mapping's replies.
    pub fn reserve(&mut self, proto: u8, port: u16) {
        for pools in &mut self.pools {
            pools[proto_index(proto)].reserve(port);
        }
    }

    /// xorshift64: a cheap, seeded spread of where port searches start (RFC 6056 asks that
    /// external ports not be predictable from the previous one).
    fn next_random(&mut self) -> u32 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 32) as u32
    }

    /// The external port of `ep`, taking a new one for its first flow.
    ///
    /// With `current`, the mapping becomes the endpoint's newest (where it talks now); a flow
    /// that goes its own way (a pinned destination's) leaves that as it is.
    pub fn acquire(&mut self, ep: Endpoint, current: bool) -> Result<u16, Exhausted> {
        let start = self.next_random();
        if current {
            self.made += 1;
        }
        let made = if current { self.made } else { 0 };
        match self.mappings.entry(ep) {
            Entry::Occupied(mut o) => {
                let m = o.get_mut();
                m.flows += 1;
                m.made = m.made.max(made);
                Ok(m.ext_port)
            }
            Entry::Vacant(v) => {
                let key = (ep.addr, ep.uplink, ep.proto);
                if self.per_host.get(&key).copied().unwrap_or(0) >= self.max_per_host {
                    return Err(Exhausted::HostLimit);
                }
                let pool = &mut self.pools[usize::from(ep.uplink)][proto_index(ep.proto)];
                let ext_port = pool.take(start).ok_or(Exhausted::Pool)?;
                *self.per_host.entry(key).or_insert(0) += 1;
                v.insert(Mapping {
                    ext_port,
                    flows: 1,
                    made,
                });
                Ok(ext_port)
            }
        }
    }

    /// One flow of `ep` ended; the port goes back to the pool with the last one.
    pub fn release(&mut self, ep: Endpoint) {
        if let Entry::Occupied(mut o) = self.mappings.entry(ep) {
            o.get_mut().flows -= 1;
            if o.get().flows == 0 {
                let port = o.remove().ext_port;
                self.pools[usize::from(ep.uplink)][proto_index(ep.proto)].give_back(port);
                let key = (ep.addr, ep.uplink, ep.proto);
                if let Entry::Occupied(mut held) = self.per_host.entry(key) {
                    *held.get_mut() -= 1;
                    if *held.get() == 0 {
                        held.remove();
                    }
                }
            }
        }
    }

    /// Of the uplinks in `among` (one bit each), the one where the LAN endpoint `addr:port`
    /// has its newest mapping: where it talks now (after a failover its flows moved there,
    /// while an idle one may still hold a mapping on the line it left).
    pub fn newest_uplink_of(
        &self,
        addr: u32,
        port: u16,
        proto: u8,
        among: u32,
    ) -> Option<UplinkId> {
        (0..self.pools.len())
            .filter(|&u| among & (1 << u) != 0)
            .map(super::uplink_id)
            .filter_map(|uplink| {
                let ep = Endpoint {
                    addr,
                    port,
                    proto,
                    uplink,
                };
                self.mappings.get(&ep).map(|m| (m.made, uplink))
            })
            .max()
            .map(|(_, uplink)| uplink)
    }

    pub fn len(&self) -> usize {
        self.mappings.len()
    }

    /// Ports taken from `uplink`'s pools: TCP, UDP, ICMP.
    pub fn in_use(&self, uplink: UplinkId) -> [u64; 3] {
        self.pools
            .get(usize::from(uplink))
            .map_or([0; 3], |pools| pools.each_ref().map(PortPool::in_use))
    }

    pub fn is_empty(&self) -> bool {
        self.mappings.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    fn ep(addr: u32, port: u16, proto: u8, uplink: UplinkId) -> Endpoint {
        Endpoint {
            addr,
            port,
            proto,
            uplink,
        }
    }

    #[test]
    fn same_endpoint_same_port_until_last_release() {
        let mut nat = Nat::new(2, (61000, 61009), 7);
        let a = ep(1, 1000, PROTO_UDP, 0);
        let p = nat.acquire(a, true).unwrap();
        assert!((61000..=61009).contains(&p));
        assert_eq!(nat.acquire(a, true), Ok(p));
        nat.release(a);
        assert_eq!(nat.len(), 1);
        nat.release(a);
        assert!(nat.is_empty());
    }

    #[test]
    fn exhaustion_is_an_error_and_release_makes_room() {
        let mut nat = Nat::new(1, (61000, 61003), 1);
        for port in 0..4 {
            assert!(nat.acquire(ep(1, port, PROTO_TCP, 0), true).is_ok());
        }
        assert_eq!(
            nat.acquire(ep(1, 99, PROTO_TCP, 0), true),
            Err(Exhausted::Pool)
        );
        // pools are per protocol: UDP still has room
        assert!(nat.acquire(ep(1, 99, PROTO_UDP, 0), true).is_ok());
        nat.release(ep(1, 2, PROTO_TCP, 0));
        assert!(nat.acquire(ep(1, 99, PROTO_TCP, 0), true).is_ok());
    }

    #[test]
    fn one_host_cannot_take_the_whole_pool() {
        let mut nat = Nat::new(2, (61000, 61007), 1);
        nat.limit_per_host(3);
        for port in 0..3 {
            assert!(nat.acquire(ep(1, port, PROTO_UDP, 0), true).is_ok());
        }
        // the busy host is refused, another host is not, and another uplink or protocol
        // is another pool
        assert_eq!(
            nat.acquire(ep(1, 9, PROTO_UDP, 0), true),
            Err(Exhausted::HostLimit)
        );
        assert!(nat.acquire(ep(2, 9, PROTO_UDP, 0), true).is_ok());
        assert!(nat.acquire(ep(1, 9, PROTO_UDP, 1), true).is_ok());
        assert!(nat.acquire(ep(1, 9, PROTO_TCP, 0), true).is_ok());
        // an existing mapping's next flow costs nothing more
        assert!(nat.acquire(ep(1, 0, PROTO_UDP, 0), true).is_ok());
        // a port given back makes room for the host again
        nat.release(ep(1, 1, PROTO_UDP, 0));
        assert!(nat.acquire(ep(1, 9, PROTO_UDP, 0), true).is_ok());
        assert_eq!(
            nat.acquire(ep(1, 10, PROTO_UDP, 0), true),
            Err(Exhausted::HostLimit)
        );
    }

    #[test]
    fn a_reserved_port_is_never_handed_out_nor_counted_in_use() {
        let mut nat = Nat::new(2, (61000, 61003), 5);
        nat.reserve(PROTO_TCP, 61002);
        nat.reserve(PROTO_TCP, 61002);
        nat.reserve(PROTO_TCP, 80); // outside the pool: nothing to keep aside
        let ports: HashSet<u16> = (0..3)
            .map(|p| nat.acquire(ep(1, p, PROTO_TCP, 1), true).unwrap())
            .collect();
        assert!(!ports.contains(&61002), "{ports:?}");
        assert_eq!(
            nat.acquire(ep(1, 9, PROTO_TCP, 1), true),
            Err(Exhausted::Pool)
        );
        assert_eq!(nat.in_use(1), [3, 0, 0]);
        assert_eq!(nat.in_use(0), [0, 0, 0]);
        // another protocol's pool keeps all its ports
        for p in 0..4 {
            assert!(nat.acquire(ep(1, p, PROTO_UDP, 0), true).is_ok());
        }
    }

    proptest! {
        /// No two live mappings share an external (uplink, protocol, port).
        #[test]
        fn live_mappings_never_share_a_port(
            ops in proptest::collection::vec((0u32..6, 0u16..8, 0u8..3, 0u8..2, any::<bool>()), 1..300)
        ) {
            let mut nat = Nat::new(2, (61000, 61015), 3);
            let mut live: AHashMap<Endpoint, (u16, u32)> = AHashMap::new();
            for (addr, port, p, uplink, take) in ops {
                let proto = [PROTO_TCP, PROTO_UDP, PROTO_ICMP][usize::from(p)];
                let e = ep(addr, port, proto, uplink);
                if take {
                    if let Ok(ext) = nat.acquire(e, true) {
                        let entry = live.entry(e).or_insert((ext, 0));
                        prop_assert_eq!(entry.0, ext, "endpoint kept its port");
                        entry.1 += 1;
                    }
                } else if let Some(entry) = live.get_mut(&e) {
                    nat.release(e);
                    entry.1 -= 1;
                    if entry.1 == 0 { live.remove(&e); }
                }
                let external: HashSet<_> = live.iter().map(|(e, (ext, _))| (e.uplink, e.proto, *ext)).collect();
                prop_assert_eq!(external.len(), live.len());
                prop_assert_eq!(nat.len(), live.len());
            }
        }
    }
}
