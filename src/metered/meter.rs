//! One line's count of the current period against its cap, as a pure state machine: bytes
//! carried (as counted over each interval, never from clock arithmetic) and the local date go
//! in; crossings (warn, cap reached, reset) come out, each once.
//!
//! The period: a line's count belongs to the period that started on its recorded first day.
//! It starts again only when the wall clock, believed, reaches the next reset day after that
//! first day. A clock is not believed while it reads a date before [`NOT_BEFORE`] (it has not
//! been set) or before the period's first day (it went back): then nothing is reset and the
//! count goes on into the same period. When a clock that was not believed (or was wrong)
//! jumps forward by months, the period starts again once, on the last reset day on or before
//! the new date, never once per month skipped. Before the first believed date the first day
//! is unknown: the count goes on, and the first believed date decides the period it is in.

use serde::{Deserialize, Serialize};

use super::date::{CapReset, Date, NOT_BEFORE};

/// What a line does once its cap is reached.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum OnCap {
    /// It ranks below every line whose cap is not reached: new flows only while none of
    /// those is up; what runs on it keeps running.
    #[default]
    Backup,
    /// It leaves service as if it were down.
    Off,
    /// Only tell.
    Warn,
}

/// What the cap does to the line's place in the selection now.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum CapEffect {
    #[default]
    None,
    /// Reached with `on_cap=backup`.
    Backup,
    /// Reached with `on_cap=off`.
    Off,
}

/// A line's cap as the settings give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CapSettings {
    /// Bytes per period; None: counted, never capped.
    pub cap: Option<u64>,
    pub reset: CapReset,
    pub on_cap: OnCap,
    /// Percent of the cap at which to warn.
    pub warn_pct: u8,
}

impl Default for CapSettings {
    fn default() -> CapSettings {
        CapSettings {
            cap: None,
            reset: CapReset::Day(1),
            on_cap: OnCap::Backup,
            warn_pct: 80,
        }
    }
}

impl CapSettings {
    /// The count at which to warn.
    fn warn_at(&self) -> Option<u64> {
        let cap = self.cap?;
        Some((u128::from(cap) * u128::from(self.warn_pct) / 100) as u64)
    }
}

/// A crossing, said once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CapEvent {
    /// The count passed `cap_warn` percent of the cap.
    Warn,
    /// The count reached the cap.
    Reached,
    /// The count started again (a new period, or `wanlb cap reset`); `ended` is what the
    /// last one counted.
    Reset { ended: u64 },
}

impl CapEvent {
    /// Its name in `WANLB_EVENT` and the logs.
    pub fn name(self) -> &'static str {
        match self {
            CapEvent::Warn => "cap-warn",
            CapEvent::Reached => "cap-reached",
            CapEvent::Reset { .. } => "cap-reset",
        }
    }
}

/// One line's count; also what is kept on disk between runs.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meter {
    /// Bytes counted in this period.
    pub bytes: u64,
    /// The period's first day; None until a believed clock has said it.
    pub period_start: Option<Date>,
    /// The warning was given in this period.
    pub warned: bool,
    /// The cap was reached in this period.
    pub reached: bool,
}

impl Meter {
    /// Adds `bytes` carried; says the crossings.
    pub fn count(&mut self, bytes: u64, s: &CapSettings) -> Vec<CapEvent> {
        self.bytes = self.bytes.saturating_add(bytes);
        self.crossings(s)
    }

    /// The crossings of the count as it is now: each said once per period; a count back
    /// below (a cap raised, the count set lower) may cross again.
    pub fn crossings(&mut self, s: &CapSettings) -> Vec<CapEvent> {
        let mut events = Vec::new();
        let (Some(cap), Some(warn_at)) = (s.cap, s.warn_at()) else {
            self.warned = false;
            self.reached = false;
            return events;
        };
        let warn = self.bytes >= warn_at;
        if warn && !self.warned {
            events.push(CapEvent::Warn);
        }
        self.warned = warn;
        let reached = self.bytes >= cap;
        if reached && !self.reached {
            events.push(CapEvent::Reached);
        }
        self.reached = reached;
        events
    }

    /// Looks at the local date `today`: a new period if a believed clock says one started.
    pub fn tick(&mut self, today: Date, s: &CapSettings) -> Option<CapEvent> {
        if today < NOT_BEFORE {
            return None;
        }
        let Some(start) = self.period_start else {
            // the first believed date: the count so far belongs to the period it is in
            self.period_start = Some(s.reset.period_of(today));
            return None;
        };
        if today < start {
            return None; // a clock gone back: not believed
        }
        let next = s.reset.next_after(start)?;
        (today >= next).then(|| self.start_again(Some(today), s))
    }

    /// Sets the count to `bytes` (as the carrier counts it); says the crossings.
    pub fn set(&mut self, bytes: u64, s: &CapSettings) -> Vec<CapEvent> {
        self.bytes = bytes;
        self.crossings(s)
    }

    /// Starts the count again: a new period from `today`'s (if the clock is believed; else
    /// the recorded first day stays).
    pub fn start_again(&mut self, today: Option<Date>, s: &CapSettings) -> CapEvent {
        let ended = self.bytes;
        self.bytes = 0;
        self.warned = false;
        self.reached = false;
        if let Some(today) = today.filter(|&t| t >= NOT_BEFORE) {
            self.period_start = Some(s.reset.period_of(today));
        }
        CapEvent::Reset { ended }
    }

    /// What the cap does to the line now.
    pub fn effect(&self, s: &CapSettings) -> CapEffect {
        match (s.cap.is_some() && self.reached, s.on_cap) {
            (true, OnCap::Backup) => CapEffect::Backup,
            (true, OnCap::Off) => CapEffect::Off,
            _ => CapEffect::None,
        }
    }

    /// The day the count starts again by itself, if it does and that is known.
    pub fn resets_on(&self, s: &CapSettings) -> Option<Date> {
        s.reset.next_after(self.period_start?)
    }
}

#[cfg(test)]
#[path = "meter_tests.rs"]
mod tests;
