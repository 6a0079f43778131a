//! wanlb: a userspace multi-WAN load-balancing NAT gateway.

pub mod config;
pub mod control;
pub mod engine;
pub mod gateway;
pub mod health;
pub mod host_traffic;
pub mod io;
pub mod logging;
pub mod metered;
pub mod preflight;
pub mod probe;
pub mod uplink;
