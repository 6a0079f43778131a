//! The flow table: flows in a slab, indexed by both keys.

use std::hash::Hash;

use hashbrown::HashTable;

use super::{Flow, FlowKey, ReplyKey, Timeouts};
use crate::engine::Timestamp;
use crate::engine::family::{Family, V4};
use crate::engine::limits::Scale;

/// Live flows [`FlowTable::early_drop_candidate`] looks at.
pub const EARLY_DROP_WINDOW: usize = 64;

/// Flows in a slab, indexed by both keys. A bitmap says which slots are live, so a slot costs
/// no more than its flow; each index holds slot numbers only (4 bytes an entry, not the key
/// again), and finds a flow by comparing with the key in its slot.
#[derive(Debug, Default)]
pub struct FlowTable<F: Family = V4> {
    pub(super) slots: Vec<Flow<F>>,
    live: Vec<u64>,
    free: Vec<u32>,
    by_key: HashTable<u32>,
    by_reply: HashTable<u32>,
    /// Seeded at random per table: where a key lands is no one's guess.
    hasher: ahash::RandomState,
}

impl<F: Family> FlowTable<F> {
    fn hash(&self, key: &impl Hash) -> u64 {
        self.hasher.hash_one(key)
    }

    fn slot_of(&self, key: &FlowKey<F>) -> Option<usize> {
        let slots = &self.slots;
        let found = self
            .by_key
            .find(self.hash(key), |&s| slots[s as usize].key == *key);
        found.map(|&s| s as usize)
    }

    pub fn get(&self, key: &FlowKey<F>) -> Option<&Flow<F>> {
        Some(&self.slots[self.slot_of(key)?])
    }

    pub fn get_mut(&mut self, key: &FlowKey<F>) -> Option<&mut Flow<F>> {
        let slot = self.slot_of(key)?;
        Some(&mut self.slots[slot])
    }

    pub fn get_reply_mut(&mut self, key: &ReplyKey<F>) -> Option<&mut Flow<F>> {
        let slots = &self.slots;
        let found = self
            .by_reply
            .find(self.hash(key), |&s| slots[s as usize].reply_key() == *key);
        let slot = *found? as usize;
        Some(&mut self.slots[slot])
    }

    fn set_live(&mut self, slot: usize, live: bool) {
        let (word, bit) = (slot / 64, 1u64 << (slot % 64));
        if live {
            self.live[word] |= bit
        } else {
            self.live[word] &= !bit
        }
    }

    /// Adds a flow whose key is not in the table yet. (Were it there, or its reply key, the
    /// index would name the new flow from then on, as a map's insert does.)
    pub fn insert(&mut self, flow: Flow<F>) {
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
        let (key_hash, reply_hash) = (self.hash(&flow.key), self.hash(&flow.reply_key()));
        let Self {
            slots,
            by_key,
            by_reply,
            hasher,
            ..
        } = self;
        let key_of = |s: &u32| hasher.hash_one(slots[*s as usize].key);
        let same_key = |s: &u32| *s != slot && slots[*s as usize].key == flow.key;
        match by_key.find_entry(key_hash, same_key) {
            Ok(mut entry) => *entry.get_mut() = slot,
            Err(_) => {
                by_key.insert_unique(key_hash, slot, key_of);
            }
        }
        let reply_of = |s: &u32| hasher.hash_one(slots[*s as usize].reply_key());
        let reply = flow.reply_key();
        let same_reply = |s: &u32| *s != slot && slots[*s as usize].reply_key() == reply;
        match by_reply.find_entry(reply_hash, same_reply) {
            Ok(mut entry) => *entry.get_mut() = slot,
            Err(_) => {
                by_reply.insert_unique(reply_hash, slot, reply_of);
            }
        }
    }

    /// Takes slot `slot`, holding `flow`, out of both indexes.
    fn unindex(&mut self, slot: u32, flow: &Flow<F>) {
        let (key_hash, reply_hash) = (self.hash(&flow.key), self.hash(&flow.reply_key()));
        if let Ok(entry) = self.by_key.find_entry(key_hash, |&s| s == slot) {
            entry.remove();
        }
        if let Ok(entry) = self.by_reply.find_entry(reply_hash, |&s| s == slot) {
            entry.remove();
        }
    }

    /// Takes the flow with `key` out of the table.
    pub fn remove(&mut self, key: &FlowKey<F>) -> Option<Flow<F>> {
        let slot = u32::try_from(self.slot_of(key)?).expect("fewer than 2^32 flows");
        let flow = self.slots[slot as usize];
        self.unindex(slot, &flow);
        self.set_live(slot as usize, false);
        self.free.push(slot);
        Some(flow)
    }

    /// Every live flow, to be looked at or changed (not re-keyed).
    pub fn for_each_mut(&mut self, mut f: impl FnMut(&mut Flow<F>)) {
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
        mut idle_elsewhere: impl FnMut(&Flow<F>) -> Option<u64>,
        mut ended: impl FnMut(&Flow<F>, bool),
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
                let index = u32::try_from(slot).expect("fewer than 2^32 flows");
                self.unindex(index, &flow);
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
    pub fn early_drop_candidate(&self, from: usize, now: Timestamp) -> (Option<FlowKey<F>>, usize) {
        let words = self.live.len();
        if words == 0 {
            return (None, 0);
        }
        let mut best: Option<(u64, FlowKey<F>)> = None;
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
