//! When the `ws` signaler tries its servers again. A worker that was registered and lost its
//! server is a member of a live mesh waiting for the server to come back from a restart: it
//! tries again briskly (the wait doubles from 250 ms to at most 1 s) for the first
//! [`BRISK_FOR`] after the loss, so that a newcomer arriving at the restarted server finds the
//! room there within about a second. After that, and for a worker never registered, the wait
//! doubles up to [`BACKOFF_MAX`]. Every wait is jittered over half its length (×0.5–1.0), so a
//! room of 10,000 workers comes back spread over half a second or more, not in one burst.

use std::time::{Duration, Instant};

/// The first wait after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest wait between reconnection rounds.
pub const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// Longest wait in the brisk period after a registered connection was lost.
pub const BRISK_MAX: Duration = Duration::from_secs(1);
/// How long after losing a registered connection the waits stay brisk.
pub const BRISK_FOR: Duration = Duration::from_secs(30);

/// The reconnection schedule of one signaler.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    lost_at: Option<Instant>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self { next: BACKOFF_MIN, lost_at: None }
    }
}

impl Backoff {
    /// A registered connection broke at `now`: start again from the shortest wait, briskly.
    pub fn lost(&mut self, now: Instant) {
        self.next = BACKOFF_MIN;
        self.lost_at = Some(now);
    }

    /// The wait before the next attempt, unjittered; `round_done` says a whole round of the
    /// servers failed, which lengthens the following waits.
    pub fn next(&mut self, now: Instant, round_done: bool) -> Duration {
        let wait = self.next;
        if round_done {
            let since_loss = self.lost_at.map(|t| now.saturating_duration_since(t));
            self.next = (self.next * 2).min(cap(since_loss));
        }
        wait
    }
}

/// The longest wait a member that lost its server `outage` ago may be in (what a model of the
/// reconnection, like the simulator's, draws its delay below).
pub fn longest_wait_after(outage: Duration) -> Duration {
    outage.clamp(BACKOFF_MIN, cap(Some(outage)))
}

/// The longest wait `since_loss` after losing a registered connection (`None`: never registered).
fn cap(since_loss: Option<Duration>) -> Duration {
    if since_loss.is_some_and(|d| d < BRISK_FOR) {
        BRISK_MAX
    } else {
        BACKOFF_MAX
    }
}

/// `wait` jittered over its second half (×0.5–1.0), with `unit` a uniform sample in [0, 1).
pub fn jittered(wait: Duration, unit: f64) -> Duration {
    wait.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The waits of `rounds` failed rounds starting at `start`, each wait taken in full.
    fn waits(b: &mut Backoff, start: Instant, rounds: usize) -> Vec<Duration> {
        let mut now = start;
        (0..rounds)
            .map(|_| {
                let w = b.next(now, true);
                now += w;
                w
            })
            .collect()
    }

    #[test]
    fn after_losing_its_server_a_member_tries_again_at_least_every_second_for_30_s() {
        let t = Instant::now();
        let mut b = Backoff::default();
        b.lost(t);
        let w = waits(&mut b, t, 40);
        let mut elapsed = Duration::ZERO;
        for wait in &w {
            if elapsed < BRISK_FOR {
                assert!(*wait <= BRISK_MAX, "{wait:?} at {elapsed:?}: {w:?}");
            }
            elapsed += *wait;
        }
        assert_eq!(&w[..3], &[BACKOFF_MIN, BACKOFF_MIN * 2, BRISK_MAX]);
        assert_eq!(w.last(), Some(&BACKOFF_MAX), "a long outage backs off to 10 s: {w:?}");
    }

    #[test]
    fn a_worker_that_never_registered_backs_off_to_10_s() {
        let t = Instant::now();
        let w = waits(&mut Backoff::default(), t, 8);
        assert_eq!(w[..6], [250, 500, 1000, 2000, 4000, 8000].map(Duration::from_millis));
        assert_eq!(w[7], BACKOFF_MAX);
    }

    #[test]
    fn a_second_loss_starts_brisk_again_and_a_partial_round_keeps_the_wait() {
        let t = Instant::now();
        let mut b = Backoff::default();
        let _ = waits(&mut b, t, 10);
        let later = t + Duration::from_secs(120);
        b.lost(later);
        assert_eq!(b.next(later, false), BACKOFF_MIN);
        assert_eq!(b.next(later, false), BACKOFF_MIN, "not a whole round of servers yet");
    }

    #[test]
    fn the_longest_wait_follows_the_outage() {
        assert_eq!(longest_wait_after(Duration::from_millis(100)), BACKOFF_MIN);
        assert_eq!(longest_wait_after(Duration::from_secs(3)), BRISK_MAX);
        assert_eq!(longest_wait_after(Duration::from_secs(60)), BACKOFF_MAX);
    }

    #[test]
    fn jitter_spreads_over_the_second_half() {
        let w = Duration::from_secs(1);
        assert_eq!(jittered(w, 0.0), Duration::from_millis(500));
        assert!(jittered(w, 0.999) <= w);
        assert_eq!(jittered(w, 7.0), w, "an out-of-range sample is clamped");
    }
}
