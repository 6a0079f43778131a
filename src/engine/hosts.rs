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
//! - **Unverified addresses** of one LAN network (the most specific of the LAN interfaces'
//!   subnets and the `lan_net` networks that holds them; /24 without any) together hold one
//!   share: as many flows, and ports of each pool, as one host. Each also holds at most one
//!   share itself.
//! - IPv6 the same way, per address: a LAN's hosts usually share one /64, so the /64 cannot
//!   stand for a host. A host's privacy addresses are verified one by one (each by a
//!   handshake of its own), and unverified addresses share per LAN prefix.
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
//! - a host that answers ARP for the addresses it makes up (so that their packets reach it)
//!   verifies each of them and gets a share for each; so does one whose remote end helps it,
//!   by choosing the SYN-ACK's sequence number where the LAN host can guess it. The global
//!   limit bounds what such a host holds in all, not what it takes from the others;
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
    /// The address has as many flows as one host may.
    HostFlows,
    /// Its network's unverified addresses have as many flows, together, as one host may.
    UnverifiedFlows,
    /// The address holds as many ports of the pool as one host may.
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
}

/// A pool: an uplink and a protocol.
type Pool = (UplinkId, u8);

/// The LAN addresses with flows, or verified lately, and what each holds.
#[derive(Debug)]
pub struct Hosts<F: Family = V4> {
    hosts: AHashMap<F::Addr, Host<F>>,
    /// Per network, the flows its unverified addresses hold together.
    unverified_flows: AHashMap<Network<F>, u32>,
    /// Ports each address holds, per pool.
    ports: AHashMap<(F::Addr, Pool), u32>,
    /// Per network and pool, the ports its unverified addresses hold together.
    unverified_ports: AHashMap<(Network<F>, Pool), u32>,
    uplinks: usize,
    max_flows: u32,
    max_ports: u32,
    idle_verified: usize,
}

impl<F: Family> Hosts<F> {
    pub fn new(uplinks: usize) -> Hosts<F> {
        Hosts {
            hosts: AHashMap::new(),
            unverified_flows: AHashMap::new(),
            ports: AHashMap::new(),
            unverified_ports: AHashMap::new(),
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

    /// Counts one more flow of `addr`, on `network`, unless its share is full.
    pub fn open(&mut self, addr: F::Addr, network: Network<F>) -> Result<(), Refusal> {
        let host = self.hosts.get(&addr);
        let (flows, verified) = host.map_or((0, false), |h| (h.flows, h.verified));
        // the network it was counted on while it has flows: a lan_net change needs a restart
        let network = host.map_or(network, |h| h.network);
        if flows >= self.max_flows {
            return Err(Refusal::HostFlows);
        }
        if !verified {
            let shared = self.unverified_flows.get(&network).copied().unwrap_or(0);
            if shared >= self.max_flows {
                return Err(Refusal::UnverifiedFlows);
            }
            *self.unverified_flows.entry(network).or_insert(0) += 1;
        }
        let host = self.hosts.entry(addr).or_insert(Host {
            flows: 0,
            network,
            verified: false,
            idle_since: Stamp::default(),
        });
        if host.verified && host.flows == 0 {
            self.idle_verified -= 1;
        }
        host.flows += 1;
        Ok(())
    }

    /// One flow of `addr` ended (or was counted and then not opened).
    pub fn close(&mut self, addr: F::Addr, now: Timestamp) {
        let Some(host) = self.hosts.get_mut(&addr) else {
            debug_assert!(false, "a flow closed that was never counted");
            return;
        };
        host.flows -= 1;
        if !host.verified {
            less(&mut self.unverified_flows, host.network);
        }
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
        if let Some(h) = self.hosts.get(&addr).filter(|h| !h.verified) {
            let key = (h.network, pool);
            let shared = self.unverified_ports.get(&key).copied().unwrap_or(0);
            if shared >= self.max_ports {
                return Err(Refusal::UnverifiedPorts);
            }
            *self.unverified_ports.entry(key).or_insert(0) += 1;
        }
        *self.ports.entry((addr, pool)).or_insert(0) += 1;
        Ok(())
    }

    /// `addr` gave a port of `pool` back (before its flow is closed).
    pub fn give_port(&mut self, addr: F::Addr, pool: Pool) {
        less(&mut self.ports, (addr, pool));
        if let Some(h) = self.hosts.get(&addr).filter(|h| !h.verified) {
            less(&mut self.unverified_ports, (h.network, pool));
        }
    }

    /// `addr` (which has a flow) completed a TCP handshake: from now on it holds a share of
    /// its own, and what it held moves out of its network's common share. True if it was not
    /// verified before.
    pub fn verify(&mut self, addr: F::Addr) -> bool {
        let Some(host) = self.hosts.get_mut(&addr).filter(|h| !h.verified) else {
            return false;
        };
        host.verified = true;
        let (network, flows) = (host.network, host.flows);
        for _ in 0..flows {
            less(&mut self.unverified_flows, network);
        }
        for uplink in 0..self.uplinks {
            for proto in [PROTO_TCP, PROTO_UDP, PROTO_ICMP] {
                let pool = (super::uplink_id(uplink), proto);
                let held = self.ports.get(&(addr, pool)).copied().unwrap_or(0);
                for _ in 0..held {
                    less(&mut self.unverified_ports, (network, pool));
                }
            }
        }
        true
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
}

/// Takes one off `key`'s count, forgetting it at 0.
fn less<K: std::hash::Hash + Eq>(counts: &mut AHashMap<K, u32>, key: K) {
    if let Some(n) = counts.get_mut(&key) {
        *n -= 1;
        if *n == 0 {
            counts.remove(&key);
        }
    } else {
        debug_assert!(false, "a count taken below 0");
    }
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
}
