//! wanlb: a userspace multi-WAN load-balancing NAT gateway.

pub mod engine;
