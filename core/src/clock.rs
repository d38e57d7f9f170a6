//! Time, as the engine sees it: a wall clock for what is recorded and for
//! wall-clock rules (the maintenance window, the journal's timestamps), and a
//! monotonic clock for every duration inside a run (gate timeouts, soak,
//! backoff, poll pacing), so a step of the wall clock never shortens or
//! stretches them. Injected, so tests and simulations run without sleeping.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A boxed sleep, so [`Clock`] stays object-safe.
pub type Sleep<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch (0 if the clock is before it).
    fn wall_ms(&self) -> u64;
    /// Time since an arbitrary, fixed origin; never goes back.
    fn monotonic(&self) -> Duration;
    /// Resolves once `duration` of monotonic time has passed.
    fn sleep(&self, duration: Duration) -> Sleep<'_>;
}

/// The clock every engine shares.
pub type SharedClock = Arc<dyn Clock>;

/// The machine's clocks: `SystemTime` and `Instant`, and tokio's timer.
#[derive(Debug)]
pub struct SystemClock {
    origin: Instant,
}

impl SystemClock {
    pub fn shared() -> SharedClock {
        Arc::new(SystemClock {
            origin: Instant::now(),
        })
    }
}

impl Clock for SystemClock {
    fn wall_ms(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis().try_into().unwrap_or(u64::MAX))
            .unwrap_or(0)
    }

    fn monotonic(&self) -> Duration {
        self.origin.elapsed()
    }

    fn sleep(&self, duration: Duration) -> Sleep<'_> {
        Box::pin(tokio::time::sleep(duration))
    }
}

/// A simulated clock for tests: sleeping advances it at once (so a 10-minute
/// soak takes no time), and the wall clock can be stepped on its own, as an
/// NTP correction or an operator's `date -s` would.
#[derive(Debug)]
pub struct SimulatedClock {
    inner: Mutex<Simulated>,
}

#[derive(Debug)]
struct Simulated {
    wall_ms: u64,
    monotonic: Duration,
}

impl SimulatedClock {
    /// Starts at `wall_ms` on the wall clock and 0 on the monotonic one.
    pub fn starting_at(wall_ms: u64) -> Arc<SimulatedClock> {
        Arc::new(SimulatedClock {
            inner: Mutex::new(Simulated {
                wall_ms,
                monotonic: Duration::ZERO,
            }),
        })
    }

    /// Step the wall clock by `delta_ms` (negative: back); monotonic time
    /// does not move.
    pub fn step_wall(&self, delta_ms: i64) {
        let mut s = self.lock();
        s.wall_ms = s.wall_ms.saturating_add_signed(delta_ms);
    }

    /// Let `duration` pass on both clocks.
    pub fn advance(&self, duration: Duration) {
        let mut s = self.lock();
        s.monotonic += duration;
        s.wall_ms = s
            .wall_ms
            .saturating_add(duration.as_millis().try_into().unwrap_or(u64::MAX));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Simulated> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Clock for SimulatedClock {
    fn wall_ms(&self) -> u64 {
        self.lock().wall_ms
    }

    fn monotonic(&self) -> Duration {
        self.lock().monotonic
    }

    fn sleep(&self, duration: Duration) -> Sleep<'_> {
        self.advance(duration);
        // Still a yield point, as a real sleep is.
        Box::pin(tokio::task::yield_now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn a_simulated_clock_sleeps_at_once_and_steps_only_the_wall() {
        let clock = SimulatedClock::starting_at(1_000);
        clock.sleep(Duration::from_secs(600)).await;
        assert_eq!(clock.monotonic(), Duration::from_secs(600));
        assert_eq!(clock.wall_ms(), 601_000);
        clock.step_wall(-3_600_000);
        assert_eq!(clock.wall_ms(), 0, "saturates at the epoch");
        assert_eq!(clock.monotonic(), Duration::from_secs(600));
    }
}
