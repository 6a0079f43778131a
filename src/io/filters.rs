//! The socket filters of an uplink's packet sockets (`ebpf/filters.c`, compiled into the
//! committed `ebpf/filters.o`): the kernel keeps every frame that is not wanlb's. Loaded once
//! per uplink with the length of its link-layer header, the NAT port range, its forwarded
//! ports and the health probes' echo identifier; the uplink's address is in a map that
//! [`SocketFilters::set_addr`] changes when the interface's address does. A socket keeps its filter after the loaded
//! object is dropped (but then its address can no longer change).

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsFd;

use aya::maps::Array;
use aya::programs::{SocketFilter, TestRun, TestRunOptions};
use aya::{Ebpf, EbpfLoader, include_bytes_aligned};

use crate::engine::wire::{PROTO_TCP, PROTO_UDP};
use crate::uplink::LinkKind;

static OBJECT: &[u8] = include_bytes_aligned!("../../ebpf/filters.o");

/// Which of an uplink's sockets a filter is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filter {
    /// The data path's: TCP and UDP to a NAT port, echo replies to a NAT identifier, ICMP
    /// errors (IPv6: everything to the delegated prefix too).
    Replies,
    /// The data path's sockets for the forwarded ports (an uplink with forwards has them
    /// apart, so that a flood of them fills their ring, not the replies'): TCP and UDP to a
    /// forwarded port.
    Forwards,
    /// The health probes': echo replies with the probes' identifier.
    Probes,
}

impl Filter {
    fn program(self) -> &'static str {
        match self {
            Filter::Replies => "wanlb_replies",
            Filter::Forwards => "wanlb_forwards",
            Filter::Probes => "wanlb_probes",
        }
    }
}

/// `struct uplink_ipv6` of ebpf/filters.c: every word in packet byte order.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
struct UplinkIpv6 {
    addr: [u32; 4],
    prefix: [u32; 4],
    mask: [u32; 4],
    has_addr: u32,
    has_prefix: u32,
}

// SAFETY: plain old data of u32s, no padding, as the kernel's map value.
unsafe impl aya::Pod for UplinkIpv6 {}

impl UplinkIpv6 {
    fn new(addr: Option<Ipv6Addr>, prefix: Option<(Ipv6Addr, u8)>) -> UplinkIpv6 {
        // the words as the packet holds them, read in this machine's order, as the filter does
        let words = |bits: u128| -> [u32; 4] {
            let b = bits.to_be_bytes();
            std::array::from_fn(|i| {
                u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]])
            })
        };
        let has_prefix = u32::from(prefix.is_some());
        let (prefix, mask) = match prefix {
            Some((p, len)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(len.min(128)))
                    .unwrap_or(0);
                (words(u128::from(p) & mask), words(mask))
            }
            None => ([0; 4], [0; 4]),
        };
        UplinkIpv6 {
            addr: addr.map_or([0; 4], |a| words(u128::from(a))),
            prefix,
            mask,
            has_addr: u32::from(addr.is_some()),
            has_prefix,
        }
    }
}

#[derive(Debug)]
pub struct SocketFilters {
    ebpf: Ebpf,
    link: LinkKind,
    /// Whether the uplink has forwarded ports (whose frames [`Filter::Forwards`] keeps).
    forwards: bool,
}

fn error(what: &str, e: impl std::fmt::Display) -> io::Error {
    io::Error::other(format!("{what}: {e}"))
}

impl SocketFilters {
    /// Loads the filters for an uplink with address `addr` on a link of kind `link`, NAT
    /// ports `ports`, the ports `forwarded` to LAN hosts (IP protocol number, port) and health
    /// probes of echo identifier `probe_id`.
    pub fn load(
        addr: Ipv4Addr,
        link: LinkKind,
        ports: (u16, u16),
        forwarded: &[(u8, u16)],
        probe_id: u16,
    ) -> io::Result<SocketFilters> {
        let link_header = link.header_len() as u32;
        let bits = |proto: u8| {
            let mut bits = Box::new([0u8; 8192]);
            for &(_, port) in forwarded.iter().filter(|(p, _)| *p == proto) {
                bits[usize::from(port / 8)] |= 1 << (port % 8);
            }
            bits
        };
        let (tcp, udp) = (bits(PROTO_TCP), bits(PROTO_UDP));
        let mut ebpf = EbpfLoader::new()
            .override_global("link_header", &link_header, true)
            .override_global("forwarded_tcp", &*tcp, true)
            .override_global("forwarded_udp", &*udp, true)
            .override_global("first_port", &ports.0, true)
            .override_global("last_port", &ports.1, true)
            .override_global("probe_id", &probe_id, true)
            .load(OBJECT)
            .map_err(|e| error("loading ebpf/filters.o", e))?;
        for filter in [Filter::Replies, Filter::Forwards, Filter::Probes] {
            let name = filter.program();
            let program: &mut SocketFilter = ebpf
                .program_mut(name)
                .ok_or_else(|| io::Error::other(format!("{name} is not in ebpf/filters.o")))?
                .try_into()
                .map_err(|e| error(name, e))?;
            program.load().map_err(|e| match e {
                aya::programs::ProgramError::LoadError {
                    io_error,
                    verifier_log,
                } => io::Error::new(
                    io_error.kind(),
                    format!("the kernel refused {name}: {io_error}\nverifier log:\n{verifier_log}"),
                ),
                e => error(name, e),
            })?;
        }
        let forwards = !forwarded.is_empty();
        let mut filters = SocketFilters {
            ebpf,
            link,
            forwards,
        };
        filters.set_addr(addr)?;
        Ok(filters)
    }

    /// Whether the uplink has forwarded ports: its data sockets then have the forwarded ports'
    /// sockets beside them.
    pub fn has_forwards(&self) -> bool {
        self.forwards
    }

    /// The uplink's address from now on, for every socket with these filters.
    pub fn set_addr(&mut self, addr: Ipv4Addr) -> io::Result<()> {
        let map = self
            .ebpf
            .map_mut("wanlb_uplink_addr")
            .ok_or_else(|| io::Error::other("wanlb_uplink_addr is not in ebpf/filters.o"))?;
        let mut addrs: Array<_, u32> =
            Array::try_from(map).map_err(|e| error("wanlb_uplink_addr", e))?;
        // in the packet's byte order, as the filter compares it
        addrs
            .set(0, u32::from_ne_bytes(addr.octets()), 0)
            .map_err(|e| error("setting the uplink's address", e))
    }

    /// The uplink's IPv6 from now on (the address NAT66 uses, the prefix it delegated), for
    /// every data socket with these filters.
    pub fn set_ipv6(
        &mut self,
        addr: Option<Ipv6Addr>,
        prefix: Option<(Ipv6Addr, u8)>,
    ) -> io::Result<()> {
        let map = self
            .ebpf
            .map_mut("wanlb_uplink_ipv6")
            .ok_or_else(|| io::Error::other("wanlb_uplink_ipv6 is not in ebpf/filters.o"))?;
        let mut entry: Array<_, UplinkIpv6> =
            Array::try_from(map).map_err(|e| error("wanlb_uplink_ipv6", e))?;
        entry
            .set(0, UplinkIpv6::new(addr, prefix), 0)
            .map_err(|e| error("setting the uplink's IPv6", e))
    }

    fn program(&self, filter: Filter) -> io::Result<&SocketFilter> {
        self.ebpf
            .program(filter.program())
            .ok_or_else(|| io::Error::other("filter gone"))?
            .try_into()
            .map_err(|e| error(filter.program(), e))
    }

    /// Attaches `filter` to `socket` (before it is bound, so no frame slips in unfiltered).
    pub fn attach(&self, filter: Filter, socket: impl AsFd) -> io::Result<()> {
        self.program(filter)?
            .attach(socket)
            .map_err(|e| error(&format!("attaching {}", filter.program()), e))
    }

    /// Whether `filter` keeps `frame` (an Ethernet frame, or on a point-to-point link an IP
    /// packet), asked of the kernel (BPF_PROG_TEST_RUN). For tests.
    pub fn keeps(&self, filter: Filter, frame: &[u8]) -> io::Result<bool> {
        // The test run takes an Ethernet header off the front, and its ethertype becomes the
        // packet's protocol: give it a spare one with the protocol the link layer would have
        // given (a point-to-point socket is bound to IPv4: it sees nothing else).
        let protocol = match self.link {
            LinkKind::Ethernet => frame.get(12..14).unwrap_or(&[0, 0]),
            // the ethertype of the packet's version, as the link layer gives it
            LinkKind::PointToPoint if frame.first().is_some_and(|b| b >> 4 == 6) => {
                &[0x86, 0xdd][..]
            }
            LinkKind::PointToPoint => &[0x08, 0x00][..],
        };
        let mut data = vec![0u8; 12];
        data.extend_from_slice(protocol);
        data.extend_from_slice(frame);
        let mut options = TestRunOptions::new();
        options.data_in = Some(&data);
        let result = self
            .program(filter)?
            .test_run(options)
            .map_err(|e| error("BPF_PROG_TEST_RUN", e))?;
        Ok(result.return_value != 0)
    }
}
