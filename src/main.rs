use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use wanlb::config::{Config, ConfigError, Flags, Offload};
use wanlb::gateway::{self, GatewayError};

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
    --pin 174.143.119.91/32=isp2

Signals: SIGINT or SIGTERM stop wanlb and remove everything it added; SIGUSR1 logs
table sizes, per-uplink totals and drops. Set RUST_LOG=debug for more.
Exit status: 0 after a clean stop, 1 on a runtime error, 2 for settings that cannot be
used (the message names the flag, or the file's line and key).")]
    Run(Box<RunArgs>),
    /// Check a configuration file (and, unless --offline, that its interfaces, addresses and
    /// gateways exist on this system), then print what it means.
    CheckConfig {
        /// TOML file to check (see examples/wanlb.toml).
        #[arg(long, value_name = "FILE")]
        config: PathBuf,
        /// Check the file alone, not against this system's interfaces.
        #[arg(long)]
        offline: bool,
    },
}

#[derive(clap::Args)]
struct RunArgs {
    /// TOML configuration file; flags add to it or override it.
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// LAN interface whose internet-bound traffic goes through wanlb (repeatable).
    #[arg(long, value_name = "IFACE")]
    lan: Vec<String>,
    /// An uplink: NAME,dev=IFACE,gw=IPV4[,weight=N][,src=IPV4]. src defaults to the first
    /// IPv4 address of dev, weight to 1 (repeatable; a name from the file is overridden).
    #[arg(long, value_name = "SPEC")]
    uplink: Vec<String>,
    /// Always send destinations in CIDR through UPLINK, e.g. 174.143.119.91/32=isp2
    /// (repeatable; the longest prefix wins).
    #[arg(long, value_name = "CIDR=UPLINK")]
    pin: Vec<String>,
    /// How long a destination keeps its uplink after its last flow ends: 600s, 10m, 1h ...
    /// [default: 10m]
    #[arg(long, value_name = "DURATION")]
    affinity_timeout: Option<String>,
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
    /// External port range for NAT, outside net.ipv4.ip_local_port_range [default: 61000-65535].
    #[arg(long, value_name = "LOW-HIGH")]
    nat_ports: Option<String>,
    /// Carry steady flows (TCP, UDP, ping) in the kernel (eBPF on the LAN and uplink
    /// interfaces) instead of copying every packet through wanlb: auto (if the kernel has
    /// TCX, Linux 6.6+), on (required), off [default: auto].
    #[arg(long, value_name = "auto|on|off")]
    offload: Option<String>,
    /// Where the undo journal lives, so a restart after a crash can clean up.
    #[arg(long, value_name = "DIR", default_value = gateway::STATE_DIR)]
    state_dir: PathBuf,
}

/// Exit status for settings that cannot be used (the same as for a bad flag).
const BAD_INPUT: u8 = 2;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match dispatch(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let bad_input = e.downcast_ref::<ConfigError>().is_some()
                || matches!(
                    e.downcast_ref::<GatewayError>(),
                    Some(GatewayError::Config(_))
                );
            eprintln!("wanlb: {e:#}");
            ExitCode::from(if bad_input { BAD_INPUT } else { 1 })
        }
    }
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => {
            let flags = Flags {
                config: args.config,
                lan: args.lan,
                uplinks: args.uplink,
                pins: args.pin,
                affinity_timeout: args.affinity_timeout,
                busy_poll: args.busy_poll,
                tun: args.tun,
                workers: args.workers,
                nat_ports: args.nat_ports,
                offload: args.offload,
            };
            let config = Config::load(&flags)?;
            gateway::run(&config, &args.state_dir)?;
            Ok(())
        }
        Command::CheckConfig { config, offline } => {
            let flags = Flags {
                config: Some(config),
                ..Flags::default()
            };
            let config = Config::load(&flags)?;
            let addrs = if offline {
                vec![None; config.uplinks.len()]
            } else {
                gateway::check(&config)
                    .context("checking against this system")?
                    .into_iter()
                    .map(|u| Some(u.addr))
                    .collect()
            };
            print_summary(&config, &addrs);
            Ok(())
        }
    }
}

fn print_summary(config: &Config, addrs: &[Option<std::net::Ipv4Addr>]) {
    let total: u32 = config.uplinks.iter().map(|u| u.weight).sum();
    println!("configuration OK");
    println!("  LAN: {}", config.lan.join(", "));
    for (u, addr) in config.uplinks.iter().zip(addrs) {
        let src = addr.map_or_else(|| "first address of dev".to_string(), |a| a.to_string());
        println!(
            "  uplink {}: dev {} gw {} src {} weight {} ({:.0}% of new destinations)",
            u.name,
            u.dev,
            u.gw,
            src,
            u.weight,
            100.0 * f64::from(u.weight) / f64::from(total)
        );
    }
    for p in &config.pins {
        println!(
            "  pin {}/{} -> {}",
            std::net::Ipv4Addr::from(p.prefix.addr()),
            p.prefix.prefix_len(),
            p.uplink
        );
    }
    println!("  affinity timeout: {}s", config.affinity_timeout.as_secs());
    println!(
        "  NAT ports: {}-{}; TUN: {}; workers: {}",
        config.nat_ports.0, config.nat_ports.1, config.tun, config.workers
    );
    let offload = match config.offload {
        Offload::Auto => "auto (if the kernel has TCX)",
        Offload::On => "on",
        Offload::Off => "off",
    };
    println!("  kernel fast path: {offload}");
}
