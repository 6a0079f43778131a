//! The flow maps: the engine's work carried out on them, in the order it was decided, and
//! what they recorded of each flow read back, all of them at once or one reset's flow.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::Ordering;

use super::family::Mapped;
use super::{Carrying, TcFastPath, lock, map_error};
use crate::engine::family::{V4, V6};
use crate::engine::flow::{Acked, FlowKey};
use crate::engine::wire::{Ipv4Packet, Ipv6Packet, PROTO_TCP, TcpSegment, tcp};
use crate::engine::{
    Carried, CarriedFlows, Direction, Engine, FastFlow, FastPathDone, FastPathWork, UplinkId,
};
use crate::io::fd::monotonic_ns;

/// Rounds of work one call carries out at most, taking what other callers queued meanwhile:
/// enough that a worker rarely leaves work behind, few enough that it goes back to its
/// packets soon.
const ROUNDS: usize = 4;

/// What one map entry (one direction of a flow) recorded, at `now_ns` on the kernel's
/// monotonic clock.
fn carried_one<F: Mapped>(v: &F::Value, direction: Direction, now_ns: u64) -> Carried {
    let (_, _, r) = F::value_parts(v);
    let mut acks = [None; 2];
    if r.acked != 0 {
        acks[direction.index()] = Some(Acked {
            ack: r.ack,
            window: r.window,
        });
    }
    Carried {
        idle_ms: (r.last_seen != 0).then(|| now_ns.saturating_sub(r.last_seen) / 1_000_000),
        bytes: r.bytes,
        acks,
    }
}

/// The flow an outbound entry is of (its key names the LAN end and the remote end).
fn outbound_flow<F: Mapped>(k: &F::Key) -> FlowKey<F> {
    let (int_addr, rem_addr, (int_port, rem_port), proto, _) = F::key_parts(k);
    FlowKey {
        int_addr,
        rem_addr,
        int_port,
        rem_port,
        proto,
    }
}

/// The flow an inbound entry is of (its key names the remote end, its value the LAN end).
fn inbound_flow<F: Mapped>(k: &F::Key, v: &F::Value) -> FlowKey<F> {
    let (rem_addr, _, (rem_port, _), proto, _) = F::key_parts(k);
    let (int_addr, int_port, _) = F::value_parts(v);
    FlowKey {
        int_addr,
        rem_addr,
        int_port,
        rem_port,
        proto,
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

    fn carry_out_with(&self, engine: &Engine, mut work: std::sync::MutexGuard<'_, Carrying>) {
        for _ in 0..ROUNDS {
            let Carrying { work: four, work6 } = &mut *work;
            engine.take_fast_path_work(four, work6);
            if four.is_empty() && work6.is_empty() {
                break;
            }
            engine.fast_path_done(&self.carry_out_family::<V4>(&mut work));
            engine.fast_path_done6(&self.carry_out_family::<V6>(&mut work));
        }
    }

    /// Carries out one family's work taken, in order; returns what came of it.
    fn carry_out_family<F: Mapped>(&self, work: &mut Carrying) -> Vec<FastPathDone<F>> {
        let mut done = Vec::new();
        for w in F::carrying(work).drain(..) {
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
        done
    }

    /// The keys a flow is found under: outbound (LAN ingress) and inbound (ingress of its
    /// uplink's interface).
    fn keys<F: Mapped>(&self, f: &FastFlow<F>) -> (F::Key, F::Key) {
        let k = f.key;
        let uplink_ifindex = self.uplinks[usize::from(f.uplink)].ifindex();
        (
            F::key(k.int_addr, k.rem_addr, (k.int_port, k.rem_port), k.proto, 0),
            F::key(
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
    fn hand_over<F: Mapped>(&self, f: &FastFlow<F>) -> bool {
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

    fn try_hand_over<F: Mapped>(&self, f: &FastFlow<F>) -> io::Result<bool> {
        let Some(lan_ifindex) = F::lan_of(self, f.key.int_addr) else {
            return Ok(false);
        };
        let (outbound, inbound) = F::maps(self);
        let (outbound_key, inbound_key) = self.keys(f);
        let out = F::value(f.ext_addr, f.ext_port, f.uplink, 0);
        let back = F::value(f.key.int_addr, f.key.int_port, f.uplink, lan_ifindex);
        let inserted = lock(inbound).insert(inbound_key, back, 0);
        inserted.map_err(map_error)?;
        let inserted = lock(outbound).insert(outbound_key, out, 0);
        if let Err(e) = inserted {
            let removed = lock(inbound).remove(&inbound_key);
            removed.map_err(map_error)?;
            return Err(map_error(e));
        }
        Ok(true)
    }

    /// Stops carrying `f`. With `count`, first reads the IP bytes it carried of it, both
    /// ways, and returns them. A flow the kernel never took (its hand-over refused) has
    /// nothing to remove: that is no failure.
    fn withdraw<F: Mapped>(&self, f: &FastFlow<F>, count: bool) -> u64 {
        let (outbound_map, inbound_map) = F::maps(self);
        let (outbound_key, inbound_key) = self.keys(f);
        let bytes = if count {
            [(outbound_map, outbound_key), (inbound_map, inbound_key)]
                .iter()
                .filter_map(|(map, k)| lock(map).get(k, 0).ok())
                .map(|v| F::value_parts(&v).2.bytes)
                .sum()
        } else {
            0
        };
        let outbound = lock(outbound_map).remove(&outbound_key).map_err(map_error);
        let inbound = lock(inbound_map).remove(&inbound_key).map_err(map_error);
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

    /// What the programs recorded of every flow they hold, of both families: when each last
    /// carried a packet, its bytes, each side's last acknowledgement. Read in one batch of
    /// syscalls per map (BPF_MAP_LOOKUP_BATCH), without any lock the engine or the workers
    /// take.
    pub fn carried(&self) -> io::Result<CarriedFlows> {
        let four = self.entries::<V4>(&self.outbound_fd, &self.inbound_fd)?;
        let six = self.entries::<V6>(&self.outbound6_fd, &self.inbound6_fd)?;
        Ok(CarriedFlows::from_entries(four).with_entries6(six))
    }

    /// Every entry of one family's maps (`outbound_fd`, `inbound_fd`), by the flow it is of.
    fn entries<F: Mapped>(
        &self,
        outbound_fd: &OwnedFd,
        inbound_fd: &OwnedFd,
    ) -> io::Result<Vec<(FlowKey<F>, Carried)>> {
        let (outbound_map, inbound_map) = F::maps(self);
        let outbound = read_map::<F>(outbound_fd.as_fd(), outbound_map)?;
        let inbound = read_map::<F>(inbound_fd.as_fd(), inbound_map)?;
        let now = monotonic_ns();
        Ok(outbound
            .iter()
            .map(|(k, v)| {
                let c = carried_one::<F>(v, Direction::Outbound, now);
                (outbound_flow::<F>(k), c)
            })
            .chain(inbound.iter().map(|(k, v)| {
                let c = carried_one::<F>(v, Direction::Inbound, now);
                (inbound_flow::<F>(k, v), c)
            }))
            .collect())
    }

    /// What the programs recorded of the flow of `packet` (an IP packet that came
    /// `direction`, on `uplink` if inbound), if it is a TCP reset and the fast path holds its
    /// flow: the engine judges the reset by the windows as they are now. Nothing is read for
    /// any other packet; one or two lookups for a reset.
    pub fn carried_of_reset(
        &self,
        direction: Direction,
        uplink: UplinkId,
        packet: &[u8],
    ) -> Option<Carried> {
        if packet.first().is_some_and(|b| b >> 4 == 6) {
            let ip = Ipv6Packet::new_checked(packet).ok()?;
            // the fast path carries only packets without extension headers
            if ip.next_header() != PROTO_TCP {
                return None;
            }
            let ends = (ip.src_addr(), ip.dst_addr());
            return self.carried_of_segment::<V6>(direction, uplink, ends, ip.from(40));
        }
        let ip = Ipv4Packet::new_checked(packet).ok()?;
        if ip.protocol() != PROTO_TCP || ip.is_fragment() {
            return None;
        }
        let ends = (ip.src_addr(), ip.dst_addr());
        self.carried_of_segment::<V4>(direction, uplink, ends, ip.payload())
    }

    /// [`TcFastPath::carried_of_reset`] of the TCP segment `tcp` between `ends`.
    fn carried_of_segment<F: Mapped>(
        &self,
        direction: Direction,
        uplink: UplinkId,
        (src, dst): (F::Addr, F::Addr),
        tcp: &[u8],
    ) -> Option<Carried> {
        let segment = TcpSegment::new_checked(tcp).ok()?;
        if segment.flags() & tcp::RST == 0 {
            return None;
        }
        let (outbound, inbound) = F::maps(self);
        let ports = (segment.src_port(), segment.dst_port());
        let (out, back) = match direction {
            Direction::Outbound => {
                let out = lock(outbound)
                    .get(&F::key(src, dst, ports, PROTO_TCP, 0), 0)
                    .ok()?;
                let (ext_addr, ext_port, r) = F::value_parts(&out);
                let ifindex = self.uplinks.get(usize::from(r.uplink))?.ifindex();
                let back_key = F::key(dst, ext_addr, (ports.1, ext_port), PROTO_TCP, ifindex);
                let back = lock(inbound).get(&back_key, 0).ok();
                (Some(out), back)
            }
            Direction::Inbound => {
                let ifindex = self.uplinks.get(usize::from(uplink))?.ifindex();
                let back = lock(inbound)
                    .get(&F::key(src, dst, ports, PROTO_TCP, ifindex), 0)
                    .ok()?;
                let (lan_addr, lan_port, _) = F::value_parts(&back);
                let out_key = F::key(lan_addr, src, (lan_port, ports.0), PROTO_TCP, 0);
                let out = lock(outbound).get(&out_key, 0).ok();
                (out, Some(back))
            }
        };
        let now = monotonic_ns();
        [(out, Direction::Outbound), (back, Direction::Inbound)]
            .into_iter()
            .filter_map(|(v, d)| Some(carried_one::<F>(&v?, d, now)))
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
fn read_map<F: Mapped>(
    fd: BorrowedFd<'_>,
    locked: &super::FlowMap<F>,
) -> io::Result<Vec<(F::Key, F::Value)>> {
    let mut keys = vec![F::Key::default(); BATCH];
    let mut values = vec![F::Value::default(); BATCH];
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
        // (the #[repr(C)] mirrors of struct flow_key and struct flow_value, or of their IPv6
        // kin, checked against the object's BTF by a test), all alive and unaliased for the
        // call. The kernel writes `count` and `next` back, and nothing else outside them.
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
