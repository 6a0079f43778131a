//! AF_PACKET sockets on the uplinks: raw Ethernet frames out (bare IP packets on a
//! point-to-point link), and only wanlb's replies in.
//!
//! Each data socket carries the virtio-net header (PACKET_VNET_HDR), so GSO super-packets and
//! partial checksums pass both ways untouched; a socket filter (io/filters.rs) keeps
//! everything that is not addressed to the uplink's NAT ports (or ICMP) in the kernel; the workers' sockets on
//! one uplink form a fanout group so each frame reaches exactly one of them.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};

use super::fd::{check, own, read, set_nonblocking, setsockopt, write};
use super::filters::{Filter, SocketFilters};
pub use super::ring::Frame;
use super::ring::RxRing;
use crate::uplink::LinkKind;

pub const ETH_HEADER: usize = 14;
pub const ETH_P_IP: u16 = 0x0800;
pub const ETH_P_ARP: u16 = 0x0806;
pub const ETH_P_IPV6: u16 = 0x86DD;
/// Every protocol: what a data socket of a line with IPv6 is bound to.
const ETH_P_ALL: u16 = 0x0003;

const PACKET_FANOUT: libc::c_int = 18;
const PACKET_VNET_HDR: libc::c_int = 15;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_FANOUT_CPU: u32 = 2;
/// Reassemble IP fragments before choosing a fanout member, so a fragmented reply
/// reaches wanlb whole.
const PACKET_FANOUT_FLAG_DEFRAG: u32 = 0x8000;

const SOCKET_BUFFER: libc::c_int = 8 << 20;

/// A fanout group of an uplink's data sockets (one per worker, joined in the workers' order),
/// and how it spreads the frames among them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fanout {
    pub group: u16,
    /// To the socket of the worker of the CPU the frame arrives on (the workers being pinned
    /// so: io/cpu.rs), rather than by the hash of its flow.
    pub by_cpu: bool,
}

#[derive(Debug)]
pub struct PacketSocket {
    fd: OwnedFd,
    /// Data sockets receive through a ring; ARP and capture sockets with read().
    rx: Option<RxRing>,
    /// On a point-to-point link, what a data socket sends through instead of `fd`.
    bare: Option<BareSender>,
}

/// Sends complete IP packets, bare, out of a link without a link-layer header. A raw packet
/// socket would take the first `hard_header_len` bytes of each packet for a link-layer header
/// the device does not have (PPP declares 4 and builds its own) and set the network header
/// that far in, which the kernel's segmentation of GSO packets trusts; a datagram socket puts
/// it at the start. A datagram socket takes no virtio-net header, so what it sends must be
/// complete (io/gso.rs makes it so), and its receive ring would carry none either: replies
/// still come through the raw socket's ring. This one is bound to no protocol, so it receives
/// nothing, and names the device and protocol in every send.
#[derive(Debug)]
struct BareSender {
    fd: OwnedFd,
    to: libc::sockaddr_ll,
    /// On a line with IPv6, the sender of its IPv6 packets (the protocol goes with the
    /// address).
    v6: Option<Box<BareSender>>,
}

impl BareSender {
    fn open(ifindex: u32, ethertype: u16) -> io::Result<BareSender> {
        // SAFETY: socket() with integer arguments.
        let fd = own(unsafe {
            libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
        })?;
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &SOCKET_BUFFER)?;
        set_nonblocking(&fd)?;
        Ok(BareSender {
            fd,
            to: link_address(ifindex, ethertype),
            v6: None,
        })
    }

    /// Sends the first packets of `packets` that are of one IP version; returns how many
    /// went.
    fn send_many(&self, packets: &[&[u8]]) -> io::Result<usize> {
        let is_v6 = |p: &&[u8]| p.first().is_some_and(|b| b >> 4 == 6);
        let Some(v6) = &self.v6 else {
            return super::batch::send_batch_via(self.fd.as_raw_fd(), packets, &self.to);
        };
        let first_v6 = packets.first().is_some_and(is_v6);
        let run = packets
            .iter()
            .position(|p| is_v6(p) != first_v6)
            .unwrap_or(packets.len());
        let (fd, to) = match first_v6 {
            true => (v6.fd.as_raw_fd(), &v6.to),
            false => (self.fd.as_raw_fd(), &self.to),
        };
        super::batch::send_batch_via(fd, &packets[..run], to)
    }
}

/// Slots in each data socket's receive ring: 64 x 68 KiB.
const RING_FRAMES: usize = 64;

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

/// Device `ifindex` and protocol `ethertype` as a packet socket's address.
fn link_address(ifindex: u32, ethertype: u16) -> libc::sockaddr_ll {
    // SAFETY: sockaddr_ll is plain old data; all-zero is valid.
    let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    sll.sll_family = libc::AF_PACKET as u16;
    sll.sll_protocol = ethertype.to_be();
    sll.sll_ifindex = ifindex as i32;
    sll
}

fn bind(fd: &OwnedFd, ifindex: u32, ethertype: u16) -> io::Result<()> {
    let sll = link_address(ifindex, ethertype);
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
    /// A data socket on `ifindex`, a link of kind `link`, for IPv4 frames passing `filter`
    /// of `filters` (with `ipv6`, IPv6 ones too: it is bound to every protocol), with the virtio-net
    /// header, joined to the fanout group `fanout` (one group per uplink). On a
    /// point-to-point link it sends complete IP packets, without the virtio-net header,
    /// through a socket of its own per IP version.
    pub fn open_data(
        ifindex: u32,
        link: LinkKind,
        (filters, filter): (&SocketFilters, Filter),
        fanout: Fanout,
        ipv6: bool,
    ) -> io::Result<PacketSocket> {
        let fd = vnet_socket()?;
        setsockopt(&fd, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, &SOCKET_BUFFER)?;
        // Without a ring (a kernel or page size that refuses one) frames are read one by one.
        let rx = RxRing::new(&fd, RING_FRAMES)
            .inspect_err(
                |e| tracing::warn!(error = %e, "no receive ring; reading frames one by one"),
            )
            .ok();
        filters.attach(filter, &fd)?;
        bind(&fd, ifindex, if ipv6 { ETH_P_ALL } else { ETH_P_IP })?;
        let mode = if fanout.by_cpu {
            PACKET_FANOUT_CPU
        } else {
            PACKET_FANOUT_HASH
        };
        let fanout = u32::from(fanout.group) | ((mode | PACKET_FANOUT_FLAG_DEFRAG) << 16);
        setsockopt(&fd, libc::SOL_PACKET, PACKET_FANOUT, &fanout)?;
        // No PACKET_QDISC_BYPASS: the uplink's qdisc (fq_codel, cake) is what keeps a home
        // line's latency down under load, and bypassing it measured no faster (64-byte UDP
        // through the userspace path: 0.19 Mpps with it, 0.20 without).
        set_nonblocking(&fd)?;
        let bare = match link {
            LinkKind::Ethernet => None,
            LinkKind::PointToPoint => Some(BareSender {
                v6: match ipv6 {
                    true => Some(Box::new(BareSender::open(ifindex, ETH_P_IPV6)?)),
                    false => None,
                },
                ..BareSender::open(ifindex, ETH_P_IP)?
            }),
        };
        Ok(PacketSocket { fd, rx, bare })
    }

    /// A socket that sees every IPv4 frame arriving on `ifindex`, with the virtio-net header
    /// (for tests that check what crossed a link).
    pub fn open_capture(ifindex: u32) -> io::Result<PacketSocket> {
        let fd = vnet_socket()?;
        bind(&fd, ifindex, ETH_P_IP)?;
        set_nonblocking(&fd)?;
        Ok(PacketSocket {
            fd,
            rx: None,
            bare: None,
        })
    }

    /// A socket that sends IPv4 frames out of `ifindex`, a link of kind `link`, and receives
    /// only the answers to the health probes (no virtio-net header). On a point-to-point link
    /// it sends and receives bare IP packets (a datagram socket: see [`BareSender`] why).
    pub fn open_probe(
        ifindex: u32,
        link: LinkKind,
        filters: &SocketFilters,
    ) -> io::Result<PacketSocket> {
        let fd = match link {
            LinkKind::Ethernet => raw_socket()?,
            // SAFETY: socket() with integer arguments.
            LinkKind::PointToPoint => own(unsafe {
                libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
            })?,
        };
        filters.attach(Filter::Probes, &fd)?;
        bind(&fd, ifindex, ETH_P_IP)?;
        set_nonblocking(&fd)?;
        Ok(PacketSocket {
            fd,
            rx: None,
            bare: None,
        })
    }

    /// A socket that sends IPv6 out of `ifindex`, a link of kind `link` (Ethernet frames, or
    /// bare packets on a point-to-point link), and receives only ICMPv6 echo replies and
    /// neighbour advertisements right after the IPv6 header: the health probes' answers and
    /// the router's MAC. A classic BPF filter, so that the committed eBPF objects need not
    /// change for it.
    pub fn open_icmp6(ifindex: u32, link: LinkKind) -> io::Result<PacketSocket> {
        let (fd, bare, ip_at) = match link {
            LinkKind::Ethernet => (raw_socket()?, None, ETH_HEADER as u32),
            LinkKind::PointToPoint => {
                // SAFETY: socket() with integer arguments.
                let fd = own(unsafe {
                    libc::socket(libc::AF_PACKET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0)
                })?;
                setsockopt(
                    &fd,
                    libc::SOL_PACKET,
                    PACKET_IGNORE_OUTGOING,
                    &1 as &libc::c_int,
                )?;
                (fd, Some(BareSender::open(ifindex, ETH_P_IPV6)?), 0)
            }
        };
        attach_icmp6_filter(&fd, ip_at)?;
        bind(&fd, ifindex, ETH_P_IPV6)?;
        set_nonblocking(&fd)?;
        Ok(PacketSocket { fd, rx: None, bare })
    }

    /// A socket for ARP frames on `ifindex` (no virtio-net header).
    pub fn open_arp(ifindex: u32) -> io::Result<PacketSocket> {
        let fd = raw_socket()?;
        bind(&fd, ifindex, ETH_P_ARP)?;
        set_nonblocking(&fd)?;
        Ok(PacketSocket {
            fd,
            rx: None,
            bare: None,
        })
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

    /// Frames the kernel dropped for this socket since the last call, its receive ring (or
    /// queue) being full: wanlb fell behind (PACKET_STATISTICS, which resets as it is read).
    pub fn take_drops(&self) -> io::Result<u64> {
        let mut stats = libc::tpacket_stats {
            tp_packets: 0,
            tp_drops: 0,
        };
        let mut len = std::mem::size_of::<libc::tpacket_stats>() as libc::socklen_t;
        // SAFETY: `stats` is a live tpacket_stats and `len` holds its size: the kernel writes
        // at most that many bytes into it.
        check(unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_STATISTICS,
                (&mut stats as *mut libc::tpacket_stats).cast(),
                &mut len,
            )
        })?;
        Ok(u64::from(stats.tp_drops))
    }

    /// Receives one frame; `WouldBlock` when none is queued.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        read(&self.fd, buf)
    }

    /// Sends one frame (with its virtio-net header on a data socket, but for a complete IP
    /// packet on a point-to-point link) out of the bound device.
    pub fn send(&self, frame: &[u8]) -> io::Result<usize> {
        match &self.bare {
            None => write(&self.fd, frame),
            Some(bare) => bare.send_many(&[frame]).map(|sent| sent * frame.len()),
        }
    }

    /// Sends up to 64 frames in one sendmmsg; returns how many went.
    pub fn send_many(&self, frames: &[&[u8]]) -> io::Result<usize> {
        match &self.bare {
            None => super::batch::send_batch(self.fd.as_raw_fd(), frames, &[]),
            Some(bare) => bare.send_many(frames),
        }
    }

    pub fn raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// ICMPv6 types the IPv6 health socket keeps: echo reply, neighbour advertisement.
const ICMP6_ECHO_REPLY: u32 = 129;
const ICMP6_NEIGHBOUR_ADVERT: u32 = 136;

/// Attaches to `fd` a classic BPF filter keeping IPv6 packets (starting `ip_at` bytes into
/// the frame) whose next header is ICMPv6 (58) and whose ICMPv6 type is an echo reply or a
/// neighbour advertisement.
fn attach_icmp6_filter(fd: &OwnedFd, ip_at: u32) -> io::Result<()> {
    const LD_B_ABS: u16 = 0x30; // BPF_LD | BPF_B | BPF_ABS
    const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
    const RET_K: u16 = 0x06; // BPF_RET | BPF_K
    let op = |code, jt, jf, k| libc::sock_filter { code, jt, jf, k };
    let mut program = [
        op(LD_B_ABS, 0, 0, ip_at + 6),
        op(JEQ_K, 0, 4, 58),
        op(LD_B_ABS, 0, 0, ip_at + 40),
        op(JEQ_K, 1, 0, ICMP6_ECHO_REPLY),
        op(JEQ_K, 0, 1, ICMP6_NEIGHBOUR_ADVERT),
        op(RET_K, 0, 0, 0xffff),
        op(RET_K, 0, 0, 0),
    ];
    let prog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_mut_ptr(),
    };
    // SAFETY: `prog` points to `program`, which outlives the call; the kernel copies it.
    check(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&prog as *const libc::sock_fprog).cast(),
            std::mem::size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    })?;
    Ok(())
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
