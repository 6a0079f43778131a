//! The data path: each worker owns one TUN queue and one packet socket per uplink, and moves
//! packets between them through the shared engine.

use std::io;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::engine::wire::Ipv4Packet;
use crate::engine::{
    CarriedFlows, Direction, Engine, L4Checksum, MAX_UNREACHABLE, Timestamp, UplinkId, Verdict,
};
use crate::uplink::{self, LinkKind, NextHop, Uplink, Uplinks};

use super::fastpath::TcFastPath;
use super::fd::Poller;
use super::gso::Packets;
use super::packet_socket::{ETH_HEADER, ETH_P_IP, ETH_P_IPV6, Frame, read_each};
use super::vnet::{self, F_NEEDS_CSUM, VnetHeader};

/// Largest packet the kernel hands over (a 64 KiB GSO packet), plus both headers.
pub const BUFFER: usize = 65536 + vnet::LEN + ETH_HEADER;
/// Packets taken from one descriptor before the others get a turn.
const BUDGET: usize = 64;
/// Frames from TUN collected before they go out in one sendmmsg per uplink.
const TX_BATCH: usize = 32;
/// How often a worker reads how many frames the kernel dropped for its sockets.
const DROPS_EVERY: Duration = Duration::from_secs(1);

/// A source and sink of packets; TUN queues and packet sockets are both.
pub trait PacketIo {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize>;
    fn send(&self, buf: &[u8]) -> io::Result<usize>;
    /// Sends several packets; returns how many went. One syscall where the device allows.
    fn send_many(&self, bufs: &[&[u8]]) -> io::Result<usize> {
        for (i, b) in bufs.iter().enumerate() {
            if let Err(e) = self.send(b) {
                return if i == 0 { Err(e) } else { Ok(i) };
            }
        }
        Ok(bufs.len())
    }
    /// Hands up to `budget` received packets to `f` (reading into `buf` if the device has no
    /// ring of its own); returns how many.
    fn receive(
        &self,
        buf: &mut [u8],
        budget: usize,
        f: &mut dyn FnMut(Frame<'_>),
    ) -> io::Result<usize> {
        read_each(|b| self.recv(b), buf, budget, f)
    }
    /// Whether received packets can be seen without a syscall (a receive ring).
    fn has_ring(&self) -> bool {
        false
    }
    /// Packets the kernel dropped for this source since the last call, its queue being full;
    /// 0 where the kernel does not say.
    fn take_drops(&self) -> u64 {
        0
    }
    /// The same for what came to a forwarded port, where it has a queue of its own.
    fn take_forward_drops(&self) -> u64 {
        0
    }
    fn raw_fd(&self) -> std::os::fd::RawFd;
    /// Takes up the descriptor that replaces this one, if one is waiting (an uplink's data
    /// socket, opened anew when its interface came back as a new one: io/uplink_sockets.rs);
    /// true if it did: whoever polls `raw_fd` must poll the new one.
    fn refresh(&self) -> bool {
        false
    }
}

impl<T: PacketIo> PacketIo for &T {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        (*self).recv(buf)
    }
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        (*self).send(buf)
    }
    fn send_many(&self, bufs: &[&[u8]]) -> io::Result<usize> {
        (*self).send_many(bufs)
    }
    fn receive(
        &self,
        buf: &mut [u8],
        budget: usize,
        f: &mut dyn FnMut(Frame<'_>),
    ) -> io::Result<usize> {
        (*self).receive(buf, budget, f)
    }
    fn has_ring(&self) -> bool {
        (*self).has_ring()
    }
    fn take_drops(&self) -> u64 {
        (*self).take_drops()
    }
    fn take_forward_drops(&self) -> u64 {
        (*self).take_forward_drops()
    }
    fn raw_fd(&self) -> std::os::fd::RawFd {
        (*self).raw_fd()
    }
    fn refresh(&self) -> bool {
        (*self).refresh()
    }
}

impl PacketIo for super::tun::TunQueue {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)
    }
    fn raw_fd(&self) -> std::os::fd::RawFd {
        self.raw_fd()
    }
}

impl PacketIo for super::packet_socket::PacketSocket {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)
    }
    fn send_many(&self, bufs: &[&[u8]]) -> io::Result<usize> {
        self.send_many(bufs)
    }
    fn receive(
        &self,
        buf: &mut [u8],
        budget: usize,
        f: &mut dyn FnMut(Frame<'_>),
    ) -> io::Result<usize> {
        self.receive(buf, budget, f)
    }
    fn has_ring(&self) -> bool {
        self.has_ring()
    }
    fn take_drops(&self) -> u64 {
        self.take_drops().unwrap_or(0)
    }
    fn raw_fd(&self) -> std::os::fd::RawFd {
        self.raw_fd()
    }
}

/// Drops that happen outside the engine.
#[derive(Debug, Default)]
pub struct IoCounters {
    pub no_gateway_mac: AtomicU64,
    pub send_errors: AtomicU64,
    /// Packets for a point-to-point uplink that could not be made complete (io/gso.rs).
    pub unsendable: AtomicU64,
    pub tun_write_errors: AtomicU64,
    pub short_reads: AtomicU64,
    /// Frames too big for a receive-ring slot.
    pub truncated: AtomicU64,
    /// Frames from the uplinks the kernel dropped, a data socket's ring being full: the
    /// workers fell behind (read once a second).
    pub ring_full: AtomicU64,
    /// The same for the rings of the forwarded ports' sockets (io/uplink_sockets.rs).
    pub forward_ring_full: AtomicU64,
    /// What became of the `--on-change` commands.
    pub hooks: super::hook::HookCounts,
}

/// What the workers and the control threads share.
#[derive(Debug)]
pub struct Shared {
    pub engine: Engine,
    /// Each uplink's record, indexed by its id.
    pub uplinks: Uplinks,
    pub stop: AtomicBool,
    pub io: IoCounters,
    /// The in-kernel fast path the engine hands steady flows to, if it runs.
    pub fast_path: Option<Arc<TcFastPath>>,
    start: Instant,
}

impl Shared {
    /// The engine, and the records of the uplinks in the settings' order.
    pub fn new(engine: Engine, uplinks: Vec<Uplink>) -> Shared {
        Shared {
            engine,
            uplinks: Uplinks::new(uplinks),
            stop: AtomicBool::new(false),
            io: IoCounters::default(),
            fast_path: None,
            start: Instant::now(),
        }
    }

    /// The engine's clock: milliseconds since start.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.start.elapsed().as_millis() as u64)
    }

    /// What the kernel fast path recorded of the flows it holds, read in one batch: what the
    /// engine's expiry, an uplink's change and the busiest destinations go by. Nothing
    /// without a fast path; `None` if its maps could not be read.
    pub fn carried(&self) -> Option<CarriedFlows> {
        let Some(fast) = &self.fast_path else {
            return Some(CarriedFlows::NONE);
        };
        fast.carried()
            .inspect_err(|e| tracing::warn!(error = %e, "cannot read the kernel fast path's flows"))
            .ok()
    }

    /// Carries out what the engine asked of the kernel fast path, in the order it asked
    /// ([`TcFastPath::carry_out`]): after every call to the engine outside the workers, which
    /// do it after each batch.
    pub fn carry_out(&self) {
        if let Some(fast) = &self.fast_path {
            fast.carry_out(&self.engine);
        }
    }

    /// The same clock in microseconds, for health probes.
    pub fn now_us(&self) -> u64 {
        self.start.elapsed().as_micros() as u64
    }
}

fn csum_state(h: &VnetHeader) -> L4Checksum {
    if h.needs_csum() {
        L4Checksum::Partial
    } else {
        L4Checksum::Complete
    }
}

/// The header to send on: offsets moved by `shift`, and no checksum request if the engine
/// completed the checksum.
fn passed_on(h: VnetHeader, shift: i32, csum: L4Checksum) -> VnetHeader {
    let mut out = h.shifted(shift);
    if csum == L4Checksum::Complete {
        out.flags &= !F_NEEDS_CSUM;
    }
    out
}

fn header_at(buf: &[u8], at: usize) -> VnetHeader {
    let mut b = [0u8; vnet::LEN];
    b.copy_from_slice(&buf[at..at + vnet::LEN]);
    VnetHeader::read(&b)
}

pub struct Worker<'a, T: PacketIo, P: PacketIo> {
    pub shared: &'a Shared,
    pub tun: T,
    pub uplinks: Vec<P>,
    /// After handling a packet, keep looking for the next one this long before sleeping:
    /// saves a wakeup (tens of microseconds on a VM) per packet, at the cost of CPU time.
    pub busy_poll: Duration,
}

impl<T: PacketIo, P: PacketIo> Worker<'_, T, P> {
    pub fn run(&self) -> io::Result<()> {
        let mut buf = vec![0u8; BUFFER];
        // Frames bound for the uplinks are built in place, one slot each, and sent in batches.
        let mut slots = vec![0u8; TX_BATCH * BUFFER];
        // what point-to-point uplinks are sent: complete packets, made from the slots
        let mut complete = Packets::default();
        let mut pending: Vec<Vec<(usize, Range<usize>)>> =
            vec![Vec::with_capacity(TX_BATCH); self.uplinks.len()];
        let mut poller = self.poller();
        let mut spin_until = Instant::now();
        let mut drops_read = Instant::now();
        while !self.shared.stop.load(Ordering::Relaxed) {
            // an uplink's socket opened anew (its interface came back as a new one)
            let renewed = self.uplinks.iter().fold(false, |any, u| u.refresh() | any);
            if renewed {
                poller = self.poller();
            }
            if drops_read.elapsed() >= DROPS_EVERY {
                drops_read = Instant::now();
                let dropped: u64 = self.uplinks.iter().map(PacketIo::take_drops).sum();
                let io = &self.shared.io;
                io.ring_full.fetch_add(dropped, Ordering::Relaxed);
                let forwarded: u64 = self.uplinks.iter().map(PacketIo::take_forward_drops).sum();
                io.forward_ring_full.fetch_add(forwarded, Ordering::Relaxed);
            }
            // While busy-polling, only look; otherwise sleep until something arrives.
            let spinning = !self.busy_poll.is_zero() && Instant::now() < spin_until;
            poller.wait(if spinning { 0 } else { 200 })?;
            // One clock read per batch, not per packet: timestamps only drive idle timeouts.
            let now = self.shared.now();
            let mut handled = 0;
            let sent_any = poller.is_ready(0);
            if sent_any {
                let mut used = 0;
                while handled < BUDGET {
                    let slot = &mut slots[used * BUFFER..(used + 1) * BUFFER];
                    // Read behind room for an Ethernet header, so the frame is built in place.
                    match self.tun.recv(&mut slot[ETH_HEADER..]) {
                        Ok(n) => {
                            handled += 1;
                            if let Some((u, frame)) = self.forward_outbound(now, slot, n) {
                                pending[usize::from(u)].push((used, frame));
                                used += 1;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                    if used == TX_BATCH {
                        self.flush(&slots, &mut pending, &mut complete);
                        used = 0;
                    }
                }
                self.flush(&slots, &mut pending, &mut complete);
            }
            for (u, socket) in self.uplinks.iter().enumerate() {
                // A reply often arrives while our own send is still in the kernel; a ring
                // shows it without another poll, so look whenever we sent something.
                if poller.is_ready(u + 1) || (sent_any && socket.has_ring()) {
                    handled += socket.receive(&mut buf, BUDGET, &mut |frame| match frame {
                        Frame::Whole(frame) => self.forward_inbound(now, uplink::id_at(u), frame),
                        Frame::Truncated => {
                            self.shared.io.truncated.fetch_add(1, Ordering::Relaxed);
                        }
                    })?;
                }
            }
            // what the batch decided for the fast path, outside every engine lock
            if let Some(fast) = &self.shared.fast_path {
                fast.try_carry_out(&self.shared.engine);
            }
            if handled > 0 && !self.busy_poll.is_zero() {
                spin_until = Instant::now() + self.busy_poll;
            }
        }
        Ok(())
    }

    /// Waits for the TUN queue (descriptor 0) and each uplink's socket (1 and up).
    fn poller(&self) -> Poller {
        let mut fds = vec![self.tun.raw_fd()];
        fds.extend(self.uplinks.iter().map(|s| s.raw_fd()));
        Poller::new(&fds)
    }

    /// Sends the frames waiting in `slots` (each a slot and the frame's bytes in it), one
    /// batch per uplink. A point-to-point uplink's socket takes no virtio-net header: its
    /// frames become complete packets in `complete` first.
    fn flush(
        &self,
        slots: &[u8],
        pending: &mut [Vec<(usize, Range<usize>)>],
        complete: &mut Packets,
    ) {
        for (uplink, frames) in self.shared.uplinks.iter().zip(pending.iter_mut()) {
            let u = usize::from(uplink.id);
            let frame_bytes = |(slot, frame): &(usize, Range<usize>)| -> &[u8] {
                &slots[slot * BUFFER..][frame.clone()]
            };
            match uplink.link {
                LinkKind::Ethernet => {
                    let mut batch: [&[u8]; TX_BATCH] = [&[]; TX_BATCH];
                    for (b, f) in batch.iter_mut().zip(frames.iter()) {
                        *b = frame_bytes(f);
                    }
                    self.send(u, &batch[..frames.len()]);
                }
                LinkKind::PointToPoint => {
                    for f in frames.iter() {
                        if complete.add(frame_bytes(f)).is_err() {
                            self.shared.io.unsendable.fetch_add(1, Ordering::Relaxed);
                        }
                        if complete.len() >= TX_BATCH {
                            self.send_complete(u, complete);
                        }
                    }
                    self.send_complete(u, complete);
                }
            }
            frames.clear();
        }
    }

    /// Sends the packets in `complete` out of uplink `u`, and forgets them.
    fn send_complete(&self, u: usize, complete: &mut Packets) {
        let mut batch: [&[u8]; TX_BATCH] = [&[]; TX_BATCH];
        let mut n = 0;
        for packet in complete.iter() {
            batch[n] = packet;
            n += 1;
            if n == TX_BATCH {
                self.send(u, &batch);
                n = 0;
            }
        }
        self.send(u, &batch[..n]);
        complete.clear();
    }

    /// Sends `batch` out of uplink `u`.
    fn send(&self, u: usize, batch: &[&[u8]]) {
        let mut sent = 0;
        while sent < batch.len() {
            match self.uplinks[u].send_many(&batch[sent..]) {
                Ok(n) if n > 0 => sent += n,
                // a frame the device refused: count it and go on with the rest
                _ => {
                    self.shared.io.send_errors.fetch_add(1, Ordering::Relaxed);
                    sent += 1;
                }
            }
        }
    }

    /// `buf[ETH_HEADER..ETH_HEADER + n]` holds a virtio-net header and an IP packet from TUN.
    /// Translates it and builds the frame for its uplink in place: returns the uplink and
    /// where in `buf` the frame is (with its virtio-net header), or `None` if it is dropped.
    fn forward_outbound(
        &self,
        now: Timestamp,
        buf: &mut [u8],
        n: usize,
    ) -> Option<(UplinkId, Range<usize>)> {
        if n < vnet::LEN {
            self.shared.io.short_reads.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let ip_at = ETH_HEADER + vnet::LEN;
        let header = header_at(buf, ETH_HEADER);
        let mut csum = csum_state(&header);
        let engine = &self.shared.engine;
        let packet = &mut buf[ip_at..ETH_HEADER + n];
        // a TCP reset of a flow the kernel carries is judged by what the kernel saw
        let carried = (self.shared.fast_path.as_ref())
            .and_then(|fast| fast.carried_of_reset(Direction::Outbound, 0, packet));
        let u = match engine.outbound_carried(now, packet, &mut csum, carried.as_ref()) {
            Verdict::Uplink(u) => u,
            Verdict::Tun => {
                // the engine answered in place: write its answer back, a plain packet
                let len = ip_len(&buf[ip_at..]);
                buf[ETH_HEADER..ip_at].fill(0);
                self.write_tun(&buf[ETH_HEADER..ip_at + len]);
                return None;
            }
            Verdict::Hairpin => {
                // back towards the LAN (or the gateway's own stack), offloads kept
                let mut out = [0u8; vnet::LEN];
                passed_on(header, 0, csum).write(&mut out);
                buf[ETH_HEADER..ip_at].copy_from_slice(&out);
                self.write_tun(&buf[ETH_HEADER..ETH_HEADER + n]);
                return None;
            }
            Verdict::Drop(reason) if reason.is_unreachable() => {
                let mut answer = [0u8; vnet::LEN + MAX_UNREACHABLE];
                if let Some(len) = engine.unreachable(
                    now,
                    reason,
                    &buf[ip_at..ETH_HEADER + n],
                    &mut answer[vnet::LEN..],
                ) {
                    self.write_tun(&answer[..vnet::LEN + len]);
                }
                return None;
            }
            Verdict::Drop(_) => return None,
        };
        if header.gso_size != 0 {
            engine.count_segments(
                u,
                Direction::Outbound,
                &buf[ip_at..ETH_HEADER + n],
                header.gso_size,
            );
        }
        let uplink = &self.shared.uplinks[u];
        let mut out = [0u8; vnet::LEN];
        let is_v6 = buf.get(ip_at).is_some_and(|b| b >> 4 == 6);
        let (next_hop, ethertype) = match is_v6 {
            false => (uplink.next_hop(), ETH_P_IP),
            true => (uplink.next_hop6(), ETH_P_IPV6),
        };
        match next_hop {
            Some(NextHop::Gateway(gateway)) => {
                passed_on(header, ETH_HEADER as i32, csum).write(&mut out);
                buf[..vnet::LEN].copy_from_slice(&out);
                let eth = &mut buf[vnet::LEN..ip_at];
                eth[0..6].copy_from_slice(&gateway);
                eth[6..12].copy_from_slice(&uplink.mac());
                eth[12..14].copy_from_slice(&ethertype.to_be_bytes());
                Some((u, 0..ETH_HEADER + n))
            }
            // the packet goes as it is, behind its virtio-net header
            Some(NextHop::Peer) => {
                passed_on(header, 0, csum).write(&mut out);
                buf[ETH_HEADER..ip_at].copy_from_slice(&out);
                Some((u, ETH_HEADER..ETH_HEADER + n))
            }
            None => {
                self.shared
                    .io
                    .no_gateway_mac
                    .fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// `buf` holds a virtio-net header and a frame from uplink `u`: an Ethernet frame, or on
    /// a point-to-point link an IP packet.
    fn forward_inbound(&self, now: Timestamp, u: UplinkId, buf: &mut [u8]) {
        let n = buf.len();
        let link_header = self.shared.uplinks[u].link.header_len();
        let ip_at = vnet::LEN + link_header;
        if n < ip_at {
            self.shared.io.short_reads.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let header = header_at(buf, 0);
        let mut csum = csum_state(&header);
        let packet = &mut buf[ip_at..n];
        let carried = (self.shared.fast_path.as_ref())
            .and_then(|fast| fast.carried_of_reset(Direction::Inbound, u, packet));
        let verdict =
            (self.shared.engine).inbound_carried(now, u, packet, &mut csum, carried.as_ref());
        if verdict != Verdict::Tun {
            return;
        }
        // The engine validated the total length; frames may carry link padding beyond it.
        let ip_len = ip_len(&buf[ip_at..]);
        if header.gso_size != 0 && buf[ip_at] >> 4 == 4 {
            (self.shared.engine).count_segments(
                u,
                Direction::Inbound,
                &buf[ip_at..ip_at + ip_len],
                header.gso_size,
            );
        }
        let mut out = [0u8; vnet::LEN];
        passed_on(header, -(link_header as i32), csum).write(&mut out);
        buf[link_header..ip_at].copy_from_slice(&out);
        self.write_tun(&buf[link_header..ip_at + ip_len]);
    }

    /// Writes `[virtio-net header][IP packet]` towards the LAN.
    fn write_tun(&self, packet: &[u8]) {
        if self.tun.send(packet).is_err() {
            self.shared
                .io
                .tun_write_errors
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The length of the IP packet `packet` starts with, as its header says (the engine checked
/// it): IPv4's total length, or IPv6's header and payload.
fn ip_len(packet: &[u8]) -> usize {
    match packet.first().map(|b| b >> 4) {
        Some(6) if packet.len() >= 40 => {
            40 + usize::from(u16::from_be_bytes([packet[4], packet[5]]))
        }
        _ => Ipv4Packet::new_unchecked(packet).total_len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::flow::Timeouts;
    use crate::engine::{EngineConfig, UdpAffinity, UplinkConfig};
    use crate::uplink::LinkKind;
    use std::cell::RefCell;
    use wanlb_testkit::Ipv4Packet;

    /// A device that records what is sent to it and has nothing to read.
    #[derive(Default)]
    struct Recorder {
        sent: RefCell<Vec<Vec<u8>>>,
    }

    impl PacketIo for Recorder {
        fn recv(&self, _: &mut [u8]) -> io::Result<usize> {
            Err(io::ErrorKind::WouldBlock.into())
        }
        fn send(&self, buf: &[u8]) -> io::Result<usize> {
            self.sent.borrow_mut().push(buf.to_vec());
            Ok(buf.len())
        }
        fn raw_fd(&self) -> std::os::fd::RawFd {
            -1
        }
    }

    const UPLINK: [u8; 4] = [198, 18, 1, 1];
    const OUR_MAC: [u8; 6] = [2, 0, 0, 0, 0, 1];
    const GATEWAY_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xfe];

    fn worker(shared: &Shared) -> Worker<'_, Recorder, Recorder> {
        Worker {
            shared,
            tun: Recorder::default(),
            uplinks: vec![Recorder::default()],
            busy_poll: Duration::ZERO,
        }
    }

    /// The test uplink, its gateway's MAC not known yet.
    fn isp1() -> Uplink {
        Uplink::new(0, "isp1", "eth1", LinkKind::Ethernet)
            .on_interface(3, OUR_MAC)
            .with_address(UPLINK.into(), Some([198, 18, 1, 254].into()))
    }

    /// The test uplink as a point-to-point link (a PPP session, say).
    fn ppp() -> Uplink {
        Uplink::new(0, "isp1", "ppp0", LinkKind::PointToPoint)
            .on_interface(3, [0; 6])
            .with_address(UPLINK.into(), None)
    }

    fn shared() -> Shared {
        let engine = Engine::new(EngineConfig {
            uplinks: vec![UplinkConfig {
                name: "isp1".into(),
                addr: u32::from_be_bytes(UPLINK),
                weight: 1,
                tier: 1,
            }],
            pins: vec![],
            affinity_timeout_ms: 600_000,
            timeouts: Timeouts::default(),
            ports: (61000, 61000),
            seed: 1,
            reset_tcp_on_down: true,
            udp_affinity: UdpAffinity::Endpoint,
            limits: crate::engine::limits::Limits::unlimited(),
        });
        let uplink = isp1();
        uplink.set_gateway_mac(GATEWAY_MAC);
        Shared::new(engine, vec![uplink])
    }

    /// A UDP datagram carrying "ping", checksums complete.
    fn udp(from: [u8; 4], to: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        Ipv4Packet::udp(from, to, sport, dport, b"ping").build()
    }

    const LAN: [u8; 4] = [198, 18, 3, 10];
    const SERVER: [u8; 4] = [198, 19, 0, 1];

    /// A slot as the TUN reader fills it: room for the Ethernet header, a virtio-net header
    /// for a plain packet, then `packet`.
    fn tun_slot(packet: &[u8]) -> Vec<u8> {
        let mut slot = vec![0u8; BUFFER];
        slot[ETH_HEADER + vnet::LEN..][..packet.len()].copy_from_slice(packet);
        slot
    }

    #[test]
    fn tun_packet_leaves_as_an_ethernet_frame_to_the_gateway() {
        let shared = shared();
        let w = worker(&shared);
        // TUN hands over: virtio-net header (partial checksum from IP offset 20 + 6), packet
        let header = VnetHeader {
            flags: F_NEEDS_CSUM,
            csum_start: 20,
            csum_offset: 6,
            ..VnetHeader::default()
        };
        let packet = udp(LAN, SERVER, 5000, 53);
        let mut slot = tun_slot(&packet);
        let mut h = [0u8; vnet::LEN];
        header.write(&mut h);
        slot[ETH_HEADER..ETH_HEADER + vnet::LEN].copy_from_slice(&h);
        let n = vnet::LEN + packet.len();

        let (uplink, frame) = w
            .forward_outbound(shared.now(), &mut slot, n)
            .expect("forwarded");
        assert_eq!(
            (uplink, frame.clone()),
            (0, 0..vnet::LEN + ETH_HEADER + packet.len())
        );
        let mut pending = vec![vec![(0, frame)]];
        w.flush(&slot, &mut pending, &mut Packets::default());

        let sent = w.uplinks[0].sent.borrow();
        assert_eq!(sent.len(), 1);
        let frame = &sent[0];
        // the checksum offset moved by the Ethernet header, nothing else changed
        let mut expected_header = [0u8; vnet::LEN];
        VnetHeader {
            csum_start: 34,
            ..header
        }
        .write(&mut expected_header);
        assert_eq!(frame[..vnet::LEN], expected_header);
        assert_eq!(frame[10..16], GATEWAY_MAC);
        assert_eq!(frame[16..22], OUR_MAC);
        assert_eq!(frame[22..24], [0x08, 0x00]);
        assert_eq!(
            frame[24 + 12..24 + 16],
            UPLINK,
            "translated to the uplink address"
        );
        assert_eq!(
            frame[24 + 20..24 + 22],
            61000u16.to_be_bytes(),
            "and the pool's only port"
        );
        assert!(pending[0].is_empty());
    }

    #[test]
    fn reply_reaches_tun_without_link_padding() {
        let shared = shared();
        let w = worker(&shared);
        let packet = udp(LAN, SERVER, 5000, 53);
        let mut slot = tun_slot(&packet);
        w.forward_outbound(shared.now(), &mut slot, vnet::LEN + packet.len())
            .expect("forwarded");

        // the reply as an uplink frame, padded to the Ethernet minimum
        let reply = udp(SERVER, UPLINK, 53, 61000);
        let mut buf = vec![0u8; BUFFER];
        buf[vnet::LEN..vnet::LEN + 6].copy_from_slice(&OUR_MAC);
        buf[vnet::LEN + 12..vnet::LEN + 14].copy_from_slice(&[0x08, 0x00]);
        buf[vnet::LEN + ETH_HEADER..][..reply.len()].copy_from_slice(&reply);
        let n = vnet::LEN + ETH_HEADER + reply.len() + 14;
        w.forward_inbound(shared.now(), 0, &mut buf[..n]);

        let written = w.tun.sent.borrow();
        assert_eq!(written.len(), 1);
        let mut expected = vec![0u8; vnet::LEN];
        expected.extend_from_slice(&udp(SERVER, LAN, 53, 5000));
        assert_eq!(
            written[0], expected,
            "header, then exactly the translated datagram"
        );
    }

    #[test]
    fn with_every_uplink_down_the_host_hears_network_unreachable() {
        let shared = shared();
        shared.engine.set_uplink_up(0, false, &CarriedFlows::NONE);
        let w = worker(&shared);
        let packet = udp(LAN, SERVER, 5000, 53);
        let mut slot = tun_slot(&packet);
        assert_eq!(
            w.forward_outbound(shared.now(), &mut slot, vnet::LEN + packet.len()),
            None
        );
        let written = w.tun.sent.borrow();
        assert_eq!(written.len(), 1);
        let answer = &written[0];
        assert_eq!(answer[..vnet::LEN], [0u8; vnet::LEN], "a plain packet");
        let icmp = &answer[vnet::LEN..];
        assert_eq!(icmp.len(), 20 + 8 + 28);
        assert_eq!(icmp[12..16], SERVER, "from the destination");
        assert_eq!(icmp[16..20], LAN);
        assert_eq!(icmp[20..22], [3, 0], "network unreachable");
        assert_eq!(icmp[28..], packet[..28], "quoting its headers");
        assert!(w.uplinks[0].sent.borrow().is_empty());
    }

    #[test]
    fn on_a_point_to_point_uplink_the_packet_leaves_bare_and_its_reply_comes_back() {
        let shared = Shared::new(shared().engine, vec![ppp()]);
        let w = worker(&shared);
        let packet = udp(LAN, SERVER, 5000, 53);
        let mut slot = tun_slot(&packet);
        let n = vnet::LEN + packet.len();

        // no gateway MAC, no Ethernet header: the virtio-net header, then the packet...
        let (uplink, frame) = w
            .forward_outbound(shared.now(), &mut slot, n)
            .expect("forwarded without a MAC");
        assert_eq!((uplink, frame.clone()), (0, ETH_HEADER..ETH_HEADER + n));
        // ...of which the socket gets the packet, complete
        let mut complete = Packets::default();
        w.flush(&slot, &mut [vec![(0, frame)]], &mut complete);
        assert_eq!(complete.len(), 0, "sent and forgotten");
        let sent = w.uplinks[0].sent.borrow();
        assert_eq!(sent[..], [udp(UPLINK, SERVER, 61000, 53)]);
        assert_eq!(shared.io.no_gateway_mac.load(Ordering::Relaxed), 0);

        // the reply as the packet socket hands it over: virtio-net header, IP packet
        let reply = udp(SERVER, UPLINK, 53, 61000);
        let mut buf = vec![0u8; vnet::LEN];
        buf.extend_from_slice(&reply);
        w.forward_inbound(shared.now(), 0, &mut buf);
        let written = w.tun.sent.borrow();
        let mut expected = vec![0u8; vnet::LEN];
        expected.extend_from_slice(&udp(SERVER, LAN, 53, 5000));
        assert_eq!(written[..], [expected]);
        // one byte short of an IP header: counted, not parsed
        w.forward_inbound(shared.now(), 0, &mut buf[..vnet::LEN - 1]);
        assert_eq!(shared.io.short_reads.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn nothing_is_sent_while_the_gateway_mac_is_unknown() {
        let engine = shared().engine;
        let uplink = isp1();
        let shared = Shared::new(engine, vec![uplink]);
        let w = worker(&shared);
        let packet = udp(LAN, SERVER, 5000, 53);
        let mut slot = tun_slot(&packet);
        assert_eq!(
            w.forward_outbound(shared.now(), &mut slot, vnet::LEN + packet.len()),
            None
        );
        assert_eq!(shared.io.no_gateway_mac.load(Ordering::Relaxed), 1);
    }
}
