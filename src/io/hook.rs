//! The `--on-change` command: run through `sh -c` for every uplink state change and data
//! cap event, with the event in its environment. Each runs at once in a process of its own,
//! started from a thread of its own, so a slow command never delays the probes, the data path
//! or the next change's command. The hysteresis keeps one line's changes seconds apart.

use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

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

/// Where the monitor sends events.
pub type Events = Sender<Event>;

/// Runs the command `command()` names at the time (a reload may set, change or remove it)
/// for every event received, until `stop` is set. Commands still running then are left to
/// finish: they are the user's.
pub fn run(command: impl Fn() -> Option<String>, events: Receiver<Event>, stop: &AtomicBool) {
    let mut running: Vec<(Child, String)> = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        match events.recv_timeout(Duration::from_millis(100)) {
            Ok(event) => {
                if let Some(command) = command() {
                    let mut child = Command::new("sh");
                    child
                        .args(["-c", &command])
                        .env("WANLB_UPLINK", &event.uplink)
                        .env("WANLB_EVENT", event.event)
                        .env("WANLB_STATE", event.state)
                        .env("WANLB_REASON", &event.reason)
                        .stdin(Stdio::null());
                    if let Some((bytes, cap)) = event.cap {
                        child.env("WANLB_PERIOD_BYTES", bytes.to_string());
                        if let Some(cap) = cap {
                            child.env("WANLB_CAP_BYTES", cap.to_string());
                        }
                    }
                    let child = child.spawn();
                    match child {
                        Ok(c) => running.push((c, event.uplink)),
                        Err(e) => {
                            tracing::warn!(error = %e, "--on-change command could not be started")
                        }
                    }
                }
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return,
        }
        running.retain_mut(|(child, uplink)| match child.try_wait() {
            Ok(None) => true,
            Ok(Some(s)) => {
                if !s.success() {
                    tracing::warn!(uplink = %uplink, status = %s, "--on-change command failed");
                }
                false
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot wait for the --on-change command");
                false
            }
        });
    }
}
