//! Running the gateway: the order of start and stop. The system is read once, by
//! [`crate::preflight`], whose plan the gateway runs from beside the settings; then the TUN
//! device, the routes, rules and nftables table (`plumbing.rs`), the kernel fast path, the
//! engine, one record per uplink and its sockets, and the threads (`threads.rs`); on the way
//! out everything is undone, newest first. What the running gateway tells is in `reports.rs`,
//! how it takes new settings in `reload.rs`, and each part's share of the settings in
//! `settings.rs`.

mod plumbing;
mod reload;
mod reports;
mod settings;
mod threads;

use std::os::fd::RawFd;
use std::path::Path;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigErrors, FastPathMode, GatewaySpec, Steering};
use crate::control::history::{self, History};
use crate::control::recent::Recent;
use crate::engine::{CarriedFlows, Counters, Engine};
use crate::io::counts::CountsFile;
use crate::io::fastpath::{LanLink, LanLink6, TcFastPath, UplinkLink};
use crate::io::filters::SocketFilters;
pub use crate::io::journal::Cleanup;
use crate::io::journal::{self, Plumbing};
use crate::io::metering::Metering;
use crate::io::monitor::{self, Monitor, TableUplink};
use crate::io::netlink::LinkWatch;
use crate::io::nftables;
use crate::io::steering::{self, FlowSteering};
use crate::io::system::SystemError;
use crate::io::tun::TunQueue;
use crate::io::uplink_sockets::{DataSocket, Reopened, UplinkSockets, fanout_group};
use crate::io::worker::Shared;
use crate::io::{cpu, signal, tun};
use crate::preflight::{self, Plan, PreflightError};
use crate::uplink::{self, Addressing, Ipv6Facts, LinkKind, Uplink};

use plumbing::{NftTable, plumb};
pub use plumbing::{ROUTE_TABLE, nft_table_name};
use reload::Control;
use settings::{
    engine_config, engine_forwards, engine_forwards6, engine_pins6, monitor_settings, net6,
};

pub const STATE_DIR: &str = "/run/wanlb";

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
    preflight::warn_of_loose_reverse_path(&config.lan);
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
    if plan.interfaces.iter().any(|i| i.name == config.tun) {
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

/// Sets up, in order (each step needs those before it): the TUN device, the plumbing, the
/// kernel fast path, the engine, the uplinks' records and sockets; then runs the threads
/// until a stop, and returns the final counters.
fn serve(
    config: &Config,
    plan: &Plan,
    plumbing: &mut Plumbing,
    load: Loader<'_>,
) -> Result<Counters, GatewayError> {
    let (queues, uso) = tun::open(&config.tun, config.workers)
        .map_err(io_err(format!("creating TUN device {}", config.tun)))?;
    let mtu = plan
        .uplinks
        .iter()
        .map(|u| u.iface.mtu)
        .min()
        .unwrap_or(1500);
    tracing::debug!(tun = %config.tun, mtu, udp_segmentation_offload = uso, "TUN device created");
    // the steering program stays loaded while the uplinks' sockets may join its groups
    let (worker_cpus, _steering, steering_program) = match config.steer {
        Steering::Cpu => steer_to_workers(config.workers, &queues[0]),
        Steering::Flow => None,
    }
    .map_or((None, None, None), |(cpus, program, fd)| {
        (Some(cpus), Some(program), Some(fd))
    });
    let table = NftTable::new(config, plan);
    plumb(plumbing, config, plan, &table, mtu)?;

    let fast_path = start_fast_path(config, plan)?;
    let engine = start_engine(config, plan, fast_path.as_ref());
    let uplinks = uplink_records(config, plan);
    warn_unwatched(config, &uplinks);
    let mut shared = Shared::new(engine, uplinks);
    shared.fast_path = fast_path;

    let probe_key =
        monitor::probe_key(plan.nat_pool).map_err(io_err("choosing the health probes' key"))?;
    // each uplink's socket filters and data sockets (one per worker), then its probe sockets
    let mut filters = Vec::new();
    let mut opened = Vec::new();
    for (uplink, spec) in shared.uplinks.iter().zip(&config.uplinks) {
        // IPv4's and IPv6's in one set: a port forwarded in one family only is read in the
        // other too, and dropped there by the engine as unsolicited (counted)
        let forwarded: Vec<(u8, u16)> = config
            .forwards
            .iter()
            .filter(|f| f.uplink == spec.name)
            .map(|f| (f.proto.number(), f.port))
            .collect();
        let f = SocketFilters::load(uplink.addr(), uplink.link, plan.nat_pool, &forwarded, probe_key.id()).map_err(io_err(format!(
            "loading the socket filters for {} (wanlb needs the bpf() system call: root, or CAP_BPF and CAP_NET_ADMIN)",
            uplink.dev
        )))?;
        let fanout = fanout_group(usize::from(uplink.id), steering_program);
        let sockets = DataSocket::open_all(uplink, &f, config.workers, fanout)
            .map_err(io_err(format!("opening a packet socket on {}", uplink.dev)))?;
        opened.push(sockets);
        filters.push(f);
    }
    // where each worker finds its socket on each uplink opened anew
    let reopened: Vec<Vec<Reopened>> = (0..shared.uplinks.len())
        .map(|_| (0..config.workers).map(|_| Reopened::default()).collect())
        .collect();
    let mut workers: Vec<Vec<DataSocket<'_>>> = (0..config.workers).map(|_| Vec::new()).collect();
    for (sockets, reopened) in opened.into_iter().zip(&reopened) {
        for ((socket, reopened), worker) in sockets.into_iter().zip(reopened).zip(&mut workers) {
            worker.push(DataSocket::new(socket, reopened));
        }
    }
    let mut watched = Vec::new();
    for ((uplink, f), (data, (spec, r))) in shared.uplinks.iter().zip(filters).zip(
        reopened
            .iter()
            .zip(config.uplinks.iter().zip(&plan.uplinks)),
    ) {
        let fanout = fanout_group(usize::from(uplink.id), steering_program);
        let sockets = UplinkSockets::open(uplink, f, data, fanout).map_err(io_err(format!(
            "opening the probe sockets on {}",
            uplink.dev
        )))?;
        let addressing = Addressing::new(&spec.dev, r.iface.index, spec.src, r.iface.ipv4.clone());
        let addressing = match spec.gw {
            Some(GatewaySpec::Auto) => addressing.following_gateway(r.gateway),
            _ => addressing,
        };
        let addressing = match &r.v6 {
            Some(v6) => addressing.with_ipv6(v6.clone()),
            None => addressing,
        };
        watched.push((sockets, addressing));
    }
    let update_table = |uplinks: &[TableUplink<'_>]| -> Result<(), String> {
        nftables::replace_table(&table.name, &table.json(uplinks)).map_err(|e| e.to_string())
    };
    let links = LinkWatch::open().map_err(io_err("watching link state (netlink)"))?;
    let (events, hook_events) = std::sync::mpsc::channel();
    let counts = match CountsFile::open(&config.data_dir, &config.tun) {
        Ok(file) => Some(file),
        Err(e) => {
            tracing::warn!(data_dir = %config.data_dir.display(), error = %e,
                "cannot keep the uplinks' counts there: they start at 0 and are lost at the stop");
            None
        }
    };
    let metering = Metering::new(
        config.uplinks.iter().map(|u| u.name.clone()).collect(),
        config.caps(),
        config.balance_window_ms(),
        counts,
        events.clone(),
    );
    let settings = ArcSwap::from_pointee(config.clone());
    let monitor_settings = ArcSwap::from_pointee(monitor_settings(config));
    let history = Mutex::new(History::new(
        config.uplinks.iter().map(|u| u.name.clone()).collect(),
        history::SAMPLE_EVERY,
        history::KEPT_FOR,
    ));
    let control = Control {
        shared: &shared,
        metering: &metering,
        settings: &settings,
        monitor_settings: &monitor_settings,
        history: &history,
        plan,
        load,
        reloading: Mutex::new(()),
        destinations: Mutex::new(Recent::new(reload::DESTINATIONS_KEPT_MS)),
    };
    let monitor = Monitor {
        shared: &shared,
        links,
        uplinks: watched,
        table: &update_table,
        settings: &monitor_settings,
        tun: &queues[0],
        events,
        probe_key,
        metering: &metering,
    };
    let outcome = threads::run(threads::Parts {
        config,
        shared: &shared,
        queues: &queues,
        workers,
        worker_cpus: worker_cpus.as_deref(),
        monitor,
        settings: &settings,
        history: &history,
        control: &control,
        hook_events,
        plumbing,
    });
    let counters = shared.engine.counters();
    reports::log_status(&shared, &table.name, &config.tun);
    drop(queues);
    outcome.map(|()| counters)
}

/// With `--steer cpu`: each worker's CPUs, if every worker can have some of its own, and the
/// steering program, given to the TUN device (the device of `queue`) and to be given to the
/// uplinks' fanout groups: a flow goes to the worker of the CPU its first packet arrives on,
/// and stays with it (io/steering.rs says why). Otherwise `None`: the workers run where the
/// scheduler puts them and packets are spread by the hash of their flow.
fn steer_to_workers(
    workers: usize,
    queue: &TunQueue,
) -> Option<(Vec<Vec<usize>>, FlowSteering, RawFd)> {
    let allowed = cpu::allowed()
        .inspect_err(|e| tracing::warn!(error = %e, "cannot read the CPUs wanlb may run on"))
        .ok()?;
    let Some(sets) = cpu::per_worker(&allowed, workers) else {
        tracing::info!(
            workers,
            cpus = allowed.len(),
            "more workers than CPUs: packets spread by flow, workers not pinned"
        );
        return None;
    };
    let steered = FlowSteering::load(steering::FLOWS_REMEMBERED).and_then(|mut program| {
        program.steer_tun(queue)?;
        let fd = program.program_fd()?;
        Ok((program, fd))
    });
    match steered {
        Ok((program, fd)) => {
            tracing::debug!(
                ?sets,
                "each worker pinned to its CPUs; a flow goes to the worker of the CPU it starts on"
            );
            Some((sets, program, fd))
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot steer packets by CPU: spread by flow, workers not pinned (a new flow's first packet may wait longer)");
            None
        }
    }
}

/// The engine for `config` and `plan`, handing flows to `fast_path` if it runs, with every
/// uplink down until the monitor says otherwise.
fn start_engine(config: &Config, plan: &Plan, fast_path: Option<&Arc<TcFastPath>>) -> Engine {
    tracing::debug!(networks = ?plan.lan_sources, "LAN sources translated");
    let engine_config = engine_config(config, plan);
    let limits = engine_config.limits;
    tracing::info!(
        max_flows = limits.max_flows,
        per_host = limits.max_flows_per_host,
        embryonic_per_forward = limits.max_embryonic_per_forward,
        "flow limits"
    );
    let lan6 = plan.lan_sources6.iter().filter_map(|n| net6(*n)).collect();
    let mut engine = Engine::new(engine_config)
        .with_lan_nets(plan.lan_sources.clone())
        .with_lan_nets6(lan6)
        .with_pins6(engine_pins6(config))
        .with_forwards(engine_forwards(config))
        .with_forwards6(engine_forwards6(config));
    if let Some(fast) = fast_path {
        engine = engine
            .with_fast_path(fast.reaches())
            .with_fast_path6(fast.reaches6());
    }
    for i in 0..plan.uplinks.len() {
        engine.set_uplink_up(uplink::id_at(i), false, &CarriedFlows::NONE);
    }
    engine.set_line_policy(config.balance, config.failback());
    engine
}

/// One record per uplink, as the plan found it, in the settings' order.
fn uplink_records(config: &Config, plan: &Plan) -> Vec<Uplink> {
    config
        .uplinks
        .iter()
        .zip(&plan.uplinks)
        .enumerate()
        .map(|(i, (u, r))| {
            let record = Uplink::new(uplink::id_at(i), &u.name, &u.dev, r.link)
                .on_interface(r.iface.index, r.iface.mac)
                .with_address(r.addr, r.gateway);
            match &r.v6 {
                Some(v6) => record.with_ipv6(Ipv6Facts::new(
                    v6.current(),
                    v6.router(),
                    v6.prefix(),
                    v6.to_peer(),
                )),
                None => record,
            }
        })
        .collect()
}

/// Warns of uplinks whose death beyond their modem or far end would go unnoticed (no health
/// target), and says which uplinks are point-to-point.
fn warn_unwatched(config: &Config, uplinks: &[Uplink]) {
    let unprobed = |link: LinkKind| -> String {
        let names: Vec<&str> = config
            .uplinks
            .iter()
            .zip(uplinks)
            .filter(|(spec, u)| u.link == link && config.targets4_of(spec).is_empty())
            .map(|(_, u)| u.name.as_str())
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
    for (spec, u) in config.uplinks.iter().zip(uplinks) {
        let Some(v6) = u.ipv6() else { continue };
        let targets: Vec<String> = config
            .targets6_of(spec)
            .iter()
            .map(ToString::to_string)
            .collect();
        let judged_by = match (targets.is_empty(), u.link) {
            (false, _) => format!(
                "ICMPv6 echo to {} through the line, apart from IPv4: a line whose IPv6 is dead while its IPv4 works takes no new IPv6 flows, and the other way round",
                targets.join(",")
            ),
            (true, LinkKind::Ethernet) => "no IPv6 health target: its IPv6 is up while the line is up (by its IPv4 targets, carrier and ARP) and its IPv6 router answers neighbour discovery; add an IPv6 --health-target (or check=) to judge its IPv6 beyond the router".to_string(),
            (true, LinkKind::PointToPoint) => "no IPv6 health target: its IPv6 is up while the line is up; add an IPv6 --health-target (or check=) to judge its IPv6 beyond the far end".to_string(),
        };
        tracing::info!(uplink = %u.name, translation = v6.translation(), "IPv6 health: {judged_by}");
    }
}

/// Loads and attaches the kernel fast path, as `config.offload` asks. It detaches itself when
/// dropped, or when the process dies: nothing of it outlives wanlb.
fn start_fast_path(config: &Config, plan: &Plan) -> Result<Option<Arc<TcFastPath>>, GatewayError> {
    if config.offload == FastPathMode::Off {
        return Ok(None);
    }
    let lans = plan
        .interfaces
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
    let uplinks = plan
        .uplinks
        .iter()
        .map(|u| UplinkLink {
            ifindex: u.iface.index,
            link: u.link,
            mac: u.iface.mac,
        })
        .collect();
    let lans6 = plan
        .lan_links6
        .iter()
        .filter_map(|&(ifindex, net)| {
            Some(LanLink6 {
                ifindex,
                prefix: net6(net)?,
            })
        })
        .collect();
    let started = TcFastPath::load(lans, uplinks).and_then(|mut fast| {
        fast.set_lans6(lans6);
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
