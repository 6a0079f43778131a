//! The kinds of values settings hold, and how each is written back: as the file writes it
//! (check-config) and as a reload reports a change.

use std::fmt::Debug;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use tracing::level_filters::LevelFilter;

use super::net::{Cidr, Net6};
use super::parse::format_duration;
use crate::engine::UdpAffinity;
use crate::engine::select::Prefix;

/// A setting's value.
pub trait Value: Clone + PartialEq + Debug {
    /// As the file writes it; None when unset (the default the declarations name stands).
    fn written(&self) -> Option<String>;

    /// In a reload's report, `old -> new`.
    fn shown(&self) -> String {
        format!("{self:?}")
    }
}

/// Values written as they display.
macro_rules! written_as_displayed {
    ($($t:ty),*) => {
        $(impl Value for $t {
            fn written(&self) -> Option<String> {
                Some(self.to_string())
            }
        })*
    };
}

written_as_displayed!(
    u8, u32, usize, String, Ipv4Addr, Ipv6Addr, IpAddr, SocketAddr, Cidr, Net6
);

impl Value for Duration {
    fn written(&self) -> Option<String> {
        Some(format_duration(*self))
    }

    fn shown(&self) -> String {
        format!("{:?}", format_duration(*self))
    }
}

impl Value for LevelFilter {
    fn written(&self) -> Option<String> {
        Some(self.to_string())
    }

    fn shown(&self) -> String {
        format!("{:?}", self.to_string())
    }
}

impl Value for Prefix {
    fn written(&self) -> Option<String> {
        Some(format!(
            "{}/{}",
            Ipv4Addr::from(self.addr()),
            self.prefix_len()
        ))
    }
}

/// A port range, `LOW-HIGH`.
impl Value for (u16, u16) {
    fn written(&self) -> Option<String> {
        Some(format!("{}-{}", self.0, self.1))
    }
}

impl<T: Value> Value for Option<T> {
    fn written(&self) -> Option<String> {
        self.as_ref().and_then(Value::written)
    }

    fn shown(&self) -> String {
        match self {
            Some(v) => format!("Some({})", v.shown()),
            None => "None".into(),
        }
    }
}

impl<T: Value> Value for Vec<T> {
    fn written(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let items: Vec<String> = self.iter().filter_map(Value::written).collect();
        Some(items.join(", "))
    }
}

/// A choice among words: its type, and each variant with its word.
macro_rules! words {
    ($($t:ty { $($variant:path => $word:literal),* $(,)? })*) => {
        $(impl Value for $t {
            fn written(&self) -> Option<String> {
                Some(match self { $($variant => $word,)* }.to_string())
            }
        })*
    };
}

/// Whether steady flows move to the in-kernel fast path.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FastPathMode {
    /// Where the kernel can (TCX, Linux 6.6 or later); otherwise warn and carry everything
    /// in userspace.
    #[default]
    Auto,
    /// Always: refuse to start without it.
    On,
    /// Never: every packet through wanlb's own userspace data path.
    Off,
}

/// Which worker takes a packet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Steering {
    /// The worker of the CPU its flow's first packet arrived on, for the whole flow, each
    /// worker pinned to CPUs of its own: waking it for a new flow never needs another CPU
    /// woken (where every worker can have a CPU of its own), and a flow stays in order.
    #[default]
    Cpu,
    /// The worker its flow's hash names, wherever the scheduler runs it.
    Flow,
}

/// What happens to an uplink's TCP connections when it goes down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnUplinkDown {
    /// Reset them towards the LAN host, so applications reconnect at once.
    #[default]
    Reset,
    /// Leave them: they resume if the line comes back before they time out.
    Keep,
}

/// What the gateway's own traffic (the main routing table's default route) does.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum HostTraffic {
    /// wanlb leaves the main table alone: the host's own traffic takes whatever default
    /// route the system has, dead line or not.
    #[default]
    Off,
    /// The host's default route follows the best healthy line; the original comes back when
    /// wanlb stops.
    Follow,
}

words! {
    FastPathMode {
        FastPathMode::Auto => "auto",
        FastPathMode::On => "on",
        FastPathMode::Off => "off",
    }
    OnUplinkDown {
        OnUplinkDown::Reset => "reset",
        OnUplinkDown::Keep => "keep",
    }
    HostTraffic {
        HostTraffic::Off => "off",
        HostTraffic::Follow => "follow",
    }
    Steering {
        Steering::Cpu => "cpu",
        Steering::Flow => "flow",
    }
    UdpAffinity {
        UdpAffinity::Endpoint => "endpoint",
        UdpAffinity::Destination => "destination",
    }
}
