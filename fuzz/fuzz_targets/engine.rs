//! Untrusted bytes from the LAN and from an uplink, through the engine in both checksum
//! states: nothing may panic, and whatever the engine forwards must still parse.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wanlb::engine::flow::Timeouts;
use wanlb::engine::limits::Limits;
use wanlb::engine::translate::check_transport;
use wanlb::engine::wire::Ipv4Packet;
use wanlb::engine::{
    CarriedFlows, Engine, EngineConfig, L4Checksum, Timestamp, UdpAffinity, UplinkConfig, Verdict,
};

fn engine() -> Engine {
    Engine::new(EngineConfig {
        uplinks: vec![
            UplinkConfig { name: "a".into(), addr: u32::from_be_bytes([198, 18, 1, 1]), weight: 2 , tier: 1},
            UplinkConfig { name: "b".into(), addr: u32::from_be_bytes([198, 18, 2, 1]), weight: 1 , tier: 1},
        ],
        pins: vec![],
        affinity_timeout_ms: 600_000,
        timeouts: Timeouts::default(),
        ports: (61000, 61007),
        seed: 1,
        reset_tcp_on_down: true,
        udp_affinity: UdpAffinity::Endpoint,
        // small, so that inputs reach every limit
        limits: Limits {
            max_flows: 6,
            max_flows_per_host: 3,
            max_ports_per_host: 2,
            max_embryonic_per_forward: 64,
            max_flows_per_forward_source: 2,
        },
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&control, rest)) = data.split_first() else { return };
    let e = engine();
    // Several packets in one input, separated by their first byte's length prefix, so the
    // fuzzer can open a flow and then answer it.
    let mut input = rest;
    let mut now = 0;
    while let Some((&len, tail)) = input.split_first() {
        let len = usize::from(len).min(tail.len());
        let mut pkt = tail[..len].to_vec();
        input = &tail[len..];
        now += 1000;
        let mut csum = if control & 1 == 0 { L4Checksum::Complete } else { L4Checksum::Partial };
        let verdict = if control & 2 == 0 {
            e.outbound(Timestamp::from_millis(now), &mut pkt, &mut csum)
        } else {
            e.inbound(Timestamp::from_millis(now), (control >> 2) % 3, &mut pkt, &mut csum)
        };
        if matches!(verdict, Verdict::Uplink(_) | Verdict::Tun | Verdict::Hairpin) {
            let ip = Ipv4Packet::new_checked(&pkt[..]).expect("forwarded a packet that no longer parses");
            assert!(ip.is_fragment() || check_transport(&ip).is_ok(), "forwarded a packet that no longer parses");
        }
        if control & 0x80 != 0 {
            e.expire(Timestamp::from_millis(now + 400_000), &CarriedFlows::NONE);
        }
    }
});
