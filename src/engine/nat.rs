//! Endpoint-independent port mappings (RFC 4787 REQ-1) from per-uplink, per-protocol pools.
//!
//! A LAN endpoint (address, port) keeps one external port on an uplink for as long as any
//! flow uses it, whatever the remote end. Ports come from a configured range that must not
//! overlap the kernel's own ephemeral range, so the gateway's sockets and wanlb never collide.
//! What each LAN host may hold, in flows and ports, is [`Hosts`]'s to say: it lives here, under
//! the same lock, since every flow a LAN host opens or ends takes this lock anyway.

use std::collections::hash_map::Entry;
use std::hash::Hasher;

use ahash::AHashMap;
use siphasher::sip::SipHasher13;

use super::family::{Family, V4};
use super::hosts::{HostId, Hosts, Network, Refusal};
use super::limits::Limits;
use super::wire::{PROTO_ICMP, PROTO_ICMPV6, PROTO_TCP, PROTO_UDP};
use super::{Timestamp, UplinkId};

/// A LAN endpoint as seen on one uplink.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Endpoint<F: Family = V4> {
    pub addr: F::Addr,
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
        // an echo's identifier, of ICMP or ICMPv6 (whose pools are their family's own)
        PROTO_ICMP | PROTO_ICMPV6 => 2,
        _ => unreachable!("the parser admits only TCP, UDP and ICMP"),
    }
}

/// Why no port could be had.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exhausted {
    /// The uplink's pool for the protocol is used up.
    Pool,
    /// The LAN host (or its network's unverified addresses, together) already holds as many
    /// ports of that pool as one host may.
    Host(Refusal),
}

#[derive(Debug)]
pub struct Nat<F: Family = V4> {
    mappings: AHashMap<Endpoint<F>, Mapping>,
    pools: Vec<[PortPool; 3]>,
    /// The flows and ports each LAN host holds, and may.
    hosts: Hosts<F>,
    /// The secret of the port searches' starts, and how many were drawn.
    key: u64,
    drawn: u64,
    /// Mappings made so far.
    made: u64,
}

impl<F: Family> Nat<F> {
    pub fn new(uplinks: usize, ports: (u16, u16), seed: u64) -> Nat<F> {
        let pools = (0..uplinks)
            .map(|_| std::array::from_fn(|_| PortPool::new(ports.0, ports.1)))
            .collect();
        Nat {
            mappings: AHashMap::new(),
            pools,
            hosts: Hosts::new(uplinks),
            key: seed,
            drawn: 0,
            made: 0,
        }
    }

    /// Lets one LAN host hold at most so many flows, and ports of each pool (uplink and
    /// protocol), so a busy resolver or a torrent client cannot take every port from everyone
    /// else (see [`Hosts`] for who is a host). A reload may change them: what is held stays.
    pub fn set_limits(&mut self, limits: &Limits) {
        self.hosts.set_limits(limits);
    }

    /// Counts a new flow of the LAN host `addr`, on `network`, unless its share is full;
    /// before anything else is spent on the flow. It is given back by [`Nat::release`] once
    /// the flow had its port, else by [`Nat::unadmit`].
    pub fn admit(&mut self, addr: F::Addr, network: Network<F>) -> Result<(), Refusal> {
        self.hosts.open(addr, network)
    }

    /// Gives back what [`Nat::admit`] counted, for a flow that did not open after all.
    pub fn unadmit(&mut self, addr: F::Addr, now: Timestamp) {
        self.hosts.close(addr, now);
    }

    /// `addr` completed a TCP handshake (see [`Hosts::verify`]).
    pub fn verify(&mut self, addr: F::Addr) -> bool {
        self.hosts.verify(addr)
    }

    /// `addr`'s link and MAC, as the neighbour table says (see [`Hosts::set_identity`]).
    pub fn set_host_identity(&mut self, addr: F::Addr, id: Option<HostId>) -> bool {
        self.hosts.set_identity(addr, id)
    }

    /// Every identity the neighbour table holds (see [`Hosts::set_identities`]).
    pub fn set_host_identities(&mut self, all: impl IntoIterator<Item = (F::Addr, HostId)>) {
        self.hosts.set_identities(all);
    }

    pub fn hosts(&self) -> &Hosts<F> {
        &self.hosts
    }

    pub fn expire_hosts(&mut self, now: Timestamp) {
        self.hosts.expire(now);
    }

    /// Keeps `port` of `proto` out of the pools of every uplink: a forwarded port, whose
    /// inbound flows must never be taken for a mapping's replies.
    pub fn reserve(&mut self, proto: u8, port: u16) {
        for pools in &mut self.pools {
            pools[proto_index(proto)].reserve(port);
        }
    }

    /// Where the next port search starts: a keyed hash (SipHash, a pseudo-random function) of
    /// how many were drawn before. RFC 6056 asks that external ports not be predictable from
    /// the previous ones; a linear generator (xorshift, say) gives its state away to whoever
    /// sees a few ports, and with it every port to come.
    fn next_random(&mut self) -> u32 {
        self.drawn += 1;
        let mut h = SipHasher13::new_with_keys(self.key, self.key.rotate_left(32));
        h.write_u64(self.drawn);
        (h.finish() >> 32) as u32
    }

    /// The external port of `ep`, taking a new one for its first flow (admitted first, see
    /// [`Nat::admit`]).
    ///
    /// With `current`, the mapping becomes the endpoint's newest (where it talks now); a flow
    /// that goes its own way (a pinned destination's) leaves that as it is.
    pub fn acquire(&mut self, ep: Endpoint<F>, current: bool) -> Result<u16, Exhausted> {
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
                let pool_id = (ep.uplink, ep.proto);
                self.hosts
                    .take_port(ep.addr, pool_id)
                    .map_err(Exhausted::Host)?;
                let pool = &mut self.pools[usize::from(ep.uplink)][proto_index(ep.proto)];
                let Some(ext_port) = pool.take(start) else {
                    self.hosts.give_port(ep.addr, pool_id);
                    return Err(Exhausted::Pool);
                };
                v.insert(Mapping {
                    ext_port,
                    flows: 1,
                    made,
                });
                Ok(ext_port)
            }
        }
    }

    /// One flow of `ep` ended; the port goes back to the pool with the last one, and the
    /// host's share gets the flow back.
    pub fn release(&mut self, ep: Endpoint<F>, now: Timestamp) {
        if let Entry::Occupied(mut o) = self.mappings.entry(ep) {
            o.get_mut().flows -= 1;
            if o.get().flows == 0 {
                let port = o.remove().ext_port;
                self.pools[usize::from(ep.uplink)][proto_index(ep.proto)].give_back(port);
                self.hosts.give_port(ep.addr, (ep.uplink, ep.proto));
            }
            self.hosts.close(ep.addr, now);
        }
    }

    /// Of the uplinks in `among` (one bit each), the one where the LAN endpoint `addr:port`
    /// has its newest mapping: where it talks now (after a failover its flows moved there,
    /// while an idle one may still hold a mapping on the uplink it left).
    pub fn newest_uplink_of(
        &self,
        addr: F::Addr,
        port: u16,
        proto: u8,
        among: u32,
    ) -> Option<UplinkId> {
        (0..self.pools.len())
            .filter(|&u| among & super::uplink_bit(u) != 0)
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

    const T0: Timestamp = Timestamp::from_millis(0);

    /// What the engine does for a new flow: count it for its host, then take its port.
    fn open(nat: &mut Nat, e: Endpoint) -> Result<u16, Exhausted> {
        nat.admit(e.addr, Network::of(e.addr, &[]))
            .map_err(Exhausted::Host)?;
        nat.acquire(e, true)
            .inspect_err(|_| nat.unadmit(e.addr, T0))
    }

    #[test]
    fn same_endpoint_same_port_until_last_release() {
        let mut nat = Nat::new(2, (61000, 61009), 7);
        let a = ep(1, 1000, PROTO_UDP, 0);
        let p = open(&mut nat, a).unwrap();
        assert!((61000..=61009).contains(&p));
        assert_eq!(open(&mut nat, a), Ok(p));
        nat.release(a, T0);
        assert_eq!(nat.len(), 1);
        nat.release(a, T0);
        assert!(nat.is_empty());
    }

    #[test]
    fn exhaustion_is_an_error_and_release_makes_room() {
        let mut nat = Nat::new(1, (61000, 61003), 1);
        for port in 0..4 {
            assert!(open(&mut nat, ep(1, port, PROTO_TCP, 0)).is_ok());
        }
        assert_eq!(
            open(&mut nat, ep(1, 99, PROTO_TCP, 0)),
            Err(Exhausted::Pool)
        );
        // pools are per protocol: UDP still has room
        assert!(open(&mut nat, ep(1, 99, PROTO_UDP, 0)).is_ok());
        nat.release(ep(1, 2, PROTO_TCP, 0), T0);
        assert!(open(&mut nat, ep(1, 99, PROTO_TCP, 0)).is_ok());
    }

    #[test]
    fn one_host_cannot_take_the_whole_pool() {
        let mut nat = Nat::new(2, (61000, 61007), 1);
        nat.set_limits(&Limits {
            max_ports_per_host: 3,
            ..Limits::unlimited()
        });
        for port in 0..3 {
            assert!(open(&mut nat, ep(1, port, PROTO_UDP, 0)).is_ok());
        }
        // until they complete a handshake, hosts 1 and 2 share one host's share
        assert_eq!(
            open(&mut nat, ep(2, 9, PROTO_UDP, 0)),
            Err(Exhausted::Host(Refusal::UnverifiedPorts))
        );
        assert!(nat.verify(1));
        open(&mut nat, ep(2, 99, PROTO_UDP, 1)).unwrap();
        assert!(nat.verify(2));
        nat.release(ep(2, 99, PROTO_UDP, 1), T0);
        // the busy host is refused, another host is not, and another uplink or protocol
        // is another pool
        assert_eq!(
            open(&mut nat, ep(1, 9, PROTO_UDP, 0)),
            Err(Exhausted::Host(Refusal::HostPorts))
        );
        assert!(open(&mut nat, ep(2, 9, PROTO_UDP, 0)).is_ok());
        assert!(open(&mut nat, ep(1, 9, PROTO_UDP, 1)).is_ok());
        assert!(open(&mut nat, ep(1, 9, PROTO_TCP, 0)).is_ok());
        // an existing mapping's next flow costs nothing more
        assert!(open(&mut nat, ep(1, 0, PROTO_UDP, 0)).is_ok());
        // a port given back makes room for the host again
        nat.release(ep(1, 1, PROTO_UDP, 0), T0);
        assert!(open(&mut nat, ep(1, 9, PROTO_UDP, 0)).is_ok());
        assert_eq!(
            open(&mut nat, ep(1, 10, PROTO_UDP, 0)),
            Err(Exhausted::Host(Refusal::HostPorts))
        );
    }

    #[test]
    fn a_reserved_port_is_never_handed_out_nor_counted_in_use() {
        let mut nat = Nat::new(2, (61000, 61003), 5);
        nat.reserve(PROTO_TCP, 61002);
        nat.reserve(PROTO_TCP, 61002);
        nat.reserve(PROTO_TCP, 80); // outside the pool: nothing to keep aside
        let ports: HashSet<u16> = (0..3)
            .map(|p| open(&mut nat, ep(1, p, PROTO_TCP, 1)).unwrap())
            .collect();
        assert!(!ports.contains(&61002), "{ports:?}");
        assert_eq!(open(&mut nat, ep(1, 9, PROTO_TCP, 1)), Err(Exhausted::Pool));
        assert_eq!(nat.in_use(1), [3, 0, 0]);
        assert_eq!(nat.in_use(0), [0, 0, 0]);
        // another protocol's pool keeps all its ports
        for p in 0..4 {
            assert!(open(&mut nat, ep(1, p, PROTO_UDP, 0)).is_ok());
        }
    }

    /// The state of a generator that an observer of the ports it gave would recover, were it
    /// xorshift64 (linear over GF(2)): each port of a pool of 31,744 (1024 to 32767, the
    /// automatic pool beside Linux's ephemeral ports; 2^10 * 31) tells the 10 low bits of the
    /// generator's output. None if the ports do not determine one.
    fn xorshift_state_from(ports: &[u16]) -> Option<u64> {
        // each bit of the state, as the set of bits of the first state it is the sum of
        let mut sym: [u64; 64] = std::array::from_fn(|k| 1 << k);
        // `s ^= s << by` (left) or `s ^= s >> by`
        let shift = |sym: &mut [u64; 64], by: usize, left: bool| {
            let old = *sym;
            for (k, bit) in sym.iter_mut().enumerate() {
                let from = if left {
                    k.checked_sub(by)
                } else {
                    Some(k + by)
                };
                if let Some(&from) = from.and_then(|f| old.get(f)) {
                    *bit ^= from;
                }
            }
        };
        let mut equations: Vec<(u64, bool)> = Vec::new();
        for &port in ports {
            shift(&mut sym, 13, true);
            shift(&mut sym, 7, false);
            shift(&mut sym, 17, true);
            let low = u32::from(port - 1024) % 1024;
            for b in 0..10 {
                equations.push((sym[32 + b], low >> b & 1 == 1));
            }
        }
        // Gaussian elimination
        let mut pivots: Vec<(u64, bool)> = Vec::new();
        for (mut mask, mut value) in equations {
            for &(p, v) in &pivots {
                if mask & (1 << p.trailing_zeros()) != 0 {
                    mask ^= p;
                    value ^= v;
                }
            }
            if mask != 0 {
                let bit = 1 << mask.trailing_zeros();
                for (p, v) in pivots.iter_mut() {
                    if *p & bit != 0 {
                        *p ^= mask;
                        *v ^= value;
                    }
                }
                pivots.push((mask, value));
            }
        }
        (pivots.len() == 64).then(|| {
            pivots
                .iter()
                .filter(|(_, v)| *v)
                .map(|(p, _)| 1u64 << p.trailing_zeros())
                .sum()
        })
    }

    #[test]
    fn the_ports_given_do_not_tell_the_next_ones() {
        // an observer on the internet sees the external ports of flows it receives (a LAN
        // resolver's queries to its server, say): were the next ones predictable, it could
        // send forged answers to the port a query to another server will come from (RFC 6056)
        let mut nat = Nat::new(1, (1024, 32767), 0x5eed_1234_abcd_9876);
        let ports: Vec<u16> = (0..16)
            .map(|i| open(&mut nat, ep(7, 5000 + i, PROTO_UDP, 0)).unwrap())
            .collect();
        let (seen, next) = ports.split_at(10);
        let Some(mut state) = xorshift_state_from(seen) else {
            return; // the ports tell no state: nothing to predict from
        };
        let predicted: Vec<u16> = seen
            .iter()
            .chain(next)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                1024 + u16::try_from((state >> 32) % 31_744).unwrap()
            })
            .collect();
        assert_ne!(predicted[10..], *next, "the next ports were predicted");
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
                    if let Ok(ext) = open(&mut nat, e) {
                        let entry = live.entry(e).or_insert((ext, 0));
                        prop_assert_eq!(entry.0, ext, "endpoint kept its port");
                        entry.1 += 1;
                    }
                } else if let Some(entry) = live.get_mut(&e) {
                    nat.release(e, T0);
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
