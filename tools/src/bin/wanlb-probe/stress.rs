//! The stress and soak harness's traffic (wanlb-bench stress, soak): `spray` floods new flows
//! from raw sockets (made-up sources included), `churn` opens new connections at a steady
//! rate as an honest host does and reports how many got through, `http-crowd` holds idle
//! connections to an HTTP server and pipelines requests on one more without reading.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use wanlb::io::batch::{MAX_BATCH, RawIp, send_to_each};
use wanlb_testkit::{Ipv4Packet, TCP_SYN, fix_checksums};

use super::Result;

/// An IPv4 prefix, as "ADDR/LEN" (or one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Prefix {
    first: u32,
    len: u32,
}

impl std::str::FromStr for Prefix {
    type Err = String;
    fn from_str(s: &str) -> Result<Prefix> {
        let (a, l) = s.split_once('/').unwrap_or((s, "32"));
        let base: Ipv4Addr = a
            .parse()
            .map_err(|_| format!("{s:?}: not an IPv4 prefix"))?;
        let len: u32 = l
            .parse()
            .ok()
            .filter(|l| (8..=32).contains(l))
            .ok_or(format!("{s:?}: the length must be 8 to 32"))?;
        Ok(Prefix {
            first: u32::from(base) & (u32::MAX << (32 - len)),
            len,
        })
    }
}

impl Prefix {
    fn size(self) -> u64 {
        1u64 << (32 - self.len)
    }

    /// Address `i` of the prefix (modulo its size).
    fn nth(self, i: u64) -> Ipv4Addr {
        Ipv4Addr::from(self.first.wrapping_add((i % self.size()) as u32))
    }
}

/// A port range, as "LOW-HIGH" (or one port).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ports {
    low: u16,
    high: u16,
}

impl std::str::FromStr for Ports {
    type Err = String;
    fn from_str(s: &str) -> Result<Ports> {
        let (l, h) = s.split_once('-').unwrap_or((s, s));
        let parse = |p: &str| p.parse::<u16>().map_err(|_| format!("{s:?}: not LOW-HIGH"));
        let (low, high) = (parse(l)?, parse(h)?);
        if low == 0 || low > high {
            return Err(format!("{s:?}: not LOW-HIGH with 0 < LOW <= HIGH"));
        }
        Ok(Ports { low, high })
    }
}

impl Ports {
    fn pick(self, r: u64) -> u16 {
        let span = u64::from(self.high - self.low) + 1;
        self.low + (r % span) as u16
    }
}

/// xorshift64*: fast, and good enough to spread flows over addresses and ports.
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        Rng(wanlb::io::monotonic_ns() | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum SprayKind {
    /// UDP datagrams, 64-byte frames.
    Udp,
    /// TCP SYNs.
    Syn,
}

#[derive(clap::Args)]
pub struct SprayArgs {
    #[arg(long, value_enum, default_value = "udp")]
    kind: SprayKind,
    /// Sources: every packet from an address of this prefix, at random (one address: all
    /// from it). The network and broadcast addresses of a prefix shorter than /31 are left out.
    #[arg(long, value_name = "CIDR")]
    src: Prefix,
    /// Addresses of --src never used (the real hosts and the gateway; repeatable).
    #[arg(long, value_name = "IP")]
    exclude: Vec<Ipv4Addr>,
    #[arg(long, value_name = "LOW-HIGH", default_value = "1024-65535")]
    src_ports: Ports,
    /// Destinations: an address of this prefix at random for every packet.
    #[arg(long, value_name = "CIDR")]
    dst: Prefix,
    #[arg(long, value_name = "LOW-HIGH", default_value = "20000-60000")]
    dst_ports: Ports,
    /// How long, at most: SIGINT or SIGTERM end it sooner (with its summary).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// Packets per second at most (0: as fast as the kernel takes them).
    #[arg(long, default_value_t = 0)]
    pps: u64,
}

/// Builds the flood's packets one batch at a time: each a new flow (source, ports and
/// destination at random), checksums computed.
struct Spray {
    template: Vec<u8>,
    sources: Vec<Ipv4Addr>,
    rng: Rng,
}

impl Spray {
    fn new(a: &SprayArgs) -> Result<Spray> {
        let (src, dst) = (a.src.nth(0), a.dst.nth(0));
        let template = match a.kind {
            SprayKind::Udp => Ipv4Packet::udp(src, dst, 1, 1, &[0x5a; 18]).build(),
            SprayKind::Syn => Ipv4Packet::tcp(src, dst, 1, 1, &[])
                .flags(TCP_SYN)
                .window(64240)
                .build(),
        };
        let skip_ends = a.src.len < 31;
        let sources: Vec<Ipv4Addr> = (0..a.src.size().min(1 << 16))
            .filter(|&i| !skip_ends || (i != 0 && i != a.src.size() - 1))
            .map(|i| a.src.nth(i))
            .filter(|s| !a.exclude.contains(s))
            .collect();
        if sources.is_empty() {
            return Err("--src leaves no source address once --exclude is applied".into());
        }
        Ok(Spray {
            template,
            sources,
            rng: Rng::seeded(),
        })
    }

    /// Writes a new packet into `p` (a copy of the template) and returns its destination.
    fn fill(&mut self, a: &SprayArgs, p: &mut Vec<u8>) -> SocketAddrV4 {
        p.clear();
        p.extend_from_slice(&self.template);
        let src = self.sources[(self.rng.next() % self.sources.len() as u64) as usize];
        let dst = a.dst.nth(self.rng.next());
        let r = self.rng.next();
        p[12..16].copy_from_slice(&src.octets());
        p[16..20].copy_from_slice(&dst.octets());
        p[20..22].copy_from_slice(&a.src_ports.pick(r).to_be_bytes());
        p[22..24].copy_from_slice(&a.dst_ports.pick(r >> 20).to_be_bytes());
        if a.kind == SprayKind::Syn {
            p[24..28].copy_from_slice(&((r >> 32) as u32).to_be_bytes());
        }
        fix_checksums(p);
        SocketAddrV4::new(dst, 0)
    }
}

pub fn spray(a: &SprayArgs) -> Result<()> {
    let stop = super::stop_flag()?;
    let raw = RawIp::open().map_err(|e| format!("raw socket: {e}"))?;
    let mut spray = Spray::new(a)?;
    let mut packets: Vec<Vec<u8>> = (0..MAX_BATCH).map(|_| Vec::with_capacity(64)).collect();
    let mut dsts = Vec::with_capacity(MAX_BATCH);
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(a.seconds);
    let (mut sent, mut refused) = (0u64, 0u64);
    loop {
        let now = Instant::now();
        if now >= deadline || stop.load(Ordering::Relaxed) {
            break;
        }
        let mut want = MAX_BATCH;
        if a.pps > 0 {
            let due = (now.duration_since(start).as_secs_f64() * a.pps as f64) as u64;
            want = want.min(due.saturating_sub(sent) as usize);
            if want == 0 {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
        }
        dsts.clear();
        for p in &mut packets[..want] {
            dsts.push(spray.fill(a, p));
        }
        let views: Vec<&[u8]> = packets[..want].iter().map(Vec::as_slice).collect();
        match raw.send_each(&views, &dsts) {
            Ok(n) => sent += n as u64,
            // the device's queue is full: let it drain
            Err(_) => {
                refused += 1;
                std::thread::sleep(Duration::from_micros(50));
            }
        }
    }
    let took = start.elapsed().as_secs_f64();
    println!(
        "sent {sent} seconds {took:.3} rate {:.0} refused_batches {refused}",
        sent as f64 / took
    );
    Ok(())
}

#[derive(clap::Args)]
pub struct ChurnArgs {
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
    /// New UDP request/answer exchanges per second, each on a fresh socket (a new flow),
    /// with the reflector (`serve`); resent after 0.5 and 1 s, failed after 1.5 s.
    #[arg(long, default_value_t = 20.0)]
    udp_rate: f64,
    #[arg(long, value_name = "CIDR", default_value = "198.19.0.0/24")]
    udp_dst: Prefix,
    #[arg(long, default_value_t = 7)]
    udp_port: u16,
    /// New TCP connections per second to a TCP echo: connect (3 s at most), 16 bytes
    /// echoed (2 s at most), close.
    #[arg(long, default_value_t = 20.0)]
    tcp_rate: f64,
    #[arg(long, value_name = "CIDR", default_value = "198.19.2.0/24")]
    tcp_dst: Prefix,
    #[arg(long, default_value_t = 9000)]
    tcp_port: u16,
    /// One-datagram UDP flows per second that expect no answer, from --spray-sockets
    /// sockets (as many LAN ports) to a random address of --spray-dst and port of
    /// --spray-ports each.
    #[arg(long, default_value_t = 0.0)]
    spray_rate: f64,
    #[arg(long, default_value_t = 16)]
    spray_sockets: usize,
    #[arg(long, value_name = "CIDR", default_value = "198.19.0.0/16")]
    spray_dst: Prefix,
    #[arg(long, value_name = "LOW-HIGH", default_value = "20000-60000")]
    spray_ports: Ports,
}

/// One finished exchange or connection: its latency, or why it failed.
type Outcome = std::result::Result<Duration, &'static str>;

/// Outcomes counted per second and in total.
#[derive(Default)]
struct Tally {
    ok: u64,
    failed: u64,
    ms: Vec<f64>,
    errors: std::collections::BTreeMap<&'static str, u64>,
}

impl Tally {
    fn add(&mut self, o: Outcome) {
        match o {
            Ok(d) => {
                self.ok += 1;
                self.ms.push(d.as_secs_f64() * 1e3);
            }
            Err(why) => {
                self.failed += 1;
                *self.errors.entry(why).or_default() += 1;
            }
        }
    }

    /// "NAME_ok N NAME_failed M NAME_p50_ms X NAME_max_ms Y" (no latencies when none
    /// succeeded).
    fn words(&self, name: &str) -> String {
        let mut ms = self.ms.clone();
        ms.sort_by(f64::total_cmp);
        let mut s = format!("{name}_ok {} {name}_failed {}", self.ok, self.failed);
        if let (Some(mid), Some(max)) = (ms.get(ms.len() / 2), ms.last()) {
            s += &format!(" {name}_p50_ms {mid:.2} {name}_max_ms {max:.2}");
        }
        for (why, n) in &self.errors {
            s += &format!(" {name}_error_{why} {n}");
        }
        s
    }
}

/// A UDP exchange waiting for its answer.
struct Pending {
    socket: UdpSocket,
    dst: SocketAddrV4,
    request: Vec<u8>,
    first_sent: Instant,
    sends: u32,
}

const UDP_RESEND: Duration = Duration::from_millis(500);
const UDP_SENDS: u32 = 3;
const TCP_CONNECT: Duration = Duration::from_secs(3);
const TCP_ECHO: Duration = Duration::from_secs(2);
/// Connections under way at most; a connection due beyond it fails ("busy").
const TCP_IN_FLIGHT: usize = 512;

pub fn churn(a: &ChurnArgs) -> Result<()> {
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.seconds);
    let spray_sockets: Vec<UdpSocket> = (0..if a.spray_rate > 0.0 {
        a.spray_sockets.max(1)
    } else {
        0
    })
        .map(|_| UdpSocket::bind("0.0.0.0:0"))
        .collect::<std::io::Result<_>>()
        .map_err(|e| format!("UDP socket: {e}"))?;
    let in_flight = Arc::new(AtomicUsize::new(0));
    let (tcp_done, tcp_results) = mpsc::channel::<(u64, Outcome)>();
    let (mut udp_started, mut tcp_started, mut sprayed) = (0u64, 0u64, 0u64);
    let mut pending: Vec<Pending> = Vec::new();
    let mut per_second: Vec<(Tally, Tally)> = Vec::new();
    let (mut udp, mut tcp) = (Tally::default(), Tally::default());
    let mut rng = Rng::seeded();
    let mut buf = [0u8; 2048];
    let mut spray_dsts = Vec::with_capacity(MAX_BATCH);
    let second_of = |t: Instant, per_second: &mut Vec<(Tally, Tally)>| {
        let s = t.duration_since(start).as_secs() as usize;
        while per_second.len() <= s {
            per_second.push(Default::default());
        }
        s
    };
    loop {
        let now = Instant::now();
        let sending = now < end;
        if !sending && pending.is_empty() && in_flight.load(Ordering::Relaxed) == 0 {
            break;
        }
        let elapsed = now.duration_since(start).as_secs_f64().min(a.seconds);
        // new UDP exchanges due by now
        while sending && (udp_started as f64) < elapsed * a.udp_rate {
            let dst = SocketAddrV4::new(a.udp_dst.nth(udp_started), a.udp_port);
            let request = format!("churn {udp_started}").into_bytes();
            udp_started += 1;
            let socket = match UdpSocket::bind("0.0.0.0:0") {
                Ok(s) => s,
                Err(_) => {
                    let s = second_of(now, &mut per_second);
                    per_second[s].0.add(Err("socket"));
                    udp.add(Err("socket"));
                    continue;
                }
            };
            let _ = socket.set_nonblocking(true);
            let _ = socket.send_to(&request, dst);
            pending.push(Pending {
                socket,
                dst,
                request,
                first_sent: now,
                sends: 1,
            });
        }
        // new TCP connections due by now, each on a thread of its own
        while sending && (tcp_started as f64) < elapsed * a.tcp_rate {
            let dst = SocketAddrV4::new(a.tcp_dst.nth(tcp_started), a.tcp_port);
            let n = tcp_started;
            tcp_started += 1;
            if in_flight.load(Ordering::Relaxed) >= TCP_IN_FLIGHT {
                let s = second_of(now, &mut per_second);
                per_second[s].1.add(Err("busy"));
                tcp.add(Err("busy"));
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (done, count) = (tcp_done.clone(), in_flight.clone());
            let spawned = std::thread::Builder::new()
                .stack_size(64 << 10)
                .spawn(move || {
                    let outcome = tcp_exchange(dst, n);
                    count.fetch_sub(1, Ordering::Relaxed);
                    let _ = done.send((n, outcome));
                });
            if spawned.is_err() {
                in_flight.fetch_sub(1, Ordering::Relaxed);
                tcp.add(Err("thread"));
            }
        }
        // one-datagram flows due by now
        while sending && (sprayed as f64) < elapsed * a.spray_rate {
            let due = ((elapsed * a.spray_rate) as u64 - sprayed).min(MAX_BATCH as u64);
            spray_dsts.clear();
            for _ in 0..due.max(1) {
                let r = rng.next();
                spray_dsts.push(SocketAddrV4::new(
                    a.spray_dst.nth(r),
                    a.spray_ports.pick(r >> 32),
                ));
            }
            let socket =
                &spray_sockets[(sprayed / MAX_BATCH as u64) as usize % spray_sockets.len()];
            match send_to_each(socket, b"churn", &spray_dsts) {
                Ok(n) => sprayed += n as u64,
                Err(_) => break,
            }
        }
        for (n, outcome) in tcp_results.try_iter() {
            let at = start + Duration::from_secs_f64(n as f64 / a.tcp_rate.max(1e-9));
            let s = second_of(at, &mut per_second);
            per_second[s].1.add(outcome);
            tcp.add(outcome);
        }
        // answers, resends and give-ups
        let fds: Vec<_> = pending.iter().map(|p| p.socket.as_raw_fd()).collect();
        let mut poller = wanlb::io::Poller::new(&fds);
        poller.wait(1).map_err(|e| e.to_string())?;
        let now = Instant::now();
        let mut index = 0;
        pending.retain_mut(|p| {
            let ready = poller.is_ready(index);
            index += 1;
            let mut outcome = None;
            if ready {
                while let Ok((n, from)) = p.socket.recv_from(&mut buf) {
                    let text = &buf[..n];
                    let echoed = text
                        .iter()
                        .position(|&b| b == b'\n')
                        .is_some_and(|nl| text[nl + 1..] == p.request[..]);
                    if from == SocketAddr::V4(p.dst) && echoed {
                        outcome = Some(Ok(now.duration_since(p.first_sent)));
                        break;
                    }
                }
            }
            if outcome.is_none() && now.duration_since(p.first_sent) >= UDP_RESEND * p.sends {
                if p.sends >= UDP_SENDS {
                    outcome = Some(Err("no_answer"));
                } else {
                    p.sends += 1;
                    let _ = p.socket.send_to(&p.request, p.dst);
                }
            }
            match outcome {
                Some(o) => {
                    let s = second_of(p.first_sent, &mut per_second);
                    per_second[s].0.add(o);
                    udp.add(o);
                    false
                }
                None => true,
            }
        });
    }
    for (s, (u, t)) in per_second.iter().enumerate() {
        println!(
            "second {s} udp_ok {} udp_failed {} tcp_ok {} tcp_failed {}",
            u.ok, u.failed, t.ok, t.failed
        );
    }
    println!(
        "total {} {} sprayed {sprayed} seconds {:.3}",
        udp.words("udp"),
        tcp.words("tcp"),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}

/// One TCP connection to the echo at `dst`: 16 bytes there and back.
fn tcp_exchange(dst: SocketAddrV4, n: u64) -> Outcome {
    let began = Instant::now();
    let mut conn =
        TcpStream::connect_timeout(&dst.into(), TCP_CONNECT).map_err(|e| match e.kind() {
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => "connect_timeout",
            std::io::ErrorKind::ConnectionRefused => "connect_refused",
            std::io::ErrorKind::ConnectionReset => "connect_reset",
            _ => "connect_other",
        })?;
    let _ = conn.set_read_timeout(Some(TCP_ECHO));
    let _ = conn.set_write_timeout(Some(TCP_ECHO));
    let msg = format!("churn {n:>10}\n");
    let mut back = vec![0u8; msg.len()];
    conn.write_all(msg.as_bytes())
        .and_then(|()| conn.read_exact(&mut back))
        .map_err(|_| "echo")?;
    if back != msg.as_bytes() {
        return Err("echo_differs");
    }
    Ok(began.elapsed())
}

#[derive(clap::Args)]
pub struct CrowdArgs {
    /// The HTTP server, e.g. wanlb's --listen.
    #[arg(long, value_name = "IP:PORT")]
    addr: SocketAddrV4,
    /// Connections opened and left idle (nothing sent).
    #[arg(long, default_value_t = 1000)]
    idle: u32,
    /// Also pipeline `GET /status` on one more connection without ever reading the answers
    /// (reconnecting if the server closes it).
    #[arg(long)]
    pipeline: bool,
    /// Requests pipelined at most (over all connections): a few thousand unread answers
    /// already fill the socket buffers; more only costs the server memory.
    #[arg(long, default_value_t = 20_000)]
    pipeline_requests: u64,
    /// How long, at most: SIGINT or SIGTERM end it sooner (with its summary).
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
}

/// What became of the idle connections.
#[derive(Default)]
struct Idle {
    connected: u64,
    failed: u64,
    closed_by_server: u64,
    first_closed: Option<f64>,
}

pub fn http_crowd(a: &CrowdArgs) -> Result<()> {
    let signalled = super::stop_flag()?;
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.seconds);
    let idle = Arc::new(Mutex::new(Idle::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    let addr = a.addr;
    if a.pipeline {
        let (written, stop, most) = (written.clone(), stop.clone(), a.pipeline_requests);
        threads.push(std::thread::spawn(move || {
            pipeline(addr, start, most, &written, &stop)
        }));
    }
    for _ in 0..a.idle {
        let (tally, stop) = (idle.clone(), stop.clone());
        let spawned = std::thread::Builder::new()
            .stack_size(64 << 10)
            .spawn(move || {
                hold_idle(addr, start, &tally, &stop);
                String::new()
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(_) => idle.lock().expect("idle lock").failed += 1,
        }
    }
    println!("crowd started {:.3}", start.elapsed().as_secs_f64());
    let _ = std::io::stdout().flush();
    while Instant::now() < end && !signalled.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50));
    }
    stop.store(true, Ordering::Relaxed);
    let mut pipelined = String::new();
    for t in threads {
        if let Ok(s) = t.join() {
            pipelined += &s;
        }
    }
    let i = idle.lock().expect("idle lock");
    println!(
        "idle_connected {} idle_failed {} idle_closed_by_server {} first_closed_s {} {pipelined}",
        i.connected,
        i.failed,
        i.closed_by_server,
        i.first_closed.map_or("none".into(), |s| format!("{s:.3}")),
    );
    Ok(())
}

fn hold_idle(addr: SocketAddrV4, start: Instant, idle: &Mutex<Idle>, stop: &AtomicBool) {
    let Ok(mut conn) = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2)) else {
        idle.lock().expect("idle lock").failed += 1;
        return;
    };
    idle.lock().expect("idle lock").connected += 1;
    let _ = conn.set_read_timeout(Some(Duration::from_millis(500)));
    let mut buf = [0u8; 4096];
    while !stop.load(Ordering::Relaxed) {
        let closed = match conn.read(&mut buf) {
            Ok(0) => true,
            // an answer before closing (a timeout's 408): read on
            Ok(_) => false,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        if closed {
            let at = start.elapsed().as_secs_f64();
            let mut i = idle.lock().expect("idle lock");
            i.closed_by_server += 1;
            i.first_closed = Some(i.first_closed.map_or(at, |f| f.min(at)));
            return;
        }
    }
}

/// Writes up to `most` pipelined requests, then holds the connection, until `stop`; returns
/// its summary words.
fn pipeline(
    addr: SocketAddrV4,
    start: Instant,
    most: u64,
    written: &AtomicU64,
    stop: &AtomicBool,
) -> String {
    let request = format!("GET /status HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let (mut connections, mut blocked_at) = (0u64, None::<f64>);
    let all_written = || written.load(Ordering::Relaxed) >= most * request.len() as u64;
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut conn) = TcpStream::connect_timeout(&addr.into(), Duration::from_secs(2)) else {
            std::thread::sleep(Duration::from_millis(100));
            continue;
        };
        connections += 1;
        let mut at = 0;
        let _ = conn.set_write_timeout(Some(Duration::from_millis(500)));
        while !stop.load(Ordering::Relaxed) {
            if all_written() {
                // hold it, unread, until the end
                std::thread::sleep(Duration::from_millis(50));
                continue;
            }
            // whole requests back to back, however the writes cut them
            match conn.write(&request.as_bytes()[at..]) {
                Ok(n) if n > 0 => {
                    written.fetch_add(n as u64, Ordering::Relaxed);
                    at = (at + n) % request.len();
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    blocked_at.get_or_insert(start.elapsed().as_secs_f64());
                }
                // closed by the server: connect again
                _ => break,
            }
        }
    }
    let bytes = written.load(Ordering::Relaxed);
    format!(
        "pipeline_connections {connections} pipeline_requests {} pipeline_bytes {bytes} \
         pipeline_blocked_s {}",
        bytes / request.len() as u64,
        blocked_at.map_or("never".into(), |s| format!("{s:.3}"))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_and_ports_parse() {
        let p: Prefix = "198.18.3.77/24".parse().unwrap();
        assert_eq!(p.nth(0), Ipv4Addr::new(198, 18, 3, 0));
        assert_eq!(p.nth(257), Ipv4Addr::new(198, 18, 3, 1));
        let one: Prefix = "198.18.1.1".parse().unwrap();
        assert_eq!(one.size(), 1);
        assert!("198.18.3.0/33".parse::<Prefix>().is_err());
        let ports: Ports = "8080".parse().unwrap();
        assert_eq!(ports.pick(12345), 8080);
        let range: Ports = "20000-20009".parse().unwrap();
        assert_eq!(range.pick(13), 20003);
        assert!("9-1".parse::<Ports>().is_err());
        assert!("0-5".parse::<Ports>().is_err());
    }

    #[test]
    fn sprayed_packets_are_new_flows_with_good_checksums_and_no_excluded_source() {
        let a = SprayArgs {
            kind: SprayKind::Udp,
            src: "198.18.3.0/29".parse().unwrap(),
            exclude: vec![Ipv4Addr::new(198, 18, 3, 1), Ipv4Addr::new(198, 18, 3, 2)],
            src_ports: "1024-65535".parse().unwrap(),
            dst: "198.19.0.0/16".parse().unwrap(),
            dst_ports: "20000-60000".parse().unwrap(),
            seconds: 1.0,
            pps: 0,
        };
        let mut s = Spray::new(&a).unwrap();
        // .0 and .7 (the ends) and the two excluded ones are left out
        assert_eq!(s.sources.len(), 4);
        let mut seen = std::collections::HashSet::new();
        let mut p = Vec::new();
        for _ in 0..1000 {
            let dst = s.fill(&a, &mut p);
            let src = Ipv4Addr::new(p[12], p[13], p[14], p[15]);
            assert!(s.sources.contains(&src), "{src}");
            assert_eq!(&p[16..20], &dst.ip().octets());
            let mut fixed = p.clone();
            fix_checksums(&mut fixed);
            assert_eq!(fixed, p, "checksums as computed from scratch");
            let dport = u16::from_be_bytes([p[22], p[23]]);
            assert!((20000..=60000).contains(&dport));
            seen.insert(p[12..24].to_vec());
        }
        assert!(seen.len() > 990, "{} distinct flows of 1000", seen.len());
    }

    #[test]
    fn tally_words() {
        let mut t = Tally::default();
        t.add(Ok(Duration::from_millis(3)));
        t.add(Ok(Duration::from_millis(1)));
        t.add(Err("no_answer"));
        assert_eq!(
            t.words("udp"),
            "udp_ok 2 udp_failed 1 udp_p50_ms 3.00 udp_max_ms 3.00 udp_error_no_answer 1"
        );
        assert_eq!(Tally::default().words("tcp"), "tcp_ok 0 tcp_failed 0");
    }
}
