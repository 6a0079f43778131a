//! The `--on-change` command: run through `sh -c` for every uplink state change and data
//! cap event, with the event in its environment. Each runs in a process group of its own,
//! started from a thread of its own, so a slow command never delays the probes, the data path
//! or the next change's command. The hysteresis keeps one line's changes seconds apart.
//!
//! Bounded, so that a command that hangs while a line flaps cannot pile up processes:
//! - at most [`HookLimits::max_running`] commands run at once; a change that comes while
//!   they all run waits for one to finish;
//! - one state change and one cap event wait per uplink: a newer one of the same uplink and
//!   kind takes the waiting one's place (`superseded`, logged), so the command always hears
//!   each line's latest state and cap event, and those in between are counted, not run;
//! - a command still running after [`HookLimits::timeout`] is killed, with everything it
//!   started in its process group (`timed_out`, logged).
//!
//! At a stop, commands still running are left to finish (they are the user's); changes still
//! waiting are logged and not run.

use std::collections::VecDeque;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::{Duration, Instant};

/// One state change or cap event, as the command sees it.
#[derive(Clone, Debug)]
pub struct Event {
    pub uplink: String,
    /// `up` or `down` (a state change), `cap-warn`, `cap-reached` or `cap-reset`.
    pub event: &'static str,
    /// The line's health: `up` or `down` (`unknown` before the first verdict).
    pub state: &'static str,
    pub reason: String,
    /// For a cap event: the count of the period, and the cap if there is one.
    pub cap: Option<(u64, Option<u64>)>,
}

impl Event {
    /// Whether `other` is of the same uplink and kind (a state change, or a cap event), so
    /// that the newer of the two may stand for both while they wait.
    fn same_kind(&self, other: &Event) -> bool {
        self.uplink == other.uplink && self.cap.is_some() == other.cap.is_some()
    }
}

/// Where the monitor sends events.
pub type Events = Sender<Event>;

/// How many commands run at once, and for how long at most.
#[derive(Clone, Copy, Debug)]
pub struct HookLimits {
    pub max_running: usize,
    pub timeout: Duration,
}

impl Default for HookLimits {
    fn default() -> HookLimits {
        HookLimits {
            max_running: 4,
            timeout: Duration::from_secs(60),
        }
    }
}

/// What became of the changes, so far.
#[derive(Debug, Default)]
pub struct HookCounts {
    pub started: AtomicU64,
    /// Ended with a failure status, or could not be started.
    pub failed: AtomicU64,
    /// Killed after [`HookLimits::timeout`].
    pub timed_out: AtomicU64,
    /// Not run: a newer change of the same uplink came while it waited.
    pub superseded: AtomicU64,
}

impl HookCounts {
    /// Each count with its name, as the metrics show them.
    pub fn counts(&self) -> Vec<(String, u64)> {
        [
            ("started", &self.started),
            ("failed", &self.failed),
            ("timed_out", &self.timed_out),
            ("superseded", &self.superseded),
        ]
        .into_iter()
        .map(|(name, n)| (name.to_string(), n.load(Ordering::Relaxed)))
        .collect()
    }
}

struct Running {
    child: Child,
    uplink: String,
    started: Instant,
}

/// Runs the command `command()` names at the time (a reload may set, change or remove it)
/// for every event received, within `limits`, until `stop` is set.
pub fn run(
    command: impl Fn() -> Option<String>,
    events: Receiver<Event>,
    stop: &AtomicBool,
    limits: HookLimits,
    counts: &HookCounts,
) {
    let mut running: Vec<Running> = Vec::new();
    let mut waiting: VecDeque<Event> = VecDeque::new();
    while !stop.load(Ordering::Relaxed) {
        match events.recv_timeout(Duration::from_millis(100)) {
            Ok(event) => {
                if let Some(old) = waiting.iter_mut().find(|e| e.same_kind(&event)) {
                    tracing::warn!(uplink = %event.uplink, skipped = old.event, now = event.event, "--on-change commands all busy: an event of this uplink waiting to be run is replaced by the newer one");
                    counts.superseded.fetch_add(1, Ordering::Relaxed);
                    *old = event;
                } else {
                    waiting.push_back(event);
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => break,
        }
        running.retain_mut(|r| still_running(r, limits.timeout, counts));
        while running.len() < limits.max_running {
            let Some(event) = waiting.pop_front() else {
                break;
            };
            if let Some(command) = command() {
                running.extend(start(&command, event, counts));
            }
        }
    }
    if !waiting.is_empty() {
        let uplinks: Vec<&str> = waiting.iter().map(|e| e.uplink.as_str()).collect();
        tracing::warn!(uplinks = %uplinks.join(","), "stopping: --on-change commands for these changes were not run");
    }
}

fn start(command: &str, event: Event, counts: &HookCounts) -> Option<Running> {
    let mut child = Command::new("sh");
    child
        .args(["-c", command])
        .env("WANLB_UPLINK", &event.uplink)
        .env("WANLB_EVENT", event.event)
        .env("WANLB_STATE", event.state)
        .env("WANLB_REASON", &event.reason)
        .stdin(Stdio::null())
        // a group of its own, so that a timeout kills what the command started too
        .process_group(0);
    if let Some((bytes, cap)) = event.cap {
        child.env("WANLB_PERIOD_BYTES", bytes.to_string());
        if let Some(cap) = cap {
            child.env("WANLB_CAP_BYTES", cap.to_string());
        }
    }
    let child = child.spawn();
    match child {
        Ok(child) => {
            counts.started.fetch_add(1, Ordering::Relaxed);
            Some(Running {
                child,
                uplink: event.uplink,
                started: Instant::now(),
            })
        }
        Err(e) => {
            counts.failed.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(error = %e, "--on-change command could not be started");
            None
        }
    }
}

/// Whether `r` still runs; one that ran past `timeout` is killed (its group) and reaped.
fn still_running(r: &mut Running, timeout: Duration, counts: &HookCounts) -> bool {
    match r.child.try_wait() {
        Ok(None) if r.started.elapsed() < timeout => true,
        Ok(None) => {
            let group = i32::try_from(r.child.id()).unwrap_or(i32::MAX);
            // SAFETY: kill(2) with a negative pid signals the process group the command leads
            // (made with process_group(0)); it has not been reaped, so the id is still its.
            unsafe { libc::kill(-group, libc::SIGKILL) };
            let _ = r.child.wait();
            counts.timed_out.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(uplink = %r.uplink, seconds = timeout.as_secs(), "--on-change command still running after its timeout: killed");
            false
        }
        Ok(Some(s)) => {
            if !s.success() {
                counts.failed.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(uplink = %r.uplink, status = %s, "--on-change command failed");
            }
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot wait for the --on-change command");
            false
        }
    }
}

#[cfg(test)]
mod tests;
