//! Counting what each line carries against its cap, at run time: every second the monitor
//! reads each line's byte totals (the engine's, the kernel fast path's per-CPU counters and
//! the health probes'), feeds them to the meters, puts what a cap does into effect and tells
//! the crossings (log, `--on-change`). The counts go to disk at least once a minute, at each
//! crossing, after `wanlb cap set` or `reset`, and at the stop.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::counts::{CountsFile, local_today};
use super::hook::{Event, Events};
use crate::metered::size::human_size;
use crate::metered::{CapEffect, CapEvent, CapSettings, Date, MeterBook};

/// How often the counts are written at least.
pub const SAVE_EVERY: Duration = Duration::from_secs(60);

/// A line's count as the reports show it.
#[derive(Clone, Debug, PartialEq)]
pub struct CapStatus {
    pub name: String,
    pub bytes: u64,
    pub settings: CapSettings,
    pub period_start: Option<Date>,
    pub resets_on: Option<Date>,
    pub warned: bool,
    pub reached: bool,
    pub effect: CapEffect,
}

/// Why `wanlb cap set` or `reset` was refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CapRefusal {
    #[error("no uplink is called {0:?} (uplinks: {1})")]
    UnknownUplink(String, String),
}

/// The meters and where they are kept; shared by the monitor (which feeds them) and the
/// control port (which shows and sets them).
pub struct Metering {
    book: Mutex<MeterBook>,
    file: Option<CountsFile>,
    /// IP bytes of the health probes and their answers, per line (the monitor adds them).
    probe_bytes: Vec<AtomicU64>,
    events: Events,
    /// When the counts were last written (ms on the monitor's clock), and whether a
    /// crossing wants them written now.
    saved: Mutex<(u64, bool)>,
    /// Each line's bytes over the balance window at the last reading.
    recent: Mutex<Vec<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Metering {
    /// Meters for the lines `names` with `caps`, as `file` kept them (if wanlb can keep
    /// them); crossings are told through `events`.
    pub fn new(
        names: Vec<String>,
        caps: Vec<CapSettings>,
        window_ms: u64,
        file: Option<CountsFile>,
        events: Events,
    ) -> Metering {
        let kept = match &file {
            Some(f) => {
                let found = f.load();
                match found.problem {
                    Some(why) if found.meters.is_empty() && why.contains("does not exist") => {
                        tracing::info!(file = %f.path().display(), "no counts kept yet: every line starts at 0");
                    }
                    Some(why) => {
                        tracing::warn!(problem = %why, "the lines' counts cannot be read: every line starts at 0");
                    }
                    None => {}
                }
                found.meters
            }
            None => Default::default(),
        };
        let n = names.len();
        let book = MeterBook::new(names, caps, &kept, window_ms);
        for i in 0..book.len() {
            let m = book.meter(i);
            if m.bytes > 0 {
                tracing::info!(uplink = %book.name(i), counted = %human_size(m.bytes),
                    period_start = %m.period_start.map_or("unknown".into(), |d| d.to_string()),
                    "count of this period kept from the last run");
            }
        }
        Metering {
            book: Mutex::new(book),
            file,
            probe_bytes: (0..n).map(|_| AtomicU64::new(0)).collect(),
            events,
            saved: Mutex::new((0, false)),
            recent: Mutex::new(vec![0; n]),
        }
    }

    /// Counts `bytes` of health probes (or their answers) through line `line`.
    pub fn probe_bytes(&self, line: usize, bytes: usize) {
        if let Some(c) = self.probe_bytes.get(line) {
            c.fetch_add(bytes as u64, Ordering::Relaxed);
        }
    }

    /// The probes' bytes per line so far.
    pub fn probe_totals(&self) -> Vec<u64> {
        self.probe_bytes
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect()
    }

    /// A reading of every line's byte total at `now_ms`: counted, and the local date looked
    /// at. Returns what each line's cap does now, and each line's bytes over the balance
    /// window. `state_of` names a line's health for the hook.
    pub fn read(
        &self,
        now_ms: u64,
        totals: &[u64],
        state_of: &dyn Fn(usize) -> &'static str,
    ) -> (Vec<CapEffect>, Vec<u64>) {
        let mut book = lock(&self.book);
        let mut events = book.read(now_ms, totals);
        if let Some(today) = local_today() {
            events.extend(book.tick(today));
        }
        for (line, event) in events {
            self.tell(&book, line, event, state_of(line));
        }
        let recent = book.recent(now_ms);
        lock(&self.recent).clone_from(&recent);
        (book.effects(), recent)
    }

    /// Each line's bytes over the balance window, as last read.
    pub fn recent(&self) -> Vec<u64> {
        lock(&self.recent).clone()
    }

    /// Logs a crossing, runs the hook, and has the counts written.
    fn tell(&self, book: &MeterBook, line: usize, event: CapEvent, state: &'static str) {
        let name = book.name(line);
        let m = book.meter(line);
        let s = book.cap(line);
        let cap = s.cap.map_or("none".into(), human_size);
        let reason = match event {
            CapEvent::Warn => format!(
                "{} of {cap} used ({}% warns)",
                human_size(m.bytes),
                s.warn_pct
            ),
            CapEvent::Reached => format!("{} of {cap} used", human_size(m.bytes)),
            CapEvent::Reset { ended } => format!(
                "a new period from {}: the last one counted {}",
                m.period_start.map_or("today".into(), |d| d.to_string()),
                human_size(ended)
            ),
        };
        match event {
            CapEvent::Reset { .. } => {
                tracing::info!(uplink = %name, event = event.name(), reason = %reason, "data cap")
            }
            _ => tracing::warn!(uplink = %name, event = event.name(), reason = %reason, "data cap"),
        }
        let _ = self.events.send(Event {
            uplink: name.to_string(),
            event: event.name(),
            state,
            reason,
            cap: Some((m.bytes, s.cap)),
        });
        lock(&self.saved).1 = true;
    }

    /// Writes the counts if a minute has passed since the last write or a crossing wants
    /// them (`now_ms` on the monitor's clock).
    pub fn save_if_due(&self, now_ms: u64) {
        let due = {
            let saved = lock(&self.saved);
            saved.1 || now_ms.saturating_sub(saved.0) >= SAVE_EVERY.as_millis() as u64
        };
        if due {
            *lock(&self.saved) = (now_ms, false);
            self.save();
        }
    }

    /// Writes the counts now (at the stop, after `wanlb cap`).
    pub fn save(&self) {
        let Some(file) = &self.file else { return };
        let kept = lock(&self.book).kept();
        if let Err(e) = file.save(&kept) {
            tracing::warn!(file = %file.path().display(), error = %e, "cannot write the lines' counts; trying again in a minute");
        }
    }

    /// New caps and balance window (a reload).
    pub fn reconfigure(
        &self,
        caps: Vec<CapSettings>,
        window_ms: u64,
        state_of: &dyn Fn(usize) -> &'static str,
    ) {
        let mut book = lock(&self.book);
        for (line, event) in book.set_policy(caps, window_ms) {
            self.tell(&book, line, event, state_of(line));
        }
    }

    /// Every line's count.
    pub fn status(&self) -> Vec<CapStatus> {
        let book = lock(&self.book);
        let effects = book.effects();
        (0..book.len())
            .map(|i| {
                let m = book.meter(i);
                let s = *book.cap(i);
                CapStatus {
                    name: book.name(i).to_string(),
                    bytes: m.bytes,
                    settings: s,
                    period_start: m.period_start,
                    resets_on: m.resets_on(&s),
                    warned: m.warned,
                    reached: m.reached,
                    effect: effects[i],
                }
            })
            .collect()
    }

    fn line(&self, book: &MeterBook, name: &str) -> Result<usize, CapRefusal> {
        book.find(name).ok_or_else(|| {
            let names: Vec<&str> = (0..book.len()).map(|i| book.name(i)).collect();
            CapRefusal::UnknownUplink(name.to_string(), names.join(", "))
        })
    }

    /// `wanlb cap set`: line `name`'s count is `bytes` from now on; written at once.
    pub fn set(
        &self,
        name: &str,
        bytes: u64,
        state_of: &dyn Fn(usize) -> &'static str,
    ) -> Result<(), CapRefusal> {
        {
            let mut book = lock(&self.book);
            let line = self.line(&book, name)?;
            let before = book.meter(line).bytes;
            for event in book.set(line, bytes) {
                self.tell(&book, line, event, state_of(line));
            }
            tracing::info!(uplink = %name, from = %human_size(before), to = %human_size(bytes), "count set");
        }
        self.save();
        Ok(())
    }

    /// `wanlb cap reset`: line `name`'s count starts again; written at once.
    pub fn reset(
        &self,
        name: &str,
        state_of: &dyn Fn(usize) -> &'static str,
    ) -> Result<(), CapRefusal> {
        {
            let mut book = lock(&self.book);
            let line = self.line(&book, name)?;
            let event = book.start_again(line, local_today());
            self.tell(&book, line, event, state_of(line));
        }
        self.save();
        Ok(())
    }
}
