//! A TCP connection held open (how it ends tells a failover), and HTTP requests, well formed
//! or not, to the control port.

use super::*;

pub(crate) fn tcp_hold(dst: SocketAddr, idle_after: Option<u64>) -> Result<()> {
    use std::sync::atomic::Ordering;
    const EVERY: Duration = Duration::from_millis(100);
    let stop = stop_flag()?;
    let mut conn = TcpStream::connect_timeout(&dst, Duration::from_secs(5))
        .map_err(|e| format!("connect {dst}: {e}"))?;
    let _ = conn.set_nodelay(true);
    let local = conn.local_addr().map_err(|e| e.to_string())?;
    println!("connected {local}");
    let _ = std::io::stdout().flush();
    let mut poller = wanlb::io::Poller::new(&[conn.as_raw_fd()]);
    let mut next = Instant::now();
    let mut count = 0u64;
    // written and not echoed yet; the next message goes out once this is back
    let mut pending: Vec<u8> = Vec::new();
    let mut buf = [0u8; 64];
    let failure = loop {
        if stop.load(Ordering::Relaxed) {
            println!("alive");
            return Ok(());
        }
        let now = Instant::now();
        if now >= next {
            next = now + EVERY;
            if pending.is_empty() && idle_after.is_none_or(|n| count < n) {
                let msg = count.to_be_bytes();
                count += 1;
                if let Err(e) = conn.write_all(&msg) {
                    break e;
                }
                pending.extend_from_slice(&msg);
            }
        }
        // sleep in poll, so a reset is seen the moment it arrives
        let wait = (next - now).min(EVERY);
        if let Err(e) = poller.wait(wait.as_millis() as i32) {
            return Err(format!("poll: {e}"));
        }
        if !poller.is_ready(0) {
            continue;
        }
        match conn.read(&mut buf) {
            Ok(0) => break std::io::ErrorKind::UnexpectedEof.into(),
            Ok(n) if pending.starts_with(&buf[..n]) => {
                pending.drain(..n);
            }
            Ok(_) => break std::io::ErrorKind::InvalidData.into(),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => break e,
        }
    };
    let at = monotonic_ns();
    if failure.raw_os_error() == Some(libc::ECONNRESET) {
        println!("reset {at}");
    } else {
        println!("error {:?} {at}", failure.kind());
    }
    Ok(())
}

pub(crate) fn http_get(addr: SocketAddrV4, path: &str) -> Result<()> {
    let mut s = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5))
        .map_err(|e| format!("connect {addr}: {e}"))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").map_err(|e| e.to_string())?;
    let mut reply = String::new();
    s.read_to_string(&mut reply).map_err(|e| e.to_string())?;
    let (head, body) = reply
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("not HTTP: {reply}"))?;
    if !head.lines().next().unwrap_or("").contains(" 200 ") {
        return Err(format!("{head}\n{body}"));
    }
    print!("{body}");
    Ok(())
}

pub(crate) fn http_raw(
    addr: SocketAddrV4,
    payload: &str,
    connections: usize,
    hold: bool,
    read_every: Option<Duration>,
) -> Result<()> {
    let mut held = Vec::new();
    for _ in 0..connections {
        match TcpStream::connect_timeout(&addr.into(), Duration::from_secs(5)) {
            Ok(s) => held.push(s),
            // a server out of descriptors leaves the rest in its backlog, unanswered
            Err(e) => {
                eprintln!("connection {}: {e}", held.len() + 1);
                break;
            }
        }
    }
    let first = held.first().ok_or("no connection")?;
    let mut sent = 0;
    for s in &held {
        s.set_nonblocking(true).map_err(|e| e.to_string())?;
        let mut rest = payload.as_bytes();
        while !rest.is_empty() {
            match (&*s).write(rest) {
                Ok(n) => {
                    rest = &rest[n..];
                    sent += n;
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(format!("sending: {e}")),
            }
        }
    }
    if hold {
        println!("holding {} connections, {sent} bytes sent", held.len());
        std::io::stdout().flush().map_err(|e| e.to_string())?;
        let Some(every) = read_every else {
            loop {
                std::thread::sleep(Duration::from_secs(3600));
            }
        };
        let mut buf = vec![0; 64 * 1024];
        loop {
            std::thread::sleep(every);
            for s in &held {
                // what is there, if anything; a closed connection reads 0
                let _ = (&*s).read(&mut buf);
            }
        }
    }
    first.set_nonblocking(false).map_err(|e| e.to_string())?;
    first
        .set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut reply = Vec::new();
    if let Err(e) = (&*first).read_to_end(&mut reply) {
        eprintln!("reading: {e}");
    }
    print!("{}", String::from_utf8_lossy(&reply));
    Ok(())
}
