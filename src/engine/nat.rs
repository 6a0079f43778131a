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
}

/// A bitmap of the ports `first..=last` that are taken.
#[derive(Debug)]
struct PortPool {
    first: u16,
    size: u32,
    taken: Vec<u64>,
}

impl PortPool {
    fn new(first: u16, last: u16) -> PortPool {
        let size = u32::from(last - first) + 1;
        PortPool {
            first,
            size,
            taken: vec![0; size.div_ceil(64) as usize],
        }
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

#[derive(Debug)]
pub struct Nat {
    mappings: AHashMap<Endpoint, Mapping>,
    pools: Vec<[PortPool; 3]>,
    rng: u64,
}

impl Nat {
    pub fn new(uplinks: usize, ports: (u16, u16), seed: u64) -> Nat {
        let pools = (0..uplinks)
            .map(|_| std::array::from_fn(|_| PortPool::new(ports.0, ports.1)))
            .collect();
        Nat {
            mappings: AHashMap::new(),
            pools,
            rng: seed | 1,
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

    /// The external port of `ep`, taking a new one for its first flow. `None` when the pool
    /// is exhausted.
    pub fn acquire(&mut self, ep: Endpoint) -> Option<u16> {
        let start = self.next_random();
        match self.mappings.entry(ep) {
            Entry::Occupied(mut o) => {
                o.get_mut().flows += 1;
                Some(o.get().ext_port)
            }
            Entry::Vacant(v) => {
                let pool = &mut self.pools[usize::from(ep.uplink)][proto_index(ep.proto)];
                let ext_port = pool.take(start)?;
                v.insert(Mapping { ext_port, flows: 1 });
                Some(ext_port)
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
            }
        }
    }

    pub fn len(&self) -> usize {
        self.mappings.len()
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
        let p = nat.acquire(a).unwrap();
        assert!((61000..=61009).contains(&p));
        assert_eq!(nat.acquire(a), Some(p));
        nat.release(a);
        assert_eq!(nat.len(), 1);
        nat.release(a);
        assert!(nat.is_empty());
    }

    #[test]
    fn exhaustion_is_none_and_release_makes_room() {
        let mut nat = Nat::new(1, (61000, 61003), 1);
        for port in 0..4 {
            assert!(nat.acquire(ep(1, port, PROTO_TCP, 0)).is_some());
        }
        assert_eq!(nat.acquire(ep(1, 99, PROTO_TCP, 0)), None);
        // pools are per protocol: UDP still has room
        assert!(nat.acquire(ep(1, 99, PROTO_UDP, 0)).is_some());
        nat.release(ep(1, 2, PROTO_TCP, 0));
        assert!(nat.acquire(ep(1, 99, PROTO_TCP, 0)).is_some());
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
                    if let Some(ext) = nat.acquire(e) {
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
