//! The flow table: flows in a slab, indexed by both keys.

use ahash::AHashMap;

use super::{Flow, FlowKey, ReplyKey, Timeouts};
use crate::engine::Timestamp;
use crate::engine::limits::Scale;

/// Live flows [`FlowTable::early_drop_candidate`] looks at.
pub const EARLY_DROP_WINDOW: usize = 64;

/// Flows in a slab, indexed by both keys. A bitmap says which slots are live, so a slot costs
/// no more than its flow.
#[derive(Debug, Default)]
pub struct FlowTable {
    pub(super) slots: Vec<Flow>,
    live: Vec<u64>,
    free: Vec<u32>,
    by_key: AHashMap<FlowKey, u32>,
    by_reply: AHashMap<ReplyKey, u32>,
}

impl FlowTable {
    pub fn get(&self, key: &FlowKey) -> Option<&Flow> {
        let slot = *self.by_key.get(key)?;
        Some(&self.slots[slot as usize])
    }

    pub fn get_mut(&mut self, key: &FlowKey) -> Option<&mut Flow> {
        let slot = *self.by_key.get(key)?;
        Some(&mut self.slots[slot as usize])
    }

    pub fn get_reply_mut(&mut self, key: &ReplyKey) -> Option<&mut Flow> {
        let slot = *self.by_reply.get(key)?;
        Some(&mut self.slots[slot as usize])
    }

    fn set_live(&mut self, slot: usize, live: bool) {
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        if live {
            self.live[word] |= bit
        } else {
            self.live[word] &= !bit
        }
    }

    /// Adds a flow whose key is not in the table yet.
    pub fn insert(&mut self, flow: Flow) {
        let slot = match self.free.pop() {
            Some(s) => {
                self.slots[s as usize] = flow;
                s
            }
            None => {
                self.slots.push(flow);
                if self.slots.len() > self.live.len() * 64 {
                    self.live.push(0);
                }
                u32::try_from(self.slots.len() - 1).expect("fewer than 2^32 flows")
            }
        };
        self.set_live(slot as usize, true);
        self.by_key.insert(flow.key, slot);
        self.by_reply.insert(flow.reply_key(), slot);
    }

    /// Takes the flow with `key` out of the table.
    pub fn remove(&mut self, key: &FlowKey) -> Option<Flow> {
        let slot = self.by_key.remove(key)?;
        let flow = self.slots[slot as usize];
        self.by_reply.remove(&flow.reply_key());
        self.set_live(slot as usize, false);
        self.free.push(slot);
        Some(flow)
    }

    /// Every live flow, to be looked at or changed (not re-keyed).
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut Flow)) {
        for word in 0..self.live.len() {
            let mut bits = self.live[word];
            while bits != 0 {
                let slot = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                f(&mut self.slots[slot]);
            }
        }
    }

    /// Removes every flow idle for longer than its timeout, handing each to `ended` with
    /// whether it ended early: only because `scale` shortened its timeout. For a flow on the
    /// fast path that looks idle, `idle_elsewhere` says how long ago the fast path last carried
    /// a packet of it (if it did), which may keep it.
    pub fn expire(
        &mut self,
        now: Timestamp,
        timeouts: &Timeouts,
        scale: Scale,
        mut idle_elsewhere: impl FnMut(&Flow) -> Option<u64>,
        mut ended: impl FnMut(&Flow, bool),
    ) {
        for word in 0..self.live.len() {
            let mut bits = self.live[word];
            while bits != 0 {
                let slot = word * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let flow = &mut self.slots[slot];
                let (timeout, shortened) = flow.timeout_under(timeouts, scale);
                if now.since_stamp(flow.last_seen) < timeout {
                    continue;
                }
                if flow.on_fast_path
                    && let Some(idle) = idle_elsewhere(flow)
                    && idle < timeout
                {
                    let seen = Timestamp::from_millis(now.as_millis().saturating_sub(idle));
                    flow.last_seen = flow.last_seen.later(seen.stamp());
                    continue;
                }
                let flow = *flow;
                let early =
                    shortened && now.since_stamp(flow.last_seen) < flow.idle_timeout(timeouts);
                self.by_key.remove(&flow.key);
                self.by_reply.remove(&flow.reply_key());
                ended(&flow, early);
                self.set_live(slot, false);
                self.free
                    .push(u32::try_from(slot).expect("fewer than 2^32 flows"));
            }
        }
    }

    /// The flow a nearly full table gives up: of the next [`EARLY_DROP_WINDOW`] live flows
    /// from slot `from` on (wrapping; at most 16 times as many slots looked at), the one that
    /// never completed and was idle longest. Returns its key, if any, and where the next look
    /// starts. A bounded look, as conntrack's early_drop looks at a few buckets; a flow that
    /// completed is never taken.
    pub fn early_drop_candidate(&self, from: usize, now: Timestamp) -> (Option<FlowKey>, usize) {
        let words = self.live.len();
        if words == 0 {
            return (None, 0);
        }
        let mut best: Option<(u64, FlowKey)> = None;
        let mut looked = 0;
        let mut word = (from / 64) % words;
        for _ in 0..words.min(EARLY_DROP_WINDOW / 4) {
            let mut bits = self.live[word];
            while bits != 0 && looked < EARLY_DROP_WINDOW {
                let f = &self.slots[word * 64 + bits.trailing_zeros() as usize];
                bits &= bits - 1;
                looked += 1;
                let idle = now.since_stamp(f.last_seen);
                if !f.tcp.is_completed() && best.is_none_or(|(most, _)| idle > most) {
                    best = Some((idle, f.key));
                }
            }
            word = (word + 1) % words;
            if looked == EARLY_DROP_WINDOW {
                break;
            }
        }
        (best.map(|(_, key)| key), word * 64)
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}
