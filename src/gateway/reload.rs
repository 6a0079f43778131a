//! The running gateway as the control plane sees it: reports, and reloads (from SIGHUP or
//! `POST /reload`, one at a time).

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::config::{Config, Reload};
use crate::control::DestinationReport;
use crate::control::history::History;
use crate::control::recent::Recent;
use crate::io::metering::Metering;
use crate::io::monitor::MonitorSettings;
use crate::io::worker::Shared;
use crate::preflight::Plan;

use super::Loader;
use super::reports::{busiest_destinations, snapshot};
use super::settings::{engine_config, monitor_settings};

pub(super) struct Control<'a> {
    pub shared: &'a Shared,
    /// The uplinks' counts against their caps.
    pub metering: &'a Metering,
    pub settings: &'a ArcSwap<Config>,
    /// The monitor's part of the settings.
    pub monitor_settings: &'a ArcSwap<MonitorSettings>,
    pub history: &'a Mutex<History>,
    pub plan: &'a Plan,
    pub load: Loader<'a>,
    pub reloading: Mutex<()>,
    /// The busiest destinations, worked out at most once a second (a walk over every flow,
    /// under each shard's lock in turn), however often the status is asked for.
    pub destinations: Mutex<Recent<Vec<DestinationReport>>>,
}

/// How long the status's busiest destinations are kept.
pub(super) const DESTINATIONS_KEPT_MS: u64 = 1000;

impl crate::control::Gateway for Control<'_> {
    fn snapshot(&self, destinations: bool) -> crate::control::Snapshot {
        let mut snapshot = snapshot(self.shared, self.metering, &self.settings.load());
        if destinations {
            let now = self.shared.now().as_millis();
            snapshot.top_destinations = self
                .destinations
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get(now, || busiest_destinations(self.shared));
        }
        snapshot
    }

    fn set_count(&self, name: &str, bytes: Option<u64>) -> Result<(), String> {
        let done = match bytes {
            Some(bytes) => self.metering.set(name, bytes, &self.state_of()),
            None => self.metering.reset(name, &self.state_of()),
        };
        done.map_err(|e| e.to_string())
    }

    fn is_own_user(&self, client: std::net::SocketAddr, server: std::net::SocketAddr) -> bool {
        crate::io::peer::is_own_user(client, server)
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
    /// Uplink `i`'s health by name, for the `--on-change` command.
    fn state_of(&self) -> impl Fn(usize) -> &'static str + '_ {
        |i| {
            self.shared.uplinks[crate::uplink::id_at(i)]
                .status()
                .state
                .name()
        }
    }

    /// Reads the settings again and puts into effect what can change while running (see
    /// [`Config::reload`]): in the engine at once, in the monitor, the hook and the reports
    /// through `settings`. Logs what changed, what waits for a restart, or why nothing did.
    pub fn apply_reload(&self) -> Result<Reload, String> {
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
        shared
            .engine
            .set_line_policy(reload.config.balance, reload.config.failback());
        self.metering.reconfigure(
            reload.config.caps(),
            reload.config.balance_window_ms(),
            &self.state_of(),
        );
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
