//! The benchmark's timed traffic: the first exchange of new flows (each request from a socket
//! of its own, as a DNS lookup's), and small UDP datagrams at a fixed rate (the offered load
//! the cost per gigabyte is measured at).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use super::Result;

/// COUNT request/answer exchanges with the reflector at DST, each from a new socket (a new
/// flow through the gateway), PAUSE apart; prints each round-trip time in microseconds
/// ("rtt US") and then "answered N of COUNT p50 US p99 US".
pub fn udp_first(dst: SocketAddrV4, count: u32, pause: Duration) -> Result<()> {
    let mut rtts = Vec::with_capacity(count as usize);
    let mut buf = [0u8; 512];
    for i in 0..count {
        let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(1)))
            .map_err(|e| e.to_string())?;
        s.connect(dst).map_err(|e| format!("connect {dst}: {e}"))?;
        let request = format!("first {i}");
        let start = Instant::now();
        s.send(request.as_bytes())
            .map_err(|e| format!("send to {dst}: {e}"))?;
        // the reflector answers "SEEN ip:port" and the request: wait for this request's
        if let Ok(n) = s.recv(&mut buf)
            && buf[..n].ends_with(request.as_bytes())
        {
            let us = start.elapsed().as_secs_f64() * 1e6;
            println!("rtt {us:.1}");
            rtts.push(us);
        }
        std::thread::sleep(pause);
    }
    let (p50, p99) = percentiles(&mut rtts);
    println!(
        "answered {} of {count} p50 {p50:.1} p99 {p99:.1}",
        rtts.len()
    );
    Ok(())
}

/// The 50th and 99th percentiles (nearest rank) of `v`, NaN if empty.
fn percentiles(v: &mut [f64]) -> (f64, f64) {
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    v.sort_by(|a, b| a.total_cmp(b));
    let at = |p: f64| v[(((v.len() - 1) as f64) * p).round() as usize];
    (at(0.5), at(0.99))
}

/// Sends PPS datagrams a second of PAYLOAD bytes over FLOWS flows (one per destination
/// address from DST up) for SECONDS, in batches every millisecond, and prints "sent N
/// seconds S rate R". A batch the kernel refuses is not sent again: the rate is an offer.
pub fn udp_paced(dst: Ipv4Addr, flows: u32, payload: usize, pps: u64, seconds: f64) -> Result<()> {
    if flows == 0 || pps == 0 {
        return Err("--flows and --pps must be at least 1".into());
    }
    let data = vec![0x5au8; payload];
    let sockets = (0..flows)
        .map(|i| {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.connect((Ipv4Addr::from(u32::from(dst) + i), 5001))?;
            Ok(s)
        })
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| e.to_string())?;
    let tick = Duration::from_millis(1);
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(seconds);
    let mut offered = 0u64;
    let mut sent = 0u64;
    let mut next = start;
    let mut flow = 0usize;
    while next < end {
        // what should have gone by now; a late tick sends its share and the missed ones
        let due = (next - start).as_secs_f64() * pps as f64;
        while (offered as f64) < due {
            let n = (due as u64 - offered).clamp(1, wanlb::io::batch::MAX_BATCH as u64);
            let s = &sockets[flow % sockets.len()];
            flow += 1;
            sent += wanlb::io::batch::send_copies(s, &data, n as usize).unwrap_or(0) as u64;
            offered += n;
        }
        next += tick;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} seconds {took:.3} rate {:.0}",
        sent as f64 / took
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::percentiles;

    #[test]
    fn percentiles_by_nearest_rank() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentiles(&mut v), (51.0, 99.0));
        assert!(percentiles(&mut []).0.is_nan());
    }
}
