//! The control plane: what wanlb tells a person and their monitoring. A [`Snapshot`] of the
//! running gateway (made by the gateway from the uplinks' shared state and the engine's
//! counters, never from the workers) is served over HTTP as Prometheus metrics and as JSON
//! (`http.rs`, on the server of `server.rs`, to those `access.rs` lets in), printed as a
//! table by `wanlb status` (`table.rs`), and drawn with the recent throughput
//! (`history.rs`) by the status page (`page.html`).

pub mod access;
pub mod history;
pub mod http;
pub mod metrics;
pub mod recent;
pub mod server;
#[cfg(test)]
mod server_tests;
pub mod table;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use history::HistoryReport;

/// What the control plane asks of the running gateway.
pub trait Gateway {
    /// The state now; with `destinations`, the busiest destinations too (a walk over every
    /// flow: for the status, not for every metrics scrape).
    fn snapshot(&self, destinations: bool) -> Snapshot;
    /// Each line's throughput over the last minutes.
    fn history(&self) -> HistoryReport;
    /// Reads the settings again and applies what can change while running, as SIGHUP does;
    /// the error says why the new settings cannot be used.
    fn reload(&self) -> Result<ReloadReport, String>;
    /// `wanlb cap set` (`Some(bytes)`) or `reset` (`None`) of the uplink `name`; the error
    /// says why it was refused (no such uplink).
    fn set_count(&self, name: &str, bytes: Option<u64>) -> Result<(), String>;
    /// Whether the local client at `client`, connected to the control port at `server`,
    /// runs as root or as wanlb's own user: without a token, only they may change wanlb.
    fn is_own_user(&self, client: SocketAddr, server: SocketAddr) -> bool;
}

/// What a reload did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReloadReport {
    /// Each change applied, e.g. `uplink isp1 weight: 2 -> 1`.
    pub applied: Vec<String>,
    /// Each change that waits for a restart, naming the setting.
    pub need_restart: Vec<String>,
}

/// Everything the reports show, at one moment.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Seconds since the Unix epoch when it was taken.
    pub taken_at: u64,
    pub uplinks: Vec<UplinkReport>,
    pub pins: Vec<PinReport>,
    /// Live flows by protocol (IPv4).
    pub flows: ProtoCounts,
    /// Live IPv6 flows, every protocol.
    #[serde(default)]
    pub flows_ipv6: u64,
    /// The most flows the table holds (--max-flows).
    #[serde(default)]
    pub flow_limit: u64,
    /// LAN addresses the flow limits know (see the engine's `hosts`).
    #[serde(default)]
    pub hosts: HostCounts,
    /// Destinations bound to an uplink (the affinity table).
    pub affinity_entries: u64,
    /// Packets dropped so far, by reason (engine, data path and the uplink forward rule).
    pub drops: Vec<(String, u64)>,
    /// Flows ended before their time, and bindings not kept, so far, by reason.
    #[serde(default)]
    pub evictions: Vec<(String, u64)>,
    /// The destinations whose live flows carried the most bytes, busiest first.
    #[serde(default)]
    pub top_destinations: Vec<DestinationReport>,
    /// The port forwards, as configured, with their connections.
    #[serde(default)]
    pub forwards: Vec<ForwardReport>,
    /// Flows the fast path could have taken but whose hand-over waited, its queue being full
    /// (the workers fell behind carrying it out); they are offered again later.
    #[serde(default)]
    pub hand_overs_deferred: u64,
    /// What became of the `--on-change` commands so far, by outcome.
    #[serde(default)]
    pub on_change: Vec<(String, u64)>,
    /// How new destinations are spread: `destinations` or `bytes`.
    #[serde(default)]
    pub balance: String,
}

/// LAN addresses with flows (or verified lately): those that completed a TCP handshake, and
/// those that did not, which share one host's share per LAN network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostCounts {
    pub verified: u64,
    pub unverified: u64,
    /// LAN addresses whose link and MAC the neighbour table gives (verified ones of one MAC
    /// are one host).
    #[serde(default)]
    pub identified: u64,
    /// Identities not kept, wanlb's table of them being full (those addresses stay hosts of
    /// their own).
    #[serde(default)]
    pub identities_refused: u64,
}

/// A port of an uplink's address forwarded to a LAN host, and how busy it is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForwardReport {
    /// `tcp` or `udp`.
    pub proto: String,
    pub port: u16,
    /// The LAN host's address and port.
    pub to: String,
    pub uplink: String,
    /// Connections (flows, for UDP) through it now, and opened through it so far.
    pub connections_live: u64,
    pub connections_total: u64,
}

/// A remote address and what its live flows carried, both ways, fast path included.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationReport {
    pub address: String,
    pub uplink: String,
    pub bytes: u64,
    pub flows: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProtoCounts {
    pub tcp: u64,
    pub udp: u64,
    pub icmp: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct UplinkReport {
    pub name: String,
    pub device: String,
    pub address: String,
    /// The gateway's address; on a point-to-point link the peer's, if it was given.
    pub gateway: String,
    /// `ethernet` or `point-to-point` (no link-layer header, no ARP, no gateway MAC).
    #[serde(default)]
    pub link: String,
    /// The gateway's MAC, once learned.
    pub gateway_mac: Option<String>,
    pub tier: u8,
    pub weight: u32,
    /// `up`, `down` or `unknown`.
    pub state: String,
    /// Seconds since the Unix epoch when it entered that state.
    pub since: u64,
    pub reason: String,
    pub carrier: bool,
    pub rtt_median_seconds: Option<f64>,
    pub rtt_p90_seconds: Option<f64>,
    pub loss_ratio: f64,
    pub state_changes: u64,
    /// Traffic through the uplink, userspace and kernel fast path together.
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub tx_packets: u64,
    pub rx_packets: u64,
    /// Flows opened on it, and destinations bound to it, so far.
    pub flows_opened: u64,
    pub destinations: u64,
    /// Its share of new destinations so far, and what its weight asks within its tier.
    pub share: f64,
    pub weight_share: f64,
    /// NAT ports in use, by protocol.
    pub nat_ports_in_use: ProtoCounts,
    /// IP bytes both ways counted in its current period (health probes included).
    #[serde(default)]
    pub period_bytes: u64,
    /// Its data cap and where it stands, if it has one.
    #[serde(default)]
    pub cap: Option<CapReport>,
    /// Its share of its tier's bytes over the balance window (what `balance=bytes` weighs
    /// against `weight_share`).
    #[serde(default)]
    pub byte_share: f64,
    /// Its IPv6, on a line with `gw6`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ipv6: Option<Ipv6Report>,
}

/// An uplink's IPv6, judged apart from its IPv4.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Ipv6Report {
    /// `up`, `down` or `unknown`: the health of its IPv6 alone.
    pub state: String,
    /// Whether new IPv6 flows may use it now: its IPv6 up, an address and a next hop, and
    /// (without IPv6 targets of its own) the line up.
    pub usable: bool,
    pub since: u64,
    pub reason: String,
    /// The address NAT66 translates to, if it has one.
    pub address: Option<String>,
    pub router: Option<String>,
    pub router_mac: Option<String>,
    /// The prefix delegated to the gateway through it (NPTv6), if any.
    pub prefix: Option<String>,
    /// `nptv6` or `nat66`.
    pub translation: String,
    pub rtt_median_seconds: Option<f64>,
    pub loss_ratio: f64,
}

/// A line's data cap, and its count against it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CapReport {
    pub cap_bytes: u64,
    /// IP bytes counted in the current period.
    pub period_bytes: u64,
    /// `backup`, `off` or `warn`.
    pub on_cap: String,
    pub warn_percent: u8,
    /// The period's first day (YYYY-MM-DD), once a believed clock said it.
    pub period_start: Option<String>,
    /// The day the count starts again by itself; None for a prepaid plan.
    pub resets_on: Option<String>,
    /// `under`, `warned` or `reached`.
    pub state: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinReport {
    pub prefix: String,
    pub uplink: String,
    pub strict: bool,
}
