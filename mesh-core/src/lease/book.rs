//! [`LeaseBook`]: a worker's reservation, without I/O. At most one holder at a time; a lease ends
//! when it expires, when its holder releases it, or when its holder's link closes.

use crate::id::PeerId;
use std::time::{Duration, Instant};

/// The longest lease granted; a holder renews by reserving again before it ends.
pub const MAX_LEASE: Duration = Duration::from_secs(3600);

/// A granted lease.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The lease's id, which a release names.
    pub id: u64,
    /// When it ends unless renewed.
    pub until: Instant,
}

/// Why a reservation was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Another peer holds the worker.
    Held,
    /// A lease of no time at all.
    Empty,
}

/// The current lease of one worker.
#[derive(Debug, Default)]
pub struct LeaseBook {
    held: Option<(PeerId, Grant)>,
    next_id: u64,
}

impl LeaseBook {
    /// Who holds the worker now.
    pub fn holder(&self) -> Option<&PeerId> {
        self.held.as_ref().map(|(p, _)| p)
    }

    /// When the current lease ends.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.as_ref().map(|(_, g)| g.until)
    }

    /// `who` asks for the worker for `length` (capped at [`MAX_LEASE`]); its own lease is renewed.
    pub fn reserve(&mut self, now: Instant, who: &PeerId, length: Duration) -> Result<Grant, Refusal> {
        self.expire(now);
        if length.is_zero() {
            return Err(Refusal::Empty);
        }
        let until = now + length.min(MAX_LEASE);
        match &mut self.held {
            Some((holder, grant)) if holder == who => {
                grant.until = until;
                Ok(grant.clone())
            }
            Some(_) => Err(Refusal::Held),
            None => {
                self.next_id += 1;
                let grant = Grant { id: self.next_id, until };
                self.held = Some((who.clone(), grant.clone()));
                Ok(grant)
            }
        }
    }

    /// `who` gives lease `id` back; true if it held it.
    pub fn release(&mut self, who: &PeerId, id: u64) -> bool {
        let holds = self.held.as_ref().is_some_and(|(p, g)| p == who && g.id == id);
        if holds {
            self.held = None;
        }
        holds
    }

    /// `peer`'s link closed: a lease it held ends. True if one did.
    pub fn gone(&mut self, peer: &PeerId) -> bool {
        let holds = self.holder() == Some(peer);
        if holds {
            self.held = None;
        }
        holds
    }

    /// Ends the lease if its time is up; true if one ended.
    pub fn expire(&mut self, now: Instant) -> bool {
        let over = self.held.as_ref().is_some_and(|(_, g)| g.until <= now);
        if over {
            self.held = None;
        }
        over
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> PeerId {
        PeerId::new(s).unwrap()
    }

    #[test]
    fn one_holder_at_a_time_until_it_expires_is_released_or_goes() {
        let t = Instant::now();
        let mut book = LeaseBook::default();
        let a = book.reserve(t, &p("c1"), Duration::from_secs(10)).unwrap();
        assert_eq!(book.reserve(t, &p("c2"), Duration::from_secs(10)), Err(Refusal::Held));
        let renewed = book.reserve(t + Duration::from_secs(5), &p("c1"), Duration::from_secs(10)).unwrap();
        assert_eq!((renewed.id, renewed.until), (a.id, t + Duration::from_secs(15)), "the holder renews");
        assert!(!book.expire(t + Duration::from_secs(14)));
        assert!(book.expire(t + Duration::from_secs(15)));
        let b = book.reserve(t + Duration::from_secs(15), &p("c2"), Duration::from_secs(10)).unwrap();
        assert!(!book.release(&p("c1"), b.id), "only the holder releases");
        assert!(!book.release(&p("c2"), a.id), "and only its own lease");
        assert!(book.release(&p("c2"), b.id));
        let c = book.reserve(t, &p("c3"), Duration::from_secs(10)).unwrap();
        assert!(!book.gone(&p("c2")) && book.gone(&p("c3")) && book.holder().is_none());
        assert_ne!(c.id, b.id);
    }

    #[test]
    fn a_lease_is_capped_and_never_empty() {
        let t = Instant::now();
        let mut book = LeaseBook::default();
        assert_eq!(book.reserve(t, &p("c"), Duration::ZERO), Err(Refusal::Empty));
        let g = book.reserve(t, &p("c"), Duration::from_secs(u64::MAX / 4)).unwrap();
        assert_eq!(g.until, t + MAX_LEASE, "a huge ask gets the cap");
        assert_eq!(book.next_deadline(), Some(t + MAX_LEASE));
    }
}
