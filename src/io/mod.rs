//! Everything that touches the operating system. All `unsafe` in wanlb lives below here.

pub mod arp;
pub mod batch;
pub mod counts;
pub(crate) mod cpu;
pub mod fastpath;
pub(crate) mod fd;
pub mod filters;
pub(crate) mod gso;
pub(crate) mod hook;
pub(crate) mod host_route;
pub mod iface;
pub(crate) mod journal;
pub mod limits;
pub mod metering;
pub(crate) mod monitor;
pub(crate) mod neighbours;
pub(crate) mod netlink;
pub(crate) mod nftables;
pub mod packet_socket;
pub mod peer;
mod ring;
pub mod signal;
pub(crate) mod steering;
pub(crate) mod system;
pub(crate) mod trusted_dir;
pub(crate) mod tun;
pub(crate) mod uplink_sockets;
pub mod vnet;
pub(crate) mod worker;

pub use fd::{Poller, monotonic_ns};
