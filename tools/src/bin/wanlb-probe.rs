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

#[path = "wanlb-probe/checks.rs"]
mod checks;
#[path = "wanlb-probe/pace.rs"]
mod pace;
#[path = "wanlb-probe/punch.rs"]
mod punch;
#[path = "wanlb-probe/raw.rs"]
mod raw;
#[path = "wanlb-probe/stress.rs"]
mod stress;
use checks::*;
#[path = "wanlb-probe/hold.rs"]
mod hold;
use hold::*;
#[path = "wanlb-probe/capture.rs"]
mod capture;
use capture::*;
#[path = "wanlb-probe/udp.rs"]
mod udp;
use udp::*;
#[path = "wanlb-probe/tun.rs"]
mod tun;
use tun::*;

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
        /// Times each request is sent, half a second apart, before the check fails (1: every
        /// answer must come to the first request).
        #[arg(long, default_value_t = 6)]
        tries: u32,
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
            tries,
            software_checksum,
        } => udp_check(dst, (count, tries), software_checksum),
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
