//! Who a LAN flow counts against: the per-host limits, made to hold against a host that claims
//! many addresses.
//!
//! A packet from the LAN names its sender only by its source address, and any host can write
//! any address of its LAN network there (wanlb sees packets through a TUN device, which does
//! not say which link they came in on). A limit per source address alone is therefore no limit:
//! one host sending from 240 made-up addresses would get 240 hosts' shares. So an address
//! counts as a host of its own only once it has shown that it is one, and until then it
//! shares one host's share with every other such address of its LAN network.
//!
//! - **Verified address**: a TCP connection opened from it completed its handshake: the
//!   address acknowledged the remote end's SYN-ACK with the sequence number that SYN-ACK
//!   carried ([`super::flow::TcpState::acknowledges_syn_ack`]). The SYN-ACK went to that
//!   address on the LAN, so whoever answered it received it there. A verified address holds
//!   its own share: [`Limits::max_flows_per_host`] flows and [`Limits::max_ports_per_host`]
//!   ports of each pool. It stays verified while it has flows, and for [`VERIFIED_KEPT_MS`]
//!   after its last one ended.
//! - **One host, many addresses**: the io side follows the kernel's neighbour table on the LAN
//!   links and tells the engine each address's [`HostId`] (its link and MAC) as it changes
//!   ([`Hosts::set_identity`]). Verified addresses of one identity hold **one** share
//!   together, so a host that answers ARP for many addresses gets one share, not one per
//!   address. Its holdings follow an address whose entry changes (learned late, failed: the
//!   address is then its own host again); an address whose MAC changes to another is
//!   verified anew, by a handshake answered at the new MAC, so a host that rewrites the
//!   table (ARP) cannot charge its flows to another host's MAC by it. An address without an
//!   entry, or with a failed one, is a host of its own, as before.
//! - **Unverified addresses** of one LAN network (the most specific of the LAN interfaces'
//!   subnets and the `lan_net` networks that holds them; /24 without any) together hold one
//!   share: as many flows, and ports of each pool, as one host. Each also holds at most one
//!   share itself.
//! - IPv6 the same way, per address: a LAN's hosts usually share one /64, so the /64 cannot
//!   stand for a host. A host's privacy addresses are verified one by one (each by a
//!   handshake of its own; those at one MAC then hold one share together, as in IPv4), and
//!   unverified addresses share per LAN prefix.
//!
//! What this guarantees, with each LAN link on a network of its own and reverse-path
//! filtering strict on the LAN interfaces (`rp_filter=1`, so a host cannot send from another
//! link's network), against a host that sends from any number of made-up addresses:
//!
//! - it holds at most two shares: its own address's and its network's unverified one;
//! - hosts on other LAN networks, and verified hosts on its own, keep their shares: their
//!   new flows are not refused for what it does (the global limit aside, which ends its
//!   flows first: they are never answered);
//! - its excess is refused before an uplink, a port or a table entry is spent on it.
//!
//! What it does not guarantee:
//!
//! - an unverified host on the same LAN network (a new one, or one that only speaks UDP)
//!   competes with the made-up addresses for their common share, and may be refused while the
//!   flood lasts: it is verified by its first TCP connection that gets through;
//! - a host that answers ARP for the addresses it makes up from a MAC of its own for each
//!   (a forged source MAC per address) verifies each and gets a share per MAC: a switch's
//!   port security (a MAC limit per port) bounds that, wanlb's global limit bounds what it
//!   holds in all, not what it takes from the others; so does one whose remote end helps it,
//!   by choosing the SYN-ACK's sequence number where the LAN host can guess it;
//! - a host that sends from a real, verified host's address shares (and can use up) that
//!   host's share.

use ahash::AHashMap;

use super::family::{Family, V4};
use super::limits::Limits;
use super::select::Prefix;
use super::wire::{PROTO_ICMP, PROTO_TCP, PROTO_UDP};
use super::{Stamp, Timestamp, UplinkId};

/// How long an address stays verified after its last flow ended.
pub const VERIFIED_KEPT_MS: u64 = 60 * 60 * 1000;
/// Verified addresses without a flow kept at most; past that the expiry forgets some early.
pub const MAX_IDLE_VERIFIED: usize = 65_536;
/// Addresses whose link and MAC are known, at most (the kernel's own neighbour table holds
/// 1,024 per family by default, `gc_thresh3`); past that a new one stays a host of its own.
pub const MAX_IDENTITIES: usize = 65_536;

/// Who a LAN address belongs to beyond the address itself: the LAN link and MAC the kernel's
/// neighbour table (ARP, neighbour discovery) says it answers at. The engine compares them,
/// nothing more: verified addresses with one identity are one host.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HostId {
    /// The LAN interface's index.
    pub link: u32,
    pub mac: [u8; 6],
}

/// A LAN network, whose unverified addresses share one host's share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Network<F: Family = V4> {
    addr: F::Addr,
    len: u8,
}

impl<F: Family> Network<F> {
    /// The network of `addr`: the most specific of `lan_nets` that holds it, else its
    /// [`Family::HOST_NET`] (an IPv4 /24).
    pub fn of(addr: F::Addr, lan_nets: &[Prefix<F>]) -> Network<F> {
        let prefix = lan_nets
            .iter()
            .filter(|n| n.contains(addr))
            .max_by_key(|n| n.prefix_len())
            .copied()
            .or_else(|| Prefix::masked(addr, F::HOST_NET))
            .expect("a family's host network is a prefix length");
        Network {
            addr: prefix.addr(),
            len: prefix.prefix_len(),
        }
    }
}

/// Why a LAN host's new flow, or its new mapping's port, is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The host (its address, or the verified addresses of its MAC) has as many flows as one
    /// host may.
    HostFlows,
    /// Its network's unverified addresses have as many flows, together, as one host may.
    UnverifiedFlows,
    /// The host holds as many ports of the pool as one host may.
    HostPorts,
    /// Its network's unverified addresses hold as many ports of the pool as one host may.
    UnverifiedPorts,
}

#[derive(Clone, Copy, Debug)]
struct Host<F: Family> {
    flows: u32,
    network: Network<F>,
    verified: bool,
    /// When its last flow ended (verified addresses without flows only).
    idle_since: Stamp,
    /// The last identity the address had while known here: one that moves to another MAC
    /// is verified anew.
    seen_as: Option<HostId>,
}

/// A pool: an uplink and a protocol.
type Pool = (UplinkId, u8);

/// Who holds a verified address's flows and ports: the address itself, or, when its
/// identity is known, every verified address of that identity together.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Holder<A> {
    Addr(A),
    Id(HostId),
}

/// The common count an address's flows and ports are in, besides its own.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Share<F: Family> {
    /// Its network's unverified addresses'.
    Unverified(Network<F>),
    /// Its host's (verified).
    Host(Holder<F::Addr>),
}

/// The LAN addresses with flows, or verified lately, and what each holds.
#[derive(Debug)]
pub struct Hosts<F: Family = V4> {
    hosts: AHashMap<F::Addr, Host<F>>,
    /// The identity of each address the neighbour table knows (a bounded number).
    identities: AHashMap<F::Addr, HostId>,
    /// Identities not kept, the table being full.
    identities_refused: u64,
    /// Per network, the flows its unverified addresses hold together.
    unverified_flows: AHashMap<Network<F>, u32>,
    /// Per host, the flows its verified addresses hold together.
    host_flows: AHashMap<Holder<F::Addr>, u32>,
    /// Ports each address holds, per pool.
    ports: AHashMap<(F::Addr, Pool), u32>,
    /// Per network and pool, the ports its unverified addresses hold together.
    unverified_ports: AHashMap<(Network<F>, Pool), u32>,
    /// Per host and pool, the ports its verified addresses hold together.
    host_ports: AHashMap<(Holder<F::Addr>, Pool), u32>,
    uplinks: usize,
    max_flows: u32,
    max_ports: u32,
    idle_verified: usize,
}

impl<F: Family> Hosts<F> {
    pub fn new(uplinks: usize) -> Hosts<F> {
        Hosts {
            hosts: AHashMap::new(),
            identities: AHashMap::new(),
            identities_refused: 0,
            unverified_flows: AHashMap::new(),
            host_flows: AHashMap::new(),
            ports: AHashMap::new(),
            unverified_ports: AHashMap::new(),
            host_ports: AHashMap::new(),
            uplinks,
            max_flows: u32::MAX,
            max_ports: u32::MAX,
            idle_verified: 0,
        }
    }

    /// New limits (a reload): what is held stays, new flows and ports are judged by them.
    pub fn set_limits(&mut self, limits: &Limits) {
        self.max_flows = limits.max_flows_per_host.max(1);
        self.max_ports = limits.max_ports_per_host.max(1);
    }

    fn holder(&self, addr: F::Addr) -> Holder<F::Addr> {
        self.identities
            .get(&addr)
            .map_or(Holder::Addr(addr), |&id| Holder::Id(id))
    }

    /// The common count `addr` (known here) is in.
    fn share_of(&self, addr: F::Addr, host: &Host<F>) -> Share<F> {
        match host.verified {
            true => Share::Host(self.holder(addr)),
            false => Share::Unverified(host.network),
        }
    }

    fn flows_in(&self, share: Share<F>) -> u32 {
        match share {
            Share::Unverified(n) => self.unverified_flows.get(&n),
            Share::Host(h) => self.host_flows.get(&h),
        }
        .copied()
        .unwrap_or(0)
    }

    fn ports_in(&self, share: Share<F>, pool: Pool) -> u32 {
        match share {
            Share::Unverified(n) => self.unverified_ports.get(&(n, pool)),
            Share::Host(h) => self.host_ports.get(&(h, pool)),
        }
        .copied()
        .unwrap_or(0)
    }

    /// Adds `n` flows to `share`'s count (`add`), or takes them off.
    fn count_flows(&mut self, share: Share<F>, n: u32, add: bool) {
        match share {
            Share::Unverified(net) => change(&mut self.unverified_flows, net, n, add),
            Share::Host(h) => change(&mut self.host_flows, h, n, add),
        }
    }

    fn count_ports(&mut self, share: Share<F>, pool: Pool, n: u32, add: bool) {
        match share {
            Share::Unverified(net) => change(&mut self.unverified_ports, (net, pool), n, add),
            Share::Host(h) => change(&mut self.host_ports, (h, pool), n, add),
        }
    }

    /// Adds what `addr` holds to its common count (`add`), or takes it out: around a change
    /// of the count it is in (verified, its identity changed).
    fn count_all(&mut self, addr: F::Addr, add: bool) {
        let Some(host) = self.hosts.get(&addr).copied() else {
            return;
        };
        let share = self.share_of(addr, &host);
        self.count_flows(share, host.flows, add);
        for uplink in 0..self.uplinks {
            for proto in [PROTO_TCP, PROTO_UDP, PROTO_ICMP] {
                let pool = (super::uplink_id(uplink), proto);
                let held = self.ports.get(&(addr, pool)).copied().unwrap_or(0);
                self.count_ports(share, pool, held, add);
            }
        }
    }

    /// Counts one more flow of `addr`, on `network`, unless its share is full.
    pub fn open(&mut self, addr: F::Addr, network: Network<F>) -> Result<(), Refusal> {
        let host = self.hosts.get(&addr).copied().unwrap_or(Host {
            flows: 0,
            network,
            verified: false,
            idle_since: Stamp::default(),
            seen_as: None,
        });
        // each address holds at most one share itself, whatever it shares in
        if host.flows >= self.max_flows {
            return Err(Refusal::HostFlows);
        }
        let share = self.share_of(addr, &host);
        if self.flows_in(share) >= self.max_flows {
            return Err(match share {
                Share::Unverified(_) => Refusal::UnverifiedFlows,
                Share::Host(_) => Refusal::HostFlows,
            });
        }
        self.count_flows(share, 1, true);
        let seen_as = self.identities.get(&addr).copied();
        let host = self.hosts.entry(addr).or_insert(Host { seen_as, ..host });
        if host.verified && host.flows == 0 {
            self.idle_verified -= 1;
        }
        host.flows += 1;
        Ok(())
    }

    /// One flow of `addr` ended (or was counted and then not opened).
    pub fn close(&mut self, addr: F::Addr, now: Timestamp) {
        let Some(host) = self.hosts.get(&addr).copied() else {
            debug_assert!(false, "a flow closed that was never counted");
            return;
        };
        let share = self.share_of(addr, &host);
        self.count_flows(share, 1, false);
        let host = self.hosts.get_mut(&addr).expect("just read");
        host.flows -= 1;
        if host.flows == 0 {
            if host.verified {
                host.idle_since = now.stamp();
                self.idle_verified += 1;
            } else {
                self.hosts.remove(&addr);
            }
        }
    }

    /// Counts one more port of `pool` held by `addr` (which has a flow counted), unless its
    /// share of the pool is full.
    pub fn take_port(&mut self, addr: F::Addr, pool: Pool) -> Result<(), Refusal> {
        let held = self.ports.get(&(addr, pool)).copied().unwrap_or(0);
        if held >= self.max_ports {
            return Err(Refusal::HostPorts);
        }
        if let Some(host) = self.hosts.get(&addr).copied() {
            let share = self.share_of(addr, &host);
            if self.ports_in(share, pool) >= self.max_ports {
                return Err(match share {
                    Share::Unverified(_) => Refusal::UnverifiedPorts,
                    Share::Host(_) => Refusal::HostPorts,
                });
            }
            self.count_ports(share, pool, 1, true);
        }
        *self.ports.entry((addr, pool)).or_insert(0) += 1;
        Ok(())
    }

    /// `addr` gave a port of `pool` back (before its flow is closed).
    pub fn give_port(&mut self, addr: F::Addr, pool: Pool) {
        less(&mut self.ports, (addr, pool));
        if let Some(host) = self.hosts.get(&addr).copied() {
            let share = self.share_of(addr, &host);
            self.count_ports(share, pool, 1, false);
        }
    }

    /// `addr` (which has a flow) completed a TCP handshake: from now on it holds a share of
    /// its own (its identity's, with the other verified addresses of that identity), and what
    /// it held moves out of its network's common share. True if it was not verified before.
    pub fn verify(&mut self, addr: F::Addr) -> bool {
        if self.hosts.get(&addr).is_none_or(|h| h.verified) {
            return false;
        }
        self.count_all(addr, false);
        let seen_as = self.identities.get(&addr).copied();
        let host = self.hosts.get_mut(&addr).expect("just read");
        host.verified = true;
        host.seen_as = seen_as.or(host.seen_as);
        self.count_all(addr, true);
        true
    }

    /// The kernel's neighbour table says `addr` answers at `id` (none: it knows no MAC for it,
    /// or the entry failed or went): its flows and ports, if it is verified, move to that
    /// host's share (none: its own). A verified address whose MAC changed to another is
    /// verified anew, by a handshake answered at the new MAC: until then it is one of its
    /// network's unverified addresses, so that a host that rewrites the table cannot charge
    /// its flows to another's MAC. False if the identity could not be kept: the table holds
    /// [`MAX_IDENTITIES`] (the address then stays a host of its own).
    pub fn set_identity(&mut self, addr: F::Addr, id: Option<HostId>) -> bool {
        if self.identities.get(&addr) == id.as_ref() {
            return true;
        }
        let full = id.is_some()
            && !self.identities.contains_key(&addr)
            && self.identities.len() >= MAX_IDENTITIES;
        if full {
            self.identities_refused += 1;
        }
        self.count_all(addr, false);
        match id {
            Some(id) if !full => self.identities.insert(addr, id),
            _ => self.identities.remove(&addr),
        };
        if let (Some(host), Some(id)) = (self.hosts.get_mut(&addr), id) {
            if host.verified && host.seen_as.is_some_and(|seen| seen != id) {
                host.verified = false;
                if host.flows == 0 {
                    self.hosts.remove(&addr);
                    self.idle_verified -= 1;
                }
            } else {
                host.seen_as = Some(id);
            }
        }
        self.count_all(addr, true);
        !full
    }

    /// Every identity the neighbour table holds now, in place of those known (after its
    /// changes could not all be heard): as [`Hosts::set_identity`] for each change.
    pub fn set_identities(&mut self, all: impl IntoIterator<Item = (F::Addr, HostId)>) {
        let all: AHashMap<F::Addr, HostId> = all.into_iter().collect();
        let gone: Vec<F::Addr> = self
            .identities
            .keys()
            .filter(|a| !all.contains_key(a))
            .copied()
            .collect();
        for addr in gone {
            self.set_identity(addr, None);
        }
        for (addr, id) in all {
            self.set_identity(addr, Some(id));
        }
    }

    /// Forgets verified addresses whose last flow ended [`VERIFIED_KEPT_MS`] ago, and, past
    /// [`MAX_IDLE_VERIFIED`] of them, others without a flow.
    pub fn expire(&mut self, now: Timestamp) {
        if self.idle_verified == 0 {
            return;
        }
        let mut over = self.idle_verified.saturating_sub(MAX_IDLE_VERIFIED);
        let mut forgotten = 0;
        self.hosts.retain(|_, h| {
            let idle = h.flows == 0;
            let keep = !idle || (now.since_stamp(h.idle_since) < VERIFIED_KEPT_MS && over == 0);
            if idle && !keep {
                forgotten += 1;
                over = over.saturating_sub(1);
            }
            keep
        });
        self.idle_verified -= forgotten;
    }

    /// Addresses known: verified ones (with flows or lately), unverified ones with flows.
    pub fn counts(&self) -> (usize, usize) {
        let verified = self.hosts.values().filter(|h| h.verified).count();
        (verified, self.hosts.len() - verified)
    }

    /// Addresses whose identity is known, and identities not kept for the table's limit.
    pub fn identity_counts(&self) -> (usize, u64) {
        (self.identities.len(), self.identities_refused)
    }
}

/// Adds `n` to `key`'s count (`add`), or takes `n` off, forgetting it at 0.
fn change<K: std::hash::Hash + Eq>(counts: &mut AHashMap<K, u32>, key: K, n: u32, add: bool) {
    if n == 0 {
        return;
    }
    if add {
        *counts.entry(key).or_insert(0) += n;
    } else if let Some(c) = counts.get_mut(&key) {
        debug_assert!(*c >= n, "a count taken below 0");
        *c = c.saturating_sub(n);
        if *c == 0 {
            counts.remove(&key);
        }
    } else {
        debug_assert!(false, "a count taken below 0");
    }
}

/// Takes one off `key`'s count, forgetting it at 0.
fn less<K: std::hash::Hash + Eq>(counts: &mut AHashMap<K, u32>, key: K) {
    change(counts, key, 1, false);
}

#[cfg(test)]
mod tests {
    use super::*;

    const NET: u32 = u32::from_be_bytes([198, 18, 3, 0]);
    const OTHER_NET: u32 = u32::from_be_bytes([198, 18, 6, 0]);

    fn hosts(flows: u32, ports: u32) -> Hosts {
        let mut h = Hosts::new(2);
        h.set_limits(&Limits {
            max_flows_per_host: flows,
            max_ports_per_host: ports,
            ..Limits::unlimited()
        });
        h
    }

    fn net(addr: u32) -> Network {
        Network::<V4>::of(addr, &[])
    }

    #[test]
    fn a_network_is_the_most_specific_lan_network_or_a_slash_24() {
        let lan = |a: [u8; 4], len| Prefix::new(u32::from_be_bytes(a), len).unwrap();
        let nets = [lan([198, 18, 0, 0], 16), lan([198, 18, 3, 0], 24)];
        let a = u32::from_be_bytes([198, 18, 3, 77]);
        let b = u32::from_be_bytes([198, 18, 9, 1]);
        assert_eq!(Network::<V4>::of(a, &nets), Network { addr: NET, len: 24 });
        assert_eq!(
            Network::<V4>::of(b, &nets),
            Network {
                addr: u32::from_be_bytes([198, 18, 0, 0]),
                len: 16
            }
        );
        assert_eq!(Network::<V4>::of(a, &[]), Network { addr: NET, len: 24 });
    }

    #[test]
    fn unverified_addresses_of_a_network_share_one_hosts_share() {
        let mut h = hosts(4, 100);
        // 4 made-up addresses, one flow each: the network's share is full
        for i in 1..=4 {
            assert_eq!(h.open(NET + i, net(NET + i)), Ok(()));
        }
        assert_eq!(h.open(NET + 5, net(NET)), Err(Refusal::UnverifiedFlows));
        assert_eq!(h.open(NET + 1, net(NET)), Err(Refusal::UnverifiedFlows));
        // another network is not touched
        assert_eq!(h.open(OTHER_NET + 1, net(OTHER_NET)), Ok(()));
        // a flow ending makes room, and an address without flows is forgotten
        h.close(NET + 4, Timestamp::from_millis(0));
        assert_eq!(h.counts(), (0, 4));
        assert_eq!(h.open(NET + 9, net(NET)), Ok(()));
    }

    #[test]
    fn a_verified_address_holds_its_own_share_and_takes_its_flows_and_ports_along() {
        let mut h = hosts(3, 2);
        let real = NET + 10;
        h.open(real, net(real)).unwrap();
        h.open(real, net(real)).unwrap();
        h.take_port(real, (0, PROTO_TCP)).unwrap();
        h.take_port(real, (0, PROTO_TCP)).unwrap();
        assert_eq!(
            h.take_port(real, (0, PROTO_TCP)),
            Err(Refusal::HostPorts),
            "its own share of the pool first"
        );
        // before verification, its flows and ports fill the network's share
        h.open(NET + 99, net(NET)).unwrap();
        assert_eq!(h.open(NET + 98, net(NET)), Err(Refusal::UnverifiedFlows));
        assert_eq!(
            h.take_port(NET + 99, (0, PROTO_TCP)),
            Err(Refusal::UnverifiedPorts)
        );
        assert!(h.verify(real));
        assert!(!h.verify(real), "once");
        // its flows and ports left the common share: the made-up ones get them back ...
        assert_eq!(h.open(NET + 98, net(NET)), Ok(()));
        assert_eq!(h.take_port(NET + 99, (0, PROTO_TCP)), Ok(()));
        // ... and its own share stands apart from theirs, full or not
        assert_eq!(h.open(NET + 97, net(NET)), Ok(()));
        assert_eq!(h.open(NET + 96, net(NET)), Err(Refusal::UnverifiedFlows));
        assert_eq!(h.open(real, net(real)), Ok(()));
        assert_eq!(h.open(real, net(real)), Err(Refusal::HostFlows));
        assert_eq!(h.hosts[&real].flows, 3);
        // giving back and closing keep every count consistent
        h.give_port(real, (0, PROTO_TCP));
        h.give_port(real, (0, PROTO_TCP));
        h.give_port(NET + 99, (0, PROTO_TCP));
        for a in [real, real, real, NET + 99, NET + 98, NET + 97] {
            h.close(a, Timestamp::from_millis(5));
        }
        assert!(h.ports.is_empty() && h.unverified_ports.is_empty());
        assert!(h.unverified_flows.is_empty());
        assert_eq!(h.counts(), (1, 0), "the verified address is remembered");
    }

    #[test]
    fn a_verified_address_is_remembered_for_an_hour_after_its_last_flow() {
        let mut h = hosts(1, 1);
        let real = NET + 10;
        h.open(real, net(real)).unwrap();
        h.verify(real);
        h.close(real, Timestamp::from_millis(1_000));
        h.expire(Timestamp::from_millis(1_000 + VERIFIED_KEPT_MS - 1));
        assert!(h.hosts[&real].verified);
        // back within the hour: its own share, whatever the made-up addresses hold
        h.open(NET + 1, net(NET)).unwrap();
        assert_eq!(h.open(real, net(real)), Ok(()));
        h.close(real, Timestamp::from_millis(2_000));
        h.expire(Timestamp::from_millis(2_000 + VERIFIED_KEPT_MS));
        assert!(!h.hosts.contains_key(&real));
        assert_eq!(h.idle_verified, 0);
    }

    #[test]
    fn idle_verified_addresses_are_bounded() {
        let mut h = hosts(1, 1);
        let now = Timestamp::from_millis(0);
        let many = u32::try_from(MAX_IDLE_VERIFIED).unwrap() + 10;
        for i in 0..many {
            h.open(i, net(i)).unwrap();
            h.verify(i);
            h.close(i, now);
        }
        assert_eq!(h.idle_verified, MAX_IDLE_VERIFIED + 10);
        h.expire(now);
        assert_eq!(h.idle_verified, MAX_IDLE_VERIFIED);
        assert_eq!(h.hosts.len(), MAX_IDLE_VERIFIED);
    }

    const MAC_A: HostId = HostId {
        link: 3,
        mac: [2, 0, 0, 0, 0, 0xa],
    };
    const MAC_B: HostId = HostId {
        link: 3,
        mac: [2, 0, 0, 0, 0, 0xb],
    };

    /// `addr` with one flow, verified.
    fn verified(h: &mut Hosts, addr: u32) {
        h.open(addr, net(addr)).unwrap();
        assert!(h.verify(addr));
    }

    fn all_counts_empty(h: &Hosts) -> bool {
        h.host_flows.is_empty()
            && h.host_ports.is_empty()
            && h.unverified_flows.is_empty()
            && h.unverified_ports.is_empty()
            && h.ports.is_empty()
    }

    #[test]
    fn verified_addresses_of_one_mac_share_one_hosts_share() {
        let mut h = hosts(8, 4);
        // one host answering ARP for 16 addresses, each verified: one share for them all
        for i in 1..=16 {
            assert!(h.set_identity(NET + i, Some(MAC_A)));
        }
        for i in 1..=8 {
            verified(&mut h, NET + i);
        }
        assert_eq!(h.open(NET + 1, net(NET)), Err(Refusal::HostFlows));
        assert_eq!(
            h.open(NET + 9, net(NET)),
            Ok(()),
            "unverified: its network's share"
        );
        assert!(!h.verify(NET + 9) || h.open(NET + 10, net(NET)).is_ok());
        for i in 1..=4 {
            assert_eq!(h.take_port(NET + i, (0, PROTO_UDP)), Ok(()));
        }
        assert_eq!(
            h.take_port(NET + 5, (0, PROTO_UDP)),
            Err(Refusal::HostPorts)
        );
        assert_eq!(h.take_port(NET + 5, (1, PROTO_UDP)), Ok(()), "another pool");
        // another MAC is another host: its own share, untouched
        h.set_identity(NET + 100, Some(MAC_B));
        verified(&mut h, NET + 100);
        for _ in 1..8 {
            assert_eq!(h.open(NET + 100, net(NET)), Ok(()));
        }
        assert_eq!(h.take_port(NET + 100, (0, PROTO_UDP)), Ok(()));
        assert_eq!(h.host_flows[&Holder::Id(MAC_B)], 8);
        assert!(h.host_flows[&Holder::Id(MAC_A)] >= 8);
    }

    #[test]
    fn an_address_whose_mac_is_learned_late_takes_its_holdings_along() {
        let mut h = hosts(4, 4);
        // two verified addresses before their MAC is known: two hosts, 3 flows and 1 port each
        for a in [NET + 1, NET + 2] {
            verified(&mut h, a);
            h.open(a, net(a)).unwrap();
            h.open(a, net(a)).unwrap();
            h.take_port(a, (0, PROTO_TCP)).unwrap();
        }
        h.set_identity(NET + 1, Some(MAC_A));
        h.set_identity(NET + 2, Some(MAC_A));
        // one host now, over its share (6 of 4 flows): nothing is ended, nothing new opens
        assert_eq!(h.host_flows[&Holder::Id(MAC_A)], 6);
        assert_eq!(h.host_ports[&(Holder::Id(MAC_A), (0, PROTO_TCP))], 2);
        assert_eq!(h.open(NET + 1, net(NET)), Err(Refusal::HostFlows));
        // the neighbour entry of one fails: that address is a host of its own again
        h.set_identity(NET + 2, None);
        assert_eq!(h.host_flows[&Holder::Id(MAC_A)], 3);
        assert_eq!(h.host_flows[&Holder::Addr(NET + 2)], 3);
        assert_eq!(h.open(NET + 1, net(NET)), Ok(()));
        assert_eq!(h.open(NET + 2, net(NET)), Ok(()));
        // everything given back, every count at 0
        for a in [NET + 1, NET + 2] {
            h.give_port(a, (0, PROTO_TCP));
            for _ in 0..4 {
                h.close(a, Timestamp::from_millis(1));
            }
        }
        assert!(all_counts_empty(&h), "{h:?}");
        assert_eq!(h.counts(), (2, 0));
    }

    #[test]
    fn an_address_that_moves_to_another_mac_is_verified_anew() {
        let mut h = hosts(4, 4);
        h.set_identity(NET + 1, Some(MAC_A));
        verified(&mut h, NET + 1);
        h.take_port(NET + 1, (0, PROTO_UDP)).unwrap();
        // the table now says another MAC: its flow and port go to the unverified share, not
        // to the other MAC's host
        h.set_identity(NET + 1, Some(MAC_B));
        assert_eq!(h.counts(), (0, 1));
        assert!(!h.host_flows.contains_key(&Holder::Id(MAC_B)));
        assert_eq!(h.unverified_flows[&net(NET)], 1);
        assert_eq!(h.unverified_ports[&(net(NET), (0, PROTO_UDP))], 1);
        // a handshake answered at the new MAC verifies it for that host
        assert!(h.verify(NET + 1));
        assert_eq!(h.host_flows[&Holder::Id(MAC_B)], 1);
        // through a failed entry and back to a third MAC: anew again; to the same: kept
        h.set_identity(NET + 1, None);
        h.set_identity(NET + 1, Some(MAC_B));
        assert_eq!(h.counts(), (1, 0));
        h.set_identity(NET + 1, None);
        h.set_identity(NET + 1, Some(MAC_A));
        assert_eq!(h.counts(), (0, 1));
        h.give_port(NET + 1, (0, PROTO_UDP));
        h.close(NET + 1, Timestamp::from_millis(1));
        assert!(all_counts_empty(&h));
        assert_eq!(h.counts(), (0, 0));
        // an idle verified address that moves is forgotten
        h.set_identity(NET + 2, Some(MAC_A));
        verified(&mut h, NET + 2);
        h.close(NET + 2, Timestamp::from_millis(1));
        h.set_identity(NET + 2, Some(MAC_B));
        assert_eq!((h.counts(), h.idle_verified), ((0, 0), 0));
    }

    #[test]
    fn a_host_with_a_mac_per_address_gets_a_share_per_mac_and_unverified_ones_share_one() {
        let mut h = hosts(2, 2);
        // made-up MACs for made-up addresses: unverified, they share their network's share
        for i in 1..=8u8 {
            let id = HostId {
                link: 3,
                mac: [2, 0, 0, 0, 1, i],
            };
            h.set_identity(NET + u32::from(i), Some(id));
        }
        assert_eq!(h.open(NET + 1, net(NET)), Ok(()));
        assert_eq!(h.open(NET + 2, net(NET)), Ok(()));
        assert_eq!(h.open(NET + 3, net(NET)), Err(Refusal::UnverifiedFlows));
        // each one verified is a host of its own: what the flow limit bounds
        assert!(h.verify(NET + 1));
        assert_eq!(h.open(NET + 3, net(NET)), Ok(()));
    }

    #[test]
    fn identities_are_bounded_and_a_refused_one_leaves_the_address_its_own_host() {
        let mut h = hosts(1, 1);
        let many = u32::try_from(MAX_IDENTITIES).unwrap();
        for i in 0..many {
            assert!(h.set_identity(i, Some(MAC_A)));
        }
        assert!(!h.set_identity(many, Some(MAC_A)));
        assert!(h.set_identity(0, Some(MAC_B)), "a known address may change");
        assert_eq!(h.identity_counts(), (MAX_IDENTITIES, 1));
        // the refused address is a host of its own: MAC_A's share does not hold it
        verified(&mut h, 1);
        assert_eq!(h.open(2, net(2)), Ok(()));
        assert!(!h.verify(2) || h.open(2, net(2)).is_err());
        verified(&mut h, many);
        assert_eq!(h.host_flows[&Holder::Addr(many)], 1);
        // a new full picture replaces what was known
        h.set_identities([(many, MAC_B)]);
        assert_eq!(h.identity_counts().0, 1);
        assert_eq!(h.host_flows[&Holder::Id(MAC_B)], 1);
        assert!(!h.host_flows.contains_key(&Holder::Id(MAC_A)));
    }
}
