//! The data path: each worker owns one TUN queue and one packet socket per uplink, and moves
//! packets between them through the shared engine.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::engine::packet::read_u16;
use crate::engine::{Engine, L4Checksum, Timestamp, UplinkId, Verdict};

use super::arp::u64_to_mac;
use super::fd::Poller;
use super::packet::{ETH_HEADER, ETH_P_IP};
use super::vnet::{self, F_NEEDS_CSUM, VnetHeader};

/// Largest packet the kernel hands over (a 64 KiB GSO packet), plus both headers.
pub const BUFFER: usize = 65536 + vnet::LEN + ETH_HEADER;
/// Packets taken from one descriptor before the others get a turn.
const BUDGET: usize = 64;
/// Frames from TUN collected before they go out in one sendmmsg per uplink.
const TX_BATCH: usize = 32;

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
    fn raw_fd(&self) -> std::os::fd::RawFd;
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
    fn raw_fd(&self) -> std::os::fd::RawFd {
        (*self).raw_fd()
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

impl PacketIo for super::packet::PacketSocket {
    fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.recv(buf)
    }
    fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.send(buf)
    }
    fn send_many(&self, bufs: &[&[u8]]) -> io::Result<usize> {
        self.send_many(bufs)
    }
    fn raw_fd(&self) -> std::os::fd::RawFd {
        self.raw_fd()
    }
}

/// Per uplink: where frames go.
#[derive(Debug)]
pub struct UplinkPath {
    pub name: String,
    pub mac: [u8; 6],
    /// The gateway's MAC as a u64; 0 while unknown.
    pub gateway_mac: AtomicU64,
}

/// Drops that happen outside the engine.
#[derive(Debug, Default)]
pub struct IoCounters {
    pub no_gateway_mac: AtomicU64,
    pub send_errors: AtomicU64,
    pub tun_write_errors: AtomicU64,
    pub short_reads: AtomicU64,
}

/// What the workers and the control threads share.
#[derive(Debug)]
pub struct Shared {
    pub engine: Engine,
    pub uplinks: Vec<UplinkPath>,
    pub stop: AtomicBool,
    pub io: IoCounters,
    start: Instant,
}

impl Shared {
    pub fn new(engine: Engine, uplinks: Vec<UplinkPath>) -> Shared {
        Shared {
            engine,
            uplinks,
            stop: AtomicBool::new(false),
            io: IoCounters::default(),
            start: Instant::now(),
        }
    }

    /// The engine's clock: milliseconds since start.
    pub fn now(&self) -> Timestamp {
        Timestamp::from_millis(self.start.elapsed().as_millis() as u64)
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
        let mut pending: Vec<Vec<(usize, usize)>> =
            vec![Vec::with_capacity(TX_BATCH); self.uplinks.len()];
        let mut fds = vec![self.tun.raw_fd()];
        fds.extend(self.uplinks.iter().map(|s| s.raw_fd()));
        let mut poller = Poller::new(&fds);
        let mut spin_until = Instant::now();
        while !self.shared.stop.load(Ordering::Relaxed) {
            // While busy-polling, only look; otherwise sleep until something arrives.
            let spinning = !self.busy_poll.is_zero() && Instant::now() < spin_until;
            poller.wait(if spinning { 0 } else { 200 })?;
            let mut handled = 0;
            if poller.is_ready(0) {
                let mut used = 0;
                while handled < BUDGET {
                    let slot = &mut slots[used * BUFFER..(used + 1) * BUFFER];
                    // Read behind room for an Ethernet header, so the frame is built in place.
                    match self.tun.recv(&mut slot[ETH_HEADER..]) {
                        Ok(n) => {
                            handled += 1;
                            if let Some((u, len)) = self.forward_out(slot, n) {
                                pending[usize::from(u)].push((used, len));
                                used += 1;
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                    if used == TX_BATCH {
                        self.flush(&slots, &mut pending);
                        used = 0;
                    }
                }
                self.flush(&slots, &mut pending);
            }
            for (u, socket) in self.uplinks.iter().enumerate() {
                if !poller.is_ready(u + 1) {
                    continue;
                }
                for _ in 0..BUDGET {
                    match socket.recv(&mut buf) {
                        Ok(n) => self.forward_in(u as u8, &mut buf, n),
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(e) => return Err(e),
                    }
                    handled += 1;
                }
            }
            if handled > 0 && !self.busy_poll.is_zero() {
                spin_until = Instant::now() + self.busy_poll;
            }
        }
        Ok(())
    }

    /// Sends the frames waiting in `slots`, one batch per uplink.
    fn flush(&self, slots: &[u8], pending: &mut [Vec<(usize, usize)>]) {
        for (u, frames) in pending.iter_mut().enumerate() {
            let mut batch: [&[u8]; TX_BATCH] = [&[]; TX_BATCH];
            for (b, &(slot, len)) in batch.iter_mut().zip(frames.iter()) {
                *b = &slots[slot * BUFFER..slot * BUFFER + len];
            }
            let mut sent = 0;
            while sent < frames.len() {
                match self.uplinks[u].send_many(&batch[sent..frames.len()]) {
                    Ok(n) if n > 0 => sent += n,
                    // a frame the device refused: count it and go on with the rest
                    _ => {
                        self.shared.io.send_errors.fetch_add(1, Ordering::Relaxed);
                        sent += 1;
                    }
                }
            }
            frames.clear();
        }
    }

    /// `buf[ETH_HEADER..ETH_HEADER + n]` holds a virtio-net header and an IP packet from TUN.
    /// Translates it and builds the frame for its uplink in place: returns the uplink and the
    /// frame's length (from the start of `buf`), or `None` if it is dropped.
    fn forward_out(&self, buf: &mut [u8], n: usize) -> Option<(UplinkId, usize)> {
        if n < vnet::LEN {
            self.shared.io.short_reads.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let ip_at = ETH_HEADER + vnet::LEN;
        let header = header_at(buf, ETH_HEADER);
        let mut csum = csum_state(&header);
        let now = self.shared.now();
        let verdict = self
            .shared
            .engine
            .outbound(now, &mut buf[ip_at..ETH_HEADER + n], &mut csum);
        let Verdict::Uplink(u) = verdict else {
            return None;
        };
        let path = &self.shared.uplinks[usize::from(u)];
        let gateway = path.gateway_mac.load(Ordering::Relaxed);
        if gateway == 0 {
            self.shared
                .io
                .no_gateway_mac
                .fetch_add(1, Ordering::Relaxed);
            return None;
        }
        let mut out = [0u8; vnet::LEN];
        passed_on(header, ETH_HEADER as i32, csum).write(&mut out);
        buf[..vnet::LEN].copy_from_slice(&out);
        let eth = &mut buf[vnet::LEN..ip_at];
        eth[0..6].copy_from_slice(&u64_to_mac(gateway));
        eth[6..12].copy_from_slice(&path.mac);
        eth[12..14].copy_from_slice(&ETH_P_IP.to_be_bytes());
        Some((u, ETH_HEADER + n))
    }

    /// `buf[..n]` holds a virtio-net header and an Ethernet frame from uplink `u`.
    fn forward_in(&self, u: u8, buf: &mut [u8], n: usize) {
        let ip_at = vnet::LEN + ETH_HEADER;
        if n < ip_at {
            self.shared.io.short_reads.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let header = header_at(buf, 0);
        let mut csum = csum_state(&header);
        let now = self.shared.now();
        let verdict = self
            .shared
            .engine
            .inbound(now, u, &mut buf[ip_at..n], &mut csum);
        if verdict != Verdict::Tun {
            return;
        }
        // The engine validated the total length; frames may carry link padding beyond it.
        let ip_len = usize::from(read_u16(buf, ip_at + 2));
        let mut out = [0u8; vnet::LEN];
        passed_on(header, -(ETH_HEADER as i32), csum).write(&mut out);
        buf[ETH_HEADER..ip_at].copy_from_slice(&out);
        if self.tun.send(&buf[ETH_HEADER..ip_at + ip_len]).is_err() {
            self.shared
                .io
                .tun_write_errors
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}
