//! Which line the gateway's own traffic takes. With `host_traffic = "follow"` the host's
//! default route (main table) follows the best line up: of the lines up, those of the lowest
//! tier, the highest weight among them, the first of equals (the line that takes the most new
//! destinations). The choice is made here without I/O; io/host_route.rs puts it into the
//! routing table.
//!
//! With no line up the route stays as it is: no route works then, and moving it would only
//! add a switch when a line returns. Before the first verdict that leaves the system's own
//! route in place.

use std::cmp::Reverse;

use crate::health::State;

/// One uplink as the choice sees it: its health and its place in the policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Line {
    pub state: State,
    pub tier: u8,
    pub weight: u32,
}

/// The line the host's default route should use, or None while no line is up.
pub fn best_line(lines: &[Line]) -> Option<usize> {
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.state == State::Up)
        .min_by_key(|&(i, l)| (l.tier, Reverse(l.weight), i))
        .map(|(i, _)| i)
}

/// A change to the host's default route.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Point it at line `to`; `why` is for the log.
    Use { to: usize, why: String },
    /// Put the system's own route back: following was switched off.
    Restore,
}

/// The host's default route as wanlb left it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostRoute {
    /// The line it points at; None: the system's own route.
    via: Option<usize>,
}

impl HostRoute {
    /// The change to make now, if any. `follow` is the setting in force, `lines` the uplinks
    /// in order and `names` their names, for the reason.
    pub fn next(&self, follow: bool, lines: &[Line], names: &[&str]) -> Option<Step> {
        if !follow {
            return self.via.map(|_| Step::Restore);
        }
        let best = best_line(lines)?;
        let why = match self.via {
            Some(now) if now == best => return None,
            None => format!("{} is the best line up", names[best]),
            Some(now) if lines[now].state != State::Up => {
                format!("{} is {}", names[now], lines[now].state.name())
            }
            Some(now) => {
                let (b, n) = (lines[best], lines[now]);
                format!(
                    "{} is preferred to {} (tier {}, weight {} against tier {}, weight {})",
                    names[best], names[now], b.tier, b.weight, n.tier, n.weight
                )
            }
        };
        Some(Step::Use { to: best, why })
    }

    /// Records that `step` was made.
    pub fn done(&mut self, step: &Step) {
        self.via = match step {
            Step::Use { to, .. } => Some(*to),
            Step::Restore => None,
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NAMES: [&str; 3] = ["isp1", "isp2", "lte"];

    fn line(state: State, tier: u8, weight: u32) -> Line {
        Line {
            state,
            tier,
            weight,
        }
    }

    #[test]
    fn the_best_line_is_up_of_the_lowest_tier_and_the_highest_weight() {
        use State::{Down, Unknown, Up};
        let cases: [(&[Line], Option<usize>); 8] = [
            (&[line(Up, 1, 2), line(Up, 1, 1)], Some(0)),
            (&[line(Up, 1, 1), line(Up, 1, 2)], Some(1)),
            (&[line(Down, 1, 2), line(Up, 1, 1)], Some(1)),
            (&[line(Unknown, 1, 2), line(Up, 1, 1)], Some(1)),
            (&[line(Up, 2, 9), line(Up, 1, 1)], Some(1)),
            (&[line(Up, 1, 1), line(Up, 1, 1), line(Up, 1, 1)], Some(0)),
            (&[line(Down, 1, 1), line(Up, 2, 1), line(Up, 2, 1)], Some(1)),
            (
                &[line(Down, 1, 1), line(Unknown, 1, 1), line(Down, 2, 1)],
                None,
            ),
        ];
        for (lines, best) in cases {
            assert_eq!(best_line(lines), best, "{lines:?}");
        }
    }

    /// Steps `route` through `lines`, as the control loop does, and returns the step made.
    fn step(route: &mut HostRoute, follow: bool, lines: &[Line]) -> Option<Step> {
        let step = route.next(follow, lines, &NAMES[..lines.len()]);
        if let Some(s) = &step {
            route.done(s);
        }
        step
    }

    #[test]
    fn the_route_follows_the_best_line_and_changes_only_when_it_does() {
        use State::{Down, Unknown, Up};
        let mut route = HostRoute::default();
        // no verdict yet: the system's own route stays
        assert_eq!(
            step(
                &mut route,
                true,
                &[line(Unknown, 1, 2), line(Unknown, 1, 1)]
            ),
            None
        );
        let first = step(&mut route, true, &[line(Up, 1, 2), line(Up, 1, 1)]);
        assert_eq!(
            first,
            Some(Step::Use {
                to: 0,
                why: "isp1 is the best line up".into()
            })
        );
        assert_eq!(
            step(&mut route, true, &[line(Up, 1, 2), line(Up, 1, 1)]),
            None,
            "the same choice changes nothing"
        );
        assert_eq!(
            step(&mut route, true, &[line(Down, 1, 2), line(Up, 1, 1)]),
            Some(Step::Use {
                to: 1,
                why: "isp1 is down".into()
            })
        );
        // every line down: the route stays on the last line chosen
        assert_eq!(
            step(&mut route, true, &[line(Down, 1, 2), line(Down, 1, 1)]),
            None
        );
        assert_eq!(
            step(&mut route, true, &[line(Up, 1, 2), line(Down, 1, 1)]),
            Some(Step::Use {
                to: 0,
                why: "isp2 is down".into()
            })
        );
        assert_eq!(
            step(&mut route, true, &[line(Up, 1, 2), line(Up, 1, 3)]),
            Some(Step::Use {
                to: 1,
                why: "isp2 is preferred to isp1 (tier 1, weight 3 against tier 1, weight 2)".into()
            }),
            "a reload that changes the weights moves it"
        );
    }

    #[test]
    fn switching_off_puts_the_system_route_back_once() {
        use State::Up;
        let lines = [line(Up, 1, 1), line(Up, 2, 1)];
        let mut route = HostRoute::default();
        assert_eq!(step(&mut route, false, &lines), None, "off: never touched");
        assert!(matches!(
            step(&mut route, true, &lines),
            Some(Step::Use { to: 0, .. })
        ));
        assert_eq!(step(&mut route, false, &lines), Some(Step::Restore));
        assert_eq!(step(&mut route, false, &lines), None);
        assert!(
            matches!(
                step(&mut route, true, &lines),
                Some(Step::Use { to: 0, .. })
            ),
            "switched on again, it takes over again"
        );
    }
}
