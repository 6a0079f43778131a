//! Health of one uplink as a pure state machine: probe answers, carrier and ARP answers and
//! `now` (microseconds on a monotonic clock of the caller's choosing) go in; state changes
//! with their reasons come out. No I/O, no clock: the prober in io/ feeds it.
//!
//! Probing runs in rounds, one every `interval`: each round sends one echo request to every
//! target (or, with no target, one ARP request to the gateway). A round is good when any of
//! them answers within `timeout`, and bad otherwise, or when the line is in brownout (loss or
//! median RTT over the recent window above the configured limit). `down_after` bad rounds in
//! a row take a line down, `up_after` good ones bring it back; losing carrier, or the
//! gateway's ARP answers, takes it down at once. A point-to-point link has no gateway to ask
//! ARP: without targets its rounds are good while it has carrier, and carrier alone decides.
//!
//! Rounds normally start every `interval`. While an up line's newest round is overdue (no
//! answer after four times the usual RTT), the next ones start twice as fast: the line needs
//! `down_after` failed rounds to go down, each waiting out its timeout, so sending them sooner
//! finds a dead line sooner (as mwan3's failure_interval and BFD's poll do). Twice, not more:
//! the failed rounds must still span half the time they normally would (200 ms of silence
//! with the defaults), so a blip of a few tens of milliseconds cannot take a line down and
//! reset its connections. A line that answers never hurries.
//!
//! Loss and RTT figures are those of the best-answering target over the window, so one target
//! that stops answering ping (or is far away) does not make every line look sick.

use std::collections::VecDeque;
use std::fmt;
use std::time::Duration;

/// Finished rounds kept for loss and RTT figures (10 s at the default interval).
pub const WINDOW_ROUNDS: usize = 50;
/// Probes the window must hold before loss or RTT limits are applied.
const MIN_SAMPLES: u32 = 10;
/// A round is overdue once unanswered for 4 times the usual (90th percentile) RTT, but
/// never sooner than this.
const OVERDUE_MIN_US: u64 = 20_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSettings {
    /// Time between rounds.
    pub interval: Duration,
    /// How long a probe's answer may take.
    pub timeout: Duration,
    pub down_after: u32,
    pub up_after: u32,
    /// Percent of probes lost over the window above which the line counts as down.
    pub max_loss_pct: Option<u32>,
    /// Median RTT over the window above which the line counts as down.
    pub max_rtt: Option<Duration>,
}

impl Default for HealthSettings {
    fn default() -> HealthSettings {
        HealthSettings {
            interval: Duration::from_millis(200),
            timeout: Duration::from_millis(600),
            down_after: 3,
            up_after: 10,
            max_loss_pct: None,
            max_rtt: None,
        }
    }
}

fn micros(d: Duration) -> u64 {
    d.as_micros().min(u128::from(u64::MAX)) as u64
}

impl HealthSettings {
    fn interval_us(&self) -> u64 {
        micros(self.interval)
    }

    fn timeout_us(&self) -> u64 {
        micros(self.timeout)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// No verdict yet (just started): carries no traffic.
    Unknown,
    Up,
    Down,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Unknown => "unknown",
            State::Up => "up",
            State::Down => "down",
        }
    }
}

/// Why a line changed state.
#[derive(Clone, Debug, PartialEq)]
pub enum Reason {
    /// `rounds` good rounds in a row.
    Answered {
        rounds: u32,
    },
    /// `rounds` rounds in a row without an answer from any target (or from the gateway's ARP
    /// when no target is set).
    NoAnswer {
        rounds: u32,
    },
    /// Loss over the window above the limit.
    Loss {
        pct: f64,
        limit: u32,
    },
    /// Median RTT over the window above the limit.
    Rtt {
        median_us: u64,
        limit_us: u64,
    },
    /// Carrier for `rounds` rounds in a row, on a line watched by carrier alone.
    Carrier {
        rounds: u32,
    },
    CarrierLost,
    /// The interface lost its address (a DHCP lease, a PPPoE session), or is gone.
    NoAddress,
    /// The gateway stopped answering ARP while targets were being probed.
    ArpLost,
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::Answered { rounds: 1 } => write!(f, "1 probe round answered"),
            Reason::Answered { rounds } => write!(f, "{rounds} probe rounds in a row answered"),
            Reason::NoAnswer { rounds } => write!(f, "{rounds} probe rounds in a row unanswered"),
            Reason::Loss { pct, limit } => {
                write!(f, "loss {pct:.0}% over the last rounds is above {limit}%")
            }
            Reason::Rtt {
                median_us,
                limit_us,
            } => write!(
                f,
                "median RTT {:.1} ms is above {:.1} ms",
                *median_us as f64 / 1000.0,
                *limit_us as f64 / 1000.0
            ),
            Reason::Carrier { rounds: 1 } => write!(f, "carrier present"),
            Reason::Carrier { rounds } => write!(f, "carrier present {rounds} rounds in a row"),
            Reason::CarrierLost => write!(f, "carrier lost"),
            Reason::NoAddress => write!(f, "the interface has no address"),
            Reason::ArpLost => write!(f, "the gateway stopped answering ARP"),
        }
    }
}

/// A new health state, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Transition {
    pub state: State,
    pub reason: Reason,
}

/// Loss and RTT over the recent window.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    /// Probes sent and answered in the window.
    pub sent: u32,
    pub answered: u32,
    pub rtt_median_us: Option<u64>,
    pub rtt_p90_us: Option<u64>,
}

impl Stats {
    /// The median RTT in milliseconds for a log line, or "none".
    pub fn rtt_ms_text(&self) -> String {
        self.rtt_median_us
            .map_or_else(|| "none".into(), |us| format!("{:.2}", us as f64 / 1000.0))
    }

    /// Percent of probes lost, rounded, for a log line.
    pub fn loss_pct(&self) -> u64 {
        (self.loss() * 100.0).round() as u64
    }

    /// Fraction of probes lost, 0 when none was sent.
    pub fn loss(&self) -> f64 {
        if self.sent == 0 {
            0.0
        } else {
            f64::from(self.sent - self.answered) / f64::from(self.sent)
        }
    }
}

#[derive(Clone, Debug)]
struct Round {
    /// Its number: rounds are numbered from 0 up (the probes carry it, hidden: see
    /// [`crate::probe`]).
    seq: u32,
    sent_us: u64,
    /// RTT of each target's answer, if it came in time.
    rtts: Vec<Option<u32>>,
    /// A round without probes on a line watched by carrier alone: good while it lasts.
    by_carrier: bool,
}

#[derive(Clone, Debug)]
struct Finished {
    /// Each target's RTT, if it answered in time.
    rtts: Vec<Option<u32>>,
}

/// One uplink's health.
#[derive(Clone, Debug)]
pub struct UplinkHealth {
    settings: HealthSettings,
    /// Targets probed per round; 0: rounds are ARP requests to the gateway, or without ARP
    /// carrier alone.
    targets: usize,
    /// The gateway answers ARP (an Ethernet line), and must keep answering.
    arp: bool,
    state: State,
    carrier: bool,
    /// The interface has the address the line uses.
    addressed: bool,
    pending: VecDeque<Round>,
    window: VecDeque<Finished>,
    next_seq: u32,
    good_run: u32,
    bad_run: u32,
    /// Last ARP answer from the gateway, and the first request not answered since.
    last_arp_us: Option<u64>,
    arp_unanswered_since_us: Option<u64>,
    last_start_us: Option<u64>,
    /// How long an unanswered round may wait before the line looks sick (from the window).
    overdue_us: Option<u64>,
    /// Which targets did not answer the last round decided.
    unanswered: Vec<usize>,
}

impl UplinkHealth {
    pub fn new(settings: HealthSettings, targets: usize) -> UplinkHealth {
        UplinkHealth {
            settings,
            targets,
            arp: true,
            state: State::Unknown,
            carrier: true,
            addressed: true,
            pending: VecDeque::new(),
            window: VecDeque::new(),
            next_seq: 0,
            good_run: 0,
            bad_run: 0,
            last_arp_us: None,
            arp_unanswered_since_us: None,
            last_start_us: None,
            overdue_us: None,
            unanswered: Vec::new(),
        }
    }

    /// The health of a line with no gateway to ask ARP (a point-to-point link): only the
    /// targets' answers count, and without targets a round is good while carrier lasts.
    pub fn without_arp(mut self) -> UplinkHealth {
        self.arp = false;
        self
    }

    /// New settings from a reload, and `targets`, the number of targets when the list
    /// itself changed. The line keeps its state; with other targets the rounds in flight
    /// and the window start over, since they were about the old ones.
    pub fn reconfigure(&mut self, settings: HealthSettings, targets: Option<usize>) {
        self.settings = settings;
        if let Some(targets) = targets {
            self.targets = targets;
            self.pending.clear();
            self.window.clear();
            self.overdue_us = None;
            self.good_run = 0;
            self.bad_run = 0;
            self.unanswered.clear();
        }
    }

    /// The targets (by index) that did not answer the last round decided.
    pub fn unanswered(&self) -> &[usize] {
        &self.unanswered
    }

    pub fn state(&self) -> State {
        self.state
    }

    /// Starts a round: the caller sends one probe to every target with the returned
    /// round number (and an ARP request to the gateway).
    pub fn start_round(&mut self, now_us: u64) -> u32 {
        self.begin(now_us, true)
    }

    /// A round whose probes could not be sent (the gateway's MAC is not known yet): it fails
    /// as soon as it is decided, and counts in no loss figure.
    pub fn unsent_round(&mut self, now_us: u64) {
        self.begin(now_us, false);
    }

    /// When the next round is due: an interval after the last one, or half that while an up
    /// line's newest round is overdue.
    pub fn next_round_at(&self, now_us: u64) -> u64 {
        let Some(last) = self.last_start_us else {
            return now_us;
        };
        let s = &self.settings;
        if self.state == State::Up
            && let Some(overdue) = self.overdue_us
            && let Some(newest) = self.pending.back()
            && !newest.rtts.is_empty()
            && newest.rtts.iter().all(Option::is_none)
        {
            let hurried = last + s.interval_us() / 2;
            return hurried
                .max(newest.sent_us + overdue)
                .min(last + s.interval_us());
        }
        last + s.interval_us()
    }

    fn begin(&mut self, now_us: u64, sent: bool) -> u32 {
        self.last_start_us = Some(now_us);
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        let by_carrier = sent && !self.arp && self.targets == 0;
        self.pending.push_back(Round {
            seq,
            sent_us: now_us,
            rtts: if sent && !by_carrier {
                vec![None; self.targets.max(1)]
            } else {
                Vec::new()
            },
            by_carrier,
        });
        if self.arp_unanswered_since_us.is_none() {
            self.arp_unanswered_since_us = Some(now_us);
        }
        seq
    }

    /// An echo reply from target number `target` to the round `seq`.
    pub fn answer(&mut self, seq: u32, target: usize, now_us: u64) {
        let timeout = self.settings.timeout_us();
        if let Some(round) = self.pending.iter_mut().find(|r| r.seq == seq)
            && let Some(slot) = round.rtts.get_mut(target)
            && slot.is_none()
        {
            let rtt = now_us.saturating_sub(round.sent_us);
            if rtt <= timeout {
                *slot = Some(rtt.min(u64::from(u32::MAX)) as u32);
            }
        }
    }

    /// The gateway answered ARP.
    pub fn arp_answer(&mut self, now_us: u64) {
        self.last_arp_us = Some(now_us);
        self.arp_unanswered_since_us = None;
        if self.targets == 0 {
            // every round still waiting counts as answered by the gateway
            for round in &mut self.pending {
                if let Some(first @ None) = round.rtts.first_mut() {
                    *first = Some(now_us.saturating_sub(round.sent_us) as u32);
                }
            }
        }
    }

    /// Carrier (link state) as the kernel reports it; losing it takes the line down at once.
    pub fn carrier(&mut self, up: bool) -> Option<Transition> {
        self.carrier = up;
        if up {
            return None;
        }
        self.good_run = 0;
        self.transition(State::Down, Reason::CarrierLost)
    }

    /// The interface lost the line's address, or has one again: without one the line is down
    /// at once, and comes back, as after carrier, once probes are answered again.
    pub fn address(&mut self, present: bool) -> Option<Transition> {
        self.addressed = present;
        if present {
            return None;
        }
        self.good_run = 0;
        self.transition(State::Down, Reason::NoAddress)
    }

    /// Carrier and an address: what a good round needs besides answers.
    fn linked(&self) -> bool {
        self.carrier && self.addressed
    }

    fn transition(&mut self, state: State, reason: Reason) -> Option<Transition> {
        if self.state == state {
            return None;
        }
        self.state = state;
        Some(Transition { state, reason })
    }

    /// The gateway has not answered ARP for as long as `down_after` rounds plus a timeout.
    fn arp_lost(&self, now_us: u64) -> bool {
        let s = &self.settings;
        let limit = u64::from(s.down_after) * s.interval_us() + s.timeout_us();
        self.arp_unanswered_since_us
            .is_some_and(|since| now_us.saturating_sub(since) > limit)
    }

    /// Decides every round whose answers are all in or whose time is up, oldest first;
    /// returns the state changes this causes, in order (more than one only if the caller fell
    /// behind).
    pub fn tick(&mut self, now_us: u64) -> Vec<Transition> {
        let mut changes = Vec::new();
        if self.arp && self.targets > 0 && self.state == State::Up && self.arp_lost(now_us) {
            self.good_run = 0;
            changes.extend(self.transition(State::Down, Reason::ArpLost));
        }
        while let Some(round) = self.pending.front() {
            // a round without probes is complete at once: bad if unsent, else carrier's
            let complete = round.rtts.iter().all(Option::is_some);
            if !complete && now_us < round.sent_us + self.settings.timeout_us() {
                break;
            }
            let round = self.pending.pop_front().expect("front exists");
            changes.extend(self.finish(round, now_us));
        }
        changes
    }

    fn finish(&mut self, round: Round, now_us: u64) -> Option<Transition> {
        let answered = round.by_carrier || round.rtts.iter().any(Option::is_some);
        self.unanswered = (0..round.rtts.len())
            .filter(|&t| round.rtts[t].is_none())
            .collect();
        if !round.rtts.is_empty() {
            self.window.push_back(Finished { rtts: round.rtts });
            if self.window.len() > WINDOW_ROUNDS {
                self.window.pop_front();
            }
            let timeout = self.settings.timeout_us();
            self.overdue_us = self
                .stats()
                .rtt_p90_us
                .map(|p90| (4 * p90).max(OVERDUE_MIN_US).min(timeout / 2));
        }
        let brownout = self.brownout();
        let good = answered && brownout.is_none() && self.linked();
        if good {
            self.good_run += 1;
            self.bad_run = 0;
        } else {
            self.bad_run += 1;
            self.good_run = 0;
        }
        let s = &self.settings;
        match self.state {
            State::Up | State::Unknown if self.bad_run >= s.down_after => {
                let reason = brownout.unwrap_or(Reason::NoAnswer {
                    rounds: self.bad_run,
                });
                self.transition(State::Down, reason)
            }
            // at start-up one good round is enough: there is no flapping to guard against yet
            State::Down | State::Unknown
                if self.linked()
                    && !(self.arp && self.targets > 0 && self.arp_lost(now_us))
                    && (self.good_run >= s.up_after
                        || (self.state == State::Unknown && self.good_run >= 1)) =>
            {
                let rounds = self.good_run;
                let reason = if round.by_carrier {
                    Reason::Carrier { rounds }
                } else {
                    Reason::Answered { rounds }
                };
                self.transition(State::Up, reason)
            }
            _ => None,
        }
    }

    /// Loss or RTT over the window beyond a configured limit.
    fn brownout(&self) -> Option<Reason> {
        let s = &self.settings;
        if s.max_loss_pct.is_none() && s.max_rtt.is_none() {
            return None;
        }
        let stats = self.stats();
        if stats.sent < MIN_SAMPLES {
            return None;
        }
        if let Some(limit) = s.max_loss_pct {
            let pct = stats.loss() * 100.0;
            if pct > f64::from(limit) {
                return Some(Reason::Loss { pct, limit });
            }
        }
        if let (Some(limit_us), Some(median_us)) = (s.max_rtt.map(micros), stats.rtt_median_us)
            && median_us > limit_us
        {
            return Some(Reason::Rtt {
                median_us,
                limit_us,
            });
        }
        None
    }

    /// Loss and RTT over the finished rounds of the window, of the target that answered
    /// best (fewest losses, then lowest median RTT).
    pub fn stats(&self) -> Stats {
        let targets = self.window.iter().map(|r| r.rtts.len()).max().unwrap_or(0);
        (0..targets)
            .map(|t| {
                let answers = self.window.iter().filter_map(|r| r.rtts.get(t));
                let mut rtts: Vec<u32> = answers.clone().flatten().copied().collect();
                rtts.sort_unstable();
                let pick = |p: f64| -> Option<u64> {
                    (!rtts.is_empty()).then(|| {
                        let i = ((rtts.len() - 1) as f64 * p).round() as usize;
                        u64::from(rtts[i])
                    })
                };
                Stats {
                    sent: answers.count() as u32,
                    answered: rtts.len() as u32,
                    rtt_median_us: pick(0.5),
                    rtt_p90_us: pick(0.9),
                }
            })
            .min_by_key(|s| (s.sent - s.answered, s.rtt_median_us.unwrap_or(u64::MAX)))
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
