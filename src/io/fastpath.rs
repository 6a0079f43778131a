//! The kernel fast path: once the engine has seen a flow settle, two small TC programs carry
//! its packets without copying them to userspace: `wanlb_outbound` at the ingress of each LAN
//! interface, `wanlb_inbound` at the ingress of each Ethernet uplink (`wanlb_inbound_l3` on a
//! point-to-point one, whose packets have no link-layer header). They are written in C
//! (`ebpf/fastpath.c`, map layouts in `ebpf/wanlb.h`), compiled by `scripts/build-ebpf.sh`
//! into the committed `ebpf/fastpath.o`, and loaded here with aya. They translate exactly as
//! the engine does and pass everything they do not know, or should not handle, on to the
//! normal path, which leads to wanlb's own data path. The engine remains the only one that
//! decides.

use std::io;
use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use aya::programs::links::LinkOrder;
use aya::programs::tc::TcAttachOptions;
use aya::programs::{ProgramError, SchedClassifier, TcAttachType, TestRun, TestRunOptions};
use aya::{Ebpf, EbpfLoader, Pod, include_bytes_aligned};

use super::fd::monotonic_ns;
use super::iface;
use crate::engine::flow::Acked;
use crate::engine::{Direction, FastPath, Flow, UplinkId};
use crate::uplink::{LinkKind, NextHop};

/// The compiled programs (scripts/build-ebpf.sh makes it from ebpf/fastpath.c).
static OBJECT: &[u8] = include_bytes_aligned!("../../ebpf/fastpath.o");

/// Flows the kernel can carry at once (MAX_FLOWS in ebpf/wanlb.h); later ones stay in
/// userspace until room frees up. Entries are allocated as flows are added.
pub const CAPACITY: u32 = 262_144;

/// tc verdicts: go on as if the program were not there, or (from the redirect helpers) sent
/// elsewhere.
pub const TC_NEXT: i32 = -1;
pub const TC_REDIRECT: i32 = 7;

/// The program that carries `direction`'s packets (from the LAN to an uplink: source translated,
/// frame addressed to the uplink's gateway; back: destination translated back, frame
/// addressed by the kernel's neighbour table) arriving on a link of kind `link`.
fn program(direction: Direction, link: LinkKind) -> &'static str {
    match (direction, link) {
        (Direction::Outbound, _) => "wanlb_outbound",
        (Direction::Inbound, LinkKind::Ethernet) => "wanlb_inbound",
        (Direction::Inbound, LinkKind::PointToPoint) => "wanlb_inbound_l3",
    }
}

/// Every program in the object.
const PROGRAMS: [&str; 3] = ["wanlb_outbound", "wanlb_inbound", "wanlb_inbound_l3"];

/// `struct flow_key` of ebpf/wanlb.h: a flow as a packet names it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowMapKey {
    pub saddr: [u8; 4],
    pub daddr: [u8; 4],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    pub pad: [u8; 3],
    pub ifindex: u32,
}

/// `struct flow_value` of ebpf/wanlb.h: what a flow's packets are translated to, and for
/// TCP what the last segment with ACK the program carried acknowledged.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowMapValue {
    pub addr: [u8; 4],
    pub port: [u8; 2],
    pub uplink: u16,
    pub ifindex: u32,
    pub ack: u32,
    pub last_seen: u64,
    pub window: u16,
    pub acked: u8,
    pub pad: [u8; 5],
    pub bytes: u64,
}

/// `struct uplink_info` of ebpf/wanlb.h: where an uplink's frames go.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UplinkInfo {
    pub ifindex: u32,
    /// 1: no link-layer header; the MACs are unused.
    pub point_to_point: u32,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    pub pad: [u8; 4],
}

/// `struct counter` of ebpf/wanlb.h.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counter {
    pub packets: u64,
    pub bytes: u64,
}

// SAFETY: each is #[repr(C)] with explicit padding fields, so it has no padding bytes, and
// every bit pattern is a valid value of each field: aya may copy them to and from the kernel
// as plain bytes.
unsafe impl Pod for FlowMapKey {}
// SAFETY: as above.
unsafe impl Pod for FlowMapValue {}
// SAFETY: as above.
unsafe impl Pod for UplinkInfo {}
// SAFETY: as above.
unsafe impl Pod for Counter {}

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
    pub link: LinkKind,
    pub mac: [u8; 6],
}

fn key(saddr: u32, daddr: u32, ports: (u16, u16), proto: u8, ifindex: u32) -> FlowMapKey {
    FlowMapKey {
        saddr: saddr.to_be_bytes(),
        daddr: daddr.to_be_bytes(),
        sport: ports.0.to_be_bytes(),
        dport: ports.1.to_be_bytes(),
        proto,
        pad: [0; 3],
        ifindex,
    }
}

fn value(addr: u32, port: u16, uplink: UplinkId, ifindex: u32) -> FlowMapValue {
    FlowMapValue {
        addr: addr.to_be_bytes(),
        port: port.to_be_bytes(),
        uplink: u16::from(uplink),
        ifindex,
        ..FlowMapValue::default()
    }
}

/// Packets and bytes the fast path carried for one uplink.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastTotals {
    pub outbound_packets: u64,
    pub outbound_bytes: u64,
    pub inbound_packets: u64,
    pub inbound_bytes: u64,
}

type FlowMap = Mutex<HashMap<MapData, FlowMapKey, FlowMapValue>>;

/// The programs, their links and their maps; dropping it detaches everything and frees the
/// maps. The maps' updates take `&mut`; flows are handed over and withdrawn under a lock
/// each, which is held only for the one syscall.
pub struct TcFastPath {
    ebpf: Ebpf,
    outbound: FlowMap,
    inbound: FlowMap,
    uplink_info: Mutex<Array<MapData, UplinkInfo>>,
    counters: PerCpuArray<MapData, Counter>,
    uplinks: Vec<UplinkLink>,
    lans: Vec<LanLink>,
    handed_over: AtomicU64,
    withdrawn: AtomicU64,
    refused: AtomicU64,
    /// A flow could not be withdrawn: said once at warn, the rest at debug, since it happens
    /// flow by flow on the data path.
    withdraw_failed: AtomicBool,
}

impl std::fmt::Debug for TcFastPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcFastPath")
            .field("uplinks", &self.uplinks)
            .field("lans", &self.lans)
            .field("flow_counts", &self.flow_counts())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// An aya error as an io::Error, with the verifier's log when the kernel refused a program.
fn load_error(what: &str, e: impl Into<LoadFailure>) -> io::Error {
    match e.into() {
        LoadFailure::Program(ProgramError::LoadError {
            io_error,
            verifier_log,
        }) => io::Error::new(
            io_error.kind(),
            format!("the kernel refused {what}: {io_error}\nverifier log:\n{verifier_log}"),
        ),
        LoadFailure::Program(e) => io::Error::other(format!("{what}: {e}")),
        LoadFailure::Other(text) => io::Error::other(format!("{what}: {text}")),
    }
}

/// What can go wrong while loading, for [`load_error`].
enum LoadFailure {
    Program(ProgramError),
    Other(String),
}

impl From<ProgramError> for LoadFailure {
    fn from(e: ProgramError) -> LoadFailure {
        LoadFailure::Program(e)
    }
}

impl From<aya::EbpfError> for LoadFailure {
    fn from(e: aya::EbpfError) -> LoadFailure {
        LoadFailure::Other(e.to_string())
    }
}

impl From<aya::maps::MapError> for LoadFailure {
    fn from(e: aya::maps::MapError) -> LoadFailure {
        LoadFailure::Other(e.to_string())
    }
}

fn map_error(e: aya::maps::MapError) -> io::Error {
    match e {
        aya::maps::MapError::SyscallError(s) => s.io_error,
        e => io::Error::other(e.to_string()),
    }
}

impl TcFastPath {
    /// Loads the programs and creates their maps, attached nowhere yet. Uplinks stay off
    /// until [`TcFastPath::set_next_hop`] says where their packets go.
    pub fn load(lans: Vec<LanLink>, uplinks: Vec<UplinkLink>) -> io::Result<TcFastPath> {
        let mut ebpf = EbpfLoader::new()
            .load(OBJECT)
            .map_err(|e| load_error("ebpf/fastpath.o", e))?;
        for name in PROGRAMS {
            let program: &mut SchedClassifier = ebpf
                .program_mut(name)
                .ok_or_else(|| io::Error::other(format!("{name} is not in ebpf/fastpath.o")))?
                .try_into()
                .map_err(|e| load_error(name, e))?;
            program.load().map_err(|e| load_error(name, e))?;
        }
        let mut take = |name: &str| {
            ebpf.take_map(name)
                .ok_or_else(|| io::Error::other(format!("map {name} is not in ebpf/fastpath.o")))
        };
        let (outbound, inbound, uplink_info, counters) = (
            take("outbound_flows")?,
            take("inbound_flows")?,
            take("wanlb_uplinks")?,
            take("wanlb_counters")?,
        );
        let maps = |e| load_error("the fast path's maps", e);
        Ok(TcFastPath {
            outbound: Mutex::new(HashMap::try_from(outbound).map_err(maps)?),
            inbound: Mutex::new(HashMap::try_from(inbound).map_err(maps)?),
            uplink_info: Mutex::new(Array::try_from(uplink_info).map_err(maps)?),
            counters: PerCpuArray::try_from(counters).map_err(maps)?,
            ebpf,
            uplinks,
            lans,
            handed_over: AtomicU64::new(0),
            withdrawn: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            withdraw_failed: AtomicBool::new(false),
        })
    }

    /// Attaches the programs to the ingress of the LAN interfaces and the uplinks with TCX
    /// links (Linux 6.6 or later), which close with wanlb, however it exits. Each interface
    /// gets its program once, however many LAN subnets or uplinks it carries.
    pub fn attach(&mut self) -> io::Result<()> {
        let lans = self.lans.iter().map(|l| (l.ifindex, LinkKind::Ethernet));
        let uplinks = self.uplinks.iter().map(|u| (u.ifindex, u.link));
        let mut attachments: Vec<(&str, u32)> = lans
            .map(|(i, link)| (program(Direction::Outbound, link), i))
            .chain(uplinks.map(|(i, link)| (program(Direction::Inbound, link), i)))
            .collect();
        attachments.sort_unstable();
        attachments.dedup();
        for (program_name, ifindex) in attachments {
            let program: &mut SchedClassifier = self
                .ebpf
                .program_mut(program_name)
                .ok_or_else(|| io::Error::other("program gone"))?
                .try_into()
                .map_err(|e| load_error(program_name, e))?;
            let name = iface::name_of(ifindex)?;
            program
                .attach_with_options(
                    &name,
                    TcAttachType::Ingress,
                    TcAttachOptions::TcxOrder(LinkOrder::default()),
                )
                .map_err(|e| load_error(&format!("attaching {program_name} to {name}"), e))?;
        }
        Ok(())
    }

    /// Runs the program for `direction` once on `frame`, as if it had arrived on interface
    /// `arrived_on`, in the kernel (BPF_PROG_TEST_RUN) without sending anything: returns its
    /// verdict and the frame as it left it. The frame is handed over by the current
    /// namespace's loopback device, with its Ethernet header: a test run has no other kind, so
    /// this runs the programs for Ethernet links. For tests and diagnosis.
    pub fn test_run(
        &self,
        direction: Direction,
        frame: &[u8],
        arrived_on: u32,
    ) -> io::Result<(i32, Vec<u8>)> {
        let name = program(direction, LinkKind::Ethernet);
        let program: &SchedClassifier = self
            .ebpf
            .program(name)
            .ok_or_else(|| io::Error::other("program gone"))?
            .try_into()
            .map_err(|e| load_error(name, e))?;
        let mut out = vec![0u8; frame.len() + 256];
        // struct __sk_buff: only ingress_ifindex (at byte 36) set
        let mut ctx = [0u8; 192];
        ctx[36..40].copy_from_slice(&arrived_on.to_le_bytes());
        let mut options = TestRunOptions::new();
        options.data_in = Some(frame);
        options.data_out = Some(&mut out);
        options.ctx_in = Some(&ctx);
        let result = program
            .test_run(options)
            .map_err(|e| load_error("BPF_PROG_TEST_RUN", e))?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value as i32, out))
    }

    /// Sends the uplink's fast-path traffic to `next_hop`, or stops carrying it (`None`).
    pub fn set_next_hop(&self, uplink: UplinkId, next_hop: Option<NextHop>) -> io::Result<()> {
        let u = &self.uplinks[usize::from(uplink)];
        let info = match next_hop {
            Some(NextHop::Gateway(mac)) => UplinkInfo {
                ifindex: u.ifindex,
                dst_mac: mac,
                src_mac: u.mac,
                ..UplinkInfo::default()
            },
            Some(NextHop::Peer) => UplinkInfo {
                ifindex: u.ifindex,
                point_to_point: 1,
                ..UplinkInfo::default()
            },
            None => UplinkInfo::default(),
        };
        lock(&self.uplink_info)
            .set(u32::from(uplink), info, 0)
            .map_err(map_error)
    }

    /// What the programs carried, per uplink, summed over CPUs.
    pub fn totals(&self) -> io::Result<Vec<FastTotals>> {
        let sum = |index: u32| -> io::Result<Counter> {
            let per_cpu = self.counters.get(&index, 0).map_err(map_error)?;
            Ok(per_cpu.iter().fold(Counter::default(), |t, c| Counter {
                packets: t.packets + c.packets,
                bytes: t.bytes + c.bytes,
            }))
        };
        (0..self.uplinks.len() as u32)
            .map(|u| {
                let out = sum(2 * u + Direction::Outbound as u32)?;
                let back = sum(2 * u + Direction::Inbound as u32)?;
                Ok(FastTotals {
                    outbound_packets: out.packets,
                    outbound_bytes: out.bytes,
                    inbound_packets: back.packets,
                    inbound_bytes: back.bytes,
                })
            })
            .collect()
    }

    /// Flows handed over, flows taken back, and flows the kernel refused (its maps full).
    pub fn flow_counts(&self) -> (u64, u64, u64) {
        (
            self.handed_over.load(Ordering::Relaxed),
            self.withdrawn.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }

    /// The keys a flow is found under: outbound (LAN ingress) and inbound (ingress of its
    /// uplink's interface).
    fn keys(&self, flow: &Flow, ext_addr: u32) -> (FlowMapKey, FlowMapKey) {
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
    fn try_hand_over(&self, flow: &Flow, ext_addr: u32) -> io::Result<bool> {
        let Some(lan) = self.lans.iter().find(|l| l.holds(flow.key.int_addr)) else {
            return Ok(false);
        };
        let (outbound_key, inbound_key) = self.keys(flow, ext_addr);
        let out = value(ext_addr, flow.ext_port, flow.uplink, 0);
        let back = value(
            flow.key.int_addr,
            flow.key.int_port,
            flow.uplink,
            lan.ifindex,
        );
        let inserted = lock(&self.inbound).insert(inbound_key, back, 0);
        inserted.map_err(map_error)?;
        let inserted = lock(&self.outbound).insert(outbound_key, out, 0);
        if let Err(e) = inserted {
            let removed = lock(&self.inbound).remove(&inbound_key);
            removed.map_err(map_error)?;
            return Err(map_error(e));
        }
        Ok(true)
    }
}

impl FastPath for std::sync::Arc<TcFastPath> {
    fn hand_over(&self, flow: &Flow, ext_addr: u32) -> bool {
        match self.try_hand_over(flow, ext_addr) {
            Ok(true) => {
                self.handed_over.fetch_add(1, Ordering::Relaxed);
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
        let (outbound_key, inbound_key) = self.keys(flow, ext_addr);
        let mut last = 0u64;
        for (map, k) in [(&self.outbound, outbound_key), (&self.inbound, inbound_key)] {
            if let Ok(v) = lock(map).get(&k, 0) {
                last = last.max(v.last_seen);
            }
        }
        (last != 0).then(|| monotonic_ns().saturating_sub(last) / 1_000_000)
    }

    fn bytes(&self, flow: &Flow, ext_addr: u32) -> u64 {
        let (outbound_key, inbound_key) = self.keys(flow, ext_addr);
        [(&self.outbound, outbound_key), (&self.inbound, inbound_key)]
            .iter()
            .filter_map(|(map, k)| lock(map).get(k, 0).ok())
            .map(|v| v.bytes)
            .sum()
    }

    fn acks(&self, flow: &Flow, ext_addr: u32) -> [Option<Acked>; 2] {
        let (outbound_key, inbound_key) = self.keys(flow, ext_addr);
        [(&self.outbound, outbound_key), (&self.inbound, inbound_key)].map(|(map, k)| {
            let v = lock(map).get(&k, 0).ok()?;
            (v.acked != 0).then_some(Acked {
                ack: v.ack,
                window: v.window,
            })
        })
    }

    fn withdraw(&self, flow: &Flow, ext_addr: u32) {
        let (outbound_key, inbound_key) = self.keys(flow, ext_addr);
        let outbound = lock(&self.outbound).remove(&outbound_key);
        let inbound = lock(&self.inbound).remove(&inbound_key);
        let removed = outbound.and(inbound).map_err(map_error);
        match removed {
            Ok(()) => {
                self.withdrawn.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) if self.withdraw_failed.swap(true, Ordering::Relaxed) => {
                tracing::debug!(error = %e, "could not withdraw a flow from the fast path");
            }
            Err(e) => tracing::warn!(error = %e,
                "could not withdraw a flow from the fast path (any more such at debug level)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    fn u16_at(b: &[u8], at: usize) -> usize {
        usize::from(u16::from_le_bytes([b[at], b[at + 1]]))
    }

    fn u32_at(b: &[u8], at: usize) -> usize {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap()) as usize
    }

    fn u64_at(b: &[u8], at: usize) -> usize {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap()) as usize
    }

    /// The `.BTF` section of an ELF object (little-endian ELF64, as clang writes for bpf).
    fn btf_section(elf: &[u8]) -> &[u8] {
        let (shoff, shentsize) = (u64_at(elf, 0x28), u16_at(elf, 0x3a));
        let (shnum, shstrndx) = (u16_at(elf, 0x3c), u16_at(elf, 0x3e));
        let section = |i: usize| {
            let h = &elf[shoff + i * shentsize..];
            (u32_at(h, 0), u64_at(h, 0x18), u64_at(h, 0x20))
        };
        let (_, names, _) = section(shstrndx);
        (0..shnum)
            .map(section)
            .find(|&(name, _, _)| elf[names + name..].starts_with(b".BTF\0"))
            .map(|(_, off, size)| &elf[off..off + size])
            .expect("a .BTF section")
    }

    /// A struct's size, and its members' names and byte offsets.
    type Layout = (usize, Vec<(String, usize)>);

    /// Every struct the BTF describes, by name.
    fn btf_structs(btf: &[u8]) -> Vec<(String, Layout)> {
        assert_eq!(u16_at(btf, 0), 0xeb9f, "BTF magic");
        let hdr = u32_at(btf, 4);
        let types = &btf[hdr + u32_at(btf, 8)..][..u32_at(btf, 12)];
        let strings = &btf[hdr + u32_at(btf, 16)..][..u32_at(btf, 20)];
        let name = |off: usize| {
            let s = &strings[off..];
            String::from_utf8_lossy(&s[..s.iter().position(|&c| c == 0).unwrap()]).into_owned()
        };
        let mut out = Vec::new();
        let mut at = 0;
        while at < types.len() {
            let info = u32_at(types, at + 4);
            let (vlen, kind) = (info & 0xffff, (info >> 24) & 0x1f);
            let extra = match kind {
                1 | 14 | 17 => 4,
                3 => 12,
                4 | 5 | 15 | 19 => 12 * vlen,
                6 | 13 => 8 * vlen,
                _ => 0,
            };
            if kind == 4 {
                let members = (0..vlen)
                    .map(|m| {
                        let mm = &types[at + 12 + 12 * m..];
                        (name(u32_at(mm, 0)), (u32_at(mm, 8) & 0xff_ffff) / 8)
                    })
                    .collect();
                out.push((name(u32_at(types, at)), (u32_at(types, at + 8), members)));
            }
            at += 12 + extra;
        }
        out
    }

    macro_rules! layout {
        ($t:ty, $($field:ident),+) => {
            (size_of::<$t>(), vec![$((stringify!($field).to_string(), offset_of!($t, $field))),+])
        };
    }

    #[test]
    fn map_types_are_laid_out_as_the_header_says() {
        let structs = btf_structs(btf_section(OBJECT));
        let header = |name: &str| -> Layout {
            structs
                .iter()
                .find(|(n, _)| n == name)
                .unwrap_or_else(|| panic!("struct {name} in ebpf/fastpath.o"))
                .1
                .clone()
        };
        assert_eq!(
            header("flow_key"),
            layout!(FlowMapKey, saddr, daddr, sport, dport, proto, pad, ifindex)
        );
        assert_eq!(
            header("flow_value"),
            layout!(
                FlowMapValue,
                addr,
                port,
                uplink,
                ifindex,
                ack,
                last_seen,
                window,
                acked,
                pad,
                bytes
            )
        );
        assert_eq!(
            header("uplink_info"),
            layout!(UplinkInfo, ifindex, point_to_point, dst_mac, src_mac, pad)
        );
        assert_eq!(header("counter"), layout!(Counter, packets, bytes));
    }

    #[test]
    fn keys_and_values_hold_addresses_and_ports_as_packets_do() {
        let k = key(
            u32::from_be_bytes([198, 19, 0, 1]),
            u32::from_be_bytes([198, 18, 1, 1]),
            (443, 61000),
            6,
            3,
        );
        assert_eq!(k.saddr, [198, 19, 0, 1]);
        assert_eq!(k.daddr, [198, 18, 1, 1]);
        assert_eq!((k.sport, k.dport), ([0x01, 0xbb], [0xee, 0x48]));
        assert_eq!((k.proto, k.ifindex), (6, 3));
        let v = value(u32::from_be_bytes([198, 18, 3, 10]), 40000, 1, 7);
        assert_eq!((v.addr, v.port), ([198, 18, 3, 10], [0x9c, 0x40]));
        assert_eq!((v.uplink, v.ifindex, v.last_seen), (1, 7, 0));
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
