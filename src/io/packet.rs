//! AF_PACKET sockets on the uplinks: raw Ethernet frames out, and only wanlb's replies in.
//!
//! Each data socket carries the virtio-net header (PACKET_VNET_HDR), so GSO super-packets and
//! partial checksums pass both ways untouched; a classic BPF program keeps everything that is
//! not addressed to the uplink's NAT ports (or ICMP) in the kernel; the workers' sockets on
//! one uplink form a fanout group so each frame reaches exactly one of them.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::fd::{check, own, read, set_nonblocking, setsockopt, write};
pub use super::ring::Frame;
use super::ring::RxRing;

pub const ETH_HEADER: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;

const PACKET_FANOUT: libc::c_int = 18;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_FANOUT_HASH: u32 = 0;
/// Reassemble IP fragments before choosing a fanout member, so a fragmented reply
/// reaches wanlb whole.
const PACKET_FANOUT_FLAG_DEFRAG: u32 = 0x8000;

const SOCKET_BUFFER: libc::c_int = 8 << 20;

#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    /// Data sockets receive through a ring; ARP and capture sockets with read().
    rx: Option<RxRing>,
}

/// Slots in each data socket's receive ring: 64 x 68 KiB.
const RING_FRAMES: usize = 64;

fn op(code: u16, jt: u8, jf: u8, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

const LD_H_ABS: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_ABS) as u16;
const LD_W_ABS: u16 = (libc::BPF_LD | libc::BPF_W | libc::BPF_ABS) as u16;
const LD_B_ABS: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_ABS) as u16;
const LDX_B_MSH: u16 = (libc::BPF_LDX | libc::BPF_B | libc::BPF_MSH) as u16;
const LD_H_IND: u16 = (libc::BPF_LD | libc::BPF_H | libc::BPF_IND) as u16;
const LD_B_IND: u16 = (libc::BPF_LD | libc::BPF_B | libc::BPF_IND) as u16;
const JA: u16 = (libc::BPF_JMP | libc::BPF_JA) as u16;
const JEQ: u16 = (libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K) as u16;
const JGE: u16 = (libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K) as u16;
const JGT: u16 = (libc::BPF_JMP | libc::BPF_JGT | libc::BPF_K) as u16;
const RET: u16 = (libc::BPF_RET | libc::BPF_K) as u16;

/// Accepts IPv4 frames to `addr` that are TCP/UDP to a port in `ports`, ICMP echo replies
/// with an identifier in `ports`, or other ICMP (errors). Echo replies outside the pool (the
/// monitor's health probes) stay out. Jump offsets count instructions after the jump.
pub fn reply_filter(addr: u32, ports: (u16, u16)) -> Vec<libc::sock_filter> {
    vec![
        op(LD_H_ABS, 0, 0, 12),                 // 0: ethertype
        op(JEQ, 0, 15, u32::from(ETH_P_IP)),    // 1: else drop (17)
        op(LD_W_ABS, 0, 0, 30),                 // 2: IPv4 destination
        op(JEQ, 0, 13, addr),                   // 3: else drop
        op(LDX_B_MSH, 0, 0, ETH_HEADER as u32), // 4: X = IPv4 header length
        op(LD_B_ABS, 0, 0, 23),                 // 5: protocol
        op(JEQ, 6, 0, 6),                       // 6: TCP: port (13)
        op(JEQ, 5, 0, 17),                      // 7: UDP: port (13)
        op(JEQ, 0, 8, 1),                       // 8: not ICMP: drop
        op(LD_B_IND, 0, 0, 14),                 // 9: ICMP type at 14 + X
        op(JEQ, 0, 5, 0),                       // 10: not an echo reply: accept (16)
        op(LD_H_IND, 0, 0, 18),                 // 11: echo identifier at 14 + X + 4
        op(JA, 0, 0, 1),                        // 12: to the range check (14)
        op(LD_H_IND, 0, 0, 16),                 // 13: destination port at 14 + X + 2
        op(JGE, 0, 2, u32::from(ports.0)),      // 14: below the pool: drop
        op(JGT, 1, 0, u32::from(ports.1)),      // 15: above the pool: drop
        op(RET, 0, 0, u32::MAX),                // 16: accept whole
        op(RET, 0, 0, 0),                       // 17: drop
    ]
}

/// Accepts ICMP echo replies to `addr` with identifier `id`: a health probe's answers.
pub fn echo_reply_filter(addr: u32, id: u16) -> Vec<libc::sock_filter> {
    vec![
        op(LD_H_ABS, 0, 0, 12),                 // 0: ethertype
        op(JEQ, 0, 9, u32::from(ETH_P_IP)),     // 1: else drop (11)
        op(LD_W_ABS, 0, 0, 30),                 // 2: IPv4 destination
        op(JEQ, 0, 7, addr),                    // 3: else drop
        op(LD_B_ABS, 0, 0, 23),                 // 4: protocol
        op(JEQ, 0, 5, 1),                       // 5: not ICMP: drop
        op(LDX_B_MSH, 0, 0, ETH_HEADER as u32), // 6: X = IPv4 header length
        op(LD_B_IND, 0, 0, 14),                 // 7: ICMP type
        op(JEQ, 0, 2, 0),                       // 8: not an echo reply: drop
        op(LD_H_IND, 0, 0, 18),                 // 9: identifier
        op(JEQ, 1, 0, u32::from(id)),           // 10: ours: accept (12)
        op(RET, 0, 0, 0),                       // 11: drop
        op(RET, 0, 0, u32::MAX),                // 12: accept
    ]
}

fn attach_filter(fd: &OwnedFd, filter: &[libc::sock_filter]) -> io::Result<()> {
    let prog = libc::sock_fprog {
        len: filter.len() as u16,
        filter: filter.as_ptr() as *mut _,
    };
    setsockopt(fd, libc::SOL_SOCKET, libc::SO_ATTACH_FILTER, &prog)
}

fn raw_socket() -> io::Result<OwnedFd> {
    // Protocol 0: receive nothing until bound, so no frame slips in before the filter.
    // SAFETY: socket() with integer arguments.
    let fd = own(unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) })?;
    // Our own frames are not ours to read back.
    setsockopt(
        &fd,
        libc::SOL_PACKET,
        PACKET_IGNORE_OUTGOING,
        &1 as &libc::c_int,
    )?;
    Ok(fd)
}

/// An unbound packet socket for incoming frames with the virtio-net header, with room to
/// queue bursts: the default buffer holds only a few 64 KiB GSO frames.
fn vnet_socket() -> io::Result<OwnedFd> {
    let fd = raw_socket()?;
    setsockopt(&fd, libc::SOL_PACKET, PACKET_VNET_HDR, &1 as &libc::c_int)?;
    setsockopt(&fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &SOCKET_BUFFER)?;
    Ok(fd)
}

fn bind(fd: &OwnedFd, ifindex: u32, ethertype: u16) -> io::Result<()> {
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ethertype.to_be();
    sll.sll_ifindex = ifindex as i32;
    // SAFETY: the address points to a live sockaddr_ll and its size is passed.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&sll as *const libc::sockaddr_ll).cast(),
            std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
        )
    })?;
    Ok(())
}

impl PacketSocket {
    /// A data socket on `ifindex` for IPv4 frames passing `filter`, with the virtio-net header,
    /// joined to fanout group `fanout_group` (one group per uplink).
    pub fn open_data(
        ifindex: u32,
        filter: &[libc::sock_filter],
        fanout_group: u16,
    ) -> io::Result<PacketSocket> {
        let fd = vnet_socket()?;
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &SOCKET_BUFFER)?;
        // Without a ring (a kernel or page size that refuses one) frames are read one by one.
        let rx = RxRing::new(&fd, RING_FRAMES)
            .inspect_err(
                |e| tracing::warn!(error = %e, "no receive ring; reading frames one by one"),
            )
            .ok();
        attach_filter(&fd, filter)?;
        bind(&fd, ifindex, ETH_P_IP)?;
        let fanout =
            u32::from(fanout_group) | ((PACKET_FANOUT_HASH | PACKET_FANOUT_FLAG_DEFRAG) << 16);
        setsockopt(&fd, libc::SOL_PACKET, PACKET_FANOUT, &fanout)?;
        // No PACKET_QDISC_BYPASS: the uplink's qdisc (fq_codel, cake) is what keeps a home
        // line's latency down under load, and bypassing it measured no faster (64-byte UDP
        // through the userspace path: 0.19 Mpps with it, 0.20 without).
        set_nonblocking(&fd)?;
        Ok(PacketSocket { fd, rx })
    }

    /// A socket that sees every IPv4 frame arriving on `ifindex`, with the virtio-net header
    /// (for tests that check what crossed a link).
    pub fn open_capture(ifindex: u32) -> io::Result<PacketSocket> {
        let fd = vnet_socket()?;
        bind(&fd, ifindex, ETH_P_IP)?;
        set_nonblocking(&fd)?;
        Ok(PacketSocket { fd, rx: None })
    }

    /// A socket that sends IPv4 frames out of `ifindex` and receives those passing `filter`
    /// (no virtio-net header): the health probes of one uplink.
    pub fn open_probe(ifindex: u32, filter: &[libc::sock_filter]) -> io::Result<PacketSocket> {
        let fd = raw_socket()?;
        attach_filter(&fd, filter)?;
        bind(&fd, ifindex, ETH_P_IP)?;
        set_nonblocking(&fd)?;
        Ok(PacketSocket { fd, rx: None })
    }

    /// A socket for ARP frames on `ifindex` (no virtio-net header).
    pub fn open_arp(ifindex: u32) -> io::Result<PacketSocket> {
        let fd = raw_socket()?;
        bind(&fd, ifindex, ETH_P_ARP)?;
        set_nonblocking(&fd)?;
        Ok(PacketSocket { fd, rx: None })
    }

    /// Hands up to `budget` received frames (`[virtio-net header][Ethernet frame]`) to `f`,
    /// from the ring if the socket has one, else read into `buf`. Returns how many.
    pub fn receive(
        &self,
        buf: &mut [u8],
        budget: usize,
        f: &mut dyn FnMut(Frame<'_>),
    ) -> io::Result<usize> {
        match &self.rx {
            Some(ring) => Ok(ring.drain(budget, f)),
            None => read_each(|b| self.recv(b), buf, budget, f),
        }
    }

    pub fn has_ring(&self) -> bool {
        self.rx.is_some()
    }

    /// Receives one frame; `WouldBlock` when none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        read(&self.fd, buf)
    }

    /// Sends one frame (with its virtio-net header on a data socket) out of the bound device.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        write(&self.fd, frame)
    }

    /// Sends up to 64 frames in one sendmmsg; returns how many went.
    pub fn send_many(&self, frames: &[&[u8]]) -> io::Result<usize> {
        super::batch::send_batch(self.fd.as_raw_fd(), frames, &[])
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Reads up to `budget` packets one by one into `buf` with `recv`, handing each to `f`;
/// returns how many (stopping early when none is queued).
pub fn read_each(
    recv: impl Fn(&mut [u8]) -> io::Result<usize>,
    buf: &mut [u8],
    budget: usize,
    f: &mut dyn FnMut(Frame<'_>),
) -> io::Result<usize> {
    for n in 0..budget {
        match recv(buf) {
            Ok(len) => f(Frame::Whole(&mut buf[..len])),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(n),
            Err(e) => return Err(e),
        }
    }
    Ok(budget)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs a classic BPF program the way the kernel does, for the subset `reply_filter` uses.
    fn run(prog: &[libc::sock_filter], pkt: &[u8]) -> u32 {
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let load = |at: usize, n: usize| -> Option<u32> {
            pkt.get(at..at + n)
                .map(|b| b.iter().fold(0u32, |v, &byte| v << 8 | u32::from(byte)))
        };
        loop {
            let i = prog[pc];
            pc += 1;
            // a load past the end of the packet drops it, as in the kernel
            let (at, n) = match i.code {
                LD_H_ABS => (i.k, 2),
                LD_W_ABS => (i.k, 4),
                LD_B_ABS | LDX_B_MSH => (i.k, 1),
                LD_H_IND => (x + i.k, 2),
                LD_B_IND => (x + i.k, 1),
                _ => (0, 0),
            };
            let Some(loaded) = load(at as usize, n) else {
                return 0;
            };
            match i.code {
                LD_H_ABS | LD_W_ABS | LD_B_ABS | LD_H_IND | LD_B_IND => a = loaded,
                LDX_B_MSH => x = (loaded & 0xf) * 4,
                JA => pc += i.k as usize,
                JEQ => pc += usize::from(if a == i.k { i.jt } else { i.jf }),
                JGE => pc += usize::from(if a >= i.k { i.jt } else { i.jf }),
                JGT => pc += usize::from(if a > i.k { i.jt } else { i.jf }),
                RET => return i.k,
                c => panic!("opcode {c:#x} not modelled"),
            }
        }
    }

    /// An ICMP message of `icmp_type` with identifier `id` to `dst`.
    fn icmp(dst: [u8; 4], icmp_type: u8, id: u16) -> Vec<u8> {
        let mut f = frame(ETH_P_IP, 1, dst, 0);
        f[34] = icmp_type;
        f[38..40].copy_from_slice(&id.to_be_bytes());
        f
    }

    #[test]
    fn echo_replies_outside_the_pool_are_the_monitors() {
        let me = [198, 18, 1, 1];
        let data = reply_filter(u32::from_be_bytes(me), (61000, 65535));
        let probe = echo_reply_filter(u32::from_be_bytes(me), 22348);
        // a LAN host's ping, translated into the pool: the data path's
        assert_eq!(run(&data, &icmp(me, 0, 61000)), u32::MAX);
        assert_eq!(run(&probe, &icmp(me, 0, 61000)), 0);
        // the monitor's probe answer: its own socket's only
        assert_eq!(run(&data, &icmp(me, 0, 22348)), 0);
        assert_eq!(run(&probe, &icmp(me, 0, 22348)), u32::MAX);
        // errors go to the data path whatever they quote
        assert_eq!(run(&data, &icmp(me, 3, 0)), u32::MAX);
        assert_eq!(run(&probe, &icmp(me, 3, 22348)), 0);
        // to another address: neither
        assert_eq!(run(&probe, &icmp([198, 18, 1, 2], 0, 22348)), 0);
        assert_eq!(run(&probe, &frame(ETH_P_IP, 17, me, 22348)), 0);
    }

    fn frame(ethertype: u16, proto: u8, dst: [u8; 4], dport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8];
        f[12..14].copy_from_slice(&ethertype.to_be_bytes());
        f[14] = 0x45;
        f[23] = proto;
        f[30..34].copy_from_slice(&dst);
        f[36..38].copy_from_slice(&dport.to_be_bytes());
        f
    }

    #[test]
    fn filter_takes_only_nat_pool_traffic_and_icmp_to_the_uplink() {
        let prog = reply_filter(u32::from_be_bytes([198, 18, 1, 1]), (61000, 65535));
        let me = [198, 18, 1, 1];
        assert_eq!(run(&prog, &frame(ETH_P_IP, 6, me, 61000)), u32::MAX);
        assert_eq!(run(&prog, &frame(ETH_P_IP, 17, me, 65535)), u32::MAX);
        assert_eq!(run(&prog, &icmp(me, 11, 0)), u32::MAX);
        // the gateway's own services and ephemeral ports stay with the kernel
        assert_eq!(run(&prog, &frame(ETH_P_IP, 6, me, 80)), 0);
        assert_eq!(run(&prog, &frame(ETH_P_IP, 17, me, 60999)), 0);
        // other addresses, protocols and ethertypes
        assert_eq!(run(&prog, &frame(ETH_P_IP, 6, [198, 18, 1, 2], 61000)), 0);
        assert_eq!(run(&prog, &frame(ETH_P_IP, 47, me, 61000)), 0);
        assert_eq!(run(&prog, &frame(ETH_P_ARP, 6, me, 61000)), 0);
        // IPv4 options move the ports
        let mut f = frame(ETH_P_IP, 17, me, 0);
        f[14] = 0x46;
        f.splice(34..34, [0u8; 4]);
        f[40..42].copy_from_slice(&62000u16.to_be_bytes());
        assert_eq!(run(&prog, &f), u32::MAX);
    }
}
