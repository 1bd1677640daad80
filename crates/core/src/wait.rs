//! Waiting for something outside Lifeboat (a database accepting connections, a container
//! becoming healthy, a dependency being ready, the engine's event stream coming back): one
//! exponential backoff and one polling loop, so every wait sleeps the same way and never
//! past its deadline.

use std::time::{Duration, Instant};

/// Delays that start at `initial` and double up to `max`.
#[derive(Debug, Clone)]
pub struct Backoff {
    next: Duration,
    initial: Duration,
    max: Duration,
}

impl Backoff {
    /// Delays from `initial`, doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Backoff {
        Backoff {
            next: initial,
            initial,
            max,
        }
    }

    /// The delay to sleep now; the following one is twice as long (up to the cap).
    pub fn next_delay(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    /// Back to the first delay (after a success).
    pub fn reset(&mut self) {
        self.next = self.initial;
    }
}

/// Fails a wait at once when the container awaited has stopped for good (exited or dead and
/// not restarting): its exit code and the tail of its log say why.
pub(crate) fn unless_ended(
    engine: &dyn lifeboat_docker::Engine,
    details: &lifeboat_docker::ContainerDetails,
) -> Result<(), crate::CoreError> {
    if !details.state.has_ended() {
        return Ok(());
    }
    let log = engine
        .log_tail(&details.name, 20)
        .unwrap_or_else(|e| format!("(log unavailable: {e})"));
    Err(crate::CoreError::Ended {
        name: details.name.clone(),
        code: details.state.exit_code,
        log: lifeboat_docker::secrets::redact(log.trim_end()),
    })
}

/// What one look at the awaited thing found.
pub enum Poll<T, S> {
    /// Done, with the result.
    Ready(T),
    /// Not yet; `S` describes how it stands (reported if the deadline passes).
    Pending(S),
}

/// Looks with `check` until it is ready or `deadline` passes, sleeping `backoff` between
/// looks (never past the deadline). `Ok(Err(state))` is a timeout, with the last state seen;
/// an `Err` from `check` ends the wait at once.
pub fn poll_until<T, S, E>(
    deadline: Instant,
    mut backoff: Backoff,
    mut check: impl FnMut() -> Result<Poll<T, S>, E>,
) -> Result<Result<T, S>, E> {
    loop {
        match check()? {
            Poll::Ready(t) => return Ok(Ok(t)),
            Poll::Pending(s) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(Err(s));
                }
                std::thread::sleep(backoff.next_delay().min(left));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_and_reset() {
        let mut b = Backoff::new(Duration::from_millis(200), Duration::from_secs(1));
        let got: Vec<u128> = (0..5).map(|_| b.next_delay().as_millis()).collect();
        assert_eq!(got, [200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next_delay(), Duration::from_millis(200));
    }

    #[test]
    fn a_wait_returns_what_became_ready_or_the_last_state_at_the_deadline() {
        let fast = || Backoff::new(Duration::from_millis(1), Duration::from_millis(2));
        let mut n = 0;
        let ready: Result<Result<u32, u32>, ()> =
            poll_until(Instant::now() + Duration::from_secs(5), fast(), || {
                n += 1;
                Ok(if n == 3 {
                    Poll::Ready(n)
                } else {
                    Poll::Pending(n)
                })
            });
        assert_eq!(ready, Ok(Ok(3)));
        let timed_out: Result<Result<(), &str>, ()> =
            poll_until(Instant::now(), fast(), || Ok(Poll::Pending("starting")));
        assert_eq!(timed_out, Ok(Err("starting")));
        let failed: Result<Result<(), ()>, &str> =
            poll_until(Instant::now() + Duration::from_secs(5), fast(), || {
                Err("gone")
            });
        assert_eq!(failed, Err("gone"));
    }
}
