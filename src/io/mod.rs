//! Everything that touches the operating system. All `unsafe` in wanlb lives below here.

pub mod arp;
pub mod batch;
pub mod fastpath;
pub(crate) mod fd;
pub mod filters;
pub mod hook;
pub mod iface;
pub mod monitor;
pub mod netlink;
pub mod packet;
mod ring;
pub mod signal;
pub mod system;
pub mod tun;
pub mod vnet;
pub mod worker;

pub use fd::{Poller, monotonic_ns};
