//! UDP sinks, floods, streams and records: the traffic the netns tests and benchmarks send.

use super::*;

pub(crate) fn udp_sink(cidr: &str, port: u16) -> Result<()> {
    use std::sync::atomic::Ordering;
    let stop = stop_flag()?;
    let mut sockets = Vec::new();
    for a in prefix_addrs(cidr)? {
        sockets.push(UdpSocket::bind((a, port)).map_err(|e| format!("UDP {a}:{port}: {e}"))?);
    }
    let fds: Vec<_> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    let mut bufs = vec![[0u8; 2048]; 64];
    let mut poller = wanlb::io::Poller::new(&fds);
    let mut received = 0u64;
    let mut first = None;
    let mut last = std::time::Instant::now();
    println!("listening");
    let _ = std::io::stdout().flush();
    while !stop.load(Ordering::Relaxed) {
        poller.wait(100).map_err(|e| e.to_string())?;
        for (_, s) in sockets
            .iter()
            .enumerate()
            .filter(|(i, _)| poller.is_ready(*i))
        {
            loop {
                let n = wanlb::io::batch::recv_many(s, &mut bufs).map_err(|e| e.to_string())?;
                if n == 0 {
                    break;
                }
                received += n as u64;
                last = std::time::Instant::now();
                first.get_or_insert(last);
            }
        }
    }
    let span = first.map_or(0.0, |f| (last - f).as_secs_f64());
    println!("received {received} span {span:.3}");
    Ok(())
}

pub(crate) fn udp_flood(
    dst: Ipv4Addr,
    flows: u32,
    payload: usize,
    seconds: f64,
    port: u16,
) -> Result<()> {
    const BATCH: usize = wanlb::io::batch::MAX_BATCH;
    let data = vec![0x5au8; payload];
    let mut sockets = Vec::new();
    for i in 0..flows {
        let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
        s.connect((Ipv4Addr::from(u32::from(dst) + i), port))
            .map_err(|e| e.to_string())?;
        sockets.push(s);
    }
    let start = std::time::Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    let mut sent = 0u64;
    while std::time::Instant::now() < deadline {
        for s in &sockets {
            // a full queue (ENOBUFS) or an unreachable answer just means "try the next flow"
            sent += wanlb::io::batch::send_copies(s, &data, BATCH).unwrap_or(0) as u64;
        }
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} seconds {took:.3} rate {:.0}",
        sent as f64 / took
    );
    Ok(())
}

pub(crate) fn udp_new_flows(dst: Ipv4Addr, addrs: u32, count: u32) -> Result<()> {
    const BATCH: u32 = wanlb::io::batch::MAX_BATCH as u32;
    if addrs == 0 || u64::from(count) > u64::from(addrs) * 40_000 {
        return Err("--addrs must be at least 1 and --count at most 40000 per address".into());
    }
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    let flow = |i: u32| {
        SocketAddrV4::new(
            Ipv4Addr::from(u32::from(dst) + i % addrs),
            20000 + (i / addrs) as u16,
        )
    };
    let start = std::time::Instant::now();
    let mut sent = 0u32;
    let mut dsts = Vec::with_capacity(BATCH as usize);
    while sent < count {
        dsts.clear();
        dsts.extend((sent..count.min(sent + BATCH)).map(flow));
        match wanlb::io::batch::send_to_each(&s, b"new flow", &dsts) {
            Ok(n) => sent += n as u32,
            // the qdisc or socket buffer is full: let it drain
            Err(_) => std::thread::sleep(Duration::from_micros(50)),
        }
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} seconds {took:.3} rate {:.0}",
        f64::from(sent) / took
    );
    Ok(())
}

pub(crate) fn udp_gso_check(
    dst: SocketAddrV4,
    segments: u16,
    size: u16,
    warmup: u32,
) -> Result<()> {
    if segments == 0 || size < 16 || u32::from(segments) * u32::from(size) > 60_000 {
        return Err("--segments x --size must be at most 60000, --size at least 16".into());
    }
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    exchanges(&s, None, dst.into(), (warmup, 6))?;
    s.connect(dst).map_err(|e| e.to_string())?;
    wanlb::io::batch::set_udp_segment(&s, size).map_err(|e| format!("UDP_SEGMENT: {e}"))?;
    // segment i: its number, then a byte pattern of its own
    let mut data = Vec::new();
    for i in 0..segments {
        let mut seg = format!("segment {i:05} ").into_bytes();
        seg.resize(usize::from(size), b'a' + (i % 26) as u8);
        data.extend_from_slice(&seg);
    }
    s.send(&data).map_err(|e| format!("send: {e}"))?;
    let mut seen = vec![false; usize::from(segments)];
    let mut buf = [0u8; 4096];
    let mut via = String::new();
    while seen.iter().any(|x| !x) {
        let n = s
            .recv(&mut buf)
            .map_err(|e| format!("after {} replies: {e}", seen.iter().filter(|x| **x).count()))?;
        let reply = &buf[..n];
        let nl = reply
            .iter()
            .position(|b| *b == b'\n')
            .ok_or("reply without SEEN line")?;
        via = String::from_utf8_lossy(&reply[5..nl]).into_owned();
        let body = &reply[nl + 1..];
        let i: usize = std::str::from_utf8(&body[8..13])
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or("bad segment number")?;
        let start = i * usize::from(size);
        if i >= seen.len() || body != &data[start..start + usize::from(size)] {
            return Err(format!("segment {i} came back different"));
        }
        seen[i] = true;
    }
    println!(
        "ok {segments} segments of {size} bytes sent as one GSO packet, all answered intact, via {via}"
    );
    Ok(())
}

pub(crate) fn udp_stream(dst: SocketAddrV4, interval: Duration, seconds: f64) -> Result<()> {
    use std::sync::atomic::Ordering;
    let run = Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("--seconds {seconds}: not a duration"))?;
    let stop = stop_flag()?;
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    let mut next = Instant::now();
    let end = next.checked_add(run); // None: past the end of time, so until a signal
    let mut sent = 0u64;
    while !stop.load(Ordering::Relaxed) && end.is_none_or(|end| next < end) {
        let now = Instant::now();
        if now < next {
            // short naps, so a signal is noticed soon whatever the interval
            std::thread::sleep((next - now).min(Duration::from_millis(50)));
            continue;
        }
        let mut msg = [0u8; 16];
        msg[..8].copy_from_slice(&sent.to_be_bytes());
        msg[8..].copy_from_slice(&monotonic_ns().to_be_bytes());
        // unconnected, so an ICMP error never fails a later send; a send that fails (a full
        // queue) is tried again, same number, at the next tick
        if s.send_to(&msg, dst).is_ok() {
            sent += 1;
        }
        next = next
            .checked_add(interval)
            .unwrap_or(now + Duration::from_secs(86400));
        if next < now {
            next = now; // fallen behind (descheduled): no burst to catch up
        }
    }
    println!("sent {sent}");
    Ok(())
}

pub(crate) fn udp_record(bind: SocketAddrV4) -> Result<()> {
    use std::sync::atomic::Ordering;
    let stop = stop_flag()?;
    let s = UdpSocket::bind(bind).map_err(|e| format!("UDP {bind}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(100)))
        .map_err(|e| e.to_string())?;
    println!("listening");
    let _ = std::io::stdout().flush();
    let mut out = std::io::stdout().lock();
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        let (n, from) = match s.recv_from(&mut buf) {
            Ok(got) => got,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                continue;
            }
            Err(e) => return Err(format!("receive on {bind}: {e}")),
        };
        let at = monotonic_ns();
        let Some(seq) = buf[..n].first_chunk::<8>().filter(|_| n >= 16) else {
            continue; // not from udp-stream
        };
        writeln!(out, "{} {from} {at}", u64::from_be_bytes(*seq))
            .and_then(|()| out.flush())
            .map_err(|e| format!("stdout: {e}"))?;
    }
    Ok(())
}
