//! Failback off a backup line: when a better line is back, a line that is no longer needed
//! sees its UDP and ICMP flows move at their next packet and its destinations placed anew
//! (what [`super::Engine`] does for every line leaving service); with `failback=move`, the TCP
//! connections still on it are reset towards the LAN host too, once the better line has been
//! up for the line's grace without a break, so applications reconnect through it. A better
//! line that goes down before the grace is over resets nothing, and its return starts the
//! grace again.
//!
//! Pure: the engine says which lines are outranked (up, and leaving for a better one) each
//! time that changes, and asks with `now` which lines are due.

use super::Timestamp;

/// What happens to the TCP connections on a line once a better one is back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum FailbackMode {
    /// They finish where they are.
    #[default]
    Keep,
    /// They are reset after the grace.
    Move,
}

/// A line's failback setting.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailbackPolicy {
    pub mode: FailbackMode,
    /// How long the better line must have been up.
    pub grace_ms: u64,
}

/// Where one line is in its wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Wait {
    /// Not outranked.
    Idle,
    /// Outranked since a moment not yet known (told between two asks): the next ask's.
    Pending,
    Since(Timestamp),
    /// Its connections were reset for this time it is outranked.
    Done,
}

#[derive(Debug)]
pub struct Failback {
    policies: Vec<FailbackPolicy>,
    waits: Vec<Wait>,
}

impl Failback {
    pub fn new(policies: Vec<FailbackPolicy>) -> Failback {
        let waits = vec![Wait::Idle; policies.len()];
        Failback { policies, waits }
    }

    /// New policies (a reload), one per line as before; waits under way go on.
    pub fn set_policies(&mut self, policies: Vec<FailbackPolicy>) {
        debug_assert_eq!(policies.len(), self.policies.len());
        self.policies = policies;
    }

    /// The lines outranked now, one bit each: a line newly in starts waiting, a line out
    /// stops.
    pub fn outranked(&mut self, mask: u32) {
        for (i, wait) in self.waits.iter_mut().enumerate() {
            let now_in = mask & 1 << i != 0;
            *wait = match (*wait, now_in) {
                (Wait::Idle, true) => Wait::Pending,
                (_, false) => Wait::Idle,
                (w, true) => w,
            };
        }
    }

    /// The lines whose TCP connections are to be reset now, one bit each; each once per
    /// time it is outranked.
    pub fn due(&mut self, now: Timestamp) -> u32 {
        let mut due = 0;
        for (i, (wait, policy)) in self.waits.iter_mut().zip(&self.policies).enumerate() {
            match *wait {
                Wait::Pending => *wait = Wait::Since(now),
                Wait::Since(since)
                    if policy.mode == FailbackMode::Move
                        && now.as_millis().saturating_sub(since.as_millis()) >= policy.grace_ms =>
                {
                    *wait = Wait::Done;
                    due |= 1 << i;
                }
                _ => {}
            }
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = 60_000;

    fn at(ms: u64) -> Timestamp {
        Timestamp::from_millis(ms)
    }

    fn lines() -> Failback {
        let moving = FailbackPolicy {
            mode: FailbackMode::Move,
            grace_ms: 5 * MIN,
        };
        let keeping = FailbackPolicy {
            mode: FailbackMode::Keep,
            grace_ms: 5 * MIN,
        };
        Failback::new(vec![keeping, moving, keeping])
    }

    #[test]
    fn connections_move_once_the_better_line_has_been_up_for_the_grace() {
        let mut f = lines();
        assert_eq!(f.due(at(0)), 0);
        f.outranked(0b110); // the primary is back: both backups outranked
        assert_eq!(f.due(at(1_000)), 0);
        assert_eq!(f.due(at(1_000 + 5 * MIN - 1)), 0, "not before the grace");
        assert_eq!(f.due(at(1_000 + 5 * MIN)), 0b010, "keep never moves");
        assert_eq!(f.due(at(1_000 + 60 * MIN)), 0, "once");
        // still outranked, told again: nothing new
        f.outranked(0b110);
        assert_eq!(f.due(at(2_000 + 60 * MIN)), 0);
    }

    #[test]
    fn a_flapping_better_line_starts_the_grace_again() {
        let mut f = lines();
        f.outranked(0b010);
        assert_eq!(f.due(at(0)), 0);
        // down and back several times, each before the grace is over
        for k in 1..=5 {
            f.outranked(0);
            assert_eq!(f.due(at(k * 4 * MIN)), 0);
            f.outranked(0b010);
            assert_eq!(f.due(at(k * 4 * MIN + 1)), 0);
        }
        // down and up between two asks: the grace still starts again
        f.outranked(0);
        f.outranked(0b010);
        assert_eq!(f.due(at(21 * MIN + 1)), 0);
        assert_eq!(f.due(at(26 * MIN)), 0);
        assert_eq!(f.due(at(26 * MIN + 1)), 0b010);
    }
}
