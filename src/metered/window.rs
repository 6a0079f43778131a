//! The bytes each line carried over a sliding window (the last `balance_window`), by which
//! `balance=bytes` places new destinations. The window is [`SLOTS`] slots of a sixtieth of
//! it each: bytes come in as counted (every second), and leave a slot at a time.

use std::collections::VecDeque;

/// Slots in a window.
pub const SLOTS: u64 = 60;

#[derive(Clone, Debug)]
pub struct ByteWindow {
    /// Milliseconds a slot spans.
    slot_ms: u64,
    /// (slot number, bytes per line), oldest first.
    slots: VecDeque<(u64, Vec<u64>)>,
    lines: usize,
}

impl ByteWindow {
    /// A window of `window_ms` over `lines` lines.
    pub fn new(window_ms: u64, lines: usize) -> ByteWindow {
        ByteWindow {
            slot_ms: (window_ms / SLOTS).max(1),
            slots: VecDeque::new(),
            lines,
        }
    }

    /// A window of another length; what was counted stays, forgotten as the new length says.
    pub fn set_window(&mut self, window_ms: u64) {
        let slot_ms = (window_ms / SLOTS).max(1);
        if slot_ms != self.slot_ms {
            // re-slotted by time: slot n of the old span starts at n * old ms
            let old = self.slot_ms;
            for (n, _) in &mut self.slots {
                *n = *n * old / slot_ms;
            }
            self.slot_ms = slot_ms;
        }
    }

    /// Adds what each line carried (`bytes`, one per line) at `now_ms`.
    pub fn add(&mut self, now_ms: u64, bytes: &[u64]) {
        let slot = now_ms / self.slot_ms;
        match self.slots.back_mut() {
            Some((n, counts)) if *n >= slot => {
                for (c, b) in counts.iter_mut().zip(bytes) {
                    *c = c.saturating_add(*b);
                }
            }
            _ => {
                let mut counts = vec![0; self.lines];
                for (c, b) in counts.iter_mut().zip(bytes) {
                    *c = *b;
                }
                self.slots.push_back((slot, counts));
            }
        }
        self.forget(now_ms);
    }

    /// Drops the slots that ended a window before `now_ms`.
    fn forget(&mut self, now_ms: u64) {
        let current = now_ms / self.slot_ms;
        while let Some((n, _)) = self.slots.front() {
            if n + SLOTS > current {
                break;
            }
            self.slots.pop_front();
        }
    }

    /// Each line's bytes over the window ending at `now_ms`.
    pub fn totals(&mut self, now_ms: u64) -> Vec<u64> {
        self.forget(now_ms);
        let mut totals = vec![0u64; self.lines];
        for (_, counts) in &self.slots {
            for (t, c) in totals.iter_mut().zip(counts) {
                *t = t.saturating_add(*c);
            }
        }
        totals
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_leave_the_window_once_it_has_passed() {
        let minute = 60_000;
        let mut w = ByteWindow::new(10 * minute, 2);
        w.add(0, &[1000, 0]);
        w.add(1_000, &[500, 20]);
        assert_eq!(w.totals(1_000), [1500, 20]);
        w.add(5 * minute, &[0, 100]);
        assert_eq!(w.totals(5 * minute), [1500, 120]);
        // the first slot (0 to 10 s) is forgotten once ten minutes have passed since it began
        assert_eq!(w.totals(10 * minute - 1), [1500, 120]);
        assert_eq!(w.totals(10 * minute), [0, 100]);
        assert_eq!(w.totals(20 * minute), [0, 0]);
        // a shorter window forgets sooner
        w.add(20 * minute, &[7, 7]);
        w.set_window(minute);
        assert_eq!(w.totals(20 * minute + 59_000), [7, 7]);
        assert_eq!(w.totals(21 * minute + 1_000), [0, 0]);
    }
}
