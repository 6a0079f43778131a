//! An uplink's sockets: each worker's data socket, the monitor's probe socket and, on an
//! Ethernet uplink, its ARP socket, all bound to the uplink's interface, and the socket
//! filters they share (which follow the uplink's address). When the interface comes back as a
//! new one (pppd's redial deletes `ppp0` and makes another, with a new index), every one of
//! them is opened again on the new interface ([`UplinkSockets::reopen`]).
//!
//! On an uplink with port forwards, each worker's data socket has a second one beside it for
//! what comes to the forwarded ports, with a ring of its own ([`DataSockets`]): unsolicited
//! traffic to a forward (a SYN flood) fills that ring, and the kernel drops its excess there
//! (counted as `forward_ring_full`), while the replies to the LAN's own flows keep arriving in
//! the other. The worker reads both in each batch, the forwards' at most half of the batch
//! when replies are waiting, so neither starves the other.
//!
//! A worker owns its data sockets and takes a new one without a lock on the packet path: the
//! monitor leaves it in the worker's [`Reopened`] for that uplink and counts it there; the
//! worker compares the count once per loop (one atomic load per uplink), and only when it
//! changed takes the new socket (under the slot's lock), drops the old one and watches the
//! new descriptor. While the interface is gone the monitor leaves no socket at all: a socket
//! whose interface went reports the error at every poll, and its worker would spin.

use std::cell::{Cell, RefCell};
use std::io;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, PoisonError};

use crate::engine::MAX_UPLINKS;
use crate::uplink::{LinkKind, Uplink};

use super::fd::PollSet;
use super::filters::{Filter, SocketFilters};
use super::packet_socket::{Fanout, Frame, PacketSocket};
use super::worker::PacketIo;

/// One worker's data sockets on one uplink: the replies' and, on an uplink with forwards, the
/// forwarded ports', watched as one descriptor.
#[derive(Debug)]
pub struct DataSockets {
    replies: PacketSocket,
    forwards: Option<(PacketSocket, PollSet)>,
}

impl DataSockets {
    /// Of a batch of `budget` frames, what the forwarded ports' ring may take when the
    /// replies' ring gave `replies` of them: the rest of the batch, but at most half of it
    /// while replies are waiting.
    fn forwards_budget(budget: usize, replies: usize) -> usize {
        if replies >= budget / 2 {
            budget / 2
        } else {
            budget - replies
        }
    }

    fn receive(
        &self,
        buf: &mut [u8],
        budget: usize,
        f: &mut dyn FnMut(Frame<'_>),
    ) -> io::Result<usize> {
        let replies = self.replies.receive(buf, budget, f)?;
        let forwarded = match &self.forwards {
            Some((socket, _)) => socket.receive(buf, Self::forwards_budget(budget, replies), f)?,
            None => 0,
        };
        Ok(replies + forwarded)
    }

    fn raw_fd(&self) -> std::os::fd::RawFd {
        match &self.forwards {
            Some((_, both)) => both.raw_fd(),
            None => self.replies.raw_fd(),
        }
    }
}

/// Where one worker finds its data socket on one uplink opened anew, or closed.
#[derive(Debug, Default)]
pub struct Reopened {
    /// The newest replacement not taken yet: sockets, or none (closed).
    next: Mutex<Option<Option<DataSockets>>>,
    /// Replacements left here so far.
    count: AtomicU32,
}

impl Reopened {
    /// From its next loop the worker uses `socket` (none: no socket).
    fn leave(&self, socket: Option<DataSockets>) {
        *self.next.lock().unwrap_or_else(PoisonError::into_inner) = Some(socket);
        // released after the socket is in place: a worker that sees the count finds it
        self.count.fetch_add(1, Ordering::Release);
    }
}

/// One worker's data socket on one uplink (see the module's doc); none while the uplink's
/// interface is gone, when nothing can be sent or received on it.
#[derive(Debug)]
pub struct DataSocket<'a> {
    socket: RefCell<Option<DataSockets>>,
    reopened: &'a Reopened,
    /// How many of the sockets left in `reopened` were taken.
    taken: Cell<u32>,
}

impl<'a> DataSocket<'a> {
    /// `socket`, replaced by whatever the monitor leaves in `reopened`.
    pub fn new(socket: DataSockets, reopened: &'a Reopened) -> DataSocket<'a> {
        DataSocket {
            socket: RefCell::new(Some(socket)),
            taken: Cell::new(reopened.count.load(Ordering::Acquire)),
            reopened,
        }
    }

    /// The data sockets of each of `workers` workers on `uplink`'s interface, with
    /// `filters`, in the fanout group `fanout` (worker 0's first: a fanout by CPU counts on
    /// the order), the forwarded ports' in a group of their own.
    pub fn open_all(
        uplink: &Uplink,
        filters: &SocketFilters,
        workers: usize,
        fanout: Fanout,
    ) -> io::Result<Vec<DataSockets>> {
        let ipv6 = uplink.ipv6().is_some();
        let open = |filter, fanout| {
            PacketSocket::open_data(
                uplink.ifindex(),
                uplink.link,
                (filters, filter),
                fanout,
                ipv6,
            )
        };
        let forwards_fanout = Fanout {
            group: fanout.group ^ FORWARDS_GROUP,
            ..fanout
        };
        (0..workers)
            .map(|_| {
                let replies = open(Filter::Replies, fanout)?;
                let forwards = match filters.has_forwards() {
                    true => {
                        let socket = open(Filter::Forwards, forwards_fanout)?;
                        let both = PollSet::new(&[replies.raw_fd(), socket.raw_fd()])?;
                        Some((socket, both))
                    }
                    false => None,
                };
                Ok(DataSockets { replies, forwards })
            })
            .collect()
    }
}

/// The bit that tells an uplink's forwarded ports' fanout group from its data sockets' (the
/// groups of a namespace's uplinks and redials count up from a base far below it).
const FORWARDS_GROUP: u16 = 0x8000;

/// What sending on an uplink whose interface is gone says.
fn gone() -> io::Error {
    io::Error::from_raw_os_error(libc::ENETDOWN)
}

impl PacketIo for DataSocket<'_> {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        match &*self.socket.borrow() {
            Some(socket) => socket.replies.recv(buf),
            None => Err(io::ErrorKind::WouldBlock.into()),
        }
    }
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.socket
            .borrow()
            .as_ref()
            .ok_or_else(gone)?
            .replies
            .send(buf)
    }
    fn send_many(&self, bufs: &[&[u8]]) -> io::Result<usize> {
        self.socket
            .borrow()
            .as_ref()
            .ok_or_else(gone)?
            .replies
            .send_many(bufs)
    }
    fn receive(
        &self,
        buf: &mut [u8],
        budget: usize,
        f: &mut dyn FnMut(Frame<'_>),
    ) -> io::Result<usize> {
        match &*self.socket.borrow() {
            Some(socket) => socket.receive(buf, budget, f),
            None => Ok(0),
        }
    }
    fn has_ring(&self) -> bool {
        self.socket
            .borrow()
            .as_ref()
            .is_some_and(|s| s.replies.has_ring())
    }
    fn take_drops(&self) -> u64 {
        let socket = self.socket.borrow();
        socket
            .as_ref()
            .map_or(0, |s| s.replies.take_drops().unwrap_or(0))
    }
    fn take_forward_drops(&self) -> u64 {
        let socket = self.socket.borrow();
        let forwards = socket.as_ref().and_then(|s| s.forwards.as_ref());
        forwards.map_or(0, |(f, _)| f.take_drops().unwrap_or(0))
    }
    fn raw_fd(&self) -> std::os::fd::RawFd {
        // poll(2) leaves a negative descriptor alone
        self.socket.borrow().as_ref().map_or(-1, |s| s.raw_fd())
    }
    fn refresh(&self) -> bool {
        let count = self.reopened.count.load(Ordering::Acquire);
        if count == self.taken.get() {
            return false;
        }
        self.taken.set(count);
        let next = self
            .reopened
            .next
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        match next {
            Some(socket) => {
                // the old one closes here, in its worker's thread, between two batches
                *self.socket.borrow_mut() = socket;
                true
            }
            None => false,
        }
    }
}

/// The fanout group of uplink number `index`'s data sockets at start, for this process (the
/// groups are shared by the whole network namespace), spreading frames by CPU or by flow.
pub fn fanout_group(index: usize, by_cpu: bool) -> Fanout {
    let base = (std::process::id() as u16).wrapping_mul(32);
    Fanout {
        group: base.wrapping_add(index as u16),
        by_cpu,
    }
}

/// An uplink's sockets (see the module's doc).
#[derive(Debug)]
pub struct UplinkSockets<'a> {
    pub filters: SocketFilters,
    /// Sends echo requests, receives their replies (and nothing else).
    pub probe: PacketSocket,
    /// On an Ethernet uplink with a gateway, ARP to it.
    pub arp: Option<PacketSocket>,
    /// Where each worker finds its data socket opened anew.
    data: &'a [Reopened],
    /// The data sockets' fanout group.
    fanout: Fanout,
}

impl<'a> UplinkSockets<'a> {
    /// The probe and ARP sockets on `uplink`'s interface, beside the workers' data sockets
    /// (in the fanout group `fanout`, and opened anew through `data`), all with `filters`.
    pub fn open(
        uplink: &Uplink,
        filters: SocketFilters,
        data: &'a [Reopened],
        fanout: Fanout,
    ) -> io::Result<UplinkSockets<'a>> {
        let (probe, arp) = Self::open_probes(uplink, &filters)?;
        Ok(UplinkSockets {
            filters,
            probe,
            arp,
            data,
            fanout,
        })
    }

    fn open_probes(
        uplink: &Uplink,
        filters: &SocketFilters,
    ) -> io::Result<(PacketSocket, Option<PacketSocket>)> {
        let ifindex = uplink.ifindex();
        let arp = match (uplink.link, uplink.gateway()) {
            (LinkKind::Ethernet, Some(_)) => Some(PacketSocket::open_arp(ifindex)?),
            // a point-to-point link has no MAC to find
            _ => None,
        };
        let probe = PacketSocket::open_probe(ifindex, uplink.link, filters)?;
        Ok((probe, arp))
    }

    /// Opens every socket again on `uplink`'s interface as the record has it now (a new
    /// one): the workers take theirs at their next loop. Either all are replaced or, on an
    /// error, none.
    pub fn reopen(&mut self, uplink: &Uplink) -> io::Result<()> {
        // a group of its own: the old sockets may still be in the old one for a moment, and
        // a fanout group takes sockets of one interface only
        let fanout = Fanout {
            group: self.fanout.group.wrapping_add(MAX_UPLINKS as u16),
            ..self.fanout
        };
        let data = DataSocket::open_all(uplink, &self.filters, self.data.len(), fanout)?;
        let (probe, arp) = Self::open_probes(uplink, &self.filters)?;
        for (slot, socket) in self.data.iter().zip(data) {
            slot.leave(Some(socket));
        }
        (self.probe, self.arp, self.fanout) = (probe, arp, fanout);
        Ok(())
    }

    /// The uplink's interface is gone: the workers let go of their data sockets, which would
    /// report the error at every poll, until [`UplinkSockets::reopen`] gives them new ones.
    pub fn close_data(&self) {
        for slot in self.data {
            slot.leave(None);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::DataSockets;

    #[test]
    fn the_forwards_take_the_rest_of_a_batch_but_half_of_it_while_replies_wait() {
        let share = |replies| DataSockets::forwards_budget(64, replies);
        assert_eq!(share(0), 64, "nothing waits: all of it");
        assert_eq!(share(10), 54);
        assert_eq!(share(31), 33);
        assert_eq!(share(32), 32);
        assert_eq!(
            share(64),
            32,
            "replies take a batch: the forwards half of one"
        );
    }
}
