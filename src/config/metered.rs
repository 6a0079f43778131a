//! The settings of lines that cost money: caps, failback, balance by bytes. Their parsers and
//! what each kind of value writes back; the declarations are in settings.rs and uplink.rs.

use std::path::PathBuf;
use std::time::Duration;

use super::values::Value;
use super::{ConfigError, err};
use crate::engine::failback::{FailbackMode, FailbackPolicy};
use crate::engine::select::Balance;
use crate::metered::size::{parse_size, written_size};
use crate::metered::{CapReset, CapSettings, OnCap};

/// A size of data, as the settings write it (`20GB`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl Value for ByteSize {
    fn written(&self) -> Option<String> {
        Some(written_size(self.0))
    }
}

impl Value for PathBuf {
    fn written(&self) -> Option<String> {
        Some(self.display().to_string())
    }
}

/// The words of a choice, and how each is written.
macro_rules! choice {
    ($($t:ty { $($variant:path => $word:literal),* $(,)? })*) => {
        $(impl Value for $t {
            fn written(&self) -> Option<String> {
                Some(match self { $($variant => $word,)* }.to_string())
            }
        })*
    };
}

choice! {
    OnCap {
        OnCap::Backup => "backup",
        OnCap::Off => "off",
        OnCap::Warn => "warn",
    }
    FailbackMode {
        FailbackMode::Keep => "keep",
        FailbackMode::Move => "move",
    }
    Balance {
        Balance::Destinations => "destinations",
        Balance::Bytes => "bytes",
    }
}

impl Value for CapReset {
    fn written(&self) -> Option<String> {
        Some(match self {
            CapReset::Day(day) => day.to_string(),
            CapReset::Never => "never".into(),
        })
    }
}

/// `cap=SIZE`: more than nothing.
pub fn parse_cap(s: &str, origin: &str) -> Result<ByteSize, ConfigError> {
    match parse_size(s) {
        Ok(0) => err(
            origin,
            "a cap of 0 bytes leaves nothing to use: give a size such as 20GB",
        ),
        Ok(bytes) => Ok(ByteSize(bytes)),
        Err(e) => err(origin, e),
    }
}

/// `cap_reset=DAY` (1 to 28) or `never`.
pub fn parse_cap_reset(s: &str, origin: &str) -> Result<CapReset, ConfigError> {
    let s = s.trim();
    if s == "never" {
        return Ok(CapReset::Never);
    }
    match s.parse::<u8>() {
        Ok(day @ 1..=28) => Ok(CapReset::Day(day)),
        _ => err(
            origin,
            format!(
                "must be the day of the month the count starts again, 1 to 28 (every month has them), or never, got {s:?}"
            ),
        ),
    }
}

pub fn parse_on_cap(s: &str, origin: &str) -> Result<OnCap, ConfigError> {
    match s.trim() {
        "backup" => Ok(OnCap::Backup),
        "off" => Ok(OnCap::Off),
        "warn" => Ok(OnCap::Warn),
        _ => err(origin, "must be backup (the default), off or warn"),
    }
}

/// `cap_warn=PERCENT`: 1 to 100, `%` allowed.
pub fn parse_cap_warn(s: &str, origin: &str) -> Result<u8, ConfigError> {
    match s.trim().trim_end_matches('%').parse::<u8>() {
        Ok(p @ 1..=100) => Ok(p),
        _ => err(
            origin,
            format!("must be a percentage from 1 to 100, got {s:?}"),
        ),
    }
}

pub fn parse_failback(s: &str, origin: &str) -> Result<FailbackMode, ConfigError> {
    match s.trim() {
        "keep" => Ok(FailbackMode::Keep),
        "move" => Ok(FailbackMode::Move),
        _ => err(origin, "must be keep or move"),
    }
}

pub fn parse_balance(s: &str, origin: &str) -> Result<Balance, ConfigError> {
    match s.trim() {
        "destinations" => Ok(Balance::Destinations),
        "bytes" => Ok(Balance::Bytes),
        _ => err(origin, "must be destinations (the default) or bytes"),
    }
}

/// `data_dir`: an absolute path.
pub fn parse_data_dir(s: &str, origin: &str) -> Result<PathBuf, ConfigError> {
    let path = PathBuf::from(s);
    if !path.is_absolute() {
        return err(origin, format!("must be an absolute path, got {s:?}"));
    }
    Ok(path)
}

impl super::UplinkSpec {
    /// Its cap as the meter takes it.
    pub fn cap_settings(&self) -> CapSettings {
        CapSettings {
            cap: self.cap.map(|c| c.0),
            reset: self.cap_reset,
            on_cap: self.on_cap,
            warn_pct: self.cap_warn,
        }
    }
}

impl super::Config {
    /// Each line's failback, in the uplinks' order: `move` by default for a line with a cap,
    /// `keep` otherwise; its grace, else `failback_grace`.
    pub fn failback(&self) -> Vec<FailbackPolicy> {
        self.uplinks
            .iter()
            .map(|u| FailbackPolicy {
                mode: u.failback.unwrap_or(if u.cap.is_some() {
                    FailbackMode::Move
                } else {
                    FailbackMode::Keep
                }),
                grace_ms: u.failback_grace.unwrap_or(self.failback_grace).as_millis() as u64,
            })
            .collect()
    }

    /// Each line's cap, in the uplinks' order.
    pub fn caps(&self) -> Vec<CapSettings> {
        self.uplinks.iter().map(|u| u.cap_settings()).collect()
    }

    /// The balance window in milliseconds.
    pub fn balance_window_ms(&self) -> u64 {
        self.balance_window.as_millis() as u64
    }
}

/// Bounds of `failback_grace`.
pub const FAILBACK_GRACE: (Duration, Duration) =
    (Duration::from_secs(1), Duration::from_secs(86_400));
/// Bounds of `balance_window`.
pub const BALANCE_WINDOW: (Duration, Duration) =
    (Duration::from_secs(10), Duration::from_secs(86_400));
