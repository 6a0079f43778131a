//! Checks end to end: exchanges, the spread of new flows over the lines, TCP and big UDP
//! transfers compared byte for byte.

use super::*;

/// A UDP header and `payload` from `src` to `dst`, with the checksum computed here.
pub(crate) fn udp_datagram(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    Ipv4Packet::udp(*src.ip(), *dst.ip(), src.port(), dst.port(), payload).build_l4()
}

/// Sends `request` (again, up to 6 times, while no reply comes) and checks the reflector's
/// answer echoes it; returns the address the far end saw. With `raw`, the request leaves
/// through it with a checksum computed in software, from the address and port of `s`.
pub(crate) fn exchange(
    s: &UdpSocket,
    raw: Option<&RawUdp>,
    dst: SocketAddr,
    request: &str,
) -> Result<SocketAddr> {
    exchange_tries(s, raw, dst, request, 6)
}

/// An exchange, the request sent at most `tries` times (a read timeout apart).
pub(crate) fn exchange_tries(
    s: &UdpSocket,
    raw: Option<&RawUdp>,
    dst: SocketAddr,
    request: &str,
    tries: u32,
) -> Result<SocketAddr> {
    // with `raw`: the datagram, checksum included, built once from `s`'s address and port
    let raw = match (raw, dst, s.local_addr()) {
        (None, ..) => None,
        (Some(raw), SocketAddr::V4(d), Ok(SocketAddr::V4(local))) => {
            Some((raw, d, udp_datagram(local, d, request.as_bytes())))
        }
        (Some(_), ..) => return Err("raw sends need IPv4 and a connected socket".into()),
    };
    let mut buf = [0u8; 2048];
    for _ in 0..tries {
        let sent = match &raw {
            Some((raw, d, datagram)) => raw.send_to(datagram, *d),
            None => s.send_to(request.as_bytes(), dst),
        };
        sent.map_err(|e| format!("send to {dst}: {e}"))?;
        let Ok((n, from)) = s.recv_from(&mut buf) else {
            continue;
        };
        let text = String::from_utf8_lossy(&buf[..n]);
        let Some((first, rest)) = text.split_once('\n') else {
            return Err(format!("{dst}: bad reply {text:?}"));
        };
        if from != dst || rest != request {
            return Err(format!(
                "{dst}: reply from {from} echoed {rest:?}, expected {request:?}"
            ));
        }
        let seen = first.strip_prefix("SEEN ").and_then(|a| a.parse().ok());
        return seen.ok_or(format!("{dst}: bad reply {first:?}"));
    }
    Err(format!("{dst}: no reply"))
}

/// Exchanges `count` numbered requests on `s`; the far end must see one address throughout.
pub(crate) fn exchanges(
    s: &UdpSocket,
    raw: Option<&RawUdp>,
    dst: SocketAddr,
    (count, tries): (u32, u32),
) -> Result<Option<SocketAddr>> {
    let mut seen: Option<SocketAddr> = None;
    for i in 0..count {
        let now = exchange_tries(s, raw, dst, &format!("exchange {i} of {count}"), tries)?;
        if *seen.get_or_insert(now) != now {
            return Err(format!(
                "exchange {i}: the far end saw {now}, before it saw {}",
                seen.unwrap_or(now)
            ));
        }
    }
    Ok(seen)
}

pub(crate) fn udp_check(
    dst: SocketAddrV4,
    (count, tries): (u32, u32),
    software_checksum: bool,
) -> Result<()> {
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    let raw = if software_checksum {
        // the raw socket needs the source address the route gives: connect to learn it
        s.connect(dst).map_err(|e| e.to_string())?;
        Some(RawUdp::open().map_err(|e| format!("raw socket: {e}"))?)
    } else {
        None
    };
    let seen = exchanges(&s, raw.as_ref(), dst.into(), (count, tries))?;
    let via = seen.map_or("nothing".into(), |a| a.to_string());
    println!("ok {count} exchanges answered intact, all via {via}");
    Ok(())
}

pub(crate) fn spread(
    dst: IpAddr,
    count: u32,
    flows: u32,
    port: u16,
    one_socket: bool,
    first_port: Option<u16>,
) -> Result<()> {
    let mut next_port = first_port;
    let mut summary: Vec<(IpAddr, u32, u32)> = Vec::new();
    let v6 = dst.is_ipv6();
    let shared = if one_socket {
        Some(reply_socket_of(v6, 0)?)
    } else {
        None
    };
    for i in 0..count {
        let d = match dst {
            IpAddr::V4(a) => SocketAddr::from((Ipv4Addr::from(u32::from(a) + i), port)),
            IpAddr::V6(a) => SocketAddr::from((
                std::net::Ipv6Addr::from(u128::from(a) + u128::from(i)),
                port,
            )),
        };
        let mut seen_here: Vec<IpAddr> = Vec::new();
        for _ in 0..flows {
            let seen = match &shared {
                Some(s) => exchange(s, None, d, &format!("probe {d}"))?,
                None => {
                    let local = next_port.unwrap_or(0);
                    next_port = next_port.map(|p| p.wrapping_add(1));
                    exchange(&reply_socket_of(v6, local)?, None, d, &format!("probe {d}"))?
                }
            };
            println!("{} {}", d.ip(), seen);
            if seen.is_ipv6() != v6 {
                return Err(format!("{d}: {seen} seen, of another family"));
            }
            let ip = seen.ip();
            let entry = match summary.iter_mut().find(|e| e.0 == ip) {
                Some(e) => e,
                None => {
                    summary.push((ip, 0, 0));
                    summary.last_mut().expect("just pushed")
                }
            };
            entry.2 += 1;
            if !seen_here.contains(&ip) {
                seen_here.push(ip);
                entry.1 += 1;
            }
        }
    }
    summary.sort();
    for (ip, dests, flows) in summary {
        println!("via {ip}: {dests} destinations, {flows} flows");
    }
    Ok(())
}

/// xorshift64 stream: the sender and the checker make the same bytes from the same seed.
pub(crate) struct Stream(pub(crate) u64);

impl Stream {
    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

pub(crate) fn tcp_check(dst: SocketAddr, bytes: u64) -> Result<()> {
    const SEED: u64 = 0x9e37_79b9_7f4a_7c15;
    const CHUNK: usize = 64 * 1024;
    let conn = TcpStream::connect_timeout(&dst, Duration::from_secs(5))
        .map_err(|e| format!("connect {dst}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut writer = conn.try_clone().map_err(|e| e.to_string())?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        let mut s = Stream(SEED);
        let mut buf = vec![0u8; CHUNK];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(CHUNK as u64) as usize;
            s.fill(&mut buf[..n]);
            writer.write_all(&buf[..n])?;
            left -= n as u64;
        }
        writer.shutdown(std::net::Shutdown::Write)
    });
    let mut reader = conn;
    let mut expected = Stream(SEED);
    let (mut got, mut want) = (vec![0u8; CHUNK], vec![0u8; CHUNK]);
    let mut received = 0u64;
    let mut hash = 0xcbf2_9ce4_8422_2325u64; // FNV-1a of the stream, for the log
    while received < bytes {
        // Compare in the sender's chunking, whatever sizes the reads return.
        let n = (bytes - received).min(CHUNK as u64) as usize;
        reader
            .read_exact(&mut got[..n])
            .map_err(|e| format!("after {received} bytes: {e}"))?;
        expected.fill(&mut want[..n]);
        if got[..n] != want[..n] {
            let at = got.iter().zip(&want).position(|(a, b)| a != b).unwrap_or(0);
            return Err(format!("byte {} differs", received + at as u64));
        }
        for b in &got[..n] {
            hash = (hash ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
        }
        received += n as u64;
    }
    sender
        .join()
        .map_err(|_| "sender panicked".to_string())?
        .map_err(|e| format!("send: {e}"))?;
    println!("ok {received} bytes echoed intact, fnv1a {hash:016x}");
    Ok(())
}

pub(crate) fn udp_big_check(
    dst: SocketAddrV4,
    size: usize,
    count: u32,
    alternate_small: bool,
) -> Result<()> {
    if !(16..=MAX_REFLECTED).contains(&size) {
        return Err(format!("--size must be 16 to {MAX_REFLECTED}"));
    }
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    let dont = libc::IP_PMTUDISC_DONT;
    // SAFETY: `dont` is a live c_int and its size is passed.
    let set = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            (&dont as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if set != 0 {
        return Err(format!(
            "IP_MTU_DISCOVER: {}",
            std::io::Error::last_os_error()
        ));
    }
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let mut buf = vec![0u8; 1 << 16];
    let mut via: Option<String> = None;
    for i in 0..count {
        let size = if alternate_small && i % 2 == 0 {
            100
        } else {
            size
        };
        let mut data = format!("big {i} of {count} ").into_bytes();
        let head = data.len().min(size);
        data.resize(size, 0);
        Stream(0x9e37_79b9_7f4a_7c15 ^ u64::from(i)).fill(&mut data[head..]);
        let mut answered = false;
        'tries: for _ in 0..6 {
            s.send_to(&data, dst)
                .map_err(|e| format!("datagram {i}: send to {dst}: {e}"))?;
            // an answer to an earlier try of an earlier datagram may still come: skip it
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let reply = &buf[..n];
                let Some(nl) = reply.iter().position(|b| *b == b'\n') else {
                    return Err(format!("datagram {i}: reply without SEEN line"));
                };
                let body = &reply[nl + 1..];
                if from != SocketAddr::V4(dst) || !body.starts_with(&data[..head]) {
                    continue;
                }
                if body != data.as_slice() {
                    let at = body.iter().zip(&data).position(|(a, b)| a != b);
                    return Err(format!(
                        "datagram {i}: {} bytes came back for {size}, first difference at {at:?}",
                        body.len()
                    ));
                }
                let seen = String::from_utf8_lossy(&reply[..nl]);
                let seen = seen.strip_prefix("SEEN ").unwrap_or(&seen).to_string();
                if let Some(before) = via.as_ref().filter(|v| **v != seen) {
                    return Err(format!(
                        "datagram {i}: the far end saw {seen}, before it saw {before}"
                    ));
                }
                via = Some(seen);
                answered = true;
                break 'tries;
            }
        }
        if !answered {
            return Err(format!("datagram {i} of {size} bytes: no reply from {dst}"));
        }
    }
    let via = via.unwrap_or_else(|| "nothing".into());
    let small = if alternate_small {
        format!(", {} of them 100 bytes", count.div_ceil(2))
    } else {
        String::new()
    };
    println!(
        "ok {count} datagrams of {size} bytes{small} sent with DF off, answered intact, all via {via}"
    );
    Ok(())
}
