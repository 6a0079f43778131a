//! Who a LAN address is, as the kernel's neighbour table says: the LAN link and MAC it
//! answers ARP (IPv6: neighbour discovery) at. The TUN device hands wanlb IP packets without
//! their link header, so this is where the per-host limits learn which addresses are one host
//! (engine/hosts.rs): one thread listens to the table's changes (RTM_NEWNEIGH, RTM_DELNEIGH)
//! on the LAN interfaces and hands each to the engine; the whole table is read at start and
//! again whenever changes were lost (the socket overflowed).
//!
//! An entry with a MAC (reachable, stale, being checked, or permanent) names the address's
//! host; one without (incomplete, failed, deleted, or a link without MACs) names none, and the
//! address is a host of its own.

use std::io;
use std::net::IpAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use netlink_packet_core::{
    NLM_F_DUMP, NLM_F_REQUEST, NetlinkBuffer, NetlinkHeader, NetlinkMessage, NetlinkPayload,
};
use netlink_packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourMessage, NeighbourState,
};
use netlink_packet_route::{AddressFamily, RouteNetlinkMessage};
use netlink_sys::{Socket, SocketAddr, protocols::NETLINK_ROUTE};

use crate::engine::Engine;
use crate::engine::hosts::HostId;

use super::fd::Poller;

const RTMGRP_NEIGH: u32 = 0x4;
/// How long the thread waits for a change before it looks at the stop flag.
const WAIT_MS: i32 = 200;

/// What one neighbour message says of a LAN address: its identity, or none.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Neighbour {
    pub addr: IpAddr,
    pub id: Option<HostId>,
}

/// The neighbour table of the LAN interfaces, listened to.
#[derive(Debug)]
pub struct NeighbourWatch {
    changes: Socket,
    queries: Socket,
    /// The LAN interfaces' indexes: entries of other links (the uplinks') are not LAN hosts.
    lans: Vec<u32>,
}

impl NeighbourWatch {
    /// Subscribes to the changes of the neighbour entries of the interfaces `lans`.
    pub fn open(lans: Vec<u32>) -> io::Result<NeighbourWatch> {
        let mut changes = Socket::new(NETLINK_ROUTE)?;
        changes.bind(&SocketAddr::new(0, RTMGRP_NEIGH))?;
        changes.set_non_blocking(true)?;
        let mut queries = Socket::new(NETLINK_ROUTE)?;
        queries.bind_auto()?;
        queries.connect(&SocketAddr::new(0, 0))?;
        Ok(NeighbourWatch {
            changes,
            queries,
            lans,
        })
    }

    /// Every identity the LAN interfaces' entries give now, IPv4 and IPv6.
    pub fn dump(&self) -> io::Result<Vec<(IpAddr, HostId)>> {
        let mut all = Vec::new();
        for (seq, family) in [AddressFamily::Inet, AddressFamily::Inet6]
            .into_iter()
            .enumerate()
        {
            let mut request = NeighbourMessage::default();
            request.header.family = family;
            let mut header = NetlinkHeader::default();
            header.flags = NLM_F_REQUEST | NLM_F_DUMP;
            header.sequence_number = seq as u32 + 1;
            let mut message = NetlinkMessage::new(
                header,
                NetlinkPayload::InnerMessage(RouteNetlinkMessage::GetNeighbour(request)),
            );
            message.finalize();
            let mut buf = vec![0u8; message.buffer_len()];
            message.serialize(&mut buf);
            self.queries.send(&buf, 0)?;
            let mut reply = Vec::with_capacity(64 * 1024);
            let mut done = false;
            while !done {
                reply.clear();
                self.queries.recv(&mut reply, 0)?;
                done = parse(&reply, &self.lans, &mut |n| {
                    if let Some(id) = n.id {
                        all.push((n.addr, id));
                    }
                });
            }
        }
        Ok(all)
    }

    /// Hands every change waiting to `f`. True if changes were lost (the socket overflowed):
    /// the caller reads the whole table again.
    pub fn read(&self, mut f: impl FnMut(Neighbour)) -> io::Result<bool> {
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut overflowed = false;
        loop {
            buf.clear();
            match self.changes.recv(&mut buf, 0) {
                Ok(_) => {
                    parse(&buf, &self.lans, &mut f);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(overflowed),
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => overflowed = true,
                Err(e) => return Err(e),
            }
        }
    }

    /// Keeps the engine's identities as the table has them until `stop`: the whole table
    /// first, then each change.
    pub fn run(&self, engine: &Engine, stop: &AtomicBool) {
        let resync = || match self.dump() {
            Ok(all) => engine.set_host_identities(&all),
            Err(e) => tracing::warn!(error = %e, "cannot read the LAN's neighbour table"),
        };
        resync();
        let mut poller = Poller::new(&[self.changes.as_raw_fd()]);
        let mut warned = false;
        while !stop.load(Ordering::Relaxed) {
            if let Err(e) = poller.wait(WAIT_MS) {
                tracing::warn!(error = %e, "waiting for the neighbour table's changes");
                return;
            }
            if !poller.is_ready(0) {
                continue;
            }
            let read = self.read(|n| {
                // the engine counts what it could not keep
                if !engine.set_host_identity(n.addr, n.id) && !std::mem::replace(&mut warned, true) {
                    tracing::warn!(addr = %n.addr, "too many LAN addresses with a known MAC: the newest count as hosts of their own");
                }
            });
            match read {
                Ok(false) => {}
                Ok(true) => {
                    tracing::debug!("neighbour changes overflowed the socket; reading the table");
                    resync();
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the neighbour table's changes");
                    return;
                }
            }
        }
    }
}

/// The neighbour messages of `lans` in a datagram from the kernel, each handed to `f`;
/// anything malformed ends the walk. True at the end of a dump.
fn parse(mut buf: &[u8], lans: &[u32], f: &mut impl FnMut(Neighbour)) -> bool {
    let mut done = false;
    while let Ok(header) = NetlinkBuffer::new_checked(buf) {
        let len = header.length() as usize;
        let Some(one) = buf.get(..len) else { break };
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(one).map(|m| m.payload) {
            Ok(NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewNeighbour(m))) => {
                neighbour(&m, true, lans).map(&mut *f);
            }
            Ok(NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelNeighbour(m))) => {
                neighbour(&m, false, lans).map(&mut *f);
            }
            Ok(NetlinkPayload::Done(_) | NetlinkPayload::Error(_)) => done = true,
            Ok(_) => {}
            Err(e) => tracing::debug!(error = %e, "a neighbour message wanlb cannot read"),
        }
        buf = buf.get(len.div_ceil(4) * 4..).unwrap_or(&[]);
    }
    done
}

/// What an entry (`present`) or its deletion says of a LAN address; none for another link's.
fn neighbour(m: &NeighbourMessage, present: bool, lans: &[u32]) -> Option<Neighbour> {
    let link = m.header.ifindex;
    if !lans.contains(&link) {
        return None;
    }
    let addr = m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::Destination(NeighbourAddress::Inet(a)) => Some(IpAddr::V4(*a)),
        NeighbourAttribute::Destination(NeighbourAddress::Inet6(a)) => Some(IpAddr::V6(*a)),
        _ => None,
    })?;
    let mac = m.attributes.iter().find_map(|a| match a {
        NeighbourAttribute::LinkLayerAddress(mac) => <[u8; 6]>::try_from(mac.as_slice()).ok(),
        _ => None,
    });
    // an entry whose MAC is known, if maybe old: the last host that answered for it
    let known = matches!(
        m.header.state,
        NeighbourState::Reachable
            | NeighbourState::Stale
            | NeighbourState::Delay
            | NeighbourState::Probe
            | NeighbourState::Permanent
    );
    let id = mac
        .filter(|_| present && known)
        .map(|mac| HostId { link, mac });
    Some(Neighbour { addr, id })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const LAN: u32 = 7;
    const MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xa];

    fn message(
        ifindex: u32,
        state: NeighbourState,
        addr: IpAddr,
        mac: Option<&[u8]>,
    ) -> NeighbourMessage {
        let mut m = NeighbourMessage::default();
        m.header.ifindex = ifindex;
        m.header.state = state;
        m.header.family = match addr {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        m.attributes
            .push(NeighbourAttribute::Destination(match addr {
                IpAddr::V4(a) => NeighbourAddress::Inet(a),
                IpAddr::V6(a) => NeighbourAddress::Inet6(a),
            }));
        if let Some(mac) = mac {
            m.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        }
        m
    }

    /// The bytes the kernel would send: `messages` in one datagram.
    fn datagram(messages: Vec<RouteNetlinkMessage>) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            let mut m =
                NetlinkMessage::new(NetlinkHeader::default(), NetlinkPayload::InnerMessage(m));
            m.finalize();
            let mut buf = vec![0u8; m.buffer_len()];
            m.serialize(&mut buf);
            out.extend_from_slice(&buf);
        }
        out
    }

    #[test]
    fn an_entry_with_a_mac_names_its_host_and_one_without_names_none() {
        let v4 = IpAddr::V4(Ipv4Addr::new(198, 18, 3, 20));
        let v6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 5, 0, 0, 0, 0x20));
        let id = Some(HostId {
            link: LAN,
            mac: MAC,
        });
        let bytes = datagram(vec![
            RouteNetlinkMessage::NewNeighbour(message(
                LAN,
                NeighbourState::Reachable,
                v4,
                Some(&MAC),
            )),
            RouteNetlinkMessage::NewNeighbour(message(LAN, NeighbourState::Stale, v6, Some(&MAC))),
            // another link's (an uplink's gateway): not a LAN host
            RouteNetlinkMessage::NewNeighbour(message(
                9,
                NeighbourState::Reachable,
                v4,
                Some(&MAC),
            )),
            RouteNetlinkMessage::NewNeighbour(message(LAN, NeighbourState::Failed, v4, Some(&MAC))),
            RouteNetlinkMessage::NewNeighbour(message(LAN, NeighbourState::Incomplete, v4, None)),
            RouteNetlinkMessage::NewNeighbour(message(LAN, NeighbourState::Noarp, v4, None)),
            RouteNetlinkMessage::DelNeighbour(message(LAN, NeighbourState::Stale, v4, Some(&MAC))),
            // a link-layer address that is not a MAC
            RouteNetlinkMessage::NewNeighbour(message(
                LAN,
                NeighbourState::Reachable,
                v4,
                Some(&[1, 2, 3, 4]),
            )),
        ]);
        let mut seen = Vec::new();
        assert!(!parse(&bytes, &[LAN], &mut |n| seen.push(n)));
        let none = |addr| Neighbour { addr, id: None };
        assert_eq!(
            seen,
            [
                Neighbour { addr: v4, id },
                Neighbour { addr: v6, id },
                none(v4),
                none(v4),
                none(v4),
                none(v4),
                none(v4),
            ]
        );
        // cut short, or garbage: no panic, nothing made up
        for cut in 0..bytes.len() {
            let mut n = 0;
            parse(&bytes[..cut], &[LAN], &mut |_| n += 1);
            assert!(n <= seen.len());
        }
    }
}
