use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use wanlb::config::{
    Config, ConfigErrors, FastPathMode, Flags, GatewaySpec, TimeoutFlags, format_duration,
};
use wanlb::gateway::{self, GatewayError};
use wanlb::logging;
use wanlb::uplink::LinkKind;

/// wanlb: a multi-WAN load-balancing NAT gateway.
///
/// LAN traffic bound for the internet is spread over several uplinks by weight, a destination
/// in use stays on its uplink, pinned destinations always take theirs, and wanlb does the
/// source NAT itself. Runs as root on the gateway; removes everything it adds on exit.
#[derive(Parser)]
#[command(name = "wanlb", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway until SIGINT or SIGTERM.
    #[command(after_help = "\
Example (the classic two-line office):
  wanlb run --lan eth0 \\
    --uplink isp1,dev=eth1,gw=192.168.1.254,weight=2 \\
    --uplink isp2,dev=eth2,gw=192.168.2.254,weight=1 \\
    --uplink lte,dev=wwan0,gw=192.168.8.1,tier=2 \\
    --health-target 9.9.9.9 --health-target 1.1.1.1 \\
    --pin 174.143.119.91/32=isp2 \\
    --forward tcp:443=192.168.3.10:443@isp1

Health: every --health-interval each uplink pings its targets through itself; a round is
good when any target answers within --health-timeout. --down-after bad rounds in a row
(or lost carrier, or a gateway silent on ARP) take a line down at once; --up-after good
rounds bring it back. A down line takes no new flows, its UDP and ping flows move to
another line at their next packet, its TCP connections are reset towards the LAN host
(unless --on-uplink-down keep), and with every line down LAN hosts get ICMP network
unreachable. A tier-2 line (tier=2) carries traffic only while every tier-1 line is down.

Port forwards: --forward tcp:443=192.168.3.10:443@isp1 sends connections to port 443 of
isp1's address on to the LAN host; its answers always leave through isp1, and LAN hosts
reach it through isp1's address too. Every other port stays closed.

Signals: SIGINT or SIGTERM stop wanlb and remove everything it added. SIGHUP reloads the
settings: the file is read again (the flags still override it); weights, tiers, checks,
pins, health settings and targets, timeouts, --on-uplink-down, --udp-affinity,
--host-traffic, --on-change and the log level take effect without dropping a flow; a change
to anything else (interfaces, uplinks added or removed, TUN, workers, NAT ports, forwards,
offload, listen) is logged and waits for a restart; a file that cannot be used is logged and
the running settings stay. SIGUSR1 logs table sizes, per-uplink state and totals, and drops.

Logs go to stderr: uplink state changes at info, nothing per packet above debug. Under
systemd (JOURNAL_STREAM names stderr) each line starts with its syslog priority (<4> for a
warning) and has no time, so journalctl -p warning works. --log-level sets the level;
RUST_LOG, if set, wins and takes filters per module (RUST_LOG=info,wanlb::io::monitor=debug).

Exit status: 0 after a clean stop, 1 on a runtime error, 2 for settings that cannot be
used (every one is listed, naming the flag, or the file's line and key).")]
    Run(Box<RunArgs>),
    /// Show what each line of a running wanlb is doing: state and since when, RTT, loss,
    /// throughput, flows, share of new destinations against its weight.
    Status {
        /// Where the running wanlb serves its status (its --listen).
        #[arg(long, value_name = "ADDR", default_value = wanlb::config::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        token: TokenArgs,
        /// Print the status as JSON (what GET /status serves) instead of a table.
        #[arg(long)]
        json: bool,
        /// Redraw the table every second until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Make a running wanlb read its settings again (as SIGHUP does) and print what changed:
    /// weights, tiers, checks, pins, health settings, timeouts, the host's default route and
    /// the hook apply without dropping a flow; other changes wait for a restart. Exit status 2
    /// if the new settings cannot be used (the running ones stay).
    Reload {
        /// Where the running wanlb serves its status (its --listen).
        #[arg(long, value_name = "ADDR", default_value = wanlb::config::DEFAULT_LISTEN)]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        token: TokenArgs,
    },
    /// Undo what a wanlb that is no longer running left on this system (after a crash, kill
    /// -9 or the OOM killer): its rules, routes, nftables table and sysctls, including those
    /// that keep the LAN from the uplinks while no wanlb runs, as recorded in its undo journal.
    /// Afterwards the gateway is as it was before wanlb started. A running wanlb is left
    /// alone (stop it instead: it removes what it added itself). Exit status 1 if a running
    /// wanlb was found or an undo failed (what failed stays in the journal).
    #[command(after_help = "\
A wanlb that dies leaves the LAN closed: what the LAN sends to the internet is refused
(ICMP host unreachable) and IPv6 between the LAN and the uplinks is dropped, until wanlb
runs again or this command undoes it. The next `wanlb run` does the same first; use this
when wanlb cannot run (a unit that gave up restarting it, a package being removed).")]
    Cleanup {
        /// Where the journals are: the --state-dir of the runs to undo.
        #[arg(long, value_name = "DIR", default_value = gateway::STATE_DIR)]
        state_dir: PathBuf,
        /// Only what the wanlb with this TUN device (its --tun) left [default: every stopped
        /// wanlb of this network namespace].
        #[arg(long, value_name = "NAME")]
        tun: Option<String>,
    },
    /// Check a configuration file (and, unless --offline, that its interfaces, addresses and
    /// gateways exist on this system), then print what it means. Every error is listed, each
    /// with its line and key; exit status 2 if there is any.
    CheckConfig {
        /// TOML file to check (see examples/wanlb.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Check the file alone, not against this system's interfaces.
        #[arg(long)]
        offline: bool,
    },
}

/// The running wanlb's --listen-token, for `wanlb status` and `wanlb reload`: from
/// --token-file or --token, else from WANLB_TOKEN; none if none is given.
#[derive(clap::Args)]
struct TokenArgs {
    /// Read its --listen-token from the first line of this file (one only you may read).
    /// Without this or --token, the WANLB_TOKEN environment variable gives it, if set.
    #[arg(long, value_name = "PATH", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Its --listen-token. Every local user can read it in the process list while this
    /// runs: prefer --token-file or WANLB_TOKEN.
    #[arg(long, value_name = "TOKEN")]
    token: Option<String>,
}

/// Where `wanlb status` and `wanlb reload` take the token from when neither flag gives it.
const TOKEN_VARIABLE: &str = "WANLB_TOKEN";

impl TokenArgs {
    fn token(&self) -> anyhow::Result<Option<String>> {
        if let Some(path) = &self.token_file {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("--token-file {}: cannot read it", path.display()))?;
            let token = text.lines().next().unwrap_or("").trim_end_matches('\r');
            anyhow::ensure!(
                !token.trim().is_empty(),
                "--token-file {}: its first line is empty",
                path.display()
            );
            return Ok(Some(token.to_string()));
        }
        if self.token.is_some() {
            return Ok(self.token.clone());
        }
        match std::env::var(TOKEN_VARIABLE) {
            Ok(token) if !token.is_empty() => Ok(Some(token)),
            Ok(_) | Err(std::env::VarError::NotPresent) => Ok(None),
            Err(e) => anyhow::bail!("{TOKEN_VARIABLE}: {e}"),
        }
    }
}

#[derive(clap::Args)]
struct RunArgs {
    /// TOML configuration file; flags add to it or override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// LAN interface whose internet-bound traffic goes through wanlb (repeatable).
    #[arg(long, value_name = "IFACE")]
    lan: Vec<String>,
    /// A network behind a LAN interface whose hosts wanlb translates too, besides the LAN
    /// interfaces' own subnets (a routed LAN behind another router; repeatable). Packets
    /// from any other source are dropped as spoofed.
    #[arg(long, value_name = "CIDR")]
    lan_net: Vec<String>,
    /// An uplink: NAME,dev=IFACE[,gw=IPV4|auto][,weight=N][,tier=N][,check=IPV4]...[,src=IPV4].
    /// gw is required on an Ethernet link (auto: the gateway of dev's default route, as a
    /// DHCP client installs it, followed when it changes); a point-to-point link without a
    /// link-layer header (ppp0, an LTE modem's raw-IP wwan0, a tunnel) needs none. src (the
    /// address used) defaults to dev's first IPv4 address, whatever it becomes; weight and
    /// tier to 1; check (repeatable) replaces --health-target for this uplink (repeatable; a
    /// name from the file is overridden).
    #[arg(long, value_name = "SPEC")]
    uplink: Vec<String>,
    /// Always send destinations in CIDR through UPLINK, e.g. 174.143.119.91/32=isp2
    /// (repeatable; the longest prefix wins). While UPLINK is down they use the other lines;
    /// with a trailing ! (CIDR=UPLINK!) they are refused with ICMP unreachable instead.
    #[arg(long, value_name = "CIDR=UPLINK[!]")]
    pin: Vec<String>,
    /// Send connections to PORT of UPLINK's address on to HOST:PORT in the LAN, e.g.
    /// tcp:8080=192.168.3.10:80@isp2 (repeatable). Their replies always leave through UPLINK;
    /// LAN hosts reach the forward through UPLINK's address too.
    #[arg(long, value_name = "PROTO:PORT=HOST:PORT@UPLINK")]
    forward: Vec<String>,
    /// An address beyond the gateways that answers ping, probed through every uplink
    /// (repeatable; use two or more independent ones). Without any, health is carrier and
    /// the gateway's ARP answers only.
    #[arg(long, value_name = "IPV4")]
    health_target: Vec<String>,
    /// Time between probe rounds [default: 200ms].
    #[arg(long, value_name = "DURATION")]
    health_interval: Option<String>,
    /// How long a probe's answer may take [default: 600ms].
    #[arg(long, value_name = "DURATION")]
    health_timeout: Option<String>,
    /// Unanswered rounds in a row that take a line down [default: 3].
    #[arg(long, value_name = "N")]
    down_after: Option<String>,
    /// Answered rounds in a row that bring a line back [default: 10].
    #[arg(long, value_name = "N")]
    up_after: Option<String>,
    /// Take a line down while more than PERCENT of its probes are lost over the last 50
    /// rounds, even if some get through [default: off].
    #[arg(long, value_name = "PERCENT")]
    max_loss: Option<String>,
    /// Take a line down while its median probe RTT over the last 50 rounds is above this
    /// [default: off].
    #[arg(long, value_name = "DURATION")]
    max_rtt: Option<String>,
    /// What happens to a dead line's TCP connections: reset (the LAN host gets a TCP reset at
    /// once, so applications reconnect) or keep (left to hang until the line returns or they
    /// time out) [default: reset].
    #[arg(long, value_name = "reset|keep")]
    on_uplink_down: Option<String>,
    /// The gateway's own traffic (updates, NTP, a resolver for the LAN): follow puts a
    /// default route in the main table, in front of the system's, on the best line up and
    /// moves it on failover; the system's own is in use again when wanlb stops. off leaves
    /// the main table alone [default: off].
    #[arg(long, value_name = "off|follow")]
    host_traffic: Option<String>,
    /// Where a UDP socket's new destinations go: endpoint (on the uplink where the socket
    /// already talks, so every peer sees one public address and port: what STUN, WebRTC,
    /// VoIP and games need) or destination (each destination placed as any flow: by its
    /// line, else by weight) [default: endpoint].
    #[arg(long, value_name = "endpoint|destination")]
    udp_affinity: Option<String>,
    /// Serve the metrics (GET /metrics, Prometheus) and the status (GET /status, JSON) on
    /// ADDR, or off [default: 127.0.0.1:9911]. Anything but loopback needs --listen-token.
    #[arg(long, value_name = "ADDR|off")]
    listen: Option<String>,
    /// A token every HTTP request must carry (Authorization: Bearer TOKEN). A flag is
    /// visible to every local user in the process list: prefer listen_token in the file.
    #[arg(long, value_name = "TOKEN")]
    listen_token: Option<String>,
    /// A name the status page and the API answer to, besides localhost and the address a
    /// request arrives at: the name you open it by, if any (repeatable; a name or an IP
    /// address, without a port). Requests naming any other host are refused, so that a web
    /// page cannot reach wanlb by pointing its own name at the gateway (DNS rebinding).
    #[arg(long, value_name = "NAME")]
    listen_host: Vec<String>,
    /// Run CMD with sh -c on every uplink state change, with WANLB_UPLINK, WANLB_STATE (up or
    /// down) and WANLB_REASON in its environment (at once, in the background: a slow command
    /// never delays failover).
    #[arg(long, value_name = "CMD")]
    on_change: Option<String>,
    /// How long a destination keeps its uplink after its last flow ends: 600s, 10m, 1h ...
    /// [default: 10m]
    #[arg(long, value_name = "DURATION")]
    affinity_timeout: Option<String>,
    /// Idle timeout of an open TCP connection, or one closed one way; at least 2h4m (RFC 5382
    /// REQ-5) [default: 2h4m].
    #[arg(long, value_name = "DURATION")]
    tcp_established_timeout: Option<String>,
    /// Idle timeout of a TCP connection opening, or closed both ways; at least 4m (RFC 5382
    /// REQ-5) [default: 4m].
    #[arg(long, value_name = "DURATION")]
    tcp_transitory_timeout: Option<String>,
    /// How long a TCP session is kept after a reset in its window, for a reset the endpoint
    /// did not take (RFC 7857 2.2 recommends 4m) [default: 4m].
    #[arg(long, value_name = "DURATION")]
    tcp_reset_timeout: Option<String>,
    /// Idle timeout of a UDP flow; at least 2m (RFC 4787 REQ-5) [default: 5m].
    #[arg(long, value_name = "DURATION")]
    udp_timeout: Option<String>,
    /// Idle timeout of a ping (ICMP echo) flow; at least 60s (RFC 5508 REQ-1) [default: 60s].
    #[arg(long, value_name = "DURATION")]
    icmp_timeout: Option<String>,
    /// After a packet, workers keep looking for the next one this long before sleeping:
    /// lower latency for more CPU time (e.g. 50us, 20ms) [default: 0, off].
    #[arg(long, value_name = "DURATION")]
    busy_poll: Option<String>,
    /// Name of the TUN device to create [default: wanlb0].
    #[arg(long, value_name = "NAME")]
    tun: Option<String>,
    /// Data-path threads [default: number of cores].
    #[arg(long, value_name = "N")]
    workers: Option<usize>,
    /// External ports for NAT (and ICMP identifiers), per uplink and protocol: a range outside
    /// net.ipv4.ip_local_port_range and this host's services, or auto: the largest such range
    /// from 1024 up, found at start (1024-32767 with the kernel's defaults and no service in
    /// it) [default: auto].
    #[arg(long, value_name = "LOW-HIGH|auto")]
    nat_ports: Option<String>,
    /// How many ports of each pool (uplink and protocol) one LAN host may hold; beyond that
    /// its new flows are refused with ICMP "administratively prohibited". Addresses that never
    /// completed a TCP handshake share one host's share per LAN network [default: a quarter
    /// of the pool].
    #[arg(long, value_name = "N")]
    max_ports_per_host: Option<String>,
    /// The most flows wanlb keeps, all hosts together (each costs up to 256 bytes): as it
    /// fills, flows that never completed get shorter timeouts, and are ended to make room; a
    /// table full of completed flows refuses new ones [default: one per 16 KiB of memory,
    /// 16384 to 1048576].
    #[arg(long, value_name = "N")]
    max_flows: Option<String>,
    /// The most flows one LAN host may have; addresses that never completed a TCP handshake
    /// share one host's share per LAN network [default: a sixteenth of --max-flows].
    #[arg(long, value_name = "N")]
    max_flows_per_host: Option<String>,
    /// The most connections through one port forward that have not completed their handshake
    /// (UDP: not answered); beyond it the oldest gives way [default: 4096].
    #[arg(long, value_name = "N")]
    max_embryonic_per_forward: Option<String>,
    /// Carry steady flows (TCP, UDP, ping) in the kernel (eBPF on the LAN and uplink
    /// interfaces) instead of copying every packet through wanlb: auto (if the kernel has
    /// TCX, Linux 6.6+), on (required), off [default: auto].
    #[arg(long, value_name = "auto|on|off")]
    offload: Option<String>,
    /// The least severe of wanlb's events logged: error, warn, info, debug or trace (the
    /// libraries it uses stay at info at most) [default: info]. RUST_LOG, if set, decides
    /// instead.
    #[arg(long, value_name = "LEVEL")]
    log_level: Option<String>,
    /// Where the undo journal lives, so a restart after a crash can clean up.
    #[arg(long, value_name = "DIR", default_value = gateway::STATE_DIR)]
    state_dir: PathBuf,
}

/// Exit status for settings that cannot be used (the same as for a bad flag).
const BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    let command = Cli::parse().command;
    let logs = logging::init();
    let Err(e) = dispatch(command) else {
        return ExitCode::SUCCESS;
    };
    let Some(errors) = config_errors(&e) else {
        say(logs.journal, &format!("{e:#}"));
        let refused = e
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::InvalidData);
        return ExitCode::from(if refused { BAD_INPUT } else { 1 });
    };
    for e in errors.errors() {
        say(logs.journal, &e.to_string());
    }
    if errors.errors().len() > 1 {
        say(logs.journal, &format!("{} errors", errors.errors().len()));
    }
    ExitCode::from(BAD_INPUT)
}

/// Prints wanlb's last words on stderr. Into the journal every line is marked an error: it
/// files a line without a priority as info.
fn say(journal: bool, message: &str) {
    let priority = if journal { "<3>" } else { "" };
    for (i, line) in message.lines().enumerate() {
        if i == 0 {
            eprintln!("{priority}wanlb: {line}");
        } else {
            eprintln!("{priority}{line}");
        }
    }
}

/// The settings that cannot be used, if that is what `e` is about.
fn config_errors(e: &anyhow::Error) -> Option<&ConfigErrors> {
    match e.downcast_ref::<GatewayError>() {
        Some(GatewayError::Config(errors)) => Some(errors),
        _ => e.downcast_ref::<ConfigErrors>(),
    }
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => {
            let flags = Flags {
                config: args.config,
                lan: args.lan,
                lan_nets: args.lan_net,
                uplinks: args.uplink,
                pins: args.pin,
                forwards: args.forward,
                affinity_timeout: args.affinity_timeout,
                busy_poll: args.busy_poll,
                tun: args.tun,
                workers: args.workers,
                nat_ports: args.nat_ports,
                max_ports_per_host: args.max_ports_per_host,
                max_flows: args.max_flows,
                max_flows_per_host: args.max_flows_per_host,
                max_embryonic_per_forward: args.max_embryonic_per_forward,
                offload: args.offload,
                health_targets: args.health_target,
                health_interval: args.health_interval,
                health_timeout: args.health_timeout,
                down_after: args.down_after,
                up_after: args.up_after,
                max_loss: args.max_loss,
                max_rtt: args.max_rtt,
                on_uplink_down: args.on_uplink_down,
                host_traffic: args.host_traffic,
                udp_affinity: args.udp_affinity,
                on_change: args.on_change,
                listen: args.listen,
                listen_token: args.listen_token,
                listen_hosts: args.listen_host,
                timeouts: TimeoutFlags {
                    tcp_established: args.tcp_established_timeout,
                    tcp_transitory: args.tcp_transitory_timeout,
                    tcp_reset: args.tcp_reset_timeout,
                    udp: args.udp_timeout,
                    icmp: args.icmp_timeout,
                },
                log_level: args.log_level,
            };
            let config = Config::load(&flags)?;
            logging::set_level(config.log_level);
            match wanlb::io::limits::raise_open_files() {
                Ok((before, after)) if after > before => {
                    tracing::debug!(before, after, "raised the open-file limit");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
            }
            // a reload reads the file again, with the same flags over it
            let load = || Config::load(&flags).map_err(|e| e.to_string());
            gateway::run(&config, &args.state_dir, &load)?;
            Ok(())
        }
        Command::Reload { listen, token } => {
            let token = token.token()?;
            let report = wanlb::control::http::request_reload(listen, token.as_deref())?;
            for change in &report.applied {
                println!("applied: {change}");
            }
            for setting in &report.need_restart {
                println!("needs a restart: {setting}");
            }
            if report.applied.is_empty() {
                println!("no setting changed that a reload applies");
            }
            Ok(())
        }
        Command::Status {
            listen,
            token,
            json,
            watch,
        } => {
            use wanlb::control::{http, table};
            let token = token.token()?;
            let token = token.as_deref();
            let mut earlier = None;
            loop {
                let now = http::fetch_status(listen, token)?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&now)?);
                } else {
                    if watch {
                        // clear the terminal and go home, as watch(1) does
                        print!("\x1b[2J\x1b[H");
                    }
                    print!("{}", table::render(&now, earlier.as_ref()));
                }
                if !watch {
                    return Ok(());
                }
                earlier = Some(now);
                std::thread::sleep(std::time::Duration::from_secs(1));
            }
        }
        Command::Cleanup { state_dir, tun } => cleanup(&state_dir, tun.as_deref()),
        Command::CheckConfig { config, offline } => {
            let flags = Flags {
                config: Some(config),
                ..Flags::default()
            };
            let config = Config::load(&flags)?;
            let (config, addrs) = if offline {
                let addrs = vec![None; config.uplinks.len()];
                (config, addrs)
            } else {
                let (checked, uplinks) =
                    gateway::check(&config).context("checking against this system")?;
                let found = uplinks.into_iter().map(|u| Some((u.addr, u.link)));
                (checked, found.collect())
            };
            print_summary(&config, &addrs);
            Ok(())
        }
    }
}

/// `wanlb cleanup`: undoes, then says what it did, found running, or could not undo.
fn cleanup(state_dir: &std::path::Path, tun: Option<&str>) -> anyhow::Result<()> {
    let report = gateway::cleanup(state_dir, tun)?;
    let dir = state_dir.display();
    for (tun, changes) in &report.undone {
        println!("undid {changes} change(s) left by the wanlb with TUN device {tun}");
    }
    if report.undone.is_empty() && report.running.is_empty() {
        let which = tun.map_or(String::new(), |t| format!(" with TUN device {t}"));
        println!(
            "nothing to clean up: {dir} holds no undo journal of a wanlb{which} in this network namespace"
        );
        if report.elsewhere > 0 {
            println!(
                "({} journal(s) there belong to other network namespaces: run `wanlb cleanup` inside those)",
                report.elsewhere
            );
        }
    }
    let mut trouble = Vec::new();
    for tun in &report.running {
        trouble.push(format!(
            "the wanlb with TUN device {tun} is running: left alone (stop it, e.g. systemctl stop wanlb: it removes what it added)"
        ));
    }
    for (journal, commands) in &report.kept {
        trouble.push(format!(
            "{} change(s) could not be undone (see above); they stay in {}, each as the command that undoes it:\n  {}",
            commands.len(),
            journal.display(),
            commands.join("\n  ")
        ));
    }
    if trouble.is_empty() {
        if !report.undone.is_empty() {
            println!("the gateway is as it was before wanlb started");
        }
        Ok(())
    } else {
        Err(anyhow::anyhow!(trouble.join("\n")))
    }
}

/// The settings for a person; with each uplink's address and kind of link when they were
/// checked against the system.
fn print_summary(config: &Config, found: &[Option<(std::net::Ipv4Addr, LinkKind)>]) {
    println!("configuration OK");
    println!("  LAN: {}", config.lan.join(", "));
    for (u, found) in config.uplinks.iter().zip(found) {
        let src = found.map_or_else(
            || "first address of dev".to_string(),
            |(a, _)| a.to_string(),
        );
        // without a gateway it can only be a point-to-point link
        let link = found.map_or(
            u.gw.map_or(LinkKind::PointToPoint, |_| LinkKind::Ethernet),
            |(_, l)| l,
        );
        let gw = match (link, u.gw) {
            (LinkKind::Ethernet, Some(GatewaySpec::Auto)) => {
                "auto (the interface's default route, followed)".to_string()
            }
            (LinkKind::Ethernet, Some(gw)) => gw.to_string(),
            (_, Some(peer)) => format!("{peer} (point-to-point)"),
            (_, None) => "none (point-to-point)".to_string(),
        };
        let tier_total = config.tier_weight(u.tier);
        let targets: Vec<String> = config.targets_of(u).iter().map(|t| t.to_string()).collect();
        println!(
            "  uplink {}: dev {} gw {} src {} weight {} tier {} ({:.0}% of new destinations in its tier); health: {}",
            u.name,
            u.dev,
            gw,
            src,
            u.weight,
            u.tier,
            100.0 * f64::from(u.weight) / f64::from(tier_total),
            match (targets.is_empty(), link) {
                (true, LinkKind::Ethernet) => "carrier and gateway ARP only".to_string(),
                (true, LinkKind::PointToPoint) => "carrier only".to_string(),
                (false, _) => format!("ping {}", targets.join(", ")),
            }
        );
    }
    for p in &config.pins {
        println!(
            "  pin {}/{} -> {}{}",
            std::net::Ipv4Addr::from(p.prefix.addr()),
            p.prefix.prefix_len(),
            p.uplink,
            if p.strict {
                " (strict: refused while it is down)"
            } else {
                ""
            }
        );
    }
    for f in &config.forwards {
        println!(
            "  forward {}:{} of {} -> {} (replies leave through {})",
            f.proto.name(),
            f.port,
            f.uplink,
            f.to,
            f.uplink
        );
    }
    let h = &config.health;
    println!(
        "  health: a round every {:?}, answer within {:?}; down after {} bad rounds, up after {} good{}{}; TCP on a dead line: {}",
        h.interval,
        h.timeout,
        h.down_after,
        h.up_after,
        h.max_loss_pct
            .map_or(String::new(), |l| format!(", or above {l}% loss")),
        h.max_rtt
            .map_or(String::new(), |r| format!(", or above {r:?} median RTT")),
        match config.on_uplink_down {
            wanlb::config::OnUplinkDown::Reset => "reset",
            wanlb::config::OnUplinkDown::Keep => "keep",
        }
    );
    println!(
        "  the gateway's own traffic: {}",
        match config.host_traffic {
            wanlb::config::HostTraffic::Off => "the main table's default route, untouched",
            wanlb::config::HostTraffic::Follow =>
                "the host's default route follows the best line up",
        }
    );
    println!("  affinity timeout: {}s", config.affinity_timeout.as_secs());
    let idle = |ms: u64| format_duration(std::time::Duration::from_millis(ms));
    let t = &config.timeouts;
    println!(
        "  idle timeouts: TCP established {}, opening or closed {}, after a reset {}; UDP {}; ICMP {}",
        idle(t.tcp_established),
        idle(t.tcp_transitory),
        idle(t.tcp_reset),
        idle(t.udp),
        idle(t.icmp)
    );
    let pool = if config.nat_ports_auto {
        "auto (the largest range clear of the ephemeral ports and this host's services)".into()
    } else {
        format!(
            "{}-{}, at most {} per LAN host",
            config.nat_ports.0,
            config.nat_ports.1,
            config.ports_per_host(config.nat_ports)
        )
    };
    println!(
        "  NAT ports: {pool}; TUN: {}; workers: {}",
        config.tun, config.workers
    );
    let flows = config.max_flows.map_or_else(
        || "one per 16 KiB of memory (16384 to 1048576)".to_string(),
        |n| n.to_string(),
    );
    let per_host = config
        .max_flows_per_host
        .map_or_else(|| "a sixteenth of them".to_string(), |n| n.to_string());
    println!(
        "  flows: at most {flows}, {per_host} per LAN host; at most {} embryonic connections per port forward",
        config.max_embryonic_per_forward
    );
    let offload = match config.fast_path {
        FastPathMode::Auto => "auto (if the kernel has TCX)",
        FastPathMode::On => "on",
        FastPathMode::Off => "off",
    };
    println!("  kernel fast path: {offload}");
    println!(
        "  log level: {} (RUST_LOG, if set, decides instead)",
        config.log_level
    );
}
