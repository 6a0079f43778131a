//! The engine alone, on one core: packets/s through a warm table in each direction, and new
//! flows/s.

mod common;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use std::hint::black_box;
use std::time::{Duration, Instant};

use common::*;
use wanlb::engine::{L4Checksum, Timestamp, Verdict};

const FLOWS: u32 = 10_000;

fn warm_table(c: &mut Criterion) {
    let e = engine();
    let now = Timestamp::from_millis(1);
    // 10,000 flows from 2,000 LAN endpoints (100 hosts x 20 ports) to 10,000 destinations
    let outbound: Vec<[u8; 46]> = (0..FLOWS)
        .map(|i| {
            udp(
                LAN_BASE + 10 + i % 100,
                INTERNET_BASE + i,
                20000 + (i % 2000 / 100) as u16,
                443,
            )
        })
        .collect();
    let mut inbound = Vec::new();
    for p in &outbound {
        let mut q = *p;
        let Verdict::Uplink(u) = e.outbound(now, &mut q, &mut L4Checksum::Complete) else {
            panic!("dropped")
        };
        inbound.push((u, reply(&q)));
    }

    let mut g = c.benchmark_group("warm table, 10k flows");
    g.throughput(Throughput::Elements(1));
    let mut i = 0usize;
    g.bench_function("outbound packet", |b| {
        b.iter(|| {
            let mut p = outbound[i % outbound.len()];
            i += 1;
            black_box(e.outbound(now, &mut p, &mut L4Checksum::Complete))
        })
    });
    g.bench_function("inbound packet", |b| {
        b.iter(|| {
            let (u, mut p) = inbound[i % inbound.len()];
            i += 1;
            black_box(e.inbound(now, u, &mut p, &mut L4Checksum::Complete))
        })
    });
    g.finish();
}

fn new_flows(c: &mut Criterion) {
    let mut g = c.benchmark_group("new flows");
    g.throughput(Throughput::Elements(1));
    g.measurement_time(Duration::from_secs(5));
    // Each flow a new destination (so also a new affinity binding and a weighted pick), from
    // 64 LAN endpoints; the table starts empty and grows as it would.
    g.bench_function("new UDP flow", |b| {
        b.iter_custom(|iters| {
            let e = engine();
            let now = Timestamp::from_millis(1);
            let packets: Vec<[u8; 46]> = (0..iters as u32)
                .map(|i| {
                    udp(
                        LAN_BASE + 10,
                        INTERNET_BASE + i,
                        30000 + (i % 64) as u16,
                        53,
                    )
                })
                .collect();
            let start = Instant::now();
            for p in &packets {
                let mut p = *p;
                black_box(e.outbound(now, &mut p, &mut L4Checksum::Complete));
            }
            let took = start.elapsed();
            assert_eq!(e.flow_count() as u64, iters);
            took
        })
    });
    g.finish();
}

criterion_group!(benches, warm_table, new_flows);
criterion_main!(benches);
