//! What a reload may change while wanlb runs, and what only a restart can: each setting's
//! declaration says which (`reload: Applied` or `Restart`, settings.rs and uplink.rs).
//!
//! Policy (weights, tiers, checks, pins, health, timeouts, the limits on flows and ports,
//! what a dead line does to TCP, the host's default route, the hook, the log level) is taken by the engine, the monitor and the
//! control loop between two packets, by the logger at once. What is built into the running
//! process (interfaces, the uplinks themselves, the TUN device, the workers, the NAT pool, the
//! forwards, the fast path, the HTTP listener) is reported, and waits for a restart.

use super::Config;
use super::declare::{Changes, ReloadContext, Settings};

/// A new configuration compared with the running one.
#[derive(Debug)]
pub struct Reload {
    /// What to run with from now: the running settings with every change a reload applies.
    pub config: Config,
    /// The changes applied, one line each, e.g. `uplink isp1 weight: 2 -> 1`.
    pub applied: Vec<String>,
    /// The changes that wait for a restart, one line each, naming the setting.
    pub need_restart: Vec<String>,
}

impl Config {
    /// Compares `new` (the file and flags read again) with `self`, the settings running:
    /// since a reload never applies what waits for a restart, those are still as loaded at
    /// the start.
    pub fn reload(&self, new: &Config) -> Reload {
        let ctx = ReloadContext {
            running_uplinks: self.uplinks.iter().map(|u| u.name.clone()).collect(),
        };
        let mut config = self.clone();
        let mut changes = Changes::default();
        config.reload_from(new, &ctx, &mut changes);
        Reload {
            config,
            applied: changes.applied,
            need_restart: changes.need_restart,
        }
    }
}
