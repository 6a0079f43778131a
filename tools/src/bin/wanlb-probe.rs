//! wanlb-probe: the test and demo peer. `serve` runs in the simulated internet and tells each
//! UDP client which address and port it saw (that is, which uplink and NAT port the flow
//! took); `spread` opens flows to many destinations and reports where each went; `tcp-check`
//! pushes a byte stream through a TCP echo and checks every byte that comes back;
//! `udp-stream`, `udp-record` and `tcp-hold` time what a flow sees while an uplink fails
//! (CLOCK_MONOTONIC timestamps, one clock for every namespace on the machine); `tun-wire`
//! joins two TUN devices in two namespaces into a point-to-point line, as a PPP session or a
//! tunnel is; `spray`, `churn` and `http-crowd` are the stress harness's traffic; `http-get`
//! and `http-raw` ask wanlb's control port, the second as an attacker would (any bytes,
//! pipelined, over many connections held open); `udp-meet` and `tcp-meet` punch holes as
//! peer-to-peer applications do; `forge-echo-replies` and `port-unreachable` send what a
//! forger would.

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4, TcpListener, TcpStream, UdpSocket};
use std::os::fd::AsRawFd;
use std::process::ExitCode;
use std::time::{Duration, Instant};
use wanlb::io::monotonic_ns;

use clap::{Parser, Subcommand};
use wanlb::engine::wire;
use wanlb::io::batch::RawUdp;
use wanlb::io::vnet::{self, VnetHeader};
use wanlb_testkit::Ipv4Packet;

#[path = "wanlb-probe/pace.rs"]
mod pace;
#[path = "wanlb-probe/punch.rs"]
mod punch;
#[path = "wanlb-probe/raw.rs"]
mod raw;
#[path = "wanlb-probe/stress.rs"]
mod stress;

#[derive(Parser)]
#[command(name = "wanlb-probe", version, about = "Test and demo peer for wanlb")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer UDP on every address of the given prefixes ("SEEN ip:port" + the request), and
    /// echo TCP on --tcp. Runs until killed.
    Serve {
        /// Prefixes to answer UDP on, e.g. 198.19.0.0/24 (repeatable; at most 4096 addresses).
        #[arg(long, value_name = "CIDR")]
        udp: Vec<String>,
        #[arg(long, default_value_t = 7)]
        udp_port: u16,
        /// Address to accept TCP echo connections on ([IPV6]:PORT too).
        #[arg(long, value_name = "IP:PORT")]
        tcp: Option<SocketAddr>,
        /// Address to accept TCP connections on, each answered "SEEN IP:PORT" (the address it
        /// came from) and closed.
        #[arg(long, value_name = "IP:PORT")]
        tcp_seen: Option<SocketAddrV4>,
    },
    /// Send one datagram from BIND to the reflector at DST and print "SEEN IP:PORT": where the
    /// internet sees that socket (as a STUN client learns it).
    UdpSeen {
        #[arg(long, value_name = "IP:PORT")]
        bind: SocketAddrV4,
        #[arg(long, value_name = "IP:PORT")]
        dst: SocketAddrV4,
    },
    /// UDP hole punching from BIND to PEER (the peer's external address and port): send every
    /// 100 ms until the peer's datagrams come through ("met PEER"), then COUNT numbered
    /// datagrams, and print how many of the peer's arrived ("got K of COUNT") and how many
    /// came from anyone else ("stray N").
    UdpMeet {
        #[arg(long, value_name = "IP:PORT")]
        bind: SocketAddrV4,
        #[arg(long, value_name = "IP:PORT")]
        peer: SocketAddrV4,
        #[arg(long, default_value_t = 100)]
        count: u32,
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
    },
    /// Send from BIND to DST on a connected socket until the port unreachable answering it
    /// comes back; print "refused".
    UdpRefused {
        #[arg(long, value_name = "IP:PORT")]
        bind: SocketAddrV4,
        #[arg(long, value_name = "IP:PORT")]
        dst: SocketAddrV4,
    },
    /// Connect from BIND to `serve --tcp-seen` at DST and print its "SEEN IP:PORT".
    TcpSeen {
        #[arg(long, value_name = "IP:PORT")]
        bind: SocketAddrV4,
        #[arg(long, value_name = "IP:PORT")]
        dst: SocketAddrV4,
    },
    /// TCP hole punching: connect from BIND to PEER again and again until connected (the
    /// peer doing the same: a simultaneous open), then send BYTES bytes and check the peer's.
    TcpMeet {
        #[arg(long, value_name = "IP:PORT")]
        bind: SocketAddrV4,
        #[arg(long, value_name = "IP:PORT")]
        peer: SocketAddrV4,
        #[arg(long, default_value_t = 1_000_000)]
        bytes: u64,
        #[arg(long, default_value_t = 20.0)]
        seconds: f64,
    },
    /// Send forged echo replies to TO from each --from address, with each --id and every
    /// sequence number of --seqs, over and over for SECONDS (raw socket).
    ForgeEchoReplies {
        #[arg(long)]
        to: Ipv4Addr,
        #[arg(long, required = true)]
        from: Vec<Ipv4Addr>,
        #[arg(long, required = true)]
        id: Vec<u16>,
        /// LOW-HIGH
        #[arg(long, default_value = "0-400", value_parser = parse_seqs)]
        seqs: (u16, u16),
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Send, from FROM to TO, an ICMP port unreachable quoting a UDP datagram from QUOTE_SRC to
    /// QUOTE_DST (raw socket).
    PortUnreachable {
        #[arg(long)]
        from: Ipv4Addr,
        #[arg(long)]
        to: Ipv4Addr,
        #[arg(long, value_name = "IP:PORT")]
        quote_src: SocketAddrV4,
        #[arg(long, value_name = "IP:PORT")]
        quote_dst: SocketAddrV4,
    },
    /// Print "SEEN SOURCE IDENTIFIER" for the first echo request that reaches this host within
    /// SECONDS (raw socket; the host still answers it).
    IcmpSeen {
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Open FLOWS new UDP flows to each of COUNT destinations starting at DST and print, per
    /// flow, "DST SEEN-ADDR:PORT", then a summary per seen address. With --one-socket, every
    /// flow leaves from one socket (one LAN address and port), as a STUN or VoIP client's do.
    Spread {
        #[arg(long)]
        one_socket: bool,
        /// The first destination, IPv4 or IPv6.
        #[arg(long)]
        dst: IpAddr,
        #[arg(long, default_value_t = 1)]
        count: u32,
        #[arg(long, default_value_t = 1)]
        flows: u32,
        #[arg(long, default_value_t = 7)]
        port: u16,
        /// Bind the flows' sockets to this port and the ones after it, one each, instead of
        /// ports the system picks: a port the system picks again may still have a mapping of
        /// an earlier flow in wanlb, whose uplink a new socket there then takes (endpoint
        /// affinity) rather than a weighted pick.
        #[arg(long)]
        first_port: Option<u16>,
    },
    /// Check the checksums of every IPv4 frame arriving on DEV until SIGINT or SIGTERM, then
    /// print a summary. Partial checksums (offloaded, as veth passes them) must hold the
    /// pseudo-header sum; complete ones must verify. IP fragments are counted, and only their
    /// header checksum is checked.
    CaptureVerify {
        #[arg(long)]
        dev: String,
    },
    /// Count UDP datagrams arriving on every address of the prefix until SIGINT or SIGTERM.
    UdpSink {
        #[arg(long, value_name = "CIDR")]
        udp: String,
        #[arg(long, default_value_t = 5001)]
        port: u16,
    },
    /// Send UDP datagrams as fast as possible over FLOWS flows (one per destination address
    /// from DST up) for SECONDS, in batches (sendmmsg).
    UdpFlood {
        #[arg(long)]
        dst: Ipv4Addr,
        #[arg(long, default_value_t = 64)]
        flows: u32,
        /// UDP payload bytes; 18 makes a 64-byte Ethernet frame (with FCS).
        #[arg(long, default_value_t = 18)]
        payload: usize,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
        #[arg(long, default_value_t = 5001)]
        port: u16,
    },
    /// Send PPS datagrams a second over FLOWS flows (one per destination address from DST
    /// up, port 5001) for SECONDS, in batches every millisecond: a fixed offered load.
    UdpPaced {
        #[arg(long)]
        dst: Ipv4Addr,
        #[arg(long, default_value_t = 64)]
        flows: u32,
        /// UDP payload bytes; 18 makes a 64-byte Ethernet frame (with FCS).
        #[arg(long, default_value_t = 18)]
        payload: usize,
        #[arg(long)]
        pps: u64,
        #[arg(long, default_value_t = 5.0)]
        seconds: f64,
    },
    /// COUNT request/answer exchanges with the reflector at DST, each from a new socket (a
    /// new flow, as a DNS lookup is), PAUSE apart; prints each round trip ("rtt US") and
    /// "answered N of COUNT p50 US p99 US".
    UdpFirst {
        #[arg(long)]
        dst: SocketAddrV4,
        #[arg(long, default_value_t = 500)]
        count: u32,
        #[arg(long, default_value = "2ms", value_parser = parse_interval)]
        pause: Duration,
    },
    /// Send one UDP GSO super-packet of SEGMENTS datagrams of SIZE bytes (UDP_SEGMENT) to the
    /// reflector and check every datagram comes back answered and intact.
    UdpGsoCheck {
        #[arg(long)]
        dst: SocketAddrV4,
        #[arg(long, default_value_t = 20)]
        segments: u16,
        #[arg(long, default_value_t = 1000)]
        size: u16,
        /// Single request/reply exchanges on the same socket first (a flow this long is
        /// carried by wanlb's kernel fast path).
        #[arg(long, default_value_t = 0)]
        warmup: u32,
    },
    /// COUNT request/reply exchanges with the reflector on one socket (one flow), each reply
    /// checked, and the address the far end saw the same every time.
    UdpCheck {
        #[arg(long)]
        dst: SocketAddrV4,
        #[arg(long, default_value_t = 100)]
        count: u32,
        /// Send the requests through a raw socket with checksums computed here (complete,
        /// not offloaded), as a NIC without offloads would deliver them.
        #[arg(long)]
        software_checksum: bool,
    },
    /// Open COUNT new UDP flows, one datagram each, from one socket: flow i goes to address
    /// DST + i % ADDRS, port 20000 + i / ADDRS. Prints how many were sent and how long it took.
    UdpNewFlows {
        #[arg(long)]
        dst: Ipv4Addr,
        #[arg(long, default_value_t = 65536)]
        addrs: u32,
        #[arg(long)]
        count: u32,
    },
    /// Send COUNT UDP datagrams of SIZE bytes, bigger than the path, with "don't fragment"
    /// off (IP_PMTUDISC_DONT: the stack sends them as IP fragments) to the reflector, one at a
    /// time on one socket (one flow), and check each answer byte for byte (as big, it comes
    /// back in fragments too) and that the far end saw one address and port throughout.
    UdpBigCheck {
        #[arg(long)]
        dst: SocketAddrV4,
        #[arg(long, default_value_t = 3000)]
        size: usize,
        #[arg(long, default_value_t = 10)]
        count: u32,
        /// Make every other datagram (the first, the third...) 100 bytes: whole packets, which
        /// wanlb's kernel fast path carries once the flow is steady, between the fragmented ones.
        #[arg(long)]
        alternate_small: bool,
    },
    /// Send BYTES pseudo-random bytes to a TCP echo and verify what comes back.
    TcpCheck {
        #[arg(long, value_name = "IP:PORT")]
        dst: SocketAddr,
        #[arg(long, default_value_t = 20_000_000)]
        bytes: u64,
    },
    /// Send one UDP flow (one socket): a datagram every INTERVAL holding its sequence number
    /// and send time (u64 each, big-endian; CLOCK_MONOTONIC ns), for SECONDS or until SIGINT
    /// or SIGTERM. Prints "sent N": sequence numbers 0 to N-1 went out.
    UdpStream {
        #[arg(long, value_name = "IP:PORT")]
        dst: SocketAddrV4,
        #[arg(long, default_value = "10ms", value_parser = parse_interval)]
        interval: Duration,
        #[arg(long, default_value_t = 10.0)]
        seconds: f64,
    },
    /// Receive udp-stream datagrams until SIGINT or SIGTERM; prints "listening" once bound,
    /// then per datagram "SEQ SRC-IP:PORT ARRIVAL" (ARRIVAL: CLOCK_MONOTONIC ns).
    UdpRecord {
        #[arg(long, value_name = "IP:PORT")]
        bind: SocketAddrV4,
    },
    /// GET PATH from an HTTP server at ADDR (HTTP/1.0) and print the body; exit 1 unless it
    /// answers 200. For tests of wanlb's /metrics and /status.
    HttpGet {
        #[arg(long, value_name = "IP:PORT")]
        addr: SocketAddrV4,
        #[arg(long, default_value = "/")]
        path: String,
    },
    /// Send REQUEST (as given, byte for byte) to the HTTP server at ADDR, REPEAT times in a
    /// row (pipelined) on each of CONNECTIONS connections. Without --hold, read the first
    /// connection's answer until the server closes it (10 s at most) and print it. With
    /// --hold, print "holding N connections, B bytes sent" once connected and sent (as much
    /// as the sockets took), then wait until killed, never reading or, with --read-every,
    /// reading up to 64 KiB of each connection's answers that often. For tests of the
    /// limits of wanlb's control port (a descriptor per connection: run it under prlimit).
    HttpRaw {
        #[arg(long, value_name = "IP:PORT")]
        addr: SocketAddrV4,
        #[arg(long, default_value = "")]
        request: String,
        #[arg(long, default_value_t = 1)]
        repeat: usize,
        #[arg(long, default_value_t = 1)]
        connections: usize,
        #[arg(long)]
        hold: bool,
        #[arg(long, value_name = "DURATION", value_parser = parse_interval, requires = "hold")]
        read_every: Option<Duration>,
    },
    /// Hold one TCP connection to an echo server, exchanging 8 bytes every 100 ms. Prints
    /// "connected LOCAL-IP:PORT"; when the connection fails "reset NS" (reset by the peer)
    /// or "error KIND NS" (NS: CLOCK_MONOTONIC ns); on SIGINT or SIGTERM "alive".
    /// With --idle-after N it falls silent after N exchanges, as a download waiting for data
    /// does, and only listens.
    TcpHold {
        #[arg(long, value_name = "IP:PORT")]
        dst: SocketAddrV4,
        #[arg(long, value_name = "N")]
        idle_after: Option<u64>,
    },
    /// Join TUN device DEV of this namespace and PEER_DEV of namespace PEER_NETNS (a name
    /// `ip netns` knows) into one point-to-point line: what one side sends comes out of the
    /// other, as over a PPP session or a tunnel. Both must exist, made persistent (`ip tuntap
    /// add mode tun`), so that when this ends they lose their carrier, not their addresses.
    /// Prints "wired" once both are joined; runs until SIGINT or SIGTERM, then prints how
    /// many packets went each way.
    TunWire {
        #[arg(long)]
        dev: String,
        #[arg(long)]
        peer_netns: String,
        #[arg(long)]
        peer_dev: String,
    },
    /// Write COUNT UDP datagrams from SRC to DST (port 7) into TUN device DEV, which another
    /// process (wanlb) made with a virtio-net header and queues of its own: this joins it as
    /// one more queue for as long as it writes, so the kernel takes the datagrams as if that
    /// process had written them. Prints "written N".
    TunInject {
        #[arg(long)]
        dev: String,
        #[arg(long)]
        src: Ipv4Addr,
        #[arg(long)]
        dst: Ipv4Addr,
        #[arg(long, default_value_t = 5)]
        count: u32,
    },
    /// Flood new flows from a raw socket for SECONDS, each packet a new flow (source,
    /// ports and destination at random), UDP datagrams or TCP SYNs, sources made up at will
    /// within --src. Prints "sent N seconds S rate R".
    Spray(stress::SprayArgs),
    /// Open new connections at a steady rate for SECONDS, as a LAN host does (UDP
    /// request/answer on fresh sockets, TCP connections to an echo), and optionally flows that
    /// expect no answer; then print per second and in total how many got through.
    Churn(stress::ChurnArgs),
    /// Hold IDLE idle connections to an HTTP server for SECONDS, and with --pipeline pipeline
    /// requests on one more without reading the answers; then print what the server did with
    /// them.
    HttpCrowd(stress::CrowdArgs),
}

fn parse_seqs(s: &str) -> Result<(u16, u16)> {
    let (lo, hi) = s.split_once('-').ok_or(format!("{s:?} is not LOW-HIGH"))?;
    match (lo.parse(), hi.parse()) {
        (Ok(lo), Ok(hi)) if lo <= hi => Ok((lo, hi)),
        _ => Err(format!("{s:?} is not LOW-HIGH")),
    }
}

fn parse_interval(s: &str) -> Result<Duration> {
    wanlb::config::parse_duration(s, "--interval").map_err(|e| e.to_string())
}

fn main() -> ExitCode {
    let result = match Cli::parse().command {
        Command::Serve {
            udp,
            udp_port,
            tcp,
            tcp_seen,
        } => serve(&udp, udp_port, tcp, tcp_seen),
        Command::UdpSeen { bind, dst } => punch::udp_seen(bind, dst),
        Command::UdpMeet {
            bind,
            peer,
            count,
            seconds,
        } => punch::udp_meet(bind, peer, count, seconds),
        Command::UdpRefused { bind, dst } => punch::udp_refused(bind, dst),
        Command::TcpSeen { bind, dst } => punch::tcp_seen(bind, dst),
        Command::TcpMeet {
            bind,
            peer,
            bytes,
            seconds,
        } => punch::tcp_meet(bind, peer, bytes, seconds),
        Command::ForgeEchoReplies {
            to,
            from,
            id,
            seqs,
            seconds,
        } => raw::forge_echo_replies(to, &from, &id, seqs, seconds),
        Command::PortUnreachable {
            from,
            to,
            quote_src,
            quote_dst,
        } => raw::port_unreachable(from, to, quote_src, quote_dst),
        Command::IcmpSeen { seconds } => raw::icmp_seen(seconds),
        Command::Spread {
            one_socket,
            dst,
            count,
            flows,
            port,
            first_port,
        } => spread(dst, count, flows, port, one_socket, first_port),
        Command::TcpCheck { dst, bytes } => tcp_check(dst, bytes),
        Command::UdpBigCheck {
            dst,
            size,
            count,
            alternate_small,
        } => udp_big_check(dst, size, count, alternate_small),
        Command::CaptureVerify { dev } => capture_verify(&dev),
        Command::UdpSink { udp, port } => udp_sink(&udp, port),
        Command::UdpNewFlows { dst, addrs, count } => udp_new_flows(dst, addrs, count),
        Command::UdpPaced {
            dst,
            flows,
            payload,
            pps,
            seconds,
        } => pace::udp_paced(dst, flows, payload, pps, seconds),
        Command::UdpFirst { dst, count, pause } => pace::udp_first(dst, count, pause),
        Command::UdpGsoCheck {
            dst,
            segments,
            size,
            warmup,
        } => udp_gso_check(dst, segments, size, warmup),
        Command::UdpCheck {
            dst,
            count,
            software_checksum,
        } => udp_check(dst, count, software_checksum),
        Command::UdpFlood {
            dst,
            flows,
            payload,
            seconds,
            port,
        } => udp_flood(dst, flows, payload, seconds, port),
        Command::UdpStream {
            dst,
            interval,
            seconds,
        } => udp_stream(dst, interval, seconds),
        Command::UdpRecord { bind } => udp_record(bind),
        Command::TcpHold { dst, idle_after } => tcp_hold(dst, idle_after),
        Command::HttpGet { addr, path } => http_get(addr, &path),
        Command::HttpRaw {
            addr,
            request,
            repeat,
            connections,
            hold,
            read_every,
        } => http_raw(addr, &request.repeat(repeat), connections, hold, read_every),
        Command::TunWire {
            dev,
            peer_netns,
            peer_dev,
        } => tun_wire(&dev, &peer_netns, &peer_dev),
        Command::TunInject {
            dev,
            src,
            dst,
            count,
        } => tun_inject(&dev, src, dst, count),
        Command::Spray(a) => stress::spray(&a),
        Command::Churn(a) => stress::churn(&a),
        Command::HttpCrowd(a) => stress::http_crowd(&a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wanlb-probe: {e}");
            ExitCode::FAILURE
        }
    }
}

type Result<T> = std::result::Result<T, String>;

fn prefix_addrs(cidr: &str) -> Result<Vec<IpAddr>> {
    if cidr.contains(':') {
        let (a, l) = cidr.split_once('/').unwrap_or((cidr, "128"));
        let base: std::net::Ipv6Addr = a
            .parse()
            .map_err(|_| format!("--udp {cidr:?}: not an IPv6 prefix"))?;
        let len: u32 = l
            .parse()
            .ok()
            .filter(|l| (116..=128).contains(l))
            .ok_or(format!("--udp {cidr:?}: length must be 116 to 128"))?;
        let first = u128::from(base) & (u128::MAX << (128 - len));
        return Ok((0..1u128 << (128 - len))
            .map(|i| IpAddr::V6((first + i).into()))
            .collect());
    }
    let (a, l) = cidr.split_once('/').unwrap_or((cidr, "32"));
    let base: Ipv4Addr = a
        .parse()
        .map_err(|_| format!("--udp {cidr:?}: not an IPv4 prefix"))?;
    let len: u32 = l
        .parse()
        .ok()
        .filter(|l| (20..=32).contains(l))
        .ok_or(format!("--udp {cidr:?}: length must be 20 to 32"))?;
    let first = u32::from(base) & (u32::MAX << (32 - len));
    Ok((0..1u32 << (32 - len))
        .map(|i| IpAddr::V4(Ipv4Addr::from(first + i)))
        .collect())
}

fn serve(
    prefixes: &[String],
    port: u16,
    tcp: Option<SocketAddr>,
    tcp_seen: Option<SocketAddrV4>,
) -> Result<()> {
    if let Some(addr) = tcp {
        let listener = TcpListener::bind(addr).map_err(|e| format!("TCP {addr}: {e}"))?;
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || echo(conn));
            }
        });
    }
    if let Some(addr) = tcp_seen {
        let listener = TcpListener::bind(addr).map_err(|e| format!("TCP {addr}: {e}"))?;
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                punch::tcp_seen_answer(conn);
            }
        });
    }
    let mut sockets = Vec::new();
    for p in prefixes {
        for a in prefix_addrs(p)? {
            let s = UdpSocket::bind((a, port)).map_err(|e| format!("UDP {a}:{port}: {e}"))?;
            s.set_nonblocking(true).map_err(|e| e.to_string())?;
            sockets.push(s);
        }
    }
    println!("listening");
    let _ = std::io::stdout().flush();
    if sockets.is_empty() {
        loop {
            std::thread::park();
        }
    }
    let fds: Vec<_> = sockets.iter().map(|s| s.as_raw_fd()).collect();
    let mut poller = wanlb::io::Poller::new(&fds);
    // as large as a datagram gets: one sent in fragments arrives here whole, and its answer
    // holds all of it
    let mut buf = vec![0u8; 1 << 16];
    loop {
        poller.wait(1000).map_err(|e| e.to_string())?;
        for (_, s) in sockets
            .iter()
            .enumerate()
            .filter(|(i, _)| poller.is_ready(*i))
        {
            while let Ok((n, from)) = s.recv_from(&mut buf) {
                let mut reply = format!("SEEN {from}\n").into_bytes();
                reply.extend_from_slice(&buf[..n.min(MAX_REFLECTED)]);
                let _ = s.send_to(&reply, from);
            }
        }
    }
}

/// Bytes of a request the reflector sends back: all of the biggest UDP datagram, less room
/// for its "SEEN" line.
const MAX_REFLECTED: usize = 65_507 - 64;

fn echo(mut conn: TcpStream) {
    let mut buf = vec![0u8; 1 << 16];
    while let Ok(n) = conn.read(&mut buf) {
        if n == 0 || conn.write_all(&buf[..n]).is_err() {
            break;
        }
    }
}

/// A UDP socket for IPv6 (`v6`) or IPv4 on `port` (0: the system's choice), with a read timeout.
fn reply_socket_of(v6: bool, port: u16) -> Result<UdpSocket> {
    let any = if v6 { "::" } else { "0.0.0.0" };
    let s = UdpSocket::bind((any, port)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_millis(500)))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

/// A UDP header and `payload` from `src` to `dst`, with the checksum computed here.
fn udp_datagram(src: SocketAddrV4, dst: SocketAddrV4, payload: &[u8]) -> Vec<u8> {
    Ipv4Packet::udp(*src.ip(), *dst.ip(), src.port(), dst.port(), payload).build_l4()
}

/// Sends `request` (again, up to 6 times, while no reply comes) and checks the reflector's
/// answer echoes it; returns the address the far end saw. With `raw`, the request leaves
/// through it with a checksum computed in software, from the address and port of `s`.
fn exchange(
    s: &UdpSocket,
    raw: Option<&RawUdp>,
    dst: SocketAddr,
    request: &str,
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
    for _ in 0..6 {
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
fn exchanges(
    s: &UdpSocket,
    raw: Option<&RawUdp>,
    dst: SocketAddr,
    count: u32,
) -> Result<Option<SocketAddr>> {
    let mut seen: Option<SocketAddr> = None;
    for i in 0..count {
        let now = exchange(s, raw, dst, &format!("exchange {i} of {count}"))?;
        if *seen.get_or_insert(now) != now {
            return Err(format!(
                "exchange {i}: the far end saw {now}, before it saw {}",
                seen.unwrap_or(now)
            ));
        }
    }
    Ok(seen)
}

fn udp_check(dst: SocketAddrV4, count: u32, software_checksum: bool) -> Result<()> {
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
    let seen = exchanges(&s, raw.as_ref(), dst.into(), count)?;
    let via = seen.map_or("nothing".into(), |a| a.to_string());
    println!("ok {count} exchanges answered intact, all via {via}");
    Ok(())
}

fn spread(
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
struct Stream(u64);

impl Stream {
    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            chunk.copy_from_slice(&self.0.to_le_bytes()[..chunk.len()]);
        }
    }
}

fn tcp_check(dst: SocketAddr, bytes: u64) -> Result<()> {
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

fn udp_big_check(dst: SocketAddrV4, size: usize, count: u32, alternate_small: bool) -> Result<()> {
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

#[derive(Default)]
struct Tally {
    complete: u64,
    partial: u64,
    gso: u64,
    /// Segments cut from GSO packets, each checked as the wire would carry it.
    segments: u64,
    /// IP fragments: only their header checksum can be checked one by one.
    fragments: u64,
    bad: Vec<String>,
}

/// Where the transport checksum of `proto` is, from the start of its header.
fn checksum_field(proto: u8) -> Option<usize> {
    match proto {
        wire::PROTO_TCP => Some(wire::tcp::field::CHECKSUM.start),
        wire::PROTO_UDP => Some(wire::udp::field::CHECKSUM.start),
        wire::PROTO_ICMP => Some(wire::icmp::field::CHECKSUM.start),
        _ => None,
    }
}

/// Checks one frame (`vnet` header, then Ethernet) and records the outcome.
fn verify_frame(h: &VnetHeader, frame: &[u8], t: &mut Tally) {
    use wanlb_testkit::checksum::{fold, pseudo_header, sum};
    let Some(Ok(ip)) = frame.get(14..).map(wire::Ipv4Packet::new_checked) else {
        return;
    };
    let (proto, src, dst) = (ip.protocol(), ip.src_addr(), ip.dst_addr());
    if ip.is_fragment() {
        t.fragments += 1;
        if !ip.verify_checksum() {
            t.bad.push(format!(
                "IPv4 header checksum of a fragment: {} -> {}",
                Ipv4Addr::from(src),
                Ipv4Addr::from(dst)
            ));
        }
        return;
    }
    let l4 = ip.payload();
    let total = ip.total_len();
    let Some(at) = checksum_field(proto).filter(|_| l4.len() >= 8) else {
        return;
    };
    let describe = |what: &str| {
        format!(
            "{what}: proto {proto} {} -> {} len {total}",
            Ipv4Addr::from(src),
            Ipv4Addr::from(dst)
        )
    };
    if !ip.verify_checksum() {
        t.bad.push(describe("IPv4 header checksum"));
        return;
    }
    let Some(field) = l4.get(at..at + 2).map(|f| u16::from_be_bytes([f[0], f[1]])) else {
        t.bad.push(describe("transport header cut short"));
        return;
    };
    let pseudo = if proto == wire::PROTO_ICMP {
        0
    } else {
        pseudo_header(src, dst, proto, l4.len() as u16)
    };
    if h.gso_type != 0 {
        t.gso += 1;
        if h.needs_csum() {
            match segment_and_check(&ip, h) {
                Ok(n) => t.segments += n,
                Err(e) => t.bad.push(describe(&e)),
            }
        }
    }
    if h.needs_csum() {
        t.partial += 1;
        let placed =
            usize::from(h.csum_start) == 14 + ip.header_len() && usize::from(h.csum_offset) == at;
        // what the device will compute equals the checksum of the final segment iff the
        // field holds the pseudo-header sum (one's complement: 0 and 0xffff are equal)
        let ok = fold(u64::from(field) + (0xffff - u64::from(fold(pseudo)))).is_multiple_of(0xffff);
        if !placed || !ok {
            t.bad.push(describe(&format!(
                "partial checksum {field:04x}, pseudo {:04x}, start {} offset {}",
                fold(pseudo),
                h.csum_start,
                h.csum_offset
            )));
        }
    } else {
        t.complete += 1;
        if !(proto == wire::PROTO_UDP && field == 0) && fold(sum(l4, pseudo)) != 0xffff {
            t.bad.push(describe(&format!("checksum {field:04x}")));
        }
    }
}

const GSO_TCPV4: u8 = 1;
const GSO_UDP_L4: u8 = 5;

/// Cuts a GSO super-packet into the segments the device will send, the way the kernel's
/// TCP/UDP segmentation does (per segment: lengths, sequence number, flags, and the partial
/// checksum adjusted for the segment's length), completes each segment's checksum as the
/// device would, and checks it against a checksum computed from scratch. Returns how many
/// segments were checked.
fn segment_and_check(
    ip: &wire::Ipv4Packet<&[u8]>,
    h: &VnetHeader,
) -> std::result::Result<u64, String> {
    use wanlb_testkit::checksum::{checksum, fold, pseudo_header, sum};
    let gso_type = h.gso_type & 0x7f;
    let mss = usize::from(h.gso_size);
    let (proto, src, dst) = (ip.protocol(), ip.src_addr(), ip.dst_addr());
    let l4 = ip.payload();
    let (hlen, at) = match (gso_type, proto) {
        (GSO_TCPV4, wire::PROTO_TCP) => {
            let segment = wire::TcpSegment::new_checked(l4).map_err(|e| format!("TCP: {e:?}"))?;
            (segment.header_len(), wire::tcp::field::CHECKSUM.start)
        }
        (GSO_UDP_L4, wire::PROTO_UDP) => (wire::udp::HEADER_LEN, wire::udp::field::CHECKSUM.start),
        _ => return Err(format!("GSO type {gso_type} on protocol {proto}")),
    };
    if mss == 0 || hlen > l4.len() {
        return Err(format!("GSO size {mss}, header {hlen}"));
    }
    let payload = &l4[hlen..];
    let field = u16::from_be_bytes([l4[at], l4[at + 1]]);
    let mut n = 0;
    for (k, chunk) in payload.chunks(mss).enumerate() {
        let mut seg = l4[..hlen].to_vec();
        seg.extend_from_slice(chunk);
        let seg_len = seg.len() as u16;
        if gso_type == GSO_TCPV4 {
            let mut t = wire::TcpSegment::new_unchecked(&mut seg[..]);
            t.set_seq_number(t.seq_number().wrapping_add((k * mss) as u32));
            let mut flags = t.flags();
            if (k + 1) * mss < payload.len() {
                flags &= !(wire::tcp::FIN | wire::tcp::PSH); // only on the last segment
            }
            if k > 0 {
                flags &= !wire::tcp::CWR; // only on the first
            }
            t.set_flags(flags);
        } else {
            wire::UdpDatagram::new_unchecked(&mut seg[..]).set_len_field(seg_len);
        }
        // the partial checksum carries the pseudo header with the whole length; the
        // segmentation swaps in the segment's length
        let adjusted = fold(u64::from(field) + u64::from(!(l4.len() as u16)) + u64::from(seg_len));
        seg[at..at + 2].copy_from_slice(&adjusted.to_be_bytes());
        let on_wire = !fold(sum(&seg, 0));
        seg[at..at + 2].copy_from_slice(&[0, 0]);
        let from_scratch = checksum(&seg, pseudo_header(src, dst, proto, seg_len));
        let same = on_wire == from_scratch
            || (on_wire ^ from_scratch == 0xffff && (on_wire == 0 || from_scratch == 0));
        if !same {
            return Err(format!(
                "segment {k} of {}: checksum {on_wire:04x}, should be {from_scratch:04x}",
                payload.len().div_ceil(mss)
            ));
        }
        n += 1;
    }
    Ok(n)
}

fn capture_verify(dev: &str) -> Result<()> {
    use std::sync::atomic::Ordering;
    use wanlb::io::{iface, packet_socket::PacketSocket};
    let index = iface::find(dev)
        .map_err(|e| e.to_string())?
        .ok_or(format!("no interface {dev}"))?
        .index;
    let stop = stop_flag()?;
    let socket = PacketSocket::open_capture(index).map_err(|e| format!("capture on {dev}: {e}"))?;
    println!("listening");
    let _ = std::io::stdout().flush();
    let mut buf = vec![0u8; 70_000];
    let mut t = Tally::default();
    let mut poller = wanlb::io::Poller::new(&[socket.raw_fd()]);
    while !stop.load(Ordering::Relaxed) {
        poller.wait(100).map_err(|e| e.to_string())?;
        while let Ok(n) = socket.recv(&mut buf) {
            if n >= vnet::LEN {
                let h = VnetHeader::read(buf[..vnet::LEN].try_into().expect("10 bytes"));
                verify_frame(&h, &buf[vnet::LEN..n], &mut t);
            }
        }
    }
    println!(
        "checked {} complete {} partial {} gso {} segments {} bad {} fragments {}",
        t.complete + t.partial,
        t.complete,
        t.partial,
        t.gso,
        t.segments,
        t.bad.len(),
        t.fragments
    );
    for b in t.bad.iter().take(10) {
        println!("bad: {b}");
    }
    Ok(())
}

/// Blocks SIGINT and SIGTERM and returns a flag that one of them sets.
fn stop_flag() -> Result<&'static std::sync::atomic::AtomicBool> {
    use std::sync::atomic::{AtomicBool, Ordering};
    static STOP: AtomicBool = AtomicBool::new(false);
    wanlb::io::signal::block_control_signals().map_err(|e| e.to_string())?;
    std::thread::spawn(|| {
        let _ = wanlb::io::signal::wait_for_control_signal();
        STOP.store(true, Ordering::Relaxed);
    });
    Ok(&STOP)
}

fn udp_sink(cidr: &str, port: u16) -> Result<()> {
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

fn udp_flood(dst: Ipv4Addr, flows: u32, payload: usize, seconds: f64, port: u16) -> Result<()> {
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

fn udp_new_flows(dst: Ipv4Addr, addrs: u32, count: u32) -> Result<()> {
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

fn udp_gso_check(dst: SocketAddrV4, segments: u16, size: u16, warmup: u32) -> Result<()> {
    if segments == 0 || size < 16 || u32::from(segments) * u32::from(size) > 60_000 {
        return Err("--segments x --size must be at most 60000, --size at least 16".into());
    }
    let s = UdpSocket::bind("0.0.0.0:0").map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .map_err(|e| e.to_string())?;
    exchanges(&s, None, dst.into(), warmup)?;
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

fn udp_stream(dst: SocketAddrV4, interval: Duration, seconds: f64) -> Result<()> {
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

fn udp_record(bind: SocketAddrV4) -> Result<()> {
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

fn tcp_hold(dst: SocketAddrV4, idle_after: Option<u64>) -> Result<()> {
    use std::sync::atomic::Ordering;
    const EVERY: Duration = Duration::from_millis(100);
    let stop = stop_flag()?;
    let mut conn = TcpStream::connect_timeout(&dst.into(), Duration::from_secs(5))
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

fn http_get(addr: SocketAddrV4, path: &str) -> Result<()> {
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

fn http_raw(
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

/// Attaches to the existing TUN device `name` of the current network namespace: IP packets
/// without any header of their own, read without blocking.
fn open_tun(name: &str) -> Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open("/dev/net/tun")
        .map_err(|e| format!("/dev/net/tun: {e}"))?;
    if name.is_empty() || name.len() >= libc::IFNAMSIZ {
        return Err(format!("{name:?} is no interface name"));
    }
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes the ifreq we pass, which lives on our stack.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(format!("TUN {name}: {}", std::io::Error::last_os_error()));
    }
    Ok(tun)
}

fn tun_inject(dev: &str, src: Ipv4Addr, dst: Ipv4Addr, count: u32) -> Result<()> {
    let tun = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .map_err(|e| format!("/dev/net/tun: {e}"))?;
    if dev.is_empty() || dev.len() >= libc::IFNAMSIZ {
        return Err(format!("{dev:?} is no interface name"));
    }
    // SAFETY: ifreq is plain old data; all-zero is valid.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(dev.bytes()) {
        *d = s as libc::c_char;
    }
    // the device's own flags: a queue that joins with others would change them for all
    req.ifr_ifru.ifru_flags =
        (libc::IFF_TUN | libc::IFF_NO_PI | libc::IFF_VNET_HDR | libc::IFF_MULTI_QUEUE)
            as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes the ifreq we pass, which lives on our stack.
    if unsafe { libc::ioctl(tun.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(format!("TUN {dev}: {}", std::io::Error::last_os_error()));
    }
    let mut written = 0;
    for i in 0..count {
        let sport = 40000 + (i % 1000) as u16;
        // a virtio-net header of zeros (no offload, checksum complete), then the datagram
        let mut frame = vec![0u8; 10];
        frame.extend(Ipv4Packet::udp(src, dst, sport, 7, b"from the TUN device").build());
        (&tun)
            .write_all(&frame)
            .map_err(|e| format!("writing to {dev}: {e}"))?;
        written += 1;
    }
    println!("written {written}");
    Ok(())
}

/// Moves this thread into network namespace `name`, as `ip netns exec` would.
fn enter_netns(name: &str) -> Result<()> {
    if name.contains('/') {
        return Err(format!("{name:?} is no namespace name"));
    }
    let ns = std::fs::File::open(format!("/run/netns/{name}"))
        .map_err(|e| format!("namespace {name}: {e}"))?;
    // SAFETY: setns with a descriptor we own and a constant; it changes only this thread's
    // network namespace.
    if unsafe { libc::setns(ns.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
        return Err(format!(
            "entering {name}: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

fn tun_wire(dev: &str, peer_netns: &str, peer_dev: &str) -> Result<()> {
    use std::sync::atomic::Ordering;
    let here = open_tun(dev)?;
    // the TUN device a descriptor reaches is looked up in the namespace it was opened in
    enter_netns(peer_netns)?;
    let there = open_tun(peer_dev)?;
    let stop = stop_flag()?;
    println!("wired");
    let _ = std::io::stdout().flush();
    let mut poller = wanlb::io::Poller::new(&[here.as_raw_fd(), there.as_raw_fd()]);
    let mut buf = vec![0u8; 65536];
    // packets carried each way, and those the receiving side refused (a line drops them)
    let (mut out, mut back, mut lost) = (0u64, 0u64, 0u64);
    while !stop.load(Ordering::Relaxed) {
        poller.wait(100).map_err(|e| e.to_string())?;
        for (mut from, mut to, count) in [(&here, &there, &mut out), (&there, &here, &mut back)] {
            loop {
                match from.read(&mut buf) {
                    Ok(n) => match to.write(&buf[..n]) {
                        Ok(_) => *count += 1,
                        Err(_) => lost += 1,
                    },
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(e) => return Err(format!("reading a TUN device: {e}")),
                }
            }
        }
    }
    println!("carried {out} out {back} back, {lost} lost");
    Ok(())
}
