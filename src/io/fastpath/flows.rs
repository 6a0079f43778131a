//! The flow maps: the engine's work carried out on them, in the order it was decided, and
//! what they recorded of each flow read back, all of them at once or one reset's flow.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};
use std::sync::atomic::Ordering;

use super::{FlowMapKey, FlowMapValue, TcFastPath, lock, map_error};
use crate::engine::flow::{Acked, FlowKey};
use crate::engine::wire::{Ipv4Packet, PROTO_TCP, TcpSegment, tcp};
use crate::engine::{
    Carried, CarriedFlows, Direction, Engine, FastFlow, FastPathDone, FastPathWork, UplinkId,
};
use crate::io::fd::monotonic_ns;

/// Rounds of work one call carries out at most, taking what other callers queued meanwhile:
/// enough that a worker rarely leaves work behind, few enough that it goes back to its
/// packets soon.
const ROUNDS: usize = 4;

pub(super) fn key(
    saddr: u32,
    daddr: u32,
    ports: (u16, u16),
    proto: u8,
    ifindex: u32,
) -> FlowMapKey {
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

pub(super) fn value(addr: u32, port: u16, uplink: UplinkId, ifindex: u32) -> FlowMapValue {
    FlowMapValue {
        addr: addr.to_be_bytes(),
        port: port.to_be_bytes(),
        uplink: u16::from(uplink),
        ifindex,
        ..FlowMapValue::default()
    }
}

/// What one map entry (one direction of a flow) recorded, at `now_ns` on the kernel's
/// monotonic clock.
fn carried_one(v: &FlowMapValue, direction: Direction, now_ns: u64) -> Carried {
    let mut acks = [None; 2];
    if v.acked != 0 {
        acks[direction.index()] = Some(Acked {
            ack: v.ack,
            window: v.window,
        });
    }
    Carried {
        idle_ms: (v.last_seen != 0).then(|| now_ns.saturating_sub(v.last_seen) / 1_000_000),
        bytes: v.bytes,
        acks,
    }
}

/// The flow an outbound entry is of (its key names the LAN end and the remote end).
fn outbound_flow(k: &FlowMapKey) -> FlowKey {
    FlowKey {
        int_addr: u32::from_be_bytes(k.saddr),
        rem_addr: u32::from_be_bytes(k.daddr),
        int_port: u16::from_be_bytes(k.sport),
        rem_port: u16::from_be_bytes(k.dport),
        proto: k.proto,
    }
}

/// The flow an inbound entry is of (its key names the remote end, its value the LAN end).
fn inbound_flow(k: &FlowMapKey, v: &FlowMapValue) -> FlowKey {
    FlowKey {
        int_addr: u32::from_be_bytes(v.addr),
        rem_addr: u32::from_be_bytes(k.saddr),
        int_port: u16::from_be_bytes(v.port),
        rem_port: u16::from_be_bytes(k.sport),
        proto: k.proto,
    }
}

impl TcFastPath {
    /// Carries out the work the engine queued for the fast path, in the order it was
    /// decided, and tells the engine what came of it. Called by each worker after a batch
    /// ([`TcFastPath::try_carry_out`]) and by every other caller of the engine after its call
    /// (expiry, health verdicts, a reload): no engine lock is held meanwhile. One caller at a
    /// time, so that no caller's work overtakes work taken before it.
    pub fn carry_out(&self, engine: &Engine) {
        let work = lock(&self.carrying);
        self.carry_out_with(engine, work);
    }

    /// [`TcFastPath::carry_out`], unless another caller is at it: it takes what is queued
    /// when it is done, and the workers look again after their next batch.
    pub fn try_carry_out(&self, engine: &Engine) {
        if !engine.has_fast_path_work() {
            return;
        }
        let work = match self.carrying.try_lock() {
            Ok(work) => work,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return,
        };
        self.carry_out_with(engine, work);
    }

    fn carry_out_with(
        &self,
        engine: &Engine,
        mut work: std::sync::MutexGuard<'_, Vec<FastPathWork>>,
    ) {
        let mut done = Vec::new();
        for _ in 0..ROUNDS {
            engine.take_fast_path_work(&mut work);
            if work.is_empty() {
                break;
            }
            for w in work.drain(..) {
                match w {
                    FastPathWork::HandOver(f) => {
                        if !self.hand_over(&f) {
                            done.push(FastPathDone::Refused(f));
                        }
                    }
                    FastPathWork::TakeBack(f) => {
                        let bytes = self.withdraw(&f, true);
                        done.push(FastPathDone::TakenBack(f, bytes));
                    }
                    FastPathWork::Withdraw(f, release) => {
                        self.withdraw(&f, false);
                        done.extend(release.map(FastPathDone::Released));
                    }
                }
            }
            engine.fast_path_done(&done);
            done.clear();
        }
    }

    /// The keys a flow is found under: outbound (LAN ingress) and inbound (ingress of its
    /// uplink's interface).
    fn keys(&self, f: &FastFlow) -> (FlowMapKey, FlowMapKey) {
        let k = f.key;
        let uplink_ifindex = self.uplinks[usize::from(f.uplink)].ifindex();
        (
            key(k.int_addr, k.rem_addr, (k.int_port, k.rem_port), k.proto, 0),
            key(
                k.rem_addr,
                f.ext_addr,
                (k.rem_port, f.ext_port),
                k.proto,
                uplink_ifindex,
            ),
        )
    }

    /// Starts carrying `f`; false if the kernel refused it (its maps full), or no LAN link
    /// holds its host (the engine hands over only hosts of [`TcFastPath::reaches`]).
    fn hand_over(&self, f: &FastFlow) -> bool {
        match self.try_hand_over(f) {
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

    fn try_hand_over(&self, f: &FastFlow) -> io::Result<bool> {
        let Some(lan) = self.lans.iter().find(|l| l.holds(f.key.int_addr)) else {
            return Ok(false);
        };
        let (outbound_key, inbound_key) = self.keys(f);
        let out = value(f.ext_addr, f.ext_port, f.uplink, 0);
        let back = value(f.key.int_addr, f.key.int_port, f.uplink, lan.ifindex);
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

    /// Stops carrying `f`. With `count`, first reads the IP bytes it carried of it, both
    /// ways, and returns them. A flow the kernel never took (its hand-over refused) has
    /// nothing to remove: that is no failure.
    fn withdraw(&self, f: &FastFlow, count: bool) -> u64 {
        let (outbound_key, inbound_key) = self.keys(f);
        let bytes = if count {
            [(&self.outbound, outbound_key), (&self.inbound, inbound_key)]
                .iter()
                .filter_map(|(map, k)| lock(map).get(k, 0).ok())
                .map(|v| v.bytes)
                .sum()
        } else {
            0
        };
        let outbound = lock(&self.outbound)
            .remove(&outbound_key)
            .map_err(map_error);
        let inbound = lock(&self.inbound).remove(&inbound_key).map_err(map_error);
        let absent = |r: &io::Result<()>| {
            r.as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::NotFound)
        };
        match (outbound, inbound) {
            (Ok(()), Ok(())) => {
                self.withdrawn.fetch_add(1, Ordering::Relaxed);
            }
            (o, i) if absent(&o) && absent(&i) => {}
            (o, i) => {
                let e = o.and(i).err().map(|e| e.to_string()).unwrap_or_default();
                if self.withdraw_failed.swap(true, Ordering::Relaxed) {
                    tracing::debug!(error = %e, "could not withdraw a flow from the fast path");
                } else {
                    tracing::warn!(error = %e,
                        "could not withdraw a flow from the fast path (any more such at debug level)");
                }
            }
        }
        bytes
    }

    /// What the programs recorded of every flow they hold: when each last carried a packet,
    /// its bytes, each side's last acknowledgement. Read in one batch of syscalls per map
    /// (BPF_MAP_LOOKUP_BATCH), without any lock the engine or the workers take.
    pub fn carried(&self) -> io::Result<CarriedFlows> {
        let outbound = read_map(self.outbound_fd.as_fd(), &self.outbound)?;
        let inbound = read_map(self.inbound_fd.as_fd(), &self.inbound)?;
        let now = monotonic_ns();
        let entries = outbound
            .iter()
            .map(|(k, v)| (outbound_flow(k), carried_one(v, Direction::Outbound, now)))
            .chain(
                inbound
                    .iter()
                    .map(|(k, v)| (inbound_flow(k, v), carried_one(v, Direction::Inbound, now))),
            )
            .collect();
        Ok(CarriedFlows::from_entries(entries))
    }

    /// What the programs recorded of the flow of `packet` (an IPv4 packet that came
    /// `direction`, on `uplink` if inbound), if it is a TCP reset and the fast path holds its
    /// flow: the engine judges the reset by the windows as they are now. Nothing is read for
    /// any other packet; one or two lookups for a reset.
    pub fn carried_of_reset(
        &self,
        direction: Direction,
        uplink: UplinkId,
        packet: &[u8],
    ) -> Option<Carried> {
        let ip = Ipv4Packet::new_checked(packet).ok()?;
        if ip.protocol() != PROTO_TCP || ip.is_fragment() {
            return None;
        }
        let segment = TcpSegment::new_checked(ip.payload()).ok()?;
        if segment.flags() & tcp::RST == 0 {
            return None;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let ports = (segment.src_port(), segment.dst_port());
        let (out, back) = match direction {
            Direction::Outbound => {
                let out = lock(&self.outbound)
                    .get(&key(src, dst, ports, PROTO_TCP, 0), 0)
                    .ok()?;
                let ifindex = self.uplinks.get(usize::from(out.uplink))?.ifindex();
                let ext = (u32::from_be_bytes(out.addr), u16::from_be_bytes(out.port));
                let back_key = key(dst, ext.0, (ports.1, ext.1), PROTO_TCP, ifindex);
                let back = lock(&self.inbound).get(&back_key, 0).ok();
                (Some(out), back)
            }
            Direction::Inbound => {
                let ifindex = self.uplinks.get(usize::from(uplink))?.ifindex();
                let back = lock(&self.inbound)
                    .get(&key(src, dst, ports, PROTO_TCP, ifindex), 0)
                    .ok()?;
                let lan = (u32::from_be_bytes(back.addr), u16::from_be_bytes(back.port));
                let out_key = key(lan.0, src, (lan.1, ports.0), PROTO_TCP, 0);
                let out = lock(&self.outbound).get(&out_key, 0).ok();
                (out, Some(back))
            }
        };
        let now = monotonic_ns();
        [(out, Direction::Outbound), (back, Direction::Inbound)]
            .into_iter()
            .filter_map(|(v, d)| Some(carried_one(&v?, d, now)))
            .reduce(Carried::merge)
    }
}

/// `union bpf_attr`'s part for the BPF_MAP_*_BATCH commands (include/uapi/linux/bpf.h).
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;
/// Entries one BPF_MAP_LOOKUP_BATCH returns at most: a hash map hands over whole buckets,
/// and no bucket of these maps holds nearly as many.
const BATCH: usize = 4096;

/// Every entry of the flow map `fd` (`locked`'s descriptor, for the fallback), in batches of
/// [`BATCH`] per syscall (Linux 5.6 and later; the fast path needs 6.6). A kernel without
/// batch lookups gets the map walked key by key under its lock.
fn read_map(
    fd: BorrowedFd<'_>,
    locked: &super::FlowMap,
) -> io::Result<Vec<(FlowMapKey, FlowMapValue)>> {
    let mut keys = vec![FlowMapKey::default(); BATCH];
    let mut values = vec![FlowMapValue::default(); BATCH];
    let mut entries = Vec::new();
    // a hash map's batch position: the next bucket
    let (mut at, mut next) = (0u32, 0u32);
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { &raw const at as u64 },
            out_batch: &raw mut next as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: BATCH as u32,
            map_fd: fd.as_raw_fd() as u32,
            ..BatchAttr::default()
        };
        // SAFETY: `attr` is the kernel's layout for the batch commands, zero past its last
        // field; its pointers name `at` and `next` (4 bytes each, a hash map's batch position)
        // and `keys` and `values`, room for `count` entries of the map's key and value sizes
        // (the #[repr(C)] mirrors of struct flow_key and struct flow_value, checked against the
        // object's BTF by a test), all alive and unaliased for the call. The kernel writes
        // `count` and `next` back, and nothing else outside them.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &raw mut attr,
                std::mem::size_of::<BatchAttr>(),
            )
        };
        let error = (r < 0).then(io::Error::last_os_error);
        let n = (attr.count as usize).min(BATCH);
        entries.extend(keys[..n].iter().copied().zip(values[..n].iter().copied()));
        match error.and_then(|e| e.raw_os_error()) {
            None => {}
            // the end of the map
            Some(libc::ENOENT) => return Ok(entries),
            Some(libc::EINVAL | libc::EOPNOTSUPP) if first => {
                return lock(locked)
                    .iter()
                    .map(|entry| entry.map_err(map_error))
                    .collect();
            }
            Some(errno) => return Err(io::Error::from_raw_os_error(errno)),
        }
        at = next;
        first = false;
    }
}
