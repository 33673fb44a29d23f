//! Dialing the signaling server's TCP port with staggered attempts. A lost SYN or SYN-ACK makes
//! the kernel wait its initial retransmission timeout (1 s on Linux) before trying again, so on a
//! lossy WAN one registration in fifty or so took a second longer than the rest, and a mesh of 10
//! waited for its slowest member. Here a fresh attempt starts every [`STAGGER`] while none has
//! connected, the first to connect wins and the others are dropped: a lost handshake packet costs
//! [`STAGGER`], not a second.

use futures::stream::{FuturesUnordered, StreamExt};
use std::future::Future;
use std::io;
use std::time::Duration;
use tokio::net::TcpStream;

/// How long an attempt has alone before the next one starts: RFC 8305's range for happy
/// eyeballs (at least 100 ms), above most WAN round trips, and far under the kernel's 1 s. A
/// server more than 150 ms away sees a second connection that closes unused; in a 10-worker
/// mesh at 80 ms RTT and 1 % loss, one formation in three had a lost SYN or SYN-ACK, which at
/// 300 ms was the slowest member's whole delay.
pub(crate) const STAGGER: Duration = Duration::from_millis(150);
/// Attempts at most (the last one has the rest of the caller's timeout).
pub(crate) const ATTEMPTS: usize = 3;

/// Connects to `host:port` (`host` as a URL writes it: a name, an IPv4 address or a bracketed
/// IPv6 one), starting another attempt every [`STAGGER`] while none succeeded.
pub(crate) async fn dial(host: &str, port: u16) -> io::Result<TcpStream> {
    let addr = format!("{host}:{port}");
    let stream = race(ATTEMPTS, STAGGER, |_| TcpStream::connect(addr.clone())).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// Runs `attempt(0)`, then `attempt(1)` after `stagger` unless one succeeded, and so on up to
/// `attempts`; the first success wins. A failure starts the next attempt at once. When all
/// fail, the last error.
pub(crate) async fn race<T, F, Fut>(attempts: usize, stagger: Duration, attempt: F) -> io::Result<T>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = io::Result<T>>,
{
    let mut running = FuturesUnordered::new();
    let (mut started, mut last_err) = (0, None);
    loop {
        if running.is_empty() && started < attempts {
            running.push(attempt(started));
            started += 1;
        }
        let next_start = tokio::time::sleep(stagger);
        tokio::select! {
            done = running.next() => match done {
                Some(Ok(value)) => return Ok(value),
                Some(Err(err)) => last_err = Some(err),
                None => {}
            },
            () = next_start, if started < attempts => {
                running.push(attempt(started));
                started += 1;
            }
        }
        if running.is_empty() && started >= attempts {
            return Err(last_err.unwrap_or_else(|| io::Error::other("no attempt was made")));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::time::Instant;

    /// An attempt whose handshake was lost: it completes only at the kernel's retransmission.
    async fn lost_then(at: Duration, value: usize) -> io::Result<usize> {
        tokio::time::sleep(at).await;
        Ok(value)
    }

    #[tokio::test(start_paused = true)]
    async fn a_lost_first_attempt_costs_the_stagger_not_the_kernels_second() {
        let t = Instant::now();
        let got =
            race(3, STAGGER, |i| lost_then(if i == 0 { Duration::from_secs(1) } else { Duration::from_millis(80) }, i))
                .await
                .expect("connected");
        assert_eq!(got, 1, "the second attempt won");
        assert_eq!(t.elapsed(), STAGGER + Duration::from_millis(80));
    }

    #[tokio::test(start_paused = true)]
    async fn a_prompt_server_is_dialed_once() {
        let started = AtomicUsize::new(0);
        let got = race(3, STAGGER, |i| {
            started.fetch_add(1, Ordering::SeqCst);
            lost_then(Duration::from_millis(80), i)
        })
        .await
        .expect("connected");
        assert_eq!((got, started.load(Ordering::SeqCst)), (0, 1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_refused_attempt_is_followed_at_once_and_all_refused_is_the_last_error() {
        let t = Instant::now();
        let refused = |i: usize| async move { Err::<usize, _>(io::Error::other(format!("refused {i}"))) };
        let err = race(3, STAGGER, refused).await.expect_err("nothing listens");
        assert_eq!(err.to_string(), "refused 2");
        assert_eq!(t.elapsed(), Duration::ZERO, "no stagger waited after a refusal");
    }
}
