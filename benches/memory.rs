//! Bytes of heap per flow at 1 million flows (or FLOWS), counted by a wrapping global
//! allocator. Run: cargo bench --bench memory (FLOWS=4000000 cargo bench --bench memory for
//! the 4 million the README states a figure for).

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use wanlb::engine::{L4Checksum, Timestamp};

struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(new_size, Ordering::Relaxed);
        LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// How many flows each case opens: FLOWS from the environment, or a million.
fn flows() -> u32 {
    std::env::var("FLOWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Heap bytes per flow after opening `flows()` flows, flow i going to `dst(i)`.
fn per_flow(label: &str, dst: impl Fn(u32) -> (u32, u16)) {
    let count = flows();
    let before = LIVE.load(Ordering::Relaxed);
    let e = engine();
    let now = Timestamp::from_millis(1);
    for i in 0..count {
        let (addr, port) = dst(i);
        let mut p = udp(LAN_BASE + 10 + i % 64, addr, 40000, port);
        e.outbound(now, &mut p, &mut L4Checksum::Complete);
    }
    assert_eq!(e.flow_count(), count as usize, "every flow opened");
    let bytes = LIVE.load(Ordering::Relaxed) - before;
    println!(
        "{label}: {} flows, {} destinations, {} mappings: {:.1} MiB, {:.0} bytes per flow",
        e.flow_count(),
        e.destination_count(),
        e.mapping_count(),
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / f64::from(count)
    );
}

fn main() {
    // criterion-style arguments (--bench) are ignored; this bench prints one line per case
    per_flow(
        "flows to 65,536 destinations, as many ports each as needed",
        |i| (INTERNET_BASE + i % 65536, 20000 + (i / 65536) as u16),
    );
    per_flow("flows to as many destinations", |i| {
        (INTERNET_BASE + i, 443)
    });
}
