//! Every setting of wanlb, declared once. A new setting is a declaration here (or, for a key
//! of each uplink, in uplink.rs) and the code that uses it: the file's key, the flag, `--help`,
//! the defaults, loading, reload and the README's reference all follow from it (declare.rs
//! says how).
//!
//! ```text
//! /// The flag's --help (its first paragraph is the short help).
//! one KEY: TYPE {                      a setting with one value; KEY is its key in the file
//!     flag: "--FLAG" "VALUE" [as T],   its flag, the flag's value (parsed by clap as T if given)
//!     [secret: true,]                  its value stays out of messages
//!     file: text | number,             a TOML string, or a number (or a string holding one)
//!     default: "TEXT" | (VALUE, "TEXT"),   as the file writes it, or a value and its words
//!     parse: FN(&str, origin),         text to TYPE, or an error naming origin
//!     reload: Applied | Restart,       whether a reload applies it
//!     doc: "...",                      its line in the README's reference
//! }
//! list KEY: Vec<T> { flag, default: "TEXT", parse (one item), merge, reload, doc }
//! tables FIELD: Vec<T> { key: "KEY", flag: "--FLAG" }   [[KEY]] and --FLAG SPEC (T: Table)
//! section KEY: T { flags: F, file: S }                   [KEY], declared by another table
//! ```
//!
//! The order is the reference's, and the order in which the flags' errors are reported.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use tracing::level_filters::LevelFilter;

use super::declare::{settings, union};
use super::forward::ForwardSpec;
use super::listen::parse_listen_host;
use super::metered::{BALANCE_WINDOW, FAILBACK_GRACE, parse_balance, parse_data_dir};
use super::net::{Cidr, parse_cidr};
use super::parse::*;
use super::pin::PinSpec;
use super::uplink::UplinkSpec;
use super::values::{FastPathMode, HostTraffic, OnUplinkDown, Steering};
use crate::engine::UdpAffinity;

use crate::engine::select::Balance;

/// Where the HTTP control plane listens by default: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9911";
/// Bounds of `max_flows` and `max_flows_per_host`.
pub const MAX_FLOWS: (u32, u32) = (1_024, 67_108_864);
/// Bounds of `max_embryonic_per_forward`: at least one per part of the table (64).
pub const MAX_EMBRYONIC: (u32, u32) = (64, 1_048_576);

settings! {
    /// The settings wanlb runs with, as the file and the flags give them, checked against
    /// each other (but not against the system: see `crate::preflight`).
    pub struct Config {
        flags: Flags,
        file: FileConfig,
        prefix: "",
        flags_first: {
            /// TOML configuration file; flags add to it or override it.
            #[arg(long, value_name = "FILE")]
            pub config: Option<PathBuf>,
        },
    }

    /// LAN interface whose internet-bound traffic goes through wanlb (repeatable).
    list lan: Vec<String> {
        flag: "--lan" "IFACE",
        default: "(required)",
        parse: parse_interface,
        merge: union,
        reload: Restart,
        doc: "LAN interfaces whose internet-bound traffic goes through wanlb",
    }

    /// A network behind a LAN interface whose hosts wanlb translates too, besides the LAN
    /// interfaces' own subnets (a routed LAN behind another router; repeatable): IPv4 or
    /// IPv6. Packets from any other source are dropped as spoofed.
    list lan_net: Vec<Cidr> {
        flag: "--lan-net" "CIDR",
        default: "the LAN interfaces' subnets (IPv6: global and unique-local, not link-local)",
        parse: parse_cidr,
        merge: union,
        reload: Restart,
        doc: "more source networks to translate (a routed LAN behind another router), IPv4 or IPv6; other sources are dropped as spoofed",
    }

    /// An address beyond the gateways that answers ping, probed through every uplink
    /// (repeatable; use two or more independent ones). Without any, health is carrier and
    /// the gateway's ARP answers only. An IPv6 address is probed with ICMPv6 echo through
    /// each line's IPv6 and judges that line's IPv6 alone.
    list health_target: Vec<IpAddr> {
        flag: "--health-target" "IP",
        default: "none (carrier and ARP only)",
        parse: parse_target,
        merge: targets,
        reload: Applied,
        doc: "addresses beyond the gateways that answer ping, probed through every line (the flags replace the file's); IPv6 ones judge the lines' IPv6 only (see [IPv6](#ipv6))",
    }

    /// Time between probe rounds.
    one health_interval: Duration {
        flag: "--health-interval" "DURATION",
        file: text,
        default: "200ms",
        parse: |s, o| parse_bounded(s, o, Duration::from_millis(10), Duration::from_secs(60)),
        reload: Applied,
        doc: "time between probe rounds",
    }

    /// How long a probe's answer may take.
    one health_timeout: Duration {
        flag: "--health-timeout" "DURATION",
        file: text,
        default: "600ms",
        parse: |s, o| parse_bounded(s, o, Duration::from_millis(1), Duration::from_secs(60)),
        reload: Applied,
        doc: "how long an answer may take",
    }

    /// Unanswered rounds in a row that take a line down.
    one down_after: u32 {
        flag: "--down-after" "N",
        file: number,
        default: "3",
        parse: |s, o| parse_count(s, o, 1, 100),
        reload: Applied,
        doc: "unanswered rounds in a row that take a line down",
    }

    /// Answered rounds in a row that bring a line back.
    one up_after: u32 {
        flag: "--up-after" "N",
        file: number,
        default: "10",
        parse: |s, o| parse_count(s, o, 1, 100),
        reload: Applied,
        doc: "answered rounds in a row that bring it back",
    }

    /// Take a line down while more than PERCENT of its probes are lost over the last 50
    /// rounds, even if some get through.
    one max_loss: Option<u32> {
        flag: "--max-loss" "PERCENT",
        file: number,
        default: (None, "off"),
        parse: |s, o| parse_loss(s, o).map(Some),
        reload: Applied,
        doc: "take a line down above this loss over the last 50 rounds",
    }

    /// Take a line down while its median probe RTT over the last 50 rounds is above this.
    one max_rtt: Option<Duration> {
        flag: "--max-rtt" "DURATION",
        file: text,
        default: (None, "off"),
        parse: |s, o| {
            let bounds = (Duration::from_micros(100), Duration::from_secs(60));
            parse_bounded(s, o, bounds.0, bounds.1).map(Some)
        },
        reload: Applied,
        doc: "take a line down above this median RTT over the last 50 rounds",
    }

    tables uplinks: Vec<UplinkSpec> { key: "uplink", flag: "--uplink" }

    tables pins: Vec<PinSpec> { key: "pin", flag: "--pin" }

    tables forwards: Vec<ForwardSpec> { key: "forward", flag: "--forward" }

    /// What happens to a dead line's TCP connections: reset (the LAN host gets a TCP reset at
    /// once, so applications reconnect) or keep (left to hang until the line returns or they
    /// time out).
    one on_uplink_down: OnUplinkDown {
        flag: "--on-uplink-down" "reset|keep",
        file: text,
        default: "reset",
        parse: parse_on_uplink_down,
        reload: Applied,
        doc: "`reset`: a dead line's TCP connections are reset towards the LAN host; `keep`: left alone",
    }

    /// The gateway's own traffic (updates, NTP, a resolver for the LAN): follow puts a
    /// default route in the main table, in front of the system's, on the best line up and
    /// moves it on failover; the system's own is in use again when wanlb stops. off leaves
    /// the main table alone.
    one host_traffic: HostTraffic {
        flag: "--host-traffic" "off|follow",
        file: text,
        default: "off",
        parse: parse_host_traffic,
        reload: Applied,
        doc: "`follow`: the gateway's own default route follows the best line up (see [The gateway's own traffic](#the-gateways-own-traffic)); `off`: wanlb's route goes at once",
    }

    /// Where a UDP socket's new destinations go: endpoint (on the uplink where the socket
    /// already talks, so every peer sees one public address and port: what STUN, WebRTC,
    /// VoIP and games need) or destination (each destination placed as any flow: by its
    /// line, else by weight).
    one udp_affinity: UdpAffinity {
        flag: "--udp-affinity" "endpoint|destination",
        file: text,
        default: "endpoint",
        parse: parse_udp_affinity,
        reload: Applied,
        doc: "`endpoint`: a UDP socket that already talks through a line sends to new destinations through it too, from the same public address and port; `destination`: each destination placed like any flow (see [One public address per UDP socket](#one-public-address-per-udp-socket))",
    }

    /// How long a better line must have been up before the TCP connections of a line with
    /// failback=move are reset (per uplink: failback_grace=).
    one failback_grace: Duration {
        flag: "--failback-grace" "DURATION",
        file: text,
        default: "5m",
        parse: |s, o| parse_bounded(s, o, FAILBACK_GRACE.0, FAILBACK_GRACE.1),
        reload: Applied,
        doc: "how long a better line must have been up before a line's `failback=move` resets its TCP connections; 1s to 1d",
    }

    /// Run CMD with sh -c on every uplink state change and data cap event, with WANLB_UPLINK,
    /// WANLB_EVENT (up, down, cap-warn, cap-reached or cap-reset), WANLB_STATE (up or down)
    /// and WANLB_REASON in its environment (in the background: a slow command never delays
    /// failover). At most 4 at once, each killed after 60 s; while they all run, a line's
    /// newer event of a kind replaces its waiting one.
    one on_change: Option<String> {
        flag: "--on-change" "CMD",
        file: text,
        default: (None, "none"),
        parse: |s, o| parse_command(s, o).map(Some),
        reload: Applied,
        doc: "`sh -c CMD` on every state change and cap event, with `WANLB_UPLINK`, `WANLB_EVENT`, `WANLB_STATE`, `WANLB_REASON` (see [The hook](#the-hook))",
    }

    /// How long a destination keeps its uplink after its last flow ends: 600s, 10m, 1h ...
    one affinity_timeout: Duration {
        flag: "--affinity-timeout" "DURATION",
        file: text,
        default: "10m",
        parse: parse_affinity,
        reload: Applied,
        doc: "how long a destination keeps its line after its last flow",
    }

    /// How new destinations are spread over the lines of a tier: destinations (by count, as
    /// the weights say) or bytes (to the line furthest below its weight's share of the bytes
    /// carried over --balance-window).
    one balance: Balance {
        flag: "--balance" "destinations|bytes",
        file: text,
        default: "destinations",
        parse: parse_balance,
        reload: Applied,
        doc: "`destinations`: weights share out new destinations; `bytes`: a new destination goes to the line furthest below its weight's share of the bytes of the last `balance_window`",
    }

    /// The window over which balance=bytes counts each line's bytes.
    one balance_window: Duration {
        flag: "--balance-window" "DURATION",
        file: text,
        default: "10m",
        parse: |s, o| parse_bounded(s, o, BALANCE_WINDOW.0, BALANCE_WINDOW.1),
        reload: Applied,
        doc: "the sliding window of `balance = \"bytes\"`; 10s to 1d",
    }

    section timeouts: IdleTimeouts { flags: TimeoutFlags, file: FileTimeouts }

    /// External ports for NAT (and ICMP identifiers), per uplink and protocol: a range outside
    /// net.ipv4.ip_local_port_range and this host's services, or auto: the largest such range
    /// from 1024 up, found at start (1024-32767 with the kernel's defaults and no service in
    /// it).
    one nat_ports: Option<(u16, u16)> {
        flag: "--nat-ports" "LOW-HIGH|auto",
        file: text,
        default: "auto",
        parse: parse_nat_ports,
        reload: Restart,
        doc: "external ports per line and protocol; auto: the largest range clear of the ephemeral ports, this host's services and, when `listen` is on every address or an uplink's, its port; forwarded ports in it are kept aside",
    }

    /// The most flows wanlb keeps, all hosts together (each costs up to 256 bytes): as it
    /// fills, flows that never completed get shorter timeouts, and are ended to make room; a
    /// table full of completed flows refuses new ones.
    one max_flows: Option<u32> {
        flag: "--max-flows" "N",
        file: number,
        default: (None, "one per 16 KiB of memory, 16,384 to 1,048,576"),
        parse: |s, o| parse_count(s, o, MAX_FLOWS.0, MAX_FLOWS.1).map(Some),
        reload: Applied,
        doc: "flows in the table (256 bytes each at most); from 95% full, flows never answered are ended first, from 60% their timeouts shrink; 1,024 to 67,108,864",
    }

    /// The most flows one LAN host may have; addresses that never completed a TCP handshake
    /// share one host's share per LAN network, and one port forward's connections hold as
    /// many (an eighth of that from one remote /24).
    one max_flows_per_host: Option<u32> {
        flag: "--max-flows-per-host" "N",
        file: number,
        default: (None, "a sixteenth of max_flows"),
        parse: |s, o| parse_count(s, o, 1, MAX_FLOWS.1).map(Some),
        reload: Applied,
        doc: "flows one LAN host may have; the unverified addresses of a LAN network have as many together, and so do the connections through one port forward (an eighth of that from one remote /24); at most `max_flows`",
    }

    /// How many ports of each pool (uplink and protocol) one LAN host may hold; beyond that
    /// its new flows are refused with ICMP "administratively prohibited". Addresses that never
    /// completed a TCP handshake share one host's share per LAN network.
    one max_ports_per_host: Option<u32> {
        flag: "--max-ports-per-host" "N",
        file: number,
        default: (None, "a quarter of the pool"),
        parse: |s, o| parse_count(s, o, 1, 65535).map(Some),
        reload: Applied,
        doc: "ports one LAN host may hold per line and protocol; the unverified addresses of a LAN network hold as many together (see [Floods and limits](#floods-and-limits))",
    }

    /// The most connections through one port forward that have not completed their handshake
    /// (UDP: not answered); beyond it the oldest gives way.
    one max_embryonic_per_forward: u32 {
        flag: "--max-embryonic-per-forward" "N",
        file: number,
        default: "4096",
        parse: |s, o| parse_count(s, o, MAX_EMBRYONIC.0, MAX_EMBRYONIC.1),
        reload: Applied,
        doc: "connections through one port forward that have not completed their handshake; the oldest gives way to a new one; 64 to 1,048,576",
    }

    /// Carry steady flows (TCP, UDP, ping) in the kernel (eBPF on the LAN and uplink
    /// interfaces) instead of copying every packet through wanlb: auto (if the kernel has
    /// TCX, Linux 6.6+), on (required), off.
    one offload: FastPathMode {
        flag: "--offload" "auto|on|off",
        file: text,
        default: "auto",
        parse: parse_fast_path_mode,
        reload: Restart,
        doc: "carry steady flows in the kernel (eBPF, Linux 6.6+)",
    }

    /// Which worker takes a flow: the one of the CPU its first packet arrives on (each worker
    /// pinned to CPUs of its own, so a new flow's first packets wait less), or the one its
    /// hash names, the workers unpinned.
    one steer: Steering {
        flag: "--steer" "cpu|flow",
        file: text,
        default: "cpu",
        parse: parse_steering,
        reload: Restart,
        doc: "which worker takes a flow: the one on the CPU its first packet arrives on, kept for the whole flow, or the one its hash names (see [Where the time goes](#where-the-time-goes))",
    }

    /// Serve the metrics (GET /metrics, Prometheus) and the status (GET /status, JSON) on
    /// ADDR, or off. Anything but loopback needs --listen-token.
    one listen: Option<SocketAddr> {
        flag: "--listen" "ADDR|off",
        file: text,
        default: "127.0.0.1:9911",
        parse: parse_listen,
        reload: Restart,
        doc: "where `/`, `/metrics` and `/status` are served",
    }

    /// A token every HTTP request must carry (Authorization: Bearer TOKEN). A flag is
    /// visible to every local user in the process list: prefer listen_token in the file.
    one listen_token: Option<String> {
        flag: "--listen-token" "TOKEN",
        secret: true,
        file: text,
        default: (None, "none"),
        parse: |s, o| parse_token(s, o).map(Some),
        reload: Restart,
        doc: "bearer token every request but the page's must carry; required off loopback. On the command line every local user can read it: keep it in the file",
    }

    /// A name the status page and the API answer to, besides localhost and the address a
    /// request arrives at: the name you open it by, if any (repeatable; a name or an IP
    /// address, without a port). Requests naming any other host are refused, so that a web
    /// page cannot reach wanlb by pointing its own name at the gateway (DNS rebinding).
    list listen_hosts: Vec<String> {
        flag: "--listen-host" "NAME",
        default: "none",
        parse: parse_listen_host,
        merge: union,
        reload: Restart,
        doc: "names (or addresses) the control port answers to, besides `localhost`, loopback and the address a request arrives at; without a port (see [The control port](#the-control-port))",
    }

    /// Name of the TUN device to create.
    one tun: String {
        flag: "--tun" "NAME",
        file: text,
        default: "wanlb0",
        parse: parse_tun,
        reload: Restart,
        doc: "the TUN device wanlb creates (letters, digits, `-`, `_`, `.`); its nftables table is `inet wanlb_NAME`. One wanlb runs per network namespace",
    }

    /// Where each line's count against its cap is kept across restarts, crashes and
    /// reboots (a file per TUN device, written at least once a minute).
    one data_dir: PathBuf {
        flag: "--data-dir" "DIR",
        file: text,
        default: "/var/lib/wanlb",
        parse: parse_data_dir,
        reload: Restart,
        doc: "where the lines' counts against their caps are kept: `TUN.json`, written at least once a minute and at a stop (see [Metered lines](#metered-lines))",
    }

    /// Data-path threads.
    one workers: usize {
        flag: "--workers" "N" as usize,
        file: number,
        default: (std::thread::available_parallelism().map_or(1, |n| n.get()), "number of cores"),
        parse: |s, o| parse_count(s, o, 1, 64).map(|n| n as usize),
        reload: Restart,
        doc: "data-path threads",
    }

    /// After a packet, workers keep looking for the next one this long before sleeping:
    /// lower latency for more CPU time (e.g. 50us, 20ms).
    one busy_poll: Duration {
        flag: "--busy-poll" "DURATION",
        file: text,
        default: (Duration::ZERO, "0 (off)"),
        parse: parse_busy_poll,
        reload: Restart,
        doc: "how long a worker keeps looking for packets before it sleeps",
    }

    /// The least severe of wanlb's events logged: error, warn, info, debug or trace (the
    /// libraries it uses stay at info at most). RUST_LOG, if set, decides instead.
    one log_level: LevelFilter {
        flag: "--log-level" "LEVEL",
        file: text,
        default: "info",
        parse: parse_log_level,
        reload: Applied,
        doc: "wanlb's log level: `error`, `warn`, `info`, `debug` or `trace`; `RUST_LOG`, if set, wins (see [Logs](#logs))",
    }
}

settings! {
    /// The idle timeouts of flows, by protocol and TCP phase (`[timeouts]`). The RFC minimums
    /// are requirements (MUST NOT be less): a value under them is refused.
    pub struct IdleTimeouts {
        flags: TimeoutFlags,
        file: FileTimeouts,
        prefix: "timeouts.",
    }

    /// Idle timeout of an open TCP connection, or one closed one way; at least 2h4m (RFC 5382
    /// REQ-5).
    one tcp_established: Duration {
        flag: "--tcp-established-timeout" "DURATION",
        file: text,
        default: "2h4m",
        parse: |s, o| parse_idle_timeout(s, o, Duration::from_secs(124 * 60), "RFC 5382 REQ-5"),
        reload: Applied,
        doc: "idle timeout of an open TCP connection, or one closed one way (at least 2h4m)",
    }

    /// Idle timeout of a TCP connection opening, or closed both ways; at least 4m (RFC 5382
    /// REQ-5).
    one tcp_transitory: Duration {
        flag: "--tcp-transitory-timeout" "DURATION",
        file: text,
        default: "4m",
        parse: |s, o| parse_idle_timeout(s, o, Duration::from_secs(4 * 60), "RFC 5382 REQ-5"),
        reload: Applied,
        doc: "idle timeout of a TCP connection opening or closed (at least 4m)",
    }

    /// How long a TCP session is kept after a reset in its window, for a reset the endpoint
    /// did not take (RFC 7857 2.2 recommends 4m).
    one tcp_reset: Duration {
        flag: "--tcp-reset-timeout" "DURATION",
        file: text,
        default: "4m",
        parse: |s, o| parse_idle_timeout(s, o, Duration::from_secs(1), "RFC 7857 2.2 recommends 4m"),
        reload: Applied,
        doc: "how long a reset connection's mapping is kept",
    }

    /// Idle timeout of a UDP flow; at least 2m (RFC 4787 REQ-5).
    one udp: Duration {
        flag: "--udp-timeout" "DURATION",
        file: text,
        default: "5m",
        parse: |s, o| parse_idle_timeout(s, o, Duration::from_secs(2 * 60), "RFC 4787 REQ-5"),
        reload: Applied,
        doc: "idle timeout of a UDP flow (at least 2m)",
    }

    /// Idle timeout of a ping (ICMP echo) flow; at least 60s (RFC 5508 REQ-1).
    one icmp: Duration {
        flag: "--icmp-timeout" "DURATION",
        file: text,
        default: "60s",
        parse: |s, o| parse_idle_timeout(s, o, Duration::from_secs(60), "RFC 5508 REQ-1"),
        reload: Applied,
        doc: "idle timeout of a ping flow (at least 60s)",
    }
}
