//! Running the gateway: check the settings against the system, set up the TUN device, routes,
//! rules and the nftables guard, start the workers, and undo it all on the way out.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use std::sync::{Arc, Mutex, PoisonError};

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigErrors, FastPathMode, GatewaySpec, OnUplinkDown, Reload};
use crate::control::history::{self, History, Traffic};
use crate::engine::limits::Eviction;
use crate::engine::port_forward::Forward;
use crate::engine::select::{Pin, Prefix};
use crate::engine::wire::PROTO_TCP;
use crate::engine::{CarriedFlows, Counters, DropReason, Engine, EngineConfig, UplinkConfig};
use crate::health::State;
use crate::io::fastpath::{LanLink, TcFastPath, UplinkLink};
use crate::io::filters::SocketFilters;
use crate::io::host_route::{HostRouteOwner, HostRouteSettings};
pub use crate::io::journal::Cleanup;
use crate::io::journal::{self, Plumbing};
use crate::io::monitor::{self, LineSockets, Monitor, MonitorSettings};
use crate::io::netlink::LinkWatch;
use crate::io::packet::PacketSocket;
use crate::io::system::{self, SystemError};
use crate::io::worker::{Shared, Worker};
use crate::io::{hook, iface, signal, tun};
use crate::preflight::{self, Plan, PreflightError};
use crate::uplink::{Addressing, LinkKind, Live, Uplink};

/// Routing table and rule priorities wanlb uses for LAN traffic.
pub const ROUTE_TABLE: u32 = 7100;
const RULE_PRIORITY: u32 = 7100;
/// The metric of the `unreachable` default route in [`ROUTE_TABLE`], behind the TUN device's
/// (metric 0): it takes over when the device goes, with the process, however it ends.
const FAIL_CLOSED_METRIC: u32 = u32::MAX;
/// The rules that must see marked packets before the kernel's local table claims the uplinks'
/// addresses (hairpinning), and where the local table's rule moves to, below them: no rule
/// can come before the kernel's own, at priority 0.
const BEFORE_LOCAL_PRIORITY: u32 = 1;
const LOCAL_PRIORITY: u32 = 2;
pub const STATE_DIR: &str = "/run/wanlb";
/// Packets each TUN queue holds for its worker. The default (500) overflows when a LAN host
/// sends a burst while the worker is waking up; this absorbs a few milliseconds of bursts.
const TUN_QUEUE_LEN: u32 = 8192;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// Every setting that cannot be used, one a line.
    #[error(transparent)]
    Config(#[from] ConfigErrors),
    #[error(transparent)]
    System(#[from] SystemError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error(
        "interface {0:?} already exists; is another wanlb running? (choose another name with --tun)"
    )]
    TunExists(String),
    #[error("a data-path thread panicked (see the log above)")]
    ThreadPanicked,
}

impl From<PreflightError> for GatewayError {
    fn from(e: PreflightError) -> GatewayError {
        match e {
            PreflightError::Settings(errors) => GatewayError::Config(errors),
            PreflightError::System(e) => GatewayError::System(e),
            PreflightError::Io { what, source } => GatewayError::Io {
                what: what.into(),
                source,
            },
        }
    }
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> GatewayError {
    let what = what.into();
    move |source| GatewayError::Io { what, source }
}

/// The machine's memory, which sizes the flow table unless `max_flows` is given; a quarter
/// of a gigabyte (the smallest default table) if it cannot be read.
fn machine_memory() -> u64 {
    system::total_memory().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "cannot read the machine's memory: the flow table gets the smallest default size");
        0
    })
}

fn engine_config(config: &Config, plan: &Plan) -> EngineConfig {
    let pins = config
        .pins
        .iter()
        .map(|p| Pin {
            prefix: p.prefix,
            strict: p.strict,
            uplink: config
                .uplinks
                .iter()
                .position(|u| u.name == p.uplink)
                .expect("validated") as u8,
        })
        .collect();
    // the secret of the NAT's port choice: from a clock, the ports would be predictable
    let seed = getrandom::u64().unwrap_or_else(|e| {
        tracing::warn!(error = %e, "no random bytes from the kernel: NAT ports are predictable");
        SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    EngineConfig {
        uplinks: config
            .uplinks
            .iter()
            .zip(&plan.uplinks)
            .map(|(u, r)| UplinkConfig {
                name: u.name.clone(),
                addr: u32::from(r.addr),
                weight: u.weight,
                tier: u.tier,
            })
            .collect(),
        pins,
        affinity_timeout_ms: config.affinity_timeout.as_millis() as u64,
        timeouts: (&config.timeouts).into(),
        ports: plan.nat_pool,
        seed: seed ^ u64::from(std::process::id()),
        reset_tcp_on_down: config.on_uplink_down == OnUplinkDown::Reset,
        udp_affinity: config.udp_affinity,
        limits: config.limits(plan.nat_pool, machine_memory()),
    }
}

/// The index of uplink `name` in the configured order (validated to be there).
fn uplink_index(config: &Config, name: &str) -> usize {
    config
        .uplinks
        .iter()
        .position(|u| u.name == name)
        .expect("validated")
}

/// The forwards as the engine takes them.
fn engine_forwards(config: &Config) -> Vec<Forward> {
    config
        .forwards
        .iter()
        .map(|f| Forward {
            proto: f.proto.number(),
            port: f.port,
            uplink: uplink_index(config, &f.uplink) as u8,
            host: u32::from(*f.to.ip()),
            host_port: f.to.port(),
        })
        .collect()
}

/// Routes, rules, sysctls and the nftables guard for `config`, all journaled, in an order
/// that never lets the LAN's traffic out untranslated, even for a moment, and that the undo
/// (newest first) reverses just as safely:
/// 1. the `unreachable` default route in wanlb's table, behind the TUN device's: when wanlb
///    dies, the device and its route go, and this one refuses what the LAN sends to the
///    internet (ICMP host unreachable to the host) instead of the main table's default
///    route carrying it untranslated; it stays until a clean stop, the next start or
///    `wanlb cleanup`;
/// 2. the TUN device's route, then the rules that send the LAN's traffic to the table;
/// 3. the nftables table, IPv6 between the LAN and the uplinks dropped with it (its
///    `notrack` rule only ever exists while the rules send the LAN's traffic to wanlb);
/// 4. forwarding on, last: at a stop it is restored first, before the rules go, so that the
///    main table does not forward the LAN's traffic in between (unless it did before wanlb).
fn plumb(p: &mut Plumbing, config: &Config, plan: &Plan, mtu: u32) -> Result<(), GatewayError> {
    let tun = &config.tun;
    // The device, its route and its sysctls vanish with the last queue, crash or not: they
    // need no undo.
    system::run(
        "ip",
        &words(&format!(
            "link set dev {tun} mtu {mtu} txqueuelen {TUN_QUEUE_LEN} up"
        )),
        None,
    )?;
    // Replies written to TUN come from internet addresses the main table routes elsewhere,
    // and ICMP errors from the uplink's own router come from a directly connected subnet. The
    // table marks what arrives from TUN, the mark counts in the reverse-path check
    // (src_valid_mark), and a rule per LAN below sends marked reverse lookups to the TUN
    // device: the check passes whatever rp_filter says, for these packets only.
    system::write_sysctl(&system::interface_sysctl(tun, "rp_filter"), "2")?;
    system::write_sysctl(&system::interface_sysctl(tun, "src_valid_mark"), "1")?;
    let fail_closed =
        format!("unreachable default metric {FAIL_CLOSED_METRIC} table {ROUTE_TABLE}");
    p.ip(
        &format!("route add {fail_closed}"),
        &format!("route del {fail_closed}"),
    )?;
    system::run(
        "ip",
        &words(&format!("route add default dev {tun} table {ROUTE_TABLE}")),
        None,
    )?;
    for (i, lan) in config.lan.iter().enumerate() {
        // the reverse-path check of a packet from TUN to this LAN looks up its source as if
        // it came in by this LAN (iif): marked, it goes to the TUN device's table, even from an
        // uplink's address (hairpinned); and what the table marks of this LAN's packets to an
        // uplink's address (hairpinning) goes to the TUN device
        let mark = system::TUN_MARK;
        let rpf = format!(
            "fwmark {mark:#x} iif {lan} lookup {ROUTE_TABLE} priority {BEFORE_LOCAL_PRIORITY}"
        );
        p.ip(&format!("rule add {rpf}"), &format!("rule del {rpf}"))?;
        let prio = RULE_PRIORITY + 2 * i as u32;
        // LAN-to-LAN and directly connected destinations keep using the main table; only
        // what would have taken a default route goes to wanlb.
        let local = format!("iif {lan} lookup main suppress_prefixlength 0 priority {prio}");
        p.ip(&format!("rule add {local}"), &format!("rule del {local}"))?;
        let to_tun = format!("iif {lan} lookup {ROUTE_TABLE} priority {}", prio + 1);
        p.ip(&format!("rule add {to_tun}"), &format!("rule del {to_tun}"))?;
    }
    move_local_rule(p)?;
    let addrs: Vec<Ipv4Addr> = plan.uplinks.iter().map(|u| u.addr).collect();
    p.nft_table(
        &nft_table_name(tun),
        &guard_table(config, plan.nat_pool, &addrs)?,
    )?;
    p.sysctl("net.ipv4.ip_forward", "1")?;
    Ok(())
}

/// Moves the kernel's local-table rule from priority 0 to just below wanlb's rules that must
/// come first (hairpinning), journaled: it is back at 0 once wanlb stops, or after a crash at
/// the next start. Where another tool has moved it already, it is left alone. Also lets what
/// wanlb gives back to the gateway's own stack from the TUN device pass the reverse-path check
/// (the lookup of a locally delivered packet's source has no input interface: `iif lo`).
fn move_local_rule(p: &mut Plumbing) -> Result<(), GatewayError> {
    let at = crate::io::netlink::local_rule_priorities()
        .map_err(io_err("reading the routing rules (netlink)"))?;
    if at.contains(&0) {
        let moved = format!("priority {LOCAL_PRIORITY} lookup local");
        if !at.contains(&LOCAL_PRIORITY) {
            p.ip(&format!("rule add {moved}"), &format!("rule del {moved}"))?;
        }
        p.ip(
            "rule del priority 0 lookup local",
            "rule add priority 0 lookup local",
        )?;
    } else if at.iter().any(|&a| a <= BEFORE_LOCAL_PRIORITY) {
        tracing::warn!(priorities = ?at, "the local table's rule is at priority {BEFORE_LOCAL_PRIORITY} or below, and not at 0: left alone, so LAN hosts cannot reach each other through the uplinks' addresses (hairpinning)");
    }
    let mark = system::TUN_MARK;
    let given_back = format!(
        "fwmark {mark:#x} iif lo lookup {ROUTE_TABLE} priority {}",
        LOCAL_PRIORITY + 1
    );
    p.ip(
        &format!("rule add {given_back}"),
        &format!("rule del {given_back}"),
    )?;
    Ok(())
}

/// wanlb's nftables table for the NAT pool `pool` and the uplinks' addresses `addrs` (in the
/// settings' order).
fn guard_table(
    config: &Config,
    pool: (u16, u16),
    addrs: &[Ipv4Addr],
) -> Result<String, GatewayError> {
    let guard: Vec<(String, Ipv4Addr)> = config
        .uplinks
        .iter()
        .zip(addrs)
        .map(|(u, a)| (u.dev.clone(), *a))
        .collect();
    let forwards: Vec<system::TableForward> = config
        .forwards
        .iter()
        .map(|f| system::TableForward {
            uplink: uplink_index(config, &f.uplink),
            proto: f.proto.name(),
            port: f.port,
            to: f.to,
        })
        .collect();
    // what the kernel routes itself from the LAN: the subnets of this host's interfaces
    let kernel_routed: Vec<(Ipv4Addr, u8)> = iface::list()
        .map_err(io_err("listing interfaces"))?
        .iter()
        .flat_map(|i| i.ipv4.iter())
        .filter_map(|&(addr, len)| Prefix::new(u32::from(addr), len))
        .map(|p| (Ipv4Addr::from(p.addr()), p.prefix_len()))
        .collect();
    Ok(system::guard_table_json(
        &nft_table_name(&config.tun),
        &config.tun,
        &config.lan,
        &kernel_routed,
        &guard,
        pool,
        &forwards,
    ))
}

fn words(s: &str) -> Vec<String> {
    s.split_whitespace().map(String::from).collect()
}

/// The name of wanlb's nftables table (family `inet`) for TUN device `tun`: one name per TUN
/// name (nft takes every character a TUN name may have: letters, digits, `.`, `-`, `_`).
pub fn nft_table_name(tun: &str) -> String {
    format!("wanlb_{tun}")
}

/// Undoes what stopped wanlbs of this network namespace left behind (after a crash, SIGKILL,
/// the OOM killer), as recorded in their undo journals in `state_dir`: rules, routes, the
/// nftables table, the fail-closed route, sysctls. Only the one that ran with TUN device
/// `tun`, if given. Journals of running wanlbs are left alone, and what fails to undo stays
/// in its journal.
pub fn cleanup(state_dir: &Path, tun: Option<&str>) -> Result<Cleanup, GatewayError> {
    Ok(journal::cleanup(state_dir, tun)?)
}

/// Reads the settings again for a reload (the file, with the same flags over it); the
/// error says why they cannot be used.
pub type Loader<'a> = &'a (dyn Fn() -> Result<Config, String> + Sync);

/// Runs until SIGINT or SIGTERM, then removes everything it added; on SIGHUP, reloads the
/// settings with `load`. Returns the final counters.
pub fn run(config: &Config, state_dir: &Path, load: Loader<'_>) -> Result<Counters, GatewayError> {
    let plan = preflight::plan(config)?;
    tracing::info!(
        first = plan.nat_pool.0,
        last = plan.nat_pool.1,
        per_host = config.ports_per_host(plan.nat_pool),
        "NAT ports"
    );
    for f in &config.forwards {
        tracing::info!(forward = %f, "port forward: its replies always leave through its uplink");
    }
    signal::block_control_signals().map_err(io_err("blocking SIGINT and SIGTERM"))?;
    let (mut plumbing, leftovers) = Plumbing::start(state_dir, &config.tun)?;
    if leftovers.undone > 0 {
        tracing::warn!(
            changes = leftovers.undone,
            "undid what a previous run left behind"
        );
    }
    if leftovers.kept > 0 {
        tracing::warn!(changes = leftovers.kept, journal = %plumbing.path().display(),
            "could not undo part of what a previous run left (see above): kept in the journal, tried again at the stop or by `wanlb cleanup`");
    }
    if iface::find(&config.tun)
        .map_err(io_err("listing interfaces"))?
        .is_some()
    {
        plumbing.teardown()?;
        return Err(GatewayError::TunExists(config.tun.clone()));
    }
    let result = serve(config, &plan, &mut plumbing, load);
    let teardown = plumbing.teardown();
    let counters = result?;
    teardown?;
    tracing::info!("removed routes, rules and nftables table; stopped");
    Ok(counters)
}

/// The running gateway as the control plane sees it: reports, and reloads (from SIGHUP or
/// `POST /reload`, one at a time).
struct Control<'a> {
    shared: &'a Shared,
    settings: &'a ArcSwap<Config>,
    /// The monitor's part of the settings.
    monitor_settings: &'a ArcSwap<MonitorSettings>,
    history: &'a Mutex<History>,
    plan: &'a Plan,
    load: Loader<'a>,
    reloading: Mutex<()>,
}

impl crate::control::Gateway for Control<'_> {
    fn snapshot(&self, destinations: bool) -> crate::control::Snapshot {
        snapshot(self.shared, &self.settings.load(), destinations)
    }

    fn history(&self) -> crate::control::history::HistoryReport {
        let now = Duration::from_millis(self.shared.now().as_millis());
        self.history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .report(now)
    }

    fn reload(&self) -> Result<crate::control::ReloadReport, String> {
        self.apply_reload().map(|r| crate::control::ReloadReport {
            applied: r.applied,
            need_restart: r.need_restart,
        })
    }
}

impl Control<'_> {
    /// Reads the settings again and puts into effect what can change while running (see
    /// [`Config::reload`]): in the engine at once, in the monitor, the hook and the reports
    /// through `settings`. Logs what changed, what waits for a restart, or why nothing did.
    fn apply_reload(&self) -> Result<Reload, String> {
        let _one_at_a_time = self
            .reloading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let (shared, settings) = (self.shared, self.settings);
        let new = (self.load)().inspect_err(|e| {
            tracing::warn!(error = %e, "reload refused: the new settings cannot be used; the running ones stay");
        })?;
        let reload = settings.load().reload(&new);
        shared
            .engine
            .reconfigure(&engine_config(&reload.config, self.plan));
        shared.carry_out();
        settings.store(Arc::new(reload.config.clone()));
        self.monitor_settings
            .store(Arc::new(monitor_settings(&reload.config)));
        crate::logging::set_level(reload.config.log_level);
        for change in &reload.applied {
            tracing::info!(change = %change, "reloaded");
        }
        for setting in &reload.need_restart {
            tracing::warn!(setting = %setting, "not applied: needs a restart");
        }
        if reload.applied.is_empty() {
            tracing::info!("reloaded: no setting changed that a reload applies");
        }
        Ok(reload)
    }
}

/// The monitor's part of `config`.
fn monitor_settings(config: &Config) -> MonitorSettings {
    MonitorSettings {
        health: config.health(),
        targets: config.line_targets(),
    }
}

/// The host route's part of `config`.
fn host_route_settings(config: &Config) -> HostRouteSettings {
    HostRouteSettings {
        follow: config.host_traffic == crate::config::HostTraffic::Follow,
        ranks: config.uplinks.iter().map(|u| (u.tier, u.weight)).collect(),
    }
}

fn serve(
    config: &Config,
    plan: &Plan,
    plumbing: &mut Plumbing,
    load: Loader<'_>,
) -> Result<Counters, GatewayError> {
    let resolved = &plan.uplinks[..];
    let (queues, uso) = tun::open(&config.tun, config.workers)
        .map_err(io_err(format!("creating TUN device {}", config.tun)))?;
    let mtu = resolved.iter().map(|u| u.iface.mtu).min().unwrap_or(1500);
    tracing::debug!(tun = %config.tun, mtu, udp_segmentation_offload = uso, "TUN device created");
    plumb(plumbing, config, plan, mtu)?;

    let fast_path = start_fast_path(config, resolved)?;
    tracing::debug!(networks = ?plan.lan_sources, "LAN sources translated");
    let engine_config = engine_config(config, plan);
    let limits = engine_config.limits;
    tracing::info!(
        max_flows = limits.max_flows,
        per_host = limits.max_flows_per_host,
        embryonic_per_forward = limits.max_embryonic_per_forward,
        "flow limits"
    );
    let mut engine = Engine::new(engine_config)
        .with_lan_nets(plan.lan_sources.clone())
        .with_forwards(engine_forwards(config));
    if let Some(fast) = &fast_path {
        engine = engine.with_fast_path(fast.reaches());
    }
    for i in 0..resolved.len() {
        // until the monitor says otherwise
        engine.set_uplink_up(i as u8, false, &CarriedFlows::NONE);
    }
    let uplinks: Vec<Uplink> = config
        .uplinks
        .iter()
        .zip(resolved)
        .map(|(u, r)| Uplink {
            name: u.name.clone(),
            dev: u.dev.clone(),
            ifindex: r.iface.index,
            link: r.link,
            mac: r.iface.mac,
            live: Live::new(r.addr, r.gateway),
        })
        .collect();
    let unprobed = |link: LinkKind| -> String {
        let names: Vec<&str> = config
            .uplinks
            .iter()
            .zip(resolved)
            .filter(|(u, r)| r.link == link && config.targets_of(u).is_empty())
            .map(|(u, _)| u.name.as_str())
            .collect();
        names.join(",")
    };
    let add_targets = "add --health-target IPV4 (an address that answers ping beyond the gateway)";
    let ethernet = unprobed(LinkKind::Ethernet);
    if !ethernet.is_empty() {
        tracing::warn!(uplinks = %ethernet,
            "no health target: only carrier and the gateway's ARP answers are watched, so a line dead beyond its modem goes unnoticed; {add_targets}");
    }
    let point_to_point = unprobed(LinkKind::PointToPoint);
    if !point_to_point.is_empty() {
        tracing::warn!(uplinks = %point_to_point,
            "no health target on a point-to-point link: only its carrier is watched (there is no gateway to ask ARP), so a line dead beyond its far end goes unnoticed; {add_targets}");
    }
    for u in uplinks.iter().filter(|u| u.link == LinkKind::PointToPoint) {
        tracing::info!(uplink = %u.name, dev = %u.dev,
            "point-to-point link: packets leave without a link-layer header, no ARP");
    }
    let mut shared = Shared::new(engine, uplinks);
    shared.fast_path = fast_path;

    let probe_key =
        monitor::probe_key(plan.nat_pool).map_err(io_err("choosing the health probes' key"))?;
    let probe_id = probe_key.id();
    let filters = resolved
        .iter()
        .zip(&config.uplinks)
        .map(|(u, spec)| {
            let forwarded: Vec<(u8, u16)> = config
                .forwards
                .iter()
                .filter(|f| f.uplink == spec.name)
                .map(|f| (f.proto.number(), f.port))
                .collect();
            SocketFilters::load(u.addr, u.link, plan.nat_pool, &forwarded, probe_id).map_err(io_err(format!(
                "loading the socket filters for {} (wanlb needs the bpf() system call: root, or CAP_BPF and CAP_NET_ADMIN)",
                u.iface.name
            )))
        })
        .collect::<Result<Vec<_>, GatewayError>>()?;
    let group_base = (std::process::id() as u16).wrapping_mul(32);
    let mut worker_sockets = Vec::new();
    for _ in 0..config.workers {
        let mut sockets = Vec::new();
        for (i, u) in resolved.iter().enumerate() {
            let group = group_base.wrapping_add(i as u16);
            let s = PacketSocket::open_data(u.iface.index, u.link, &filters[i], group).map_err(
                io_err(format!("opening a packet socket on {}", u.iface.name)),
            )?;
            sockets.push(s);
        }
        worker_sockets.push(sockets);
    }
    let lines = shared
        .uplinks
        .iter()
        .zip(&filters)
        .map(|(u, f)| {
            LineSockets::open(u, f)
                .map_err(io_err(format!("opening the probe sockets on {}", u.dev)))
        })
        .collect::<Result<Vec<_>, GatewayError>>()?;
    let addressing: Vec<Addressing> = config
        .uplinks
        .iter()
        .zip(resolved)
        .map(|(u, r)| {
            let addrs = r.iface.ipv4.iter().map(|(a, _)| *a).collect();
            let line = Addressing::new(&u.dev, r.iface.index, u.src, addrs);
            match u.gw {
                Some(GatewaySpec::Auto) => line.following_gateway(r.gateway),
                _ => line,
            }
        })
        .collect();
    let table = nft_table_name(&config.tun);
    let guard = |addrs: &[Ipv4Addr]| -> Result<(), String> {
        let json = guard_table(config, plan.nat_pool, addrs).map_err(|e| e.to_string())?;
        system::replace_nft_table(&table, &json).map_err(|e| e.to_string())
    };
    let links = LinkWatch::open().map_err(io_err("watching link state (netlink)"))?;
    let (events, hook_events) = std::sync::mpsc::channel();
    let settings = ArcSwap::from_pointee(config.clone());
    let monitor_settings = ArcSwap::from_pointee(monitor_settings(config));
    let history = Mutex::new(History::new(
        config.uplinks.iter().map(|u| u.name.clone()).collect(),
        history::SAMPLE_EVERY,
        history::KEPT_FOR,
    ));

    let control = Control {
        shared: &shared,
        settings: &settings,
        monitor_settings: &monitor_settings,
        history: &history,
        plan,
        load,
        reloading: Mutex::new(()),
    };

    let outcome = std::thread::scope(|s| {
        let shared = &shared;
        let settings = &settings;
        let history = &history;
        let control = &control;
        // However this closure returns (a thread that cannot start, say), the threads already
        // running must stop, or the scope would wait for them forever.
        let _stop_on_return = StopOnDrop(&shared.stop);
        let stop_all = || {
            shared.stop.store(true, Ordering::Relaxed);
            signal::raise_in_process(libc::SIGTERM);
        };
        let mut handles = Vec::new();
        for (i, (tun, uplinks)) in queues.iter().zip(worker_sockets).enumerate() {
            handles.push(
                std::thread::Builder::new()
                    .name(format!("wanlb-worker-{i}"))
                    .spawn_scoped(s, move || {
                        let r = Worker {
                            shared,
                            tun,
                            uplinks,
                            busy_poll: config.busy_poll,
                        }
                        .run();
                        if r.is_err() {
                            stop_all();
                        }
                        r.map_err(io_err(format!("worker {i}")))
                    })
                    .map_err(io_err("starting a worker thread"))?,
            );
        }
        let monitor = Monitor {
            shared,
            lines,
            links,
            filters,
            addressing,
            guard: &guard,
            settings: &monitor_settings,
            tun: &queues[0],
            events,
            probe_key,
        };
        let monitor = std::thread::Builder::new()
            .name("wanlb-monitor".into())
            .spawn_scoped(s, move || {
                let r = monitor.run();
                if r.is_err() {
                    stop_all();
                }
                r.map_err(io_err("uplink monitor"))
            })
            .map_err(io_err("starting the monitor thread"))?;
        let hooks = std::thread::Builder::new()
            .name("wanlb-hook".into())
            .spawn_scoped(s, move || {
                let command = || settings.load().on_change.clone();
                hook::run(command, hook_events, &shared.stop)
            })
            .map_err(io_err("starting the hook thread"))?;
        let control_thread = std::thread::Builder::new()
            .name("wanlb-control".into())
            .spawn_scoped(s, move || {
                control_loop(shared, settings, history, HostRouteOwner::new(plumbing))
            })
            .map_err(io_err("starting the control thread"))?;
        // the status and metrics: wanlb runs without them if their address is taken
        let http = config.listen.and_then(|addr| match crate::control::server::Server::bind(addr) {
            Ok(server) => {
                tracing::info!(listen = %addr, "serving the status page (/) and /metrics");
                Some(server)
            }
            Err(e) => {
                tracing::warn!(listen = %addr, error = %e, "cannot serve the status and metrics there; running without them");
                None
            }
        });
        let http = match http {
            Some(server) => Some(
                std::thread::Builder::new()
                    .name("wanlb-http".into())
                    .spawn_scoped(s, move || {
                        let access = crate::control::access::Access::new(
                            config.listen_token.clone(),
                            &config.listen_hosts,
                        );
                        if let Err(e) =
                            crate::control::server::serve(server, &access, control, &shared.stop)
                        {
                            tracing::warn!(error = %e, "the status and metrics server stopped");
                        }
                    })
                    .map_err(io_err("starting the HTTP thread"))?,
            ),
            None => None,
        };

        let sig = loop {
            match signal::wait_for_control_signal().map_err(io_err("waiting for signals"))? {
                libc::SIGUSR1 => log_status(shared, &nft_table_name(&config.tun), &config.tun),
                libc::SIGHUP => {
                    tracing::info!("SIGHUP: reloading the settings");
                    let _ = control.apply_reload();
                }
                sig => break sig,
            }
        };
        shared.stop.store(true, Ordering::Relaxed);
        tracing::info!(signal = sig, "stopping");
        let mut first_error = None;
        for h in handles.into_iter().chain([monitor]) {
            let result = h.join().unwrap_or(Err(GatewayError::ThreadPanicked));
            if let Err(e) = result {
                first_error.get_or_insert(e);
            }
        }
        let _ = control_thread.join();
        if let Some(h) = http {
            let _ = h.join();
        }
        let _ = hooks.join();
        first_error.map_or(Ok(()), Err)
    });
    let counters = shared.engine.counters();
    log_status(&shared, &nft_table_name(&config.tun), &config.tun);
    drop(queues);
    outcome.map(|()| counters)
}

/// Loads and attaches the kernel fast path, as `config.offload` asks. It detaches itself when
/// dropped, or when the process dies: nothing of it outlives wanlb.
fn start_fast_path(
    config: &Config,
    resolved: &[preflight::ResolvedUplink],
) -> Result<Option<Arc<TcFastPath>>, GatewayError> {
    if config.offload == FastPathMode::Off {
        return Ok(None);
    }
    let interfaces = iface::list().map_err(io_err("listing interfaces"))?;
    let lans = interfaces
        .iter()
        .filter(|i| config.lan.contains(&i.name))
        .flat_map(|i| {
            i.ipv4.iter().map(|&(addr, prefix_len)| LanLink {
                ifindex: i.index,
                addr,
                prefix_len,
            })
        })
        .collect();
    let uplinks = resolved
        .iter()
        .map(|u| UplinkLink {
            ifindex: u.iface.index,
            link: u.link,
            mac: u.iface.mac,
        })
        .collect();
    let started = TcFastPath::load(lans, uplinks).and_then(|mut fast| {
        fast.attach()?;
        Ok(fast)
    });
    match started {
        Ok(fast) => {
            tracing::info!("kernel fast path attached: steady flows bypass userspace");
            Ok(Some(Arc::new(fast)))
        }
        Err(e) if config.offload == FastPathMode::Auto => {
            tracing::warn!(error = %e,
                "could not start the kernel fast path (it needs Linux 6.6 or later, and the bpf() system call); every packet goes through userspace");
            Ok(None)
        }
        Err(source) => Err(GatewayError::Io {
            what: "starting the kernel fast path (--offload on)".into(),
            source,
        }),
    }
}

struct StopOnDrop<'a>(&'a std::sync::atomic::AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Expires flows every second; samples the uplinks' traffic for the status page's chart;
/// announces readiness once every uplink has a verdict (or after a few seconds, naming those
/// that have none); keeps the host's default route on the best line (`host_traffic`), as the
/// settings in force (`settings`) say.
fn control_loop(
    shared: &Shared,
    settings: &ArcSwap<Config>,
    history: &Mutex<History>,
    mut host_route: HostRouteOwner<'_>,
) {
    let started = Instant::now();
    let mut announced = false;
    let mut last_expiry = Instant::now();
    while !shared.stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if !announced {
            let undecided: Vec<&str> = shared
                .uplinks
                .iter()
                .filter(|u| u.status().state == State::Unknown)
                .map(|u| u.name.as_str())
                .collect();
            if undecided.is_empty() || started.elapsed() > Duration::from_secs(5) {
                announced = true;
                if !undecided.is_empty() {
                    tracing::warn!(uplinks = ?undecided, "no health verdict yet; those uplinks stay unused until their probes are answered");
                }
                let config = settings.load();
                tracing::info!(tun = %config.tun, workers = config.workers, uplinks = shared.uplinks.len(), "ready");
            }
        }
        if last_expiry.elapsed() >= Duration::from_secs(1) {
            last_expiry = Instant::now();
            let now = shared.now();
            // what the fast path carried is read first: no syscall under the engine's locks
            if let Some(carried) = shared.carried() {
                shared.engine.expire(now, &carried);
                shared.carry_out();
            }
        }
        let now = Duration::from_millis(shared.now().as_millis());
        history
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sample_if_due(now, || uplink_traffic(shared));
        host_route.update(&host_route_settings(&settings.load()), &shared.uplinks);
    }
}

/// How many of the busiest destinations the status lists.
const TOP_DESTINATIONS: usize = 10;

/// Each uplink's byte totals, userspace and fast path together, as the snapshot counts them
/// (without the rest of a snapshot, which runs nft).
fn uplink_traffic(shared: &Shared) -> Vec<Traffic> {
    let fast = shared
        .fast_path
        .as_ref()
        .and_then(|f| f.totals().ok())
        .unwrap_or_default();
    let counters = shared.engine.counters();
    counters
        .uplinks
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let f = fast.get(i).copied().unwrap_or_default();
            Traffic {
                tx_bytes: c.outbound_bytes + f.outbound_bytes,
                rx_bytes: c.inbound_bytes + f.inbound_bytes,
            }
        })
        .collect()
}

/// What the status and metrics report, now.
fn snapshot(shared: &Shared, config: &Config, with_destinations: bool) -> crate::control::Snapshot {
    use crate::control::{
        DestinationReport, ForwardReport, HostCounts, PinReport, ProtoCounts, Snapshot,
        UplinkReport,
    };
    let counters = shared.engine.counters();
    let fast = shared
        .fast_path
        .as_ref()
        .and_then(|f| f.totals().ok())
        .unwrap_or_default();
    let unix = |t: SystemTime| {
        t.duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let destinations: u64 = counters.uplinks.iter().map(|c| c.destinations).sum();
    let uplinks = shared
        .uplinks
        .iter()
        .enumerate()
        .zip(&config.uplinks)
        .map(|((i, u), spec)| {
            let c = counters.uplinks[i];
            let f = fast.get(i).copied().unwrap_or_default();
            let status = u.status();
            let [tcp, udp, icmp] = shared.engine.ports_in_use(i as u8);
            UplinkReport {
                name: u.name.clone(),
                device: u.dev.clone(),
                address: u.addr().to_string(),
                gateway: u.gateway().map(|g| g.to_string()).unwrap_or_default(),
                link: u.link.name().to_string(),
                gateway_mac: u.gateway_mac().map(crate::uplink::format_mac),
                tier: spec.tier,
                weight: spec.weight,
                state: status.state.name().to_string(),
                since: unix(status.since),
                reason: status.reason,
                carrier: status.carrier,
                rtt_median_seconds: status.stats.rtt_median_us.map(|us| us as f64 / 1e6),
                rtt_p90_seconds: status.stats.rtt_p90_us.map(|us| us as f64 / 1e6),
                loss_ratio: status.stats.loss(),
                state_changes: status.changes,
                tx_bytes: c.outbound_bytes + f.outbound_bytes,
                rx_bytes: c.inbound_bytes + f.inbound_bytes,
                tx_packets: c.outbound_packets + f.outbound_packets,
                rx_packets: c.inbound_packets + f.inbound_packets,
                flows_opened: c.flows,
                destinations: c.destinations,
                share: if destinations == 0 {
                    0.0
                } else {
                    c.destinations as f64 / destinations as f64
                },
                weight_share: f64::from(spec.weight)
                    / f64::from(config.tier_weight(spec.tier).max(1)),
                nat_ports_in_use: ProtoCounts { tcp, udp, icmp },
            }
        })
        .collect();
    let [tcp, udp, icmp] = shared.engine.flows_by_proto();
    let io = &shared.io;
    let mut drops: Vec<(String, u64)> = DropReason::ALL
        .iter()
        .map(|r| (r.name().to_string(), counters.drop_count(*r)))
        .collect();
    for (name, n) in [
        ("no_gateway_mac", &io.no_gateway_mac),
        ("send_error", &io.send_errors),
        ("unsendable", &io.unsendable),
        ("tun_write_error", &io.tun_write_errors),
        ("short_read", &io.short_reads),
        ("truncated", &io.truncated),
        ("ring_full", &io.ring_full),
    ] {
        drops.push((name.to_string(), n.load(Ordering::Relaxed)));
    }
    if let Ok(n) = iface::tx_dropped(&config.tun) {
        drops.push(("tun_queue_full".to_string(), n));
    }
    if let Ok(forward) = system::forward_drops(&nft_table_name(&config.tun)) {
        drops.push(("forwarded_from_uplink".to_string(), forward.from_uplink));
        drops.push(("ipv6_forward".to_string(), forward.ipv6));
    }
    Snapshot {
        taken_at: unix(SystemTime::now()),
        uplinks,
        pins: config
            .pins
            .iter()
            .map(|p| PinReport {
                prefix: format!(
                    "{}/{}",
                    Ipv4Addr::from(p.prefix.addr()),
                    p.prefix.prefix_len()
                ),
                uplink: p.uplink.clone(),
                strict: p.strict,
            })
            .collect(),
        flows: ProtoCounts { tcp, udp, icmp },
        flow_limit: u64::from(shared.engine.flow_limit()),
        hosts: {
            let (verified, unverified) = shared.engine.host_counts();
            HostCounts {
                verified: verified as u64,
                unverified: unverified as u64,
            }
        },
        affinity_entries: shared.engine.destination_count() as u64,
        drops,
        evictions: Eviction::ALL
            .iter()
            .map(|e| (e.name().to_string(), counters.eviction_count(*e)))
            .collect(),
        top_destinations: if with_destinations {
            shared
                .engine
                .busiest_destinations(TOP_DESTINATIONS, &shared.carried().unwrap_or_default())
                .into_iter()
                .map(|d| DestinationReport {
                    address: Ipv4Addr::from(d.addr).to_string(),
                    uplink: shared.uplinks[usize::from(d.uplink)].name.clone(),
                    bytes: d.bytes,
                    flows: d.flows,
                })
                .collect()
        } else {
            Vec::new()
        },
        // the engine's forwards are the configured ones, in order
        forwards: config
            .forwards
            .iter()
            .zip(shared.engine.forward_counts())
            .map(|(f, count)| ForwardReport {
                proto: f.proto.name().to_string(),
                port: f.port,
                to: f.to.to_string(),
                uplink: f.uplink.clone(),
                connections_live: count.live,
                connections_total: count.opened,
            })
            .collect(),
    }
}

/// Logs the table sizes, per-uplink totals and drops (on SIGUSR1 and at exit); `table` is
/// wanlb's nftables table, whose forward rule counts what the uplinks tried to send in.
fn log_status(shared: &Shared, table: &str, tun: &str) {
    let tun_queue_full =
        iface::tx_dropped(tun).map_or_else(|_| "unknown".into(), |n| n.to_string());
    let (counters, flows, mappings, destinations) = {
        let e = &shared.engine;
        (
            e.counters(),
            e.flow_count(),
            e.mapping_count(),
            e.destination_count(),
        )
    };
    let (verified_hosts, unverified_hosts) = shared.engine.host_counts();
    let evictions: Vec<String> = Eviction::ALL
        .iter()
        .map(|e| format!("{}={}", e.name(), counters.eviction_count(*e)))
        .collect();
    tracing::info!(
        flows,
        max_flows = shared.engine.flow_limit(),
        mappings,
        destinations,
        verified_hosts,
        unverified_hosts,
        moved = counters.moved,
        resets = counters.resets,
        unreachables = counters.unreachables,
        evictions = %evictions.join(" "),
        "status"
    );
    let forwards = shared.engine.forwards().iter();
    for (f, count) in forwards.zip(shared.engine.forward_counts()) {
        tracing::info!(
            forward = %format!(
                "{}:{} of {} -> {}:{}",
                if f.proto == PROTO_TCP { "tcp" } else { "udp" },
                f.port,
                shared.uplinks[usize::from(f.uplink)].name,
                Ipv4Addr::from(f.host),
                f.host_port
            ),
            connections_now = count.live,
            connections_so_far = count.opened,
            "forward"
        );
    }
    for (path, c) in shared.uplinks.iter().zip(&counters.uplinks) {
        let status = path.status();
        tracing::info!(
            uplink = %path.name,
            state = %status.state.name(),
            rtt_ms = %status.stats.rtt_ms_text(),
            loss_pct = status.stats.loss_pct(),
            outbound_packets = c.outbound_packets,
            outbound_bytes = c.outbound_bytes,
            inbound_packets = c.inbound_packets,
            inbound_bytes = c.inbound_bytes,
            flows = c.flows,
            destinations = c.destinations,
            "uplink totals"
        );
    }
    let drops: Vec<String> = DropReason::ALL
        .iter()
        .filter(|r| counters.drop_count(**r) > 0)
        .map(|r| format!("{}={}", r.name(), counters.drop_count(*r)))
        .collect();
    if let Some(fast) = &shared.fast_path {
        let (handed_over, withdrawn, refused) = fast.flow_counts();
        tracing::info!(
            flows = handed_over - withdrawn,
            handed_over,
            withdrawn,
            refused,
            "kernel fast path"
        );
        match fast.totals() {
            Ok(totals) => {
                for (path, t) in shared.uplinks.iter().zip(totals) {
                    tracing::info!(
                        uplink = %path.name,
                        outbound_packets = t.outbound_packets,
                        outbound_bytes = t.outbound_bytes,
                        inbound_packets = t.inbound_packets,
                        inbound_bytes = t.inbound_bytes,
                        "uplink fast path totals"
                    );
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot read the fast path's counters"),
        }
    }
    let io = &shared.io;
    let (from_uplinks, ipv6_forward) = match system::forward_drops(table) {
        Ok(d) => (d.from_uplink.to_string(), d.ipv6.to_string()),
        Err(e) => {
            tracing::debug!(error = %e, "cannot read the forward counters");
            ("unknown".into(), "unknown".into())
        }
    };
    tracing::info!(
        engine = %drops.join(" "),
        forwarded_from_uplinks = %from_uplinks,
        ipv6_forward = %ipv6_forward,
        no_gateway_mac = io.no_gateway_mac.load(Ordering::Relaxed),
        send_errors = io.send_errors.load(Ordering::Relaxed),
        unsendable = io.unsendable.load(Ordering::Relaxed),
        tun_write_errors = io.tun_write_errors.load(Ordering::Relaxed),
        short_reads = io.short_reads.load(Ordering::Relaxed),
        truncated = io.truncated.load(Ordering::Relaxed),
        ring_full = io.ring_full.load(Ordering::Relaxed),
        tun_queue_full = %tun_queue_full,
        "drops"
    );
}
