//! The kernel fast path: once the engine has seen a flow settle, two small TC programs carry
//! its packets without copying them to userspace: `wanlb_outbound` at the ingress of each LAN
//! interface, `wanlb_inbound` at the ingress of each Ethernet uplink (`wanlb_inbound_l3` on a
//! point-to-point one, whose packets have no link-layer header). They are written in C
//! (`ebpf/fastpath.c`, map layouts in `ebpf/wanlb.h`), compiled by `scripts/build-ebpf.sh`
//! into the committed `ebpf/fastpath.o`, and loaded here with aya. They translate exactly as
//! the engine does and pass everything they do not know, or should not handle, on to the
//! normal path, which leads to wanlb's own data path. The engine remains the only one that
//! decides.

mod family;
mod flows;

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use aya::maps::{Array, HashMap, IterableMap, MapData, PerCpuArray};
use aya::programs::links::LinkOrder;
use aya::programs::tc::TcAttachOptions;
use aya::programs::{ProgramError, SchedClassifier, TcAttachType, TestRun, TestRunOptions};
use aya::{Ebpf, EbpfLoader, Pod, include_bytes_aligned};

use super::iface;
use crate::engine::family::{V4, V6};
use crate::engine::select::Prefix;
use crate::engine::{Direction, FastPathWork, UplinkId};
use crate::uplink::{LinkKind, NextHop, format_mac};
use family::Mapped;

/// The compiled programs (scripts/build-ebpf.sh makes it from ebpf/fastpath.c).
static OBJECT: &[u8] = include_bytes_aligned!("../../../ebpf/fastpath.o");

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

/// `struct flow_key6` of ebpf/wanlb.h: an IPv6 flow as a packet names it.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowMapKey6 {
    pub saddr: [u8; 16],
    pub daddr: [u8; 16],
    pub sport: [u8; 2],
    pub dport: [u8; 2],
    pub proto: u8,
    pub pad: [u8; 3],
    pub ifindex: u32,
}

/// `struct flow_value6` of ebpf/wanlb.h, as [`FlowMapValue`] of IPv6.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FlowMapValue6 {
    pub addr: [u8; 16],
    pub port: [u8; 2],
    pub uplink: u16,
    pub ifindex: u32,
    pub ack: u32,
    pub window: u16,
    pub acked: u8,
    pub pad: [u8; 1],
    pub last_seen: u64,
    pub bytes: u64,
}

/// `struct uplink_info` of ebpf/wanlb.h: where an uplink's frames go, of each family.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UplinkInfo {
    /// 0: its IPv4 is not carried.
    pub ifindex: u32,
    /// 1: no link-layer header; the MACs are unused.
    pub point_to_point: u32,
    pub dst_mac: [u8; 6],
    pub src_mac: [u8; 6],
    /// The IPv6 router's MAC.
    pub dst_mac6: [u8; 6],
    pub pad: [u8; 2],
    /// 0: its IPv6 is not carried.
    pub ifindex6: u32,
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
unsafe impl Pod for FlowMapKey6 {}
// SAFETY: as above.
unsafe impl Pod for FlowMapValue6 {}
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

/// A LAN interface and an IPv6 prefix on it, as [`LanLink`] of IPv6.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LanLink6 {
    pub ifindex: u32,
    pub prefix: Prefix<V6>,
}

impl LanLink6 {
    fn holds(&self, host: u128) -> bool {
        self.prefix.contains(host)
    }
}

/// An uplink as the programs address it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UplinkLink {
    pub ifindex: u32,
    pub link: LinkKind,
    pub mac: [u8; 6],
}

/// An uplink as the programs address it now: its interface changes when it comes back as a
/// new one ([`TcFastPath::reattach_uplink`]).
#[derive(Debug)]
struct UplinkSlot {
    link: LinkKind,
    ifindex: AtomicU32,
    mac: Mutex<[u8; 6]>,
}

impl UplinkSlot {
    fn ifindex(&self) -> u32 {
        self.ifindex.load(Ordering::Relaxed)
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

type FlowMap<F = V4> = Mutex<HashMap<MapData, <F as Mapped>::Key, <F as Mapped>::Value>>;

/// The engine's work being carried out, of each family.
#[derive(Debug, Default)]
struct Carrying {
    work: Vec<FastPathWork<V4>>,
    work6: Vec<FastPathWork<V6>>,
}

/// The programs, their links and their maps; dropping it detaches everything and frees the
/// maps. This is the one handle to the fast path (the engine has none: it queues what it
/// decides, and [`TcFastPath::carry_out`] does it). The maps' updates take `&mut`: each is
/// made under its map's lock, held only for the one syscall.
pub struct TcFastPath {
    /// The programs; locked only to attach one, or for a test run.
    ebpf: Mutex<Ebpf>,
    outbound: FlowMap,
    inbound: FlowMap,
    outbound6: FlowMap<V6>,
    inbound6: FlowMap<V6>,
    /// The flow maps' descriptors again, to read them whole without their locks.
    outbound_fd: OwnedFd,
    inbound_fd: OwnedFd,
    outbound6_fd: OwnedFd,
    inbound6_fd: OwnedFd,
    /// Held while the engine's work is carried out, so that one caller's work never
    /// overtakes another's; it holds the work taken, its room reused.
    carrying: Mutex<Carrying>,
    uplink_info: Mutex<Array<MapData, UplinkInfo>>,
    counters: PerCpuArray<MapData, Counter>,
    uplinks: Vec<UplinkSlot>,
    lans: Vec<LanLink>,
    lans6: Vec<LanLink6>,
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
            .field("lans6", &self.lans6)
            .field("flow_counts", &self.flow_counts())
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Attaches `program_name` to the ingress of interface `ifindex` with a TCX link (Linux 6.6 or
/// later), which closes with wanlb, however it exits, or with the interface.
fn attach(ebpf: &mut Ebpf, program_name: &str, ifindex: u32) -> io::Result<()> {
    let program: &mut SchedClassifier = ebpf
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
    Ok(())
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
        let (outbound, inbound, outbound6, inbound6, uplink_info, counters) = (
            take("outbound_flows")?,
            take("inbound_flows")?,
            take("outbound_flows6")?,
            take("inbound_flows6")?,
            take("wanlb_uplinks")?,
            take("wanlb_counters")?,
        );
        let maps = |e| load_error("the fast path's maps", e);
        let outbound: HashMap<_, FlowMapKey, FlowMapValue> =
            HashMap::try_from(outbound).map_err(maps)?;
        let inbound: HashMap<_, FlowMapKey, FlowMapValue> =
            HashMap::try_from(inbound).map_err(maps)?;
        let outbound6: HashMap<_, FlowMapKey6, FlowMapValue6> =
            HashMap::try_from(outbound6).map_err(maps)?;
        let inbound6: HashMap<_, FlowMapKey6, FlowMapValue6> =
            HashMap::try_from(inbound6).map_err(maps)?;
        let fd = |m: &MapData| m.fd().as_fd().try_clone_to_owned();
        Ok(TcFastPath {
            outbound_fd: fd(IterableMap::map(&outbound))?,
            inbound_fd: fd(IterableMap::map(&inbound))?,
            outbound6_fd: fd(IterableMap::map(&outbound6))?,
            inbound6_fd: fd(IterableMap::map(&inbound6))?,
            outbound: Mutex::new(outbound),
            inbound: Mutex::new(inbound),
            outbound6: Mutex::new(outbound6),
            inbound6: Mutex::new(inbound6),
            carrying: Mutex::new(Carrying::default()),
            uplink_info: Mutex::new(Array::try_from(uplink_info).map_err(maps)?),
            counters: PerCpuArray::try_from(counters).map_err(maps)?,
            ebpf: Mutex::new(ebpf),
            uplinks: uplinks
                .into_iter()
                .map(|u| UplinkSlot {
                    link: u.link,
                    ifindex: AtomicU32::new(u.ifindex),
                    mac: Mutex::new(u.mac),
                })
                .collect(),
            lans,
            lans6: Vec::new(),
            handed_over: AtomicU64::new(0),
            withdrawn: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            withdraw_failed: AtomicBool::new(false),
        })
    }

    /// The LAN interfaces' IPv6 prefixes, whose hosts the programs reach by IPv6 (before
    /// [`TcFastPath::attach`]).
    pub fn set_lans6(&mut self, lans6: Vec<LanLink6>) {
        self.lans6 = lans6;
    }

    /// Attaches the programs to the ingress of the LAN interfaces and the uplinks with TCX
    /// links (Linux 6.6 or later), which close with wanlb, however it exits. Each interface
    /// gets its program once, however many LAN subnets or uplinks it carries.
    pub fn attach(&mut self) -> io::Result<()> {
        let lans = (self.lans.iter().map(|l| l.ifindex))
            .chain(self.lans6.iter().map(|l| l.ifindex))
            .map(|i| (i, LinkKind::Ethernet));
        let uplinks = self.uplinks.iter().map(|u| (u.ifindex(), u.link));
        let mut attachments: Vec<(&str, u32)> = lans
            .map(|(i, link)| (program(Direction::Outbound, link), i))
            .chain(uplinks.map(|(i, link)| (program(Direction::Inbound, link), i)))
            .collect();
        attachments.sort_unstable();
        attachments.dedup();
        let ebpf = self.ebpf.get_mut().unwrap_or_else(|p| p.into_inner());
        for (program_name, ifindex) in attachments {
            attach(ebpf, program_name, ifindex)?;
        }
        Ok(())
    }

    /// Uplink `uplink`'s interface came back as a new one, `ifindex` with MAC `mac` (pppd's
    /// redial): attaches its inbound program there, and moves its flows' inbound entries,
    /// which name the interface their packets arrive on, to the new one. The uplink carries
    /// nothing until [`TcFastPath::set_next_hop`] says where its packets go now. The old
    /// interface's link went with it.
    pub fn reattach_uplink(&self, uplink: UplinkId, ifindex: u32, mac: [u8; 6]) -> io::Result<()> {
        let u = &self.uplinks[usize::from(uplink)];
        self.set_next_hop(uplink, None)?;
        self.set_next_hop6(uplink, None)?;
        let inbound_program = program(Direction::Inbound, u.link);
        attach(&mut lock(&self.ebpf), inbound_program, ifindex)?;
        *lock(&u.mac) = mac;
        // no work is carried out meanwhile: a flow handed over or withdrawn now is keyed
        // by the one interface or the other, never half
        let _no_work = lock(&self.carrying);
        let old = u.ifindex.swap(ifindex, Ordering::Relaxed);
        self.move_inbound::<V4>(uplink, old, ifindex)?;
        self.move_inbound::<V6>(uplink, old, ifindex)?;
        tracing::debug!(uplink, ifindex, mac = %format_mac(mac), "fast path follows the new interface");
        Ok(())
    }

    /// Moves `uplink`'s inbound entries of one family from interface `old` to `new`.
    fn move_inbound<F: Mapped>(&self, uplink: UplinkId, old: u32, new: u32) -> io::Result<()> {
        let mut inbound = lock(F::maps(self).1);
        let moving: Vec<(F::Key, F::Value)> = inbound
            .iter()
            .filter_map(Result::ok)
            .filter(|(k, v)| {
                F::key_parts(k).4 == old && F::value_parts(v).2.uplink == u16::from(uplink)
            })
            .collect();
        for (key, value) in moving {
            inbound
                .insert(F::with_key_ifindex(key, new), value, 0)
                .map_err(map_error)?;
            inbound.remove(&key).map_err(map_error)?;
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
        let ebpf = lock(&self.ebpf);
        let program: &SchedClassifier = ebpf
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

    /// Sends the uplink's IPv4 fast-path traffic to `next_hop`, or stops carrying it (`None`).
    pub fn set_next_hop(&self, uplink: UplinkId, next_hop: Option<NextHop>) -> io::Result<()> {
        self.update_uplink_info(uplink, |info, u| match next_hop {
            Some(NextHop::Gateway(mac)) => {
                info.ifindex = u.ifindex();
                info.dst_mac = mac;
                info.src_mac = *lock(&u.mac);
            }
            Some(NextHop::Peer) => {
                info.ifindex = u.ifindex();
                info.point_to_point = 1;
            }
            None => info.ifindex = 0,
        })
    }

    /// Sends the uplink's IPv6 fast-path traffic to `next_hop` (its IPv6 router, which need
    /// not be its IPv4 gateway), or stops carrying it (`None`: the router unknown, the line's
    /// IPv6 down).
    pub fn set_next_hop6(&self, uplink: UplinkId, next_hop: Option<NextHop>) -> io::Result<()> {
        self.update_uplink_info(uplink, |info, u| match next_hop {
            Some(NextHop::Gateway(mac)) => {
                info.ifindex6 = u.ifindex();
                info.dst_mac6 = mac;
                info.src_mac = *lock(&u.mac);
            }
            Some(NextHop::Peer) => {
                info.ifindex6 = u.ifindex();
                info.point_to_point = 1;
            }
            None => info.ifindex6 = 0,
        })
    }

    /// Changes the uplink's entry with `change`, under the lock: each family changes its own
    /// half of it.
    fn update_uplink_info(
        &self,
        uplink: UplinkId,
        change: impl FnOnce(&mut UplinkInfo, &UplinkSlot),
    ) -> io::Result<()> {
        let u = &self.uplinks[usize::from(uplink)];
        let mut array = lock(&self.uplink_info);
        let mut info = array.get(&u32::from(uplink), 0).map_err(map_error)?;
        change(&mut info, u);
        array.set(u32::from(uplink), info, 0).map_err(map_error)
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

    /// The LAN subnets whose hosts the programs reach: a host behind another router is not
    /// one the fast path can hand a packet to.
    pub fn reaches(&self) -> Vec<Prefix> {
        self.lans
            .iter()
            .filter_map(|l| Prefix::new(u32::from(l.addr), l.prefix_len))
            .collect()
    }

    /// The LAN prefixes whose hosts the programs reach by IPv6.
    pub fn reaches6(&self) -> Vec<Prefix<V6>> {
        self.lans6.iter().map(|l| l.prefix).collect()
    }

    /// Flows handed over, flows taken back, and flows the kernel refused (its maps full).
    pub fn flow_counts(&self) -> (u64, u64, u64) {
        (
            self.handed_over.load(Ordering::Relaxed),
            self.withdrawn.load(Ordering::Relaxed),
            self.refused.load(Ordering::Relaxed),
        )
    }
}

#[cfg(test)]
mod tests;
