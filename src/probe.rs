//! What a health probe carries, and how its answer is told from a forgery.
//!
//! Anyone who can reach an uplink's address can send it echo replies that seem to come from
//! the health targets. Were the probes' identifier and sequence numbers predictable (a fixed
//! identifier, numbers counting up from 0), replies with the next few numbers, sprayed
//! blindly, would keep a dead line "up". So the identifier is drawn at random for each run
//! (outside the NAT pool, where LAN hosts' pings are mapped), and each probe's sequence number
//! and payload hold a tag: a keyed hash (SipHash-2-4, a pseudo-random function) of the
//! uplink, the target, the round and the identifier, under a key drawn at random for each run.
//! A reply is taken only if it carries exactly the tag sent to that target through that uplink
//! in that round: a forger who has not seen the probe must guess 64 bits. The round number
//! travels in the clear (it tells nothing without the key), so the answer needs no lookup; a
//! replayed answer counts only while its round waits for answers.
//!
//! The randomness comes from the caller (read in `io/`): this module is pure.

use std::hash::Hasher;
use std::net::IpAddr;
#[cfg(test)]
use std::net::Ipv4Addr;

use siphasher::sip::SipHasher24;

/// Bytes of an echo probe's payload: the round number, then the tag.
pub const PAYLOAD_LEN: usize = 12;

/// Random bytes a run's probes are made from: the key, then the identifier's choice.
pub const RANDOM_LEN: usize = 18;

/// A run's secret for its health probes, and their echo identifier.
#[derive(Clone)]
pub struct ProbeKey {
    key: [u8; 16],
    id: u16,
}

impl std::fmt::Debug for ProbeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // the key stays out of logs
        f.debug_struct("ProbeKey").field("id", &self.id).finish()
    }
}

impl ProbeKey {
    /// The key and identifier made from `random` (from the operating system's random source):
    /// an identifier outside the NAT pool `pool`, whose ports start at 1024 or above.
    pub fn new(random: [u8; RANDOM_LEN], pool: (u16, u16)) -> ProbeKey {
        let mut key = [0u8; 16];
        key.copy_from_slice(&random[..16]);
        let pick = u32::from(u16::from_be_bytes([random[16], random[17]]));
        let in_pool = u32::from(pool.1 - pool.0) + 1;
        let outside = 65536 - in_pool;
        let n = pick % outside;
        // the n-th identifier that is not in the pool
        let id = if n < u32::from(pool.0) {
            n
        } else {
            n + in_pool
        };
        ProbeKey {
            key,
            id: u16::try_from(id).expect("below 65536: n < 65536 - in_pool"),
        }
    }

    /// The echo identifier of this run's probes.
    pub fn id(&self) -> u16 {
        self.id
    }

    fn tag(&self, uplink: u8, target: IpAddr, round: u32) -> u64 {
        let mut h = SipHasher24::new_with_key(&self.key);
        h.write_u8(uplink);
        match target {
            IpAddr::V4(a) => h.write(&a.octets()),
            IpAddr::V6(a) => h.write(&a.octets()),
        }
        h.write(&round.to_be_bytes());
        h.write(&self.id.to_be_bytes());
        h.finish()
    }

    /// The sequence number and payload of round `round`'s probe to `target` through uplink
    /// number `uplink`.
    pub fn probe(
        &self,
        uplink: u8,
        target: impl Into<IpAddr>,
        round: u32,
    ) -> (u16, [u8; PAYLOAD_LEN]) {
        let tag = self.tag(uplink, target.into(), round).to_be_bytes();
        let mut payload = [0u8; PAYLOAD_LEN];
        payload[..4].copy_from_slice(&round.to_be_bytes());
        payload[4..].copy_from_slice(&tag);
        (u16::from_be_bytes([tag[0], tag[1]]), payload)
    }

    /// The round an echo reply from `target` through uplink number `uplink` answers, if its
    /// identifier, sequence number and payload are those of that round's probe.
    pub fn round_of(
        &self,
        uplink: u8,
        target: impl Into<IpAddr>,
        id: u16,
        seq: u16,
        payload: &[u8],
    ) -> Option<u32> {
        let round = u32::from_be_bytes(payload.get(..4)?.try_into().ok()?);
        let sent = self.probe(uplink, target, round);
        (id == self.id && seq == sent.0 && payload == sent.1).then_some(round)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TARGET: Ipv4Addr = Ipv4Addr::new(198, 19, 255, 1);

    fn key(random: u8) -> ProbeKey {
        ProbeKey::new([random; RANDOM_LEN], (1024, 32767))
    }

    #[test]
    fn only_the_answer_to_the_probe_sent_is_taken() {
        let k = key(7);
        let (seq, payload) = k.probe(0, TARGET, 41);
        assert_eq!(k.round_of(0, TARGET, k.id(), seq, &payload), Some(41));
        // the right identifier and sequence number, with any other payload (a guessed tag)
        let mut guessed = payload;
        guessed[11] ^= 1;
        assert_eq!(k.round_of(0, TARGET, k.id(), seq, &guessed), None);
        // another round's number with this round's tag
        let mut other_round = payload;
        other_round[3] = 42;
        assert_eq!(k.round_of(0, TARGET, k.id(), seq, &other_round), None);
        // the same probe answered by another target, through another uplink, with another
        // identifier or sequence number, or cut short
        let other = Ipv4Addr::new(198, 19, 255, 2);
        assert_eq!(k.round_of(0, other, k.id(), seq, &payload), None);
        assert_eq!(k.round_of(1, TARGET, k.id(), seq, &payload), None);
        assert_eq!(k.round_of(0, TARGET, k.id() ^ 1, seq, &payload), None);
        assert_eq!(k.round_of(0, TARGET, k.id(), seq ^ 1, &payload), None);
        assert_eq!(k.round_of(0, TARGET, k.id(), seq, &payload[..11]), None);
        assert_eq!(k.round_of(0, TARGET, k.id(), seq, &payload[..3]), None);
        // another run's key does not make the same probe
        assert_ne!(key(8).probe(0, TARGET, 41), (seq, payload));
    }

    #[test]
    fn sequence_numbers_do_not_count_up() {
        let k = key(7);
        let seqs: Vec<u16> = (0..8).map(|r| k.probe(0, TARGET, r).0).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] != w[0].wrapping_add(1)),
            "{seqs:?}"
        );
    }

    #[test]
    fn the_identifier_is_drawn_from_outside_the_nat_pool() {
        let pool = (1024, 32767);
        let id = |pick: u16| {
            let mut random = [0u8; RANDOM_LEN];
            random[16..].copy_from_slice(&pick.to_be_bytes());
            ProbeKey::new(random, pool).id()
        };
        // below the pool, then above it, wrapping
        assert_eq!(id(0), 0);
        assert_eq!(id(1023), 1023);
        assert_eq!(id(1024), 32768);
        assert_eq!(id(33791), 65535);
        assert_eq!(id(33792), 0);
        for pick in (0..=u16::MAX).step_by(97) {
            let i = id(pick);
            assert!(!(pool.0..=pool.1).contains(&i), "{i}");
        }
        // a pool at the top of the range leaves only the ports below it
        let mut random = [0u8; RANDOM_LEN];
        random[16..].copy_from_slice(&5000u16.to_be_bytes());
        assert_eq!(ProbeKey::new(random, (1024, 65535)).id(), 5000 % 1024);
    }
}
