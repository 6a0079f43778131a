//! Which worker takes a packet (root; namespaces): a flow stays with the worker it started
//! on, however its sender moves between CPUs, so it arrives in order.

mod common;

use std::time::Duration;

use common::*;

/// The CPUs this process may run on (wanlb and the testbed's processes inherit them).
fn allowed_cpus() -> Vec<String> {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let list = (status.lines())
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list");
    let number = |s: &str| s.trim().parse::<usize>().expect("a CPU number");
    list.split(',')
        .flat_map(|part| match part.split_once('-') {
            Some((a, b)) => (number(a)..=number(b)).collect::<Vec<_>>(),
            None => vec![number(part)],
        })
        .map(|c| c.to_string())
        .collect()
}

/// `name` from the TCP counters of namespace `ns` (the `TcpExt` lines of /proc/net/netstat).
fn tcp_ext(tb: &Testbed, ns: &str, name: &str) -> u64 {
    let text = tb.ok(ns, &["cat", "/proc/net/netstat"]);
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next().expect("names"), lines.next().expect("values"));
    let at = (names.split_whitespace())
        .position(|n| n == name)
        .unwrap_or_else(|| panic!("no {name} in {names}"));
    values
        .split_whitespace()
        .nth(at)
        .expect("value")
        .parse()
        .expect("number")
}

/// Moves every thread of process `pid` (in the testbed's namespaces, but one process table)
/// to `cpu`; it may have exited meanwhile.
fn move_to(pid: u32, cpu: &str) {
    let _ = std::process::Command::new("taskset")
        .args(["-a", "-p", "-c", cpu, &pid.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status();
}

/// Segments the receivers queued out of order (the LAN host's, the server's), while a TCP
/// echo of 400 MiB runs whose two senders are moved from CPU to CPU every few milliseconds.
/// A lost segment counts too (the ones behind it wait for it), once per loss.
fn out_of_order_while_senders_move(tb: &Testbed, inet: &Process, cpus: &[String]) -> (u64, u64) {
    let count = || {
        (
            tcp_ext(tb, "lan", "TCPOFOQueue"),
            tcp_ext(tb, "inet", "TCPOFOQueue"),
        )
    };
    let before = count();
    let bytes = (400u64 << 20).to_string();
    let mut echo = tb.spawn(
        "lan",
        &[
            probe(),
            "tcp-check",
            "--dst",
            "198.19.0.2:9000",
            "--bytes",
            &bytes,
        ],
    );
    let mut moves = 0usize;
    while echo.try_wait().expect("tcp-check").is_none() {
        // both ends of the stream, to opposite CPUs
        move_to(echo.id(), &cpus[moves % 2]);
        move_to(inet.child.id(), &cpus[(moves + 1) % 2]);
        moves += 1;
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = echo.wait_with_output().expect("tcp-check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!("ok {bytes} bytes echoed intact")),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        moves >= 20,
        "the echo ended before its senders moved: {moves} moves"
    );
    let after = count();
    (after.0 - before.0, after.1 - before.1)
}

/// Through the userspace path with one worker per CPU, a TCP echo whose senders keep moving
/// between CPUs arrives as much in order as through the kernel recipe. Were a flow's worker
/// chosen by the CPU each packet arrives on (what this guards against), a packet sent after
/// a move would overtake those queued for the other worker: hundreds of segments out of
/// order in each direction, where the kernel recipe and a flow kept on its worker show a
/// handful at most (losses on a busy machine).
#[test]
fn a_flow_whose_sender_moves_between_cpus_arrives_in_order() {
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        eprintln!("CPUs {cpus:?}: nothing to move between");
        return;
    }
    let tb = Testbed::up();
    let inet = tb.start_internet();
    tb.testbed("kernel");
    let kernel = out_of_order_while_senders_move(&tb, &inet, &cpus);
    tb.testbed("nokernel");
    let mut args = example_args();
    args.extend(["--offload", "off", "--workers", "2", "--steer", "cpu"].map(String::from));
    let gw = tb.start_wanlb(&args);
    let wanlb = out_of_order_while_senders_move(&tb, &inet, &cpus);
    eprintln!(
        "segments out of order (LAN host, server): kernel recipe {kernel:?}, wanlb {wanlb:?}"
    );
    // a margin for losses, far below what reordering at every move does
    const MARGIN: u64 = 10;
    assert!(
        wanlb.0 <= kernel.0 + MARGIN && wanlb.1 <= kernel.1 + MARGIN,
        "segments out of order (LAN host, server): kernel recipe {kernel:?}, wanlb {wanlb:?}"
    );
    assert!(!gw.output().contains("cannot steer"), "{}", gw.output());
}
