//! The kernel fast path: once the engine has seen a flow settle, two small TC programs carry
//! its packets without copying them to userspace: one on each LAN interface (to the uplinks),
//! one on each uplink (to the LAN). They translate exactly as the engine does (address, port,
//! TTL, checksums through the kernel's helpers, which keep partial checksums and GSO packets
//! intact) and pass everything they do not know, or should not handle (SYN, FIN, RST, IP
//! options, fragments, TTL 1, packets too big for the next link, ICMP other than echo,
//! VLAN-stripped frames, malformed headers), on to the normal path, which leads to wanlb's own
//! data path. The engine remains the only one that decides.

use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicU64, Ordering};

use super::bpf::{
    Asm, Cond, Helper, Insn, Label, Link, MAP_ARRAY, MAP_HASH, MAP_NO_PREALLOC, MAP_PERCPU_ARRAY,
    Map, Program, R0, R1, R2, R3, R4, R5, R6, R7, R8, R9, R10, Size,
};
use super::fd::monotonic_ns;
use crate::engine::{FastPath, Flow, UplinkId};

/// Flows the kernel can carry at once; later ones stay in userspace until room frees up.
/// Entries are allocated as flows are added, so an idle gateway pays nothing for it.
pub const CAPACITY: u32 = 262_144;

// __sk_buff fields the programs read.
const SKB_LEN: i16 = 0;
const SKB_PKT_TYPE: i16 = 4;
const SKB_VLAN_PRESENT: i16 = 20;
const SKB_INGRESS_IFINDEX: i16 = 36;
const SKB_DATA: i16 = 76;
const SKB_DATA_END: i16 = 80;
const SKB_GSO_SEGS: i16 = 164;

const ETH: i16 = 14;
const L4: i16 = ETH + 20;
const PROTO_ICMP: i32 = 1;
const PROTO_TCP: i32 = 6;
const PROTO_UDP: i32 = 17;
const ICMP_ECHO_REPLY: i32 = 0;
const ICMP_ECHO_REQUEST: i32 = 8;
/// tc verdicts: go on as if the program were not there, drop, or (from the redirect
/// helpers) sent elsewhere.
pub const TC_NEXT: i32 = -1;
const TC_DROP: i32 = 2;
pub const TC_REDIRECT: i32 = 7;
const F_PSEUDO_HDR: i32 = 1 << 4;
const F_MARK_MANGLED_0: i32 = 1 << 5;
/// bpf_check_mtu: check each segment a GSO packet will be cut into, not only its length.
const MTU_CHECK_SEGMENTS: i32 = 1;

/// Flow map key: the packet's own addresses, ports and protocol, as they appear in it, and
/// for replies the interface they must arrive on (0 on the way out): two uplinks may share
/// an address.
const KEY_LEN: usize = 20;
/// Flow map value: what to translate to, which uplink, where to send (LAN side), and the
/// last time (`bpf_ktime_get_ns`) the program carried a packet of the flow.
const VALUE_LEN: usize = 24;
const V_ADDR: i16 = 0;
const V_PORT: i16 = 4;
const V_UPLINK: i16 = 6;
const V_IFINDEX: i16 = 8;
const V_LAST_SEEN: i16 = 16;
/// Uplink map value: where frames for an uplink go. Interface index 0 stops the fast path
/// for the uplink (its gateway is not known yet).
const INFO_LEN: usize = 24;
const I_IFINDEX: i16 = 0;
const I_ETH: i16 = 8;

// Stack slots, below the frame pointer.
const S_KEY: i16 = -24;
const S_FLOW: i16 = -32;
const S_INFO: i16 = -40;
const S_OLD_ADDR: i16 = -44;
const S_NEW_ADDR: i16 = -48;
const S_OLD_PORT: i16 = -52;
const S_NEW_PORT: i16 = -56;
const S_OLD_TTL: i16 = -60;
const S_NEW_TTL: i16 = -64;
const S_CSUM_AT: i16 = -68;
const S_CSUM_FLAGS: i16 = -72;
const S_SMALL_KEY: i16 = -76;
const S_MTU: i16 = -80;
/// `struct bpf_redir_neigh`: address family, then the next hop's address (20 bytes).
const S_NEXT_HOP: i16 = -104;
const NEXT_HOP_LEN: i32 = 20;
const AF_INET: i32 = 2;

/// Which way a program carries packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// From the LAN to an uplink: source translated, frame addressed to the uplink's gateway.
    ToUplink = 0,
    /// From an uplink to the LAN: destination translated back, frame addressed by the
    /// kernel's neighbour table.
    ToLan = 1,
}

/// Makes sure the first `n` bytes are in the linear part of the packet, loading `data` into
/// R7 and `data_end` into R8; otherwise goes to `pass`.
fn ensure_linear(a: &mut Asm, n: i32, pass: Label) {
    let ok = a.label();
    a.load(Size::W, R7, R6, SKB_DATA)
        .load(Size::W, R8, R6, SKB_DATA_END)
        .mov(R2, R7)
        .add_imm(R2, n)
        .jump_if(Cond::Le, R2, R8, ok);
    a.mov(R1, R6).mov_imm(R2, n).call(Helper::SkbPullData);
    a.load(Size::W, R7, R6, SKB_DATA)
        .load(Size::W, R8, R6, SKB_DATA_END)
        .mov(R2, R7)
        .add_imm(R2, n)
        .jump_if(Cond::Gt, R2, R8, pass);
    a.bind(ok);
}

/// R0 = the value under the key at stack slot `key`, or go to `miss`.
fn lookup(a: &mut Asm, map: &Map, key: i16, miss: Label) {
    a.load_map(R1, map)
        .mov(R2, R10)
        .add_imm(R2, i32::from(key))
        .call(Helper::MapLookupElem)
        .jump_if_imm(Cond::Eq, R0, 0, miss);
}

/// The program for `way`. Registers: R6 the packet's context, R7/R8 its data bounds, R9 its
/// IP protocol.
fn program(way: Way, flows: &Map, uplinks: &Map, counters: &Map) -> Vec<Insn> {
    use Size::{B, DW, H, W};
    let mut a = Asm::default();
    let (pass, drop) = (a.label(), a.label());
    // the address and port that change: the source going out, the destination coming back
    let (addr_at, port_at) = match way {
        Way::ToUplink => (ETH + 12, L4),
        Way::ToLan => (ETH + 16, L4 + 2),
    };
    a.mov(R6, R1);
    // only frames sent to this host, without a VLAN tag the NIC took off (it would be put
    // back on the way out, on the wrong link)
    a.load(W, R2, R6, SKB_PKT_TYPE)
        .jump_if_imm(Cond::Ne, R2, 0, pass);
    a.load(W, R2, R6, SKB_VLAN_PRESENT)
        .jump_if_imm(Cond::Ne, R2, 0, pass);
    ensure_linear(&mut a, i32::from(L4 + 8), pass);
    // IPv4 (08 00, read little-endian), no options, not a fragment, a TTL left to forward with
    a.load(H, R2, R7, 12)
        .jump_if_imm(Cond::Ne, R2, 0x0008, pass);
    a.load(B, R2, R7, ETH).jump_if_imm(Cond::Ne, R2, 0x45, pass);
    a.load(H, R2, R7, ETH + 6)
        .and_imm(R2, 0xff3f)
        .jump_if_imm(Cond::Ne, R2, 0, pass);
    a.load(B, R2, R7, ETH + 8)
        .jump_if_imm(Cond::Lt, R2, 2, pass);
    // a total length that fits what arrived (Ethernet may pad, never truncate)
    a.load(H, R2, R7, ETH + 2)
        .be16(R2)
        .jump_if_imm(Cond::Lt, R2, i32::from(L4 + 8 - ETH), pass)
        .load(W, R3, R6, SKB_LEN)
        .add_imm(R3, -i32::from(ETH))
        .jump_if(Cond::Gt, R2, R3, pass);
    a.load(B, R9, R7, ETH + 9);
    let (ports, icmp, addrs) = (a.label(), a.label(), a.label());
    a.jump_if_imm(Cond::Eq, R9, PROTO_UDP, ports)
        .jump_if_imm(Cond::Eq, R9, PROTO_ICMP, icmp)
        .jump_if_imm(Cond::Ne, R9, PROTO_TCP, pass);
    ensure_linear(&mut a, i32::from(L4 + 20), pass);
    // a whole TCP header, as the engine requires: room for it, a data offset of 5 or more
    a.load(H, R2, R7, ETH + 2)
        .be16(R2)
        .jump_if_imm(Cond::Lt, R2, 40, pass);
    a.load(B, R2, R7, L4 + 12)
        .jump_if_imm(Cond::Lt, R2, 0x50, pass);
    // SYN, FIN and RST change a connection's state: the engine must see them
    a.load(B, R2, R7, L4 + 13)
        .and_imm(R2, 0x07)
        .jump_if_imm(Cond::Ne, R2, 0, pass);
    a.bind(ports);
    a.load(W, R2, R7, L4).store(W, R10, S_KEY + 8, R2);
    a.jump(addrs);
    // ICMP: echo requests out, echo replies back (type and code read as one little-endian
    // word); errors and the rest are the engine's. The identifier is the flow's port: the
    // LAN end's on the way out, the translated one on the way back (remote port 0).
    a.bind(icmp);
    let (echo, id_at) = match way {
        Way::ToUplink => (ICMP_ECHO_REQUEST, S_KEY + 8),
        Way::ToLan => (ICMP_ECHO_REPLY, S_KEY + 10),
    };
    a.load(H, R2, R7, L4).jump_if_imm(Cond::Ne, R2, echo, pass);
    a.mov_imm(R2, 0)
        .store(W, R10, S_KEY + 8, R2)
        .load(H, R2, R7, L4 + 4)
        .store(H, R10, id_at, R2);
    a.bind(addrs);
    for off in [0, 4] {
        a.load(W, R2, R7, ETH + 12 + off)
            .store(W, R10, S_KEY + off, R2);
    }
    a.store(W, R10, S_KEY + 12, R9);
    match way {
        Way::ToUplink => a.mov_imm(R2, 0),
        Way::ToLan => a.load(W, R2, R6, SKB_INGRESS_IFINDEX),
    };
    a.store(W, R10, S_KEY + 16, R2);
    lookup(&mut a, flows, S_KEY, pass);
    a.store(DW, R10, S_FLOW, R0);
    match way {
        Way::ToUplink => {
            a.load(H, R2, R0, V_UPLINK).store(W, R10, S_SMALL_KEY, R2);
            lookup(&mut a, uplinks, S_SMALL_KEY, pass);
            a.store(DW, R10, S_INFO, R0).load(W, R2, R0, I_IFINDEX);
        }
        Way::ToLan => {
            a.load(W, R2, R0, V_IFINDEX);
        }
    }
    // R2: the interface it leaves by; 0 while the uplink's gateway is unknown. A packet too
    // big for it, or a GSO packet whose segments would be, takes the normal path, which
    // answers with the ICMP error.
    a.jump_if_imm(Cond::Eq, R2, 0, pass);
    a.mov_imm(R3, 0).store(W, R10, S_MTU, R3);
    a.mov(R1, R6)
        .mov(R3, R10)
        .add_imm(R3, i32::from(S_MTU))
        .mov_imm(R4, 0)
        .mov_imm(R5, MTU_CHECK_SEGMENTS)
        .call(Helper::CheckMtu)
        .jump_if_imm(Cond::Ne, R0, 0, pass);

    // Committed: rewrite in place, remembering old and new values for the checksums.
    a.load(DW, R4, R10, S_FLOW);
    a.load(W, R2, R7, addr_at)
        .store(W, R10, S_OLD_ADDR, R2)
        .load(W, R3, R4, V_ADDR)
        .store(W, R10, S_NEW_ADDR, R3)
        .store(W, R7, addr_at, R3);
    let (not_icmp, port_done) = (a.label(), a.label());
    a.load(H, R3, R4, V_PORT).store(W, R10, S_NEW_PORT, R3);
    a.jump_if_imm(Cond::Ne, R9, PROTO_ICMP, not_icmp);
    a.load(H, R2, R7, L4 + 4)
        .store(W, R10, S_OLD_PORT, R2)
        .store(H, R7, L4 + 4, R3)
        .jump(port_done);
    a.bind(not_icmp);
    a.load(H, R2, R7, port_at)
        .store(W, R10, S_OLD_PORT, R2)
        .store(H, R7, port_at, R3);
    a.bind(port_done);
    // TTL and protocol as one 16-bit word, TTL in the low byte as read; TTL >= 2 so no borrow
    a.load(H, R2, R7, ETH + 8)
        .store(W, R10, S_OLD_TTL, R2)
        .add_imm(R2, -1)
        .store(W, R10, S_NEW_TTL, R2)
        .store(H, R7, ETH + 8, R2);
    if way == Way::ToUplink {
        a.load(DW, R5, R10, S_INFO);
        for off in [0, 4, 8] {
            a.load(W, R2, R5, I_ETH + off).store(W, R7, off, R2);
        }
    }
    a.call(Helper::KtimeGetNs)
        .load(DW, R4, R10, S_FLOW)
        .store(DW, R4, V_LAST_SEEN, R0);

    // Checksums: the kernel's helpers update a complete checksum, or only the pseudo-header
    // part of a partial one (the port is then summed with the data later). A UDP checksum of
    // 0 (none) stays 0.
    let (udp, icmp_sum, sums) = (a.label(), a.label(), a.label());
    let site = |a: &mut Asm, at: i16, flags: i32| {
        a.mov_imm(R2, i32::from(at))
            .store(W, R10, S_CSUM_AT, R2)
            .mov_imm(R2, flags)
            .store(W, R10, S_CSUM_FLAGS, R2);
    };
    a.jump_if_imm(Cond::Eq, R9, PROTO_UDP, udp)
        .jump_if_imm(Cond::Eq, R9, PROTO_ICMP, icmp_sum);
    site(&mut a, L4 + 16, 0);
    a.jump(sums);
    a.bind(icmp_sum);
    site(&mut a, L4 + 2, 0);
    a.jump(sums);
    a.bind(udp);
    site(&mut a, L4 + 6, F_MARK_MANGLED_0);
    a.bind(sums);
    let ip_sum = |a: &mut Asm, old: i16, new: i16, size: i32| {
        a.mov(R1, R6)
            .mov_imm(R2, i32::from(ETH + 10))
            .load(W, R3, R10, old)
            .load(W, R4, R10, new)
            .mov_imm(R5, size)
            .call(Helper::L3CsumReplace)
            .jump_if_imm(Cond::Ne, R0, 0, drop);
    };
    ip_sum(&mut a, S_OLD_ADDR, S_NEW_ADDR, 4);
    ip_sum(&mut a, S_OLD_TTL, S_NEW_TTL, 2);
    let l4_sum = |a: &mut Asm, old: i16, new: i16, flags: i32| {
        a.mov(R1, R6)
            .load(W, R2, R10, S_CSUM_AT)
            .load(W, R3, R10, old)
            .load(W, R4, R10, new)
            .load(W, R5, R10, S_CSUM_FLAGS)
            .or_imm(R5, flags)
            .call(Helper::L4CsumReplace)
            .jump_if_imm(Cond::Ne, R0, 0, drop);
    };
    // ICMP has no pseudo-header: only the identifier is in its checksum
    let no_pseudo = a.label();
    a.jump_if_imm(Cond::Eq, R9, PROTO_ICMP, no_pseudo);
    l4_sum(&mut a, S_OLD_ADDR, S_NEW_ADDR, F_PSEUDO_HDR | 4);
    a.bind(no_pseudo);
    l4_sum(&mut a, S_OLD_PORT, S_NEW_PORT, 2);

    // Per-CPU counters per uplink and way: packets (segments of a GSO packet) and IP bytes.
    let counted = a.label();
    a.load(DW, R4, R10, S_FLOW)
        .load(H, R2, R4, V_UPLINK)
        .lsh_imm(R2, 1)
        .add_imm(R2, way as i32)
        .store(W, R10, S_SMALL_KEY, R2);
    lookup(&mut a, counters, S_SMALL_KEY, counted);
    let segs_known = a.label();
    a.load(W, R2, R6, SKB_GSO_SEGS)
        .jump_if_imm(Cond::Ne, R2, 0, segs_known)
        .mov_imm(R2, 1);
    a.bind(segs_known);
    a.load(DW, R3, R0, 0).add(R3, R2).store(DW, R0, 0, R3);
    a.load(W, R2, R6, SKB_LEN)
        .add_imm(R2, -i32::from(ETH))
        .load(DW, R3, R0, 8)
        .add(R3, R2)
        .store(DW, R0, 8, R3);
    a.bind(counted);

    match way {
        Way::ToUplink => {
            a.load(DW, R5, R10, S_INFO)
                .load(W, R1, R5, I_IFINDEX)
                .mov_imm(R2, 0)
                .call(Helper::Redirect)
                .exit();
        }
        Way::ToLan => {
            // The LAN host is on the link (offload checks), so it is its own next hop: the
            // kernel only looks up its neighbour entry, not a route.
            a.load(DW, R4, R10, S_FLOW)
                .mov_imm(R2, AF_INET)
                .store(W, R10, S_NEXT_HOP, R2)
                .load(W, R2, R4, V_ADDR)
                .store(W, R10, S_NEXT_HOP + 4, R2)
                .mov_imm(R2, 0);
            for off in [8, 12, 16] {
                a.store(W, R10, S_NEXT_HOP + off, R2);
            }
            a.load(W, R1, R4, V_IFINDEX)
                .mov(R2, R10)
                .add_imm(R2, i32::from(S_NEXT_HOP))
                .mov_imm(R3, NEXT_HOP_LEN)
                .mov_imm(R4, 0)
                .call(Helper::RedirectNeigh)
                .exit();
        }
    }
    a.bind(pass);
    a.mov_imm(R0, TC_NEXT).exit();
    a.bind(drop);
    a.mov_imm(R0, TC_DROP).exit();
    a.finish()
}

/// A LAN interface and the subnet on it: replies to hosts in the subnet leave through it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanLink {
    pub ifindex: u32,
    pub addr: Ipv4Addr,
    pub prefix_len: u8,
}

impl LanLink {
    fn holds(&self, host: u32) -> bool {
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        host & mask == u32::from(self.addr) & mask
    }
}

/// An uplink as the programs address it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UplinkLink {
    pub ifindex: u32,
    pub mac: [u8; 6],
}

fn key(saddr: u32, daddr: u32, ports: (u16, u16), proto: u8, ifindex: u32) -> [u8; KEY_LEN] {
    let (sport, dport) = ports;
    let mut k = [0u8; KEY_LEN];
    k[0..4].copy_from_slice(&saddr.to_be_bytes());
    k[4..8].copy_from_slice(&daddr.to_be_bytes());
    k[8..10].copy_from_slice(&sport.to_be_bytes());
    k[10..12].copy_from_slice(&dport.to_be_bytes());
    k[12] = proto;
    k[16..20].copy_from_slice(&ifindex.to_le_bytes());
    k
}

fn value(addr: u32, port: u16, uplink: UplinkId, ifindex: u32) -> [u8; VALUE_LEN] {
    let mut v = [0u8; VALUE_LEN];
    v[0..4].copy_from_slice(&addr.to_be_bytes());
    v[4..6].copy_from_slice(&port.to_be_bytes());
    v[6..8].copy_from_slice(&u16::from(uplink).to_le_bytes());
    v[8..12].copy_from_slice(&ifindex.to_le_bytes());
    v
}

/// Packets and bytes the fast path carried for one uplink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastTotals {
    pub packets_out: u64,
    pub bytes_out: u64,
    pub packets_in: u64,
    pub bytes_in: u64,
}

/// The maps and attached programs; dropping it detaches everything and frees the maps.
#[derive(Debug)]
pub struct TcFastPath {
    to_uplink: Map,
    to_lan: Map,
    uplink_info: Map,
    counters: Map,
    uplinks: Vec<UplinkLink>,
    lans: Vec<LanLink>,
    to_uplink_prog: Program,
    to_lan_prog: Program,
    links: Vec<Link>,
    offloaded: AtomicU64,
    withdrawn: AtomicU64,
    refused: AtomicU64,
}

impl TcFastPath {
    /// Creates the maps and loads the programs for `lans` and `uplinks`, attached nowhere
    /// yet. Uplinks stay off until [`TcFastPath::set_gateway`] names their gateway.
    pub fn load(lans: Vec<LanLink>, uplinks: Vec<UplinkLink>) -> io::Result<TcFastPath> {
        let n = uplinks.len() as u32;
        let flows = |name| {
            Map::create(
                name,
                MAP_HASH,
                KEY_LEN,
                VALUE_LEN,
                CAPACITY,
                MAP_NO_PREALLOC,
            )
        };
        let to_uplink = flows("wanlb_out")?;
        let to_lan = flows("wanlb_in")?;
        let uplink_info = Map::create("wanlb_uplinks", MAP_ARRAY, 4, INFO_LEN, n, 0)?;
        let counters = Map::create("wanlb_count", MAP_PERCPU_ARRAY, 4, 16, 2 * n, 0)?;
        let to_uplink_prog = Program::load_tc(
            "wanlb_out",
            &program(Way::ToUplink, &to_uplink, &uplink_info, &counters),
        )?;
        let to_lan_prog = Program::load_tc(
            "wanlb_in",
            &program(Way::ToLan, &to_lan, &uplink_info, &counters),
        )?;
        Ok(TcFastPath {
            to_uplink,
            to_lan,
            uplink_info,
            counters,
            to_uplink_prog,
            to_lan_prog,
            uplinks,
            lans,
            links: Vec::new(),
            offloaded: AtomicU64::new(0),
            withdrawn: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// Attaches the programs to the ingress of the LAN interfaces and the uplinks (TCX,
    /// Linux 6.6 or later).
    /// Each interface gets each program once, however many LAN subnets or uplinks it
    /// carries (attaching a program twice to one interface is an error).
    pub fn attach(&mut self) -> io::Result<()> {
        let mut lans: Vec<u32> = self.lans.iter().map(|l| l.ifindex).collect();
        let mut uplinks: Vec<u32> = self.uplinks.iter().map(|u| u.ifindex).collect();
        for list in [&mut lans, &mut uplinks] {
            list.sort_unstable();
            list.dedup();
        }
        for ifindex in lans {
            self.links
                .push(self.to_uplink_prog.attach_ingress(ifindex)?);
        }
        for ifindex in uplinks {
            self.links.push(self.to_lan_prog.attach_ingress(ifindex)?);
        }
        Ok(())
    }

    /// Runs the program for `way` once on `frame`, as if it had arrived on interface
    /// `arrived_on`, in the kernel (BPF_PROG_TEST_RUN) without sending anything: returns its
    /// verdict and the frame as it left it. For tests and diagnosis.
    pub fn test_run(&self, way: Way, frame: &[u8], arrived_on: u32) -> io::Result<(i32, Vec<u8>)> {
        match way {
            Way::ToUplink => self.to_uplink_prog.test_run(frame, arrived_on),
            Way::ToLan => self.to_lan_prog.test_run(frame, arrived_on),
        }
    }

    /// Sends the uplink's offloaded traffic to `gateway_mac`, or stops offloading on it.
    pub fn set_gateway(&self, uplink: UplinkId, gateway_mac: Option<[u8; 6]>) -> io::Result<()> {
        let u = &self.uplinks[usize::from(uplink)];
        let mut info = [0u8; INFO_LEN];
        if let Some(mac) = gateway_mac {
            info[0..4].copy_from_slice(&u.ifindex.to_le_bytes());
            info[8..14].copy_from_slice(&mac);
            info[14..20].copy_from_slice(&u.mac);
            info[20..22].copy_from_slice(&0x0800u16.to_be_bytes());
        }
        self.uplink_info
            .update(&u32::from(uplink).to_le_bytes(), &info)
    }

    /// What the programs carried, per uplink, summed over CPUs.
    pub fn totals(&self) -> io::Result<Vec<FastTotals>> {
        let mut per_cpu = vec![0u8; self.counters.buffer_size()];
        let mut sum = |k: u32| -> io::Result<(u64, u64)> {
            self.counters.lookup(&k.to_le_bytes(), &mut per_cpu)?;
            Ok(per_cpu.chunks(16).fold((0, 0), |(p, b), c| {
                let word = |i: usize| u64::from_le_bytes(c[i..i + 8].try_into().expect("8"));
                (p + word(0), b + word(8))
            }))
        };
        (0..self.uplinks.len() as u32)
            .map(|u| {
                let (packets_out, bytes_out) = sum(2 * u)?;
                let (packets_in, bytes_in) = sum(2 * u + 1)?;
                Ok(FastTotals {
                    packets_out,
                    bytes_out,
                    packets_in,
                    bytes_in,
                })
            })
            .collect()
    }

    /// Flows handed over, flows taken back, and flows the kernel refused (its maps full).
    pub fn flow_counts(&self) -> (u64, u64, u64) {
        (
            self.offloaded.load(Ordering::Relaxed),
            self.withdrawn.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }

    /// The keys a flow is found under: on the way out (LAN ingress) and back (ingress of its
    /// uplink's interface).
    fn keys(&self, flow: &Flow, ext_addr: u32) -> ([u8; KEY_LEN], [u8; KEY_LEN]) {
        let k = flow.key;
        let uplink_ifindex = self.uplinks[usize::from(flow.uplink)].ifindex;
        (
            key(k.int_addr, k.rem_addr, (k.int_port, k.rem_port), k.proto, 0),
            key(
                k.rem_addr,
                ext_addr,
                (k.rem_port, flow.ext_port),
                k.proto,
                uplink_ifindex,
            ),
        )
    }

    /// Ok(false): not a flow the programs can carry (a LAN host behind another router).
    fn try_offload(&self, flow: &Flow, ext_addr: u32) -> io::Result<bool> {
        let Some(lan) = self.lans.iter().find(|l| l.holds(flow.key.int_addr)) else {
            return Ok(false);
        };
        let (out_key, in_key) = self.keys(flow, ext_addr);
        let out = value(ext_addr, flow.ext_port, flow.uplink, 0);
        let back = value(
            flow.key.int_addr,
            flow.key.int_port,
            flow.uplink,
            lan.ifindex,
        );
        self.to_lan.update(&in_key, &back)?;
        if let Err(e) = self.to_uplink.update(&out_key, &out) {
            self.to_lan.delete(&in_key)?;
            return Err(e);
        }
        Ok(true)
    }
}

impl FastPath for std::sync::Arc<TcFastPath> {
    fn offload(&self, flow: &Flow, ext_addr: u32) -> bool {
        match self.try_offload(flow, ext_addr) {
            Ok(true) => {
                self.offloaded.fetch_add(1, Ordering::Relaxed);
                true
            }
            Ok(false) => false,
            Err(e) => {
                self.refused.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %e, "fast path refused a flow");
                false
            }
        }
    }

    fn idle_ms(&self, flow: &Flow, ext_addr: u32) -> Option<u64> {
        let (out_key, in_key) = self.keys(flow, ext_addr);
        let mut last = 0u64;
        for (map, k) in [(&self.to_uplink, out_key), (&self.to_lan, in_key)] {
            let mut v = [0u8; VALUE_LEN];
            if let Ok(true) = map.lookup(&k, &mut v) {
                let seen = u64::from_le_bytes(v[16..24].try_into().expect("8 bytes"));
                last = last.max(seen);
            }
        }
        (last != 0).then(|| monotonic_ns().saturating_sub(last) / 1_000_000)
    }

    fn withdraw(&self, flow: &Flow, ext_addr: u32) {
        let (out_key, in_key) = self.keys(flow, ext_addr);
        let removed = self
            .to_uplink
            .delete(&out_key)
            .and(self.to_lan.delete(&in_key));
        match removed {
            Ok(()) => {
                self.withdrawn.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::warn!(error = %e, "could not withdraw a flow from the fast path"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_are_laid_out_as_the_programs_read_them() {
        let k = key(
            u32::from_be_bytes([198, 19, 0, 1]),
            u32::from_be_bytes([198, 18, 1, 1]),
            (443, 61000),
            6,
            3,
        );
        #[rustfmt::skip]
        assert_eq!(k, [
            198, 19, 0, 1, 198, 18, 1, 1, // remote, uplink address
            0x01, 0xbb, 0xee, 0x48, // 443, 61000
            6, 0, 0, 0, // TCP
            3, 0, 0, 0, // arriving on interface 3
        ]);
        let v = value(u32::from_be_bytes([198, 18, 3, 10]), 40000, 1, 7);
        #[rustfmt::skip]
        assert_eq!(v, [
            198, 18, 3, 10, 0x9c, 0x40, // the LAN end
            1, 0, // uplink 1
            7, 0, 0, 0, // leaving by interface 7
            0, 0, 0, 0, // unused
            0, 0, 0, 0, 0, 0, 0, 0, // last seen: never
        ]);
    }

    #[test]
    fn lan_links_hold_their_subnet_only() {
        let lan = LanLink {
            ifindex: 3,
            addr: Ipv4Addr::new(198, 18, 3, 100),
            prefix_len: 24,
        };
        assert!(lan.holds(u32::from(Ipv4Addr::new(198, 18, 3, 10))));
        assert!(!lan.holds(u32::from(Ipv4Addr::new(198, 18, 4, 10))));
    }
}
