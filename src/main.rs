use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use wanlb::config::{
    Config, ConfigErrors, Flags, Gateway6Spec, GatewaySpec, Prefix6Spec, UplinkSpec,
};
use wanlb::gateway::{self, GatewayError};
use wanlb::logging;
use wanlb::preflight::{self, Plan, PreflightError};
use wanlb::uplink::{Addressing6, LinkKind};

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
reach it through isp1's address too. Every other port stays closed. To an IPv6 host,
--forward tcp:443=[fd00:3::10]:443@isp1 forwards the port of isp1's IPv6 address (and, with
prefix6, of the host's own translated address).

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
    /// See a line's count of IP bytes in its current period against its data cap, align it
    /// with the carrier's meter (set), or start it again (reset: a prepaid bucket topped up).
    #[command(after_help = "\
Examples:
  wanlb cap show                  every line's count, cap and reset day
  wanlb cap set lte 12.4GB        the carrier's app says 12.4 GB are used
  wanlb cap reset lte             a new prepaid bucket: the count starts at 0

The count is written to disk at once; a line whose cap is reached takes effect (or leaves
that state) within a second or two.")]
    Cap {
        #[command(subcommand)]
        action: CapAction,
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

/// What `wanlb cap` does.
#[derive(Subcommand)]
enum CapAction {
    /// Each line's count against its cap (or only UPLINK's).
    Show {
        uplink: Option<String>,
        #[command(flatten)]
        at: Running,
    },
    /// Set UPLINK's count of this period to SIZE (500MB, 12.4GB, 20GiB, or bytes).
    Set {
        uplink: String,
        size: String,
        #[command(flatten)]
        at: Running,
    },
    /// Start UPLINK's count again from 0, in a period starting today.
    Reset {
        uplink: String,
        #[command(flatten)]
        at: Running,
    },
}

/// Where the running wanlb is, and its token.
#[derive(clap::Args)]
struct Running {
    /// Where the running wanlb serves its status (its --listen).
    #[arg(long, value_name = "ADDR", default_value = wanlb::config::DEFAULT_LISTEN)]
    listen: std::net::SocketAddr,
    #[command(flatten)]
    token: TokenArgs,
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
    /// Every setting (settings.rs in src/config/ declares them).
    #[command(flatten)]
    settings: Flags,
    /// Where the undo journal lives, so a restart after a crash can clean up (made 0700 if
    /// missing; one that others can write is refused: its journals run as root).
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
    if let Some(GatewayError::Config(errors)) = e.downcast_ref::<GatewayError>() {
        return Some(errors);
    }
    if let Some(PreflightError::Settings(errors)) = e.downcast_ref::<PreflightError>() {
        return Some(errors);
    }
    e.downcast_ref::<ConfigErrors>()
}

fn dispatch(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Run(args) => {
            let RunArgs {
                settings: flags,
                state_dir,
            } = *args;
            let config = Config::load(&flags)?;
            logging::set_level(config.log_level);
            match wanlb::io::limits::raise_open_files() {
                Ok((before, after)) if after > before => {
                    tracing::debug!(before, after, "raised the open-file limit");
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot raise the open-file limit"),
            }
            wanlb::io::signal::stop_on_panic();
            // a reload reads the file again, with the same flags over it
            let load = || Config::load(&flags).map_err(|e| e.to_string());
            gateway::run(&config, &state_dir, &load)?;
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
        Command::Cap { action } => cap(action),
        Command::CheckConfig { config, offline } => {
            let flags = Flags {
                config: Some(config),
                ..Flags::default()
            };
            let config = Config::load(&flags)?;
            let plan = if offline {
                None
            } else {
                Some(preflight::plan(&config).context("checking against this system")?)
            };
            print_summary(&config, plan.as_ref());
            Ok(())
        }
    }
}

/// `wanlb cap`: shows, sets or resets a line's count through the control port.
fn cap(action: CapAction) -> anyhow::Result<()> {
    use wanlb::control::http;
    use wanlb::metered::size::{human_size, parse_size};
    let (at, only) = match &action {
        CapAction::Show { uplink, at } => (at, uplink.clone()),
        CapAction::Set { uplink, at, .. } | CapAction::Reset { uplink, at } => {
            (at, Some(uplink.clone()))
        }
    };
    let token = at.token.token()?;
    let token = token.as_deref();
    match &action {
        CapAction::Show { .. } => {}
        CapAction::Set { uplink, size, .. } => {
            let bytes = parse_size(size).map_err(|e| anyhow::anyhow!("SIZE: {e}"))?;
            http::request_count(at.listen, token, uplink, Some(bytes))?;
        }
        CapAction::Reset { uplink, .. } => http::request_count(at.listen, token, uplink, None)?,
    }
    let status = http::fetch_status(at.listen, token)?;
    let lines: Vec<_> = status
        .uplinks
        .iter()
        .filter(|u| only.as_ref().is_none_or(|n| *n == u.name))
        .collect();
    if lines.is_empty() {
        let names: Vec<&str> = status.uplinks.iter().map(|u| u.name.as_str()).collect();
        anyhow::bail!(
            "no uplink is called {:?} (uplinks: {})",
            only.unwrap_or_default(),
            names.join(", ")
        );
    }
    for u in lines {
        match &u.cap {
            Some(c) => {
                let pct = 100.0 * c.period_bytes as f64 / c.cap_bytes.max(1) as f64;
                let since = c
                    .period_start
                    .as_deref()
                    .unwrap_or("(the clock is not set yet)");
                let next = c
                    .resets_on
                    .as_ref()
                    .map_or("starts again only when reset (prepaid)".to_string(), |d| {
                        format!("starts again on {d}")
                    });
                println!(
                    "{}: {} of {} ({pct:.0}%), {}, since {since}, {next}; at the cap: {}",
                    u.name,
                    human_size(c.period_bytes),
                    human_size(c.cap_bytes),
                    match c.state.as_str() {
                        "reached" => "cap reached",
                        "warned" => "past its warning",
                        _ => "under its cap",
                    },
                    c.on_cap
                );
            }
            None => println!(
                "{}: {} this period (no cap)",
                u.name,
                human_size(u.period_bytes)
            ),
        }
    }
    Ok(())
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

/// Uplink `u`'s IPv6 for a person, as found on the system (`found`) if it was checked.
fn print_ipv6(config: &Config, u: &UplinkSpec, found: Option<&Addressing6>, link: LinkKind) {
    let Some(gw6) = u.gw6 else {
        println!("    IPv6: none (no gw6)");
        return;
    };
    let router = match (link, gw6, found.and_then(Addressing6::router)) {
        (LinkKind::PointToPoint, _, _) => "the peer (point-to-point)".to_string(),
        (_, Gateway6Spec::Auto, Some(r)) => {
            format!("{r} (auto: the interface's default route, followed)")
        }
        (_, Gateway6Spec::Auto, None) => {
            "auto (no IPv6 default route yet: its IPv6 waits for one)".to_string()
        }
        (_, Gateway6Spec::Address(a), _) => a.to_string(),
    };
    let addr = match (found.and_then(Addressing6::current), u.src6) {
        (Some(a), _) => a.to_string(),
        (None, Some(src6)) => src6.to_string(),
        (None, None) => "none yet (a stable global address of dev, once it has one)".into(),
    };
    let translation = match (u.prefix6, found.and_then(Addressing6::prefix)) {
        (None, _) => "NAT66 to its address".to_string(),
        (Some(_), Some((p, len))) => format!("NPTv6 into {p}/{len}"),
        (Some(Prefix6Spec::Auto), None) => {
            "NPTv6 into the delegated prefix (none delegated yet)".to_string()
        }
        (Some(p), None) => format!("NPTv6 into {p}"),
    };
    let targets: Vec<String> = config
        .targets6_of(u)
        .iter()
        .map(ToString::to_string)
        .collect();
    let health = if targets.is_empty() {
        match link {
            LinkKind::Ethernet => {
                "up while the line is up and its router answers neighbour discovery".to_string()
            }
            LinkKind::PointToPoint => "up while the line is up".to_string(),
        }
    } else {
        format!("ping6 {} (judged apart from IPv4)", targets.join(", "))
    };
    println!("    IPv6: router {router}, address {addr}, {translation}; health: {health}");
}

/// The settings for a person; with what they leave to the system settled when they were
/// checked against it (`plan`).
fn print_summary(config: &Config, plan: Option<&Plan>) {
    println!("configuration OK");
    println!("  LAN: {}", config.lan.join(", "));
    for (i, u) in config.uplinks.iter().enumerate() {
        let found = plan.map(|p| &p.uplinks[i]);
        let src = found.map_or_else(
            || "first address of dev".to_string(),
            |r| r.addr.to_string(),
        );
        // without a gateway it can only be a point-to-point link
        let link = found.map_or(
            u.gw.map_or(LinkKind::PointToPoint, |_| LinkKind::Ethernet),
            |r| r.link,
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
        let targets: Vec<String> = config
            .targets4_of(u)
            .iter()
            .map(|t| t.to_string())
            .collect();
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
        if config.has_ipv6() {
            print_ipv6(config, u, found.and_then(|r| r.v6.as_ref()), link);
        }
    }
    if !config.has_ipv6() {
        println!(
            "  IPv6: not carried (no uplink has gw6); the kernel's forwarding of the LAN's IPv6 to the lines stays dropped"
        );
    } else {
        let lan6: Vec<String> = match plan {
            Some(p) => p.lan_sources6.iter().map(ToString::to_string).collect(),
            None => config
                .lan_net
                .iter()
                .filter_map(|n| n.v6())
                .map(|n| n.to_string())
                .collect(),
        };
        println!(
            "  LAN IPv6 prefixes: {}",
            if lan6.is_empty() {
                "none yet (give --lan-net, or an address on a LAN interface)".to_string()
            } else {
                lan6.join(", ")
            }
        );
    }
    for p in &config.pins {
        println!(
            "  pin {} -> {}{}",
            p.prefix,
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
    match plan.map(|p| p.nat_pool).or(config.nat_ports) {
        Some(pool) => println!(
            "  NAT ports: {}-{}, at most {} per LAN host",
            pool.0,
            pool.1,
            config.ports_per_host(pool)
        ),
        None => println!(
            "  NAT ports: auto (the largest range clear of the ephemeral ports and this host's services)"
        ),
    }
    println!("  every setting (the defaults marked):");
    for w in config.written() {
        let default = if w.is_default { "  (default)" } else { "" };
        println!("    {}: {}{default}", w.key, w.value);
    }
}
