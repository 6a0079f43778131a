//! The `--on-change` command: run through `sh -c` for every uplink state change, with the
//! change in its environment, from a thread of its own, so that a slow command never delays
//! the probes or the data path. Commands run one after another, in the order of the changes.

use std::process::{Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::time::Duration;

/// One state change, as the command sees it.
#[derive(Clone, Debug)]
pub struct Event {
    pub uplink: String,
    /// `up` or `down`.
    pub state: &'static str,
    pub reason: String,
}

/// Runs `command` for every event received until the senders are gone or `stop` is set.
pub fn run(command: &str, events: Receiver<Event>, stop: &std::sync::atomic::AtomicBool) {
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let event = match events.recv_timeout(Duration::from_millis(200)) {
            Ok(e) => e,
            Err(RecvTimeoutError::Timeout) => continue,
            Err(RecvTimeoutError::Disconnected) => return,
        };
        let child = Command::new("sh")
            .args(["-c", command])
            .env("WANLB_UPLINK", &event.uplink)
            .env("WANLB_STATE", event.state)
            .env("WANLB_REASON", &event.reason)
            .stdin(Stdio::null())
            .spawn();
        let mut child = match child {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "--on-change command could not be started");
                continue;
            }
        };
        // wait for it, but not past a stop: wanlb does not end the user's command
        loop {
            match child.try_wait() {
                Ok(Some(s)) if s.success() => break,
                Ok(Some(s)) => {
                    tracing::warn!(uplink = %event.uplink, status = %s, "--on-change command failed");
                    break;
                }
                Ok(None) if stop.load(std::sync::atomic::Ordering::Relaxed) => return,
                Ok(None) => std::thread::sleep(Duration::from_millis(50)),
                Err(e) => {
                    tracing::warn!(error = %e, "cannot wait for the --on-change command");
                    break;
                }
            }
        }
    }
}

/// Where the monitor sends events; none without a command.
pub type Events = Option<Sender<Event>>;
