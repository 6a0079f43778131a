//! Hole punching, as peer-to-peer applications do it: learn the address and port the internet
//! sees a socket at (a STUN-like server), tell the peer, and send to the peer's until its
//! packets come through. Two LAN hosts behind wanlb doing this reach each other through an
//! uplink's address (hairpinning).

use std::io::{Read, Write};
use std::net::{SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use super::Result;

/// Prints the address and port the reflector at `dst` saw a datagram from `bind` come from.
pub fn udp_seen(bind: SocketAddrV4, dst: SocketAddrV4) -> Result<()> {
    let s = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    let seen = super::exchange(&s, None, dst.into(), "where do you see me?")?;
    println!("SEEN {seen}");
    Ok(())
}

/// What `udp-meet` heard: which of the peer's numbered datagrams, and how many from others.
struct Tally {
    peer: SocketAddrV4,
    got: Vec<bool>,
    stray: u32,
}

impl Tally {
    /// Counts a datagram; true if it came from the peer.
    fn take(&mut self, data: &[u8], from: SocketAddr) -> bool {
        if from != SocketAddr::V4(self.peer) {
            self.stray += 1;
            return false;
        }
        let text = String::from_utf8_lossy(data);
        let mut words = text.split_whitespace().skip(1);
        if words.next() == Some("data")
            && let Some(slot) = words
                .next()
                .and_then(|i| i.parse::<usize>().ok())
                .and_then(|i| self.got.get_mut(i))
        {
            *slot = true;
        }
        true
    }
}

/// From `bind`, sends to `peer` every 100 ms until a datagram comes from `peer` (the first
/// ones may be filtered: the peer has not sent to this side yet), then `count` numbered
/// datagrams 10 ms apart, and counts the peer's for a second more. Prints "met PEER", then
/// "got K of COUNT" (distinct numbered datagrams from the peer) and "stray N" (datagrams
/// from anyone else). Fails if nothing came from the peer within `seconds`.
pub fn udp_meet(bind: SocketAddrV4, peer: SocketAddrV4, count: u32, seconds: f64) -> Result<()> {
    let s = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_millis(10)))
        .map_err(|e| e.to_string())?;
    let name = bind.to_string();
    let send = |what: &str| {
        s.send_to(format!("{name} {what}").as_bytes(), peer)
            .map_err(|e| format!("send to {peer}: {e}"))
    };
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let mut tally = Tally {
        peer,
        got: vec![false; count as usize],
        stray: 0,
    };
    let mut buf = [0u8; 512];
    // meet
    let mut next = Instant::now();
    let mut punching = false;
    loop {
        if Instant::now() >= deadline {
            return Err(format!("nothing came from {peer} in {seconds} s"));
        }
        if Instant::now() >= next {
            next += Duration::from_millis(100);
            send("meet")?;
            if !punching {
                punching = true;
                println!("punching");
                let _ = std::io::stdout().flush();
            }
        }
        if let Ok((n, from)) = s.recv_from(&mut buf)
            && tally.take(&buf[..n], from)
        {
            break;
        }
    }
    println!("met {peer}");
    let _ = std::io::stdout().flush();
    // then the numbered datagrams, and a second more to hear the rest of the peer's
    let mut next = Instant::now();
    let mut sent = 0;
    let mut linger_until = (count == 0).then(|| Instant::now() + Duration::from_secs(1));
    while linger_until.is_none_or(|t| Instant::now() < t) {
        if sent < count && Instant::now() >= next {
            next += Duration::from_millis(10);
            send(&format!("data {sent}"))?;
            sent += 1;
            if sent == count {
                linger_until = Some(Instant::now() + Duration::from_secs(1));
            }
        }
        if let Ok((n, from)) = s.recv_from(&mut buf) {
            tally.take(&buf[..n], from);
        }
    }
    let k = tally.got.iter().filter(|g| **g).count();
    println!("got {k} of {count}");
    println!("stray {}", tally.stray);
    Ok(())
}

/// From `bind`, sends to `dst` on a connected socket until the ICMP port unreachable that
/// answers it comes back (the socket reports "connection refused"): prints "refused". Fails
/// if an answer comes instead, or nothing after three tries.
pub fn udp_refused(bind: SocketAddrV4, dst: SocketAddrV4) -> Result<()> {
    let s = UdpSocket::bind(bind).map_err(|e| format!("bind {bind}: {e}"))?;
    s.connect(dst).map_err(|e| format!("connect {dst}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(1)))
        .map_err(|e| e.to_string())?;
    let mut buf = [0u8; 512];
    for _ in 0..3 {
        // a refusal may also show on the send after it
        match s.send(b"anyone there?").and_then(|_| s.recv(&mut buf)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                println!("refused");
                return Ok(());
            }
            Ok(_) => return Err(format!("{dst} answered")),
            Err(_) => {}
        }
    }
    Err(format!("no port unreachable from {dst}"))
}

/// Prints the address and port the server at `dst` (`serve --tcp-seen`) saw a connection
/// from `bind` come from.
pub fn tcp_seen(bind: SocketAddrV4, dst: SocketAddrV4) -> Result<()> {
    let mut conn = connect_from(bind, dst, Duration::from_secs(5))
        .map_err(|e| format!("connect {bind} -> {dst}: {e}"))?;
    conn.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    // the server closes first, so this side ends without TIME-WAIT and its port is free again
    conn.read_to_string(&mut line)
        .map_err(|e| format!("read from {dst}: {e}"))?;
    print!("{line}");
    Ok(())
}

/// The answer of `serve --tcp-seen` to one connection.
pub fn tcp_seen_answer(mut conn: TcpStream) {
    if let Ok(peer) = conn.peer_addr() {
        let _ = writeln!(conn, "SEEN {peer}");
    }
}

/// From `bind`, connects to `peer` again and again (each attempt's SYN punches this side's
/// hole; the peer's, once it comes, meets it: a simultaneous open) until connected or
/// `seconds` have passed; then sends a line naming `bind` and `bytes` bytes of a known stream,
/// and reads the peer's. Prints "met PEER", "from WHO" (the line the peer sent) and "ok BYTES
/// bytes from PEER intact".
pub fn tcp_meet(bind: SocketAddrV4, peer: SocketAddrV4, bytes: u64, seconds: f64) -> Result<()> {
    const SEED: u64 = 0x5eed_0f7e_110c_0d17;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    println!("punching");
    let _ = std::io::stdout().flush();
    let conn = loop {
        match connect_from(bind, peer, Duration::from_millis(1500)) {
            Ok(conn) => break conn,
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(200)),
            Err(e) => return Err(format!("{bind} -> {peer}: {e}")),
        }
    };
    let seen = conn.peer_addr().map_err(|e| e.to_string())?;
    if seen != SocketAddr::V4(peer) {
        return Err(format!("connected to {seen}, not {peer}"));
    }
    println!("met {peer}");
    let _ = std::io::stdout().flush();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    let mut writer = conn.try_clone().map_err(|e| e.to_string())?;
    let sender = std::thread::spawn(move || -> std::io::Result<()> {
        writer.write_all(format!("{bind}\n").as_bytes())?;
        let mut s = super::Stream(SEED);
        let mut buf = vec![0u8; 64 * 1024];
        let mut left = bytes;
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            s.fill(&mut buf[..n]);
            writer.write_all(&buf[..n])?;
            left -= n as u64;
        }
        Ok(())
    });
    let mut reader = std::io::BufReader::new(conn);
    let mut who = String::new();
    std::io::BufRead::read_line(&mut reader, &mut who).map_err(|e| format!("read: {e}"))?;
    let who = who.trim_end();
    if who == bind.to_string() {
        return Err("this side's own stream came back".into());
    }
    println!("from {who}");
    let mut expected = super::Stream(SEED);
    let (mut got, mut want) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    let mut received = 0u64;
    while received < bytes {
        let n = (bytes - received).min(got.len() as u64) as usize;
        reader
            .read_exact(&mut got[..n])
            .map_err(|e| format!("after {received} bytes: {e}"))?;
        expected.fill(&mut want[..n]);
        if got[..n] != want[..n] {
            return Err(format!("the peer's stream differs after {received} bytes"));
        }
        received += n as u64;
    }
    sender
        .join()
        .map_err(|_| "sender panicked".to_string())?
        .map_err(|e| format!("send: {e}"))?;
    println!("ok {bytes} bytes from {peer} intact");
    Ok(())
}

/// A TCP connection from `local` (SO_REUSEADDR: the port may be held by a connection still
/// closing) to `peer`, waiting at most `timeout` (SO_SNDTIMEO bounds a blocking connect).
fn connect_from(
    local: SocketAddrV4,
    peer: SocketAddrV4,
    timeout: Duration,
) -> std::io::Result<TcpStream> {
    let os = |r: libc::c_int| {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    };
    // SAFETY: socket() with constant arguments; the result is checked, then owned.
    let fd = os(unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) })?;
    // SAFETY: `fd` is a socket just made and owned by nothing else.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let one: libc::c_int = 1;
    // SAFETY: `one` is a live c_int and its size is passed.
    os(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_REUSEADDR,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    })?;
    let wait = libc::timeval {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_usec: libc::suseconds_t::from(timeout.subsec_micros()),
    };
    // SAFETY: `wait` is a live timeval and its size is passed.
    os(unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_SNDTIMEO,
            (&wait as *const libc::timeval).cast(),
            std::mem::size_of::<libc::timeval>() as libc::socklen_t,
        )
    })?;
    let at = sockaddr(local);
    // SAFETY: `at` is a sockaddr_in whose size is passed.
    os(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&at as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })?;
    let to = sockaddr(peer);
    // SAFETY: `to` is a sockaddr_in whose size is passed.
    os(unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&to as *const libc::sockaddr_in).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        )
    })?;
    let conn = TcpStream::from(fd);
    conn.set_write_timeout(None)?;
    Ok(conn)
}

fn sockaddr(a: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: a.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from_ne_bytes(a.ip().octets()),
        },
        sin_zero: [0; 8],
    }
}
