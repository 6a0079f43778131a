//! The status page's throughput chart: every uplink's byte totals, sampled every few seconds
//! for the last minutes, kept by the gateway so a page opened now shows them at once. Pure:
//! the caller passes the time (any monotonic clock; wall-clock jumps must not bend the chart)
//! and the totals.

use std::collections::VecDeque;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// What the gateway keeps: a sample every 2 s (the page's refresh) for 10 minutes, 301
/// samples of 16 bytes per uplink.
pub const SAMPLE_EVERY: Duration = Duration::from_secs(2);
pub const KEPT_FOR: Duration = Duration::from_secs(600);

/// What an uplink carried so far, both ways (the snapshot's `tx_bytes` and `rx_bytes`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Traffic {
    pub tx_bytes: u64,
    pub rx_bytes: u64,
}

struct Sample {
    at: Duration,
    /// One per uplink, in the order of `History::uplinks`.
    traffic: Vec<Traffic>,
}

/// A ring of samples, oldest first, at most `span / every + 1` of them.
pub struct History {
    uplinks: Vec<String>,
    every: Duration,
    capacity: usize,
    samples: VecDeque<Sample>,
}

/// `GET /history`: sample times and, per uplink, its totals at those times (columns, not
/// rows: a page draws one line per uplink, and the JSON stays small).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct HistoryReport {
    pub interval_seconds: f64,
    /// How long before the report each sample was taken, oldest first.
    pub seconds_ago: Vec<f64>,
    pub uplinks: Vec<SeriesReport>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesReport {
    pub name: String,
    /// Cumulative, as the snapshot counts them: a rate is the difference between two samples
    /// over the time between them.
    pub tx_bytes: Vec<u64>,
    pub rx_bytes: Vec<u64>,
}

impl History {
    /// A history of `uplinks` sampled `every` (not zero), as long as `span`.
    pub fn new(uplinks: Vec<String>, every: Duration, span: Duration) -> History {
        let every = every.max(Duration::from_millis(1));
        let capacity = (span.as_millis() / every.as_millis()) as usize + 1;
        History {
            uplinks,
            every,
            capacity,
            samples: VecDeque::with_capacity(capacity),
        }
    }

    /// Records `read()` at `now` if a sample is due (the first at once, then one `every`);
    /// reads nothing otherwise. Drops the oldest sample when full.
    pub fn sample_if_due(&mut self, now: Duration, read: impl FnOnce() -> Vec<Traffic>) {
        if self
            .samples
            .back()
            .is_some_and(|last| now.saturating_sub(last.at) < self.every)
        {
            return;
        }
        if self.samples.len() == self.capacity {
            self.samples.pop_front();
        }
        self.samples.push_back(Sample {
            at: now,
            traffic: read(),
        });
    }

    /// The samples as seen at `now`. An uplink missing from a sample counts as zero.
    pub fn report(&self, now: Duration) -> HistoryReport {
        let column = |i: usize, bytes: fn(&Traffic) -> u64| {
            self.samples
                .iter()
                .map(|s| s.traffic.get(i).map_or(0, bytes))
                .collect()
        };
        HistoryReport {
            interval_seconds: self.every.as_secs_f64(),
            seconds_ago: self
                .samples
                .iter()
                .map(|s| now.saturating_sub(s.at).as_millis() as f64 / 1000.0)
                .collect(),
            uplinks: self
                .uplinks
                .iter()
                .enumerate()
                .map(|(i, name)| SeriesReport {
                    name: name.clone(),
                    tx_bytes: column(i, |t| t.tx_bytes),
                    rx_bytes: column(i, |t| t.rx_bytes),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn traffic(tx: u64, rx: u64) -> Vec<Traffic> {
        vec![
            Traffic {
                tx_bytes: tx,
                rx_bytes: rx,
            },
            Traffic {
                tx_bytes: 2 * tx,
                rx_bytes: 2 * rx,
            },
        ]
    }

    fn history() -> History {
        History::new(vec!["isp1".into(), "isp2".into()], secs(2), secs(10))
    }

    #[test]
    fn the_first_sample_is_taken_at_once_then_one_per_interval() {
        let mut h = history();
        let mut reads = 0;
        for ms in (0..=4000).step_by(100) {
            h.sample_if_due(Duration::from_millis(ms), || {
                reads += 1;
                traffic(ms, ms)
            });
        }
        assert_eq!(reads, 3, "at 0, 2 and 4 s; the counters are read only then");
        let r = h.report(secs(5));
        assert_eq!(r.seconds_ago, [5.0, 3.0, 1.0]);
        assert_eq!(r.uplinks[0].tx_bytes, [0, 2000, 4000]);
        assert_eq!(r.uplinks[1].rx_bytes, [0, 4000, 8000]);
        assert_eq!(r.interval_seconds, 2.0);
    }

    #[test]
    fn it_keeps_the_last_span_and_drops_the_oldest() {
        let mut h = history();
        for s in 0..=20 {
            h.sample_if_due(secs(s), || traffic(s, 0));
        }
        let r = h.report(secs(20));
        // 10 s at one sample every 2 s: 6 samples, the newest now
        assert_eq!(r.seconds_ago, [10.0, 8.0, 6.0, 4.0, 2.0, 0.0]);
        assert_eq!(r.uplinks[0].tx_bytes, [10, 12, 14, 16, 18, 20]);
    }

    #[test]
    fn a_late_sample_restarts_the_interval_from_itself() {
        let mut h = history();
        h.sample_if_due(secs(0), || traffic(0, 0));
        h.sample_if_due(Duration::from_millis(2900), || traffic(1, 1));
        h.sample_if_due(Duration::from_millis(4000), || {
            panic!("not due until 4.9 s")
        });
        h.sample_if_due(Duration::from_millis(4900), || traffic(2, 2));
        assert_eq!(h.report(secs(5)).seconds_ago, [5.0, 2.1, 0.1]);
    }

    #[test]
    fn an_empty_history_and_a_short_sample_report_without_panicking() {
        let mut h = history();
        let empty = h.report(secs(1));
        assert!(empty.seconds_ago.is_empty());
        assert_eq!(empty.uplinks.len(), 2);
        assert!(empty.uplinks[1].tx_bytes.is_empty());
        h.sample_if_due(secs(3), || {
            vec![Traffic {
                tx_bytes: 7,
                rx_bytes: 8,
            }]
        });
        // a clock read before the sample (another thread's) counts as no time passed
        let r = h.report(secs(2));
        assert_eq!(r.seconds_ago, [0.0]);
        assert_eq!(r.uplinks[0].rx_bytes, [8]);
        assert_eq!(r.uplinks[1].tx_bytes, [0]);
    }

    #[test]
    fn the_report_is_compact_json_in_columns() {
        let mut h = History::new(vec!["isp1".into()], secs(2), secs(600));
        h.sample_if_due(secs(0), || {
            vec![Traffic {
                tx_bytes: 1,
                rx_bytes: 2,
            }]
        });
        let json = serde_json::to_string(&h.report(secs(1))).unwrap();
        assert_eq!(
            json,
            r#"{"interval_seconds":2.0,"seconds_ago":[1.0],"uplinks":[{"name":"isp1","tx_bytes":[1],"rx_bytes":[2]}]}"#
        );
    }
}
