//! [`Plan`]: which chunks of a blob a receiver still needs, without I/O: the next to ask for,
//! each answer checked against its hash, a corrupt chunk asked again a few times, then an error.

use super::manifest::{hash_hex, Manifest, CHUNK};
use std::collections::{BTreeSet, HashMap};

/// Tries per chunk before the transfer fails as corrupt.
pub const TRIES: u32 = 3;

/// What a chunk's answer was.
#[derive(Debug, PartialEq, Eq)]
pub enum Checked {
    /// It verified: write it at `offset`.
    Good {
        /// Where it goes in the blob.
        offset: u64,
    },
    /// It did not verify; it is asked again.
    Again,
    /// It failed verification [`TRIES`] times.
    Corrupt,
}

/// A receiver's view of one blob.
#[derive(Debug)]
pub struct Plan {
    manifest: Manifest,
    have: Vec<bool>,
    asked: BTreeSet<u64>,
    again: BTreeSet<u64>,
    tries: HashMap<u64, u32>,
    next: u64,
}

impl Plan {
    /// A plan for `manifest` where the chunks marked in `have` are held already (verified).
    pub fn new(manifest: Manifest, have: Vec<bool>) -> Self {
        let n = manifest.chunks.len();
        let mut have = have;
        have.resize(n, false);
        Self { manifest, have, asked: BTreeSet::new(), again: BTreeSet::new(), tries: HashMap::new(), next: 0 }
    }

    /// The blob's manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The next chunk to ask for, if any is missing and not asked for yet.
    pub fn next_request(&mut self) -> Option<u64> {
        if let Some(i) = self.again.pop_first() {
            self.asked.insert(i);
            return Some(i);
        }
        while (self.next as usize) < self.have.len() {
            let i = self.next;
            self.next += 1;
            if !self.have[i as usize] {
                self.asked.insert(i);
                return Some(i);
            }
        }
        None
    }

    /// The answer to chunk `i` arrived.
    pub fn on_chunk(&mut self, i: u64, bytes: &[u8]) -> Checked {
        if !self.asked.remove(&i) {
            return Checked::Again; // not asked for: ignored, as a repeat would be
        }
        let expected = self.manifest.chunks.get(i as usize);
        if bytes.len() as u64 == self.manifest.chunk_len(i) && expected == Some(&hash_hex(bytes)) {
            self.have[i as usize] = true;
            return Checked::Good { offset: i * CHUNK };
        }
        let tries = self.tries.entry(i).or_insert(0);
        *tries += 1;
        if *tries >= TRIES {
            return Checked::Corrupt;
        }
        self.again.insert(i);
        Checked::Again
    }

    /// Asking for chunk `i` failed (not its content): it may be asked again.
    pub fn on_failed(&mut self, i: u64) {
        if self.asked.remove(&i) {
            self.again.insert(i);
        }
    }

    /// Bytes held and verified.
    pub fn bytes_held(&self) -> u64 {
        (0..self.have.len() as u64).filter(|i| self.have[*i as usize]).map(|i| self.manifest.chunk_len(i)).sum()
    }

    /// True once every chunk is held.
    pub fn done(&self) -> bool {
        self.have.iter().all(|h| *h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(chunks: &[&[u8]]) -> Manifest {
        let size = chunks.iter().map(|c| c.len() as u64).sum();
        Manifest { size, chunks: chunks.iter().map(|c| hash_hex(c)).collect() }
    }

    #[test]
    fn held_chunks_are_not_asked_again_and_a_corrupt_one_fails_after_its_tries() {
        let full = vec![1u8; CHUNK as usize];
        let m = manifest(&[&full, &full, b"tail"]);
        let mut plan = Plan::new(m, vec![true, false, false]);
        assert_eq!((plan.next_request(), plan.next_request(), plan.next_request()), (Some(1), Some(2), None));
        assert_eq!(plan.bytes_held(), CHUNK, "resumed from the verified chunk");
        assert_eq!(plan.on_chunk(2, b"tail"), Checked::Good { offset: 2 * CHUNK });
        assert_eq!(plan.on_chunk(2, b"tail"), Checked::Again, "an answer nobody asked for is ignored");
        let mut bad = full.clone();
        bad[9] ^= 1;
        for _ in 1..TRIES {
            assert_eq!(plan.on_chunk(1, &bad), Checked::Again);
            assert_eq!(plan.next_request(), Some(1), "asked again");
        }
        assert_eq!(plan.on_chunk(1, &bad), Checked::Corrupt);
        assert!(!plan.done());
    }

    #[test]
    fn a_truncated_chunk_is_not_good_and_a_failed_ask_is_repeated() {
        let m = manifest(&[b"abcdef"]);
        let mut plan = Plan::new(m, vec![]);
        assert_eq!(plan.next_request(), Some(0));
        assert_eq!(plan.on_chunk(0, b"abc"), Checked::Again, "short");
        assert_eq!(plan.next_request(), Some(0));
        plan.on_failed(0);
        assert_eq!(plan.next_request(), Some(0));
        assert_eq!(plan.on_chunk(0, b"abcdef"), Checked::Good { offset: 0 });
        assert!(plan.done() && plan.next_request().is_none());
    }
}
