//! The steering program run by the kernel (BPF_PROG_TEST_RUN runs it on the caller's CPU).

use super::*;
use aya::programs::{TestRun, TestRunOptions};

/// Worker the program names for `packet`, run on `cpu`.
fn run_on(steering: &mut FlowSteering, cpu: usize, packet: &[u8]) -> u32 {
    let program = program(&mut steering.ebpf).expect("program");
    std::thread::scope(|s| {
        s.spawn(|| {
            crate::io::cpu::pin_current_thread(&[cpu]).expect("pin");
            let mut options = TestRunOptions::new();
            options.data_in = Some(packet);
            program.test_run(options).expect("test run").return_value
        })
        .join()
        .expect("thread")
    })
}

/// A UDP datagram from port `sport` (IPv4, or IPv6 with `v6`) behind an Ethernet header:
/// BPF_PROG_TEST_RUN takes the frame's link header off before a socket filter sees it, which
/// then starts at the IP header, as on the TUN device and an uplink's fanout.
fn udp(sport: u16, v6: bool) -> Vec<u8> {
    let (ethertype, ip) = if v6 {
        let mut ip = vec![0x60, 0, 0, 0, 0, 12, 17, 64];
        ip.extend_from_slice(&[0x20, 0x01, 0, 2, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x10]);
        ip.extend_from_slice(&[0x20, 0x01, 0, 2, 0, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        ip.extend_from_slice(&sport.to_be_bytes());
        ip.extend_from_slice(&[0, 53, 0, 12, 0, 0]);
        ip.extend_from_slice(b"ping");
        (0x86ddu16, ip)
    } else {
        let ip =
            wanlb_testkit::Ipv4Packet::udp([198, 18, 3, 10], [198, 19, 0, 1], sport, 53, b"ping")
                .build();
        (0x0800, ip)
    };
    let mut frame = vec![0u8; 12];
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(&ip);
    frame.resize(frame.len().max(64), 0);
    frame
}

fn two_cpus() -> Option<(usize, usize)> {
    let cpus = crate::io::cpu::allowed().expect("affinity");
    match cpus[..] {
        [a, b, ..] => Some((a, b)),
        _ => {
            eprintln!("one CPU: nothing to steer between");
            None
        }
    }
}

#[test]
fn a_flow_stays_with_the_worker_of_the_cpu_it_started_on() {
    let Some((first, second)) = two_cpus() else {
        return;
    };
    let mut steering = FlowSteering::load(1024).expect("loading the program (needs root)");
    for v6 in [false, true] {
        let flow = udp(4000, v6);
        assert_eq!(
            run_on(&mut steering, first, &flow) as usize,
            first,
            "v6 {v6}"
        );
        // its sender moved: the flow stays where it started
        assert_eq!(
            run_on(&mut steering, second, &flow) as usize,
            first,
            "v6 {v6}"
        );
        // a new flow from the second CPU goes to that CPU's worker
        let other = udp(4001, v6);
        assert_eq!(
            run_on(&mut steering, second, &other) as usize,
            second,
            "v6 {v6}"
        );
        assert_eq!(
            run_on(&mut steering, first, &other) as usize,
            second,
            "v6 {v6}"
        );
    }
    // what is not IP goes by the CPU it is on
    let junk = [0u8; 64];
    assert_eq!(run_on(&mut steering, second, &junk) as usize, second);
}

#[test]
fn with_the_map_full_new_flows_are_still_steered_and_the_oldest_forgotten() {
    let Some((first, second)) = two_cpus() else {
        return;
    };
    let mut steering = FlowSteering::load(64).expect("loading the program (needs root)");
    let oldest = udp(1000, false);
    assert_eq!(run_on(&mut steering, first, &oldest) as usize, first);
    // many more flows than the map holds, each steered to the CPU it is on (the kernel's LRU
    // lists are per CPU: flows from the same one push the oldest out)
    for port in 2000..2000 + 64 * 8 {
        let cpu = if port % 2 == 0 { first } else { second };
        assert_eq!(run_on(&mut steering, cpu, &udp(port, false)) as usize, cpu);
    }
    let map = steering.ebpf.map(MAP).expect("map");
    let held = aya::maps::HashMap::<_, [u8; 40], u32>::try_from(map)
        .expect("hash map")
        .keys()
        .count();
    assert!(held <= 64, "{held} flows held in a map of 64");
    // the oldest flow was forgotten: it goes by the CPU its next packet is on
    assert_eq!(run_on(&mut steering, second, &oldest) as usize, second);
}
