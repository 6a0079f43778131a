//! The gateway's threads: one worker per TUN queue, the monitor, the neighbour table's
//! follower (which LAN addresses are one host), the hook (the
//! `--on-change` commands), the control loop (expiry, history, readiness, the host route),
//! the HTTP server; and their stop, on SIGINT or SIGTERM, or when a data-path thread fails.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;

use crate::config::Config;
use crate::control::history::History;
use crate::health::State;
use crate::io::cpu;
use crate::io::hook::{self, Event};
use crate::io::host_route::HostRouteOwner;
use crate::io::journal::Plumbing;
use crate::io::monitor::Monitor;
use crate::io::neighbours::NeighbourWatch;
use crate::io::signal;
use crate::io::tun::TunQueue;
use crate::io::uplink_sockets::DataSocket;
use crate::io::worker::{Shared, Worker};

use super::reload::Control;
use super::reports::{log_status, uplink_traffic};
use super::settings::host_route_settings;
use super::{GatewayError, io_err, nft_table_name};

/// What the threads run on.
pub(super) struct Parts<'a, 'p> {
    pub config: &'a Config,
    pub shared: &'a Shared,
    pub queues: &'a [TunQueue],
    /// Each worker's data socket on each uplink, one worker per TUN queue.
    pub workers: Vec<Vec<DataSocket<'a>>>,
    /// Each worker's CPUs, if they are pinned (io/cpu.rs).
    pub worker_cpus: Option<&'a [Vec<usize>]>,
    pub monitor: Monitor<'a, &'a TunQueue>,
    /// The settings in force, which a reload may change.
    pub settings: &'a ArcSwap<Config>,
    pub history: &'a Mutex<History>,
    pub control: &'a Control<'a>,
    pub hook_events: Receiver<Event>,
    pub plumbing: &'p mut Plumbing,
}

/// Runs the threads until SIGINT or SIGTERM (logging the status on SIGUSR1, reloading on
/// SIGHUP), or until a worker or the monitor fails; then stops them all and waits for them.
pub(super) fn run(parts: Parts<'_, '_>) -> Result<(), GatewayError> {
    let Parts {
        config,
        shared,
        queues,
        workers,
        worker_cpus,
        monitor,
        settings,
        history,
        control,
        hook_events,
        plumbing,
    } = parts;
    std::thread::scope(|s| {
        // However this closure returns (a thread that cannot start, say), the threads already
        // running must stop, or the scope would wait for them forever.
        let _stop_on_return = StopOnDrop(&shared.stop);
        let stop_all = || {
            shared.stop.store(true, Ordering::Relaxed);
            signal::raise_in_process(libc::SIGTERM);
        };
        let mut handles = Vec::new();
        for (i, (tun, uplinks)) in queues.iter().zip(workers).enumerate() {
            handles.push(
                std::thread::Builder::new()
                    .name(format!("wanlb-worker-{i}"))
                    .spawn_scoped(s, move || {
                        if let Some(cpus) = worker_cpus.map(|all| &all[i]) {
                            // only slower if it fails: the packets still reach this worker
                            if let Err(e) = cpu::pin_current_thread(cpus) {
                                tracing::warn!(worker = i, ?cpus, error = %e, "cannot pin the worker to its CPUs");
                            }
                        }
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
        // which LAN addresses are one host (engine/hosts.rs): without it, each is its own
        let neighbours = std::thread::Builder::new()
            .name("wanlb-neighbours".into())
            .spawn_scoped(s, move || watch_neighbours(config, shared))
            .map_err(io_err("starting the neighbour thread"))?;
        let hooks = std::thread::Builder::new()
            .name("wanlb-hook".into())
            .spawn_scoped(s, move || {
                let command = || settings.load().on_change.clone();
                let limits = hook::HookLimits::default();
                hook::run(command, hook_events, &shared.stop, limits, &shared.io.hooks)
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
        let _ = neighbours.join();
        first_error.map_or(Ok(()), Err)
    })
}

/// Follows the LAN interfaces' neighbour tables into the engine's host identities until the
/// stop; if they cannot be read, every LAN address stays a host of its own, as it is without.
fn watch_neighbours(config: &Config, shared: &Shared) {
    let lans: Vec<u32> = config
        .lan
        .iter()
        .filter_map(|name| match crate::io::iface::find(name) {
            Ok(Some(iface)) => Some(iface.index),
            _ => None,
        })
        .collect();
    match NeighbourWatch::open(lans) {
        Ok(watch) => watch.run(&shared.engine, &shared.stop),
        Err(e) => tracing::warn!(
            error = %e,
            "cannot follow the LAN's neighbour table: the per-host limits count each address as a host"
        ),
    }
}

struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Expires flows every second; samples the uplinks' traffic for the status page's chart;
/// announces readiness once every uplink has a verdict (or after a few seconds, naming those
/// that have none); keeps the host's default route on the best uplink (`host_traffic`), as the
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
            // what the fast path carried is read first: no syscall under the engine's locks;
            // the clock after it, so that fewer stamps are later than the sweep's `now`
            if let Some(carried) = shared.carried() {
                shared.engine.expire(shared.now(), &carried);
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
