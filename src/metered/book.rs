//! Every line's meter together, fed the lines' byte totals as the counters read them: each
//! reading's growth since the last is what the lines carried in between, counted into the
//! period and the balance window. Pure, like the meters.

use std::collections::BTreeMap;

use super::Date;
use super::meter::{CapEffect, CapEvent, CapSettings, Meter};
use super::window::ByteWindow;

/// The meters of the lines, in the uplinks' order.
#[derive(Clone, Debug)]
pub struct MeterBook {
    names: Vec<String>,
    meters: Vec<Meter>,
    caps: Vec<CapSettings>,
    /// The totals last read, one per line; None before the first reading.
    last: Option<Vec<u64>>,
    window: ByteWindow,
}

impl MeterBook {
    /// The lines `names` with their caps, their meters from `kept` (by name; a line not in
    /// it starts at 0), `window_ms` of bytes kept for the balance.
    pub fn new(
        names: Vec<String>,
        caps: Vec<CapSettings>,
        kept: &BTreeMap<String, Meter>,
        window_ms: u64,
    ) -> MeterBook {
        let meters = names
            .iter()
            .map(|n| kept.get(n).cloned().unwrap_or_default())
            .collect();
        let window = ByteWindow::new(window_ms, names.len());
        MeterBook {
            names,
            meters,
            caps,
            last: None,
            window,
        }
    }

    /// New caps and balance window (a reload); says the crossings this makes (a cap
    /// lowered below the count).
    pub fn set_policy(&mut self, caps: Vec<CapSettings>, window_ms: u64) -> Vec<(usize, CapEvent)> {
        self.caps = caps;
        self.window.set_window(window_ms);
        let mut events = Vec::new();
        for (i, (m, s)) in self.meters.iter_mut().zip(&self.caps).enumerate() {
            events.extend(m.crossings(s).into_iter().map(|e| (i, e)));
        }
        events
    }

    /// Takes a reading of each line's byte total (counters that only grow, as they are at
    /// `now_ms`); what each grew by since the last reading is counted. The first reading
    /// counts nothing: it is where counting starts.
    pub fn read(&mut self, now_ms: u64, totals: &[u64]) -> Vec<(usize, CapEvent)> {
        let grown: Vec<u64> = match &self.last {
            Some(last) => totals
                .iter()
                .zip(last)
                .map(|(t, l)| t.saturating_sub(*l))
                .collect(),
            None => vec![0; totals.len()],
        };
        self.last = Some(totals.to_vec());
        self.window.add(now_ms, &grown);
        let mut events = Vec::new();
        for (i, ((m, s), bytes)) in self
            .meters
            .iter_mut()
            .zip(&self.caps)
            .zip(grown)
            .enumerate()
        {
            events.extend(m.count(bytes, s).into_iter().map(|e| (i, e)));
        }
        events
    }

    /// Looks at the local date: the lines whose period starts again.
    pub fn tick(&mut self, today: Date) -> Vec<(usize, CapEvent)> {
        let mut events = Vec::new();
        for (i, (m, s)) in self.meters.iter_mut().zip(&self.caps).enumerate() {
            events.extend(m.tick(today, s).map(|e| (i, e)));
        }
        events
    }

    /// Each line's bytes over the balance window ending at `now_ms`.
    pub fn recent(&mut self, now_ms: u64) -> Vec<u64> {
        self.window.totals(now_ms)
    }

    /// What each line's cap does to it now.
    pub fn effects(&self) -> Vec<CapEffect> {
        self.meters
            .iter()
            .zip(&self.caps)
            .map(|(m, s)| m.effect(s))
            .collect()
    }

    /// The line called `name`.
    pub fn find(&self, name: &str) -> Option<usize> {
        self.names.iter().position(|n| n == name)
    }

    pub fn name(&self, line: usize) -> &str {
        &self.names[line]
    }

    pub fn meter(&self, line: usize) -> &Meter {
        &self.meters[line]
    }

    pub fn cap(&self, line: usize) -> &CapSettings {
        &self.caps[line]
    }

    /// Sets line `line`'s count (`wanlb cap set`).
    pub fn set(&mut self, line: usize, bytes: u64) -> Vec<CapEvent> {
        self.meters[line].set(bytes, &self.caps[line])
    }

    /// Starts line `line`'s count again (`wanlb cap reset`), from `today`'s period.
    pub fn start_again(&mut self, line: usize, today: Option<Date>) -> CapEvent {
        self.meters[line].start_again(today, &self.caps[line])
    }

    /// The meters by name, as they are kept.
    pub fn kept(&self) -> BTreeMap<String, Meter> {
        self.names
            .iter()
            .cloned()
            .zip(self.meters.iter().cloned())
            .collect()
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metered::OnCap;

    #[test]
    fn readings_count_what_the_counters_grew_by() {
        let capped = CapSettings {
            cap: Some(1_000),
            on_cap: OnCap::Off,
            ..CapSettings::default()
        };
        let mut kept = BTreeMap::new();
        kept.insert(
            "lte".to_string(),
            Meter {
                bytes: 500,
                ..Meter::default()
            },
        );
        kept.insert("gone".to_string(), Meter::default());
        let names = vec!["fibre".to_string(), "lte".to_string()];
        let mut book = MeterBook::new(names, vec![CapSettings::default(), capped], &kept, 600_000);
        // the counters already ran before this run's first reading: that counts nothing
        assert_eq!(book.read(0, &[10_000, 70_000]), []);
        assert_eq!(book.meter(1).bytes, 500, "kept from the last run");
        assert_eq!(book.read(1_000, &[10_100, 70_300]), [(1, CapEvent::Warn)]);
        assert_eq!(
            book.read(2_000, &[10_100, 70_500]),
            [(1, CapEvent::Reached)]
        );
        assert_eq!(book.effects(), [CapEffect::None, CapEffect::Off]);
        assert_eq!(book.recent(2_000), [100, 500]);
        // a counter that went back (it never should) counts nothing
        assert_eq!(book.read(3_000, &[0, 70_500]), []);
        assert_eq!(book.meter(0).bytes, 100);
        assert_eq!(book.kept().keys().collect::<Vec<_>>(), ["fibre", "lte"]);
        // the cap raised by a reload: under it again
        let raised = CapSettings {
            cap: Some(10_000),
            ..capped
        };
        assert_eq!(
            book.set_policy(vec![CapSettings::default(), raised], 600_000),
            []
        );
        assert_eq!(book.effects(), [CapEffect::None, CapEffect::None]);
    }
}
