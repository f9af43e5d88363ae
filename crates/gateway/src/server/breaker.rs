//! A circuit breaker over one server's transport failures and timeouts (never over tool
//! results with `isError: true`, which are answers). Closed → Open after N consecutive
//! failures; Open fails calls fast; after `open_for` one trial call is let through
//! (half-open); its success closes the circuit, its failure opens it again.
//!
//! Pure state machine: time is passed in, so tests need no clock.

use std::time::Duration;

use switchboard_config::BreakerPolicy;
use tokio::time::Instant;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    HalfOpen,
}

impl BreakerState {
    pub fn as_str(self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open => "open",
            BreakerState::HalfOpen => "half_open",
        }
    }

    /// 0 closed, 1 half-open, 2 open (the metric's encoding).
    pub fn as_gauge(self) -> u8 {
        match self {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        }
    }
}

/// What the breaker decided for one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// A normal call.
    Pass,
    /// The one half-open trial call: its outcome decides.
    Trial,
}

#[derive(Debug)]
pub(crate) struct Breaker {
    policy: BreakerPolicy,
    state: BreakerState,
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    trial_running: bool,
}

impl Breaker {
    pub(crate) fn new(policy: BreakerPolicy) -> Breaker {
        Breaker {
            policy,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            opened_at: None,
            trial_running: false,
        }
    }

    pub(crate) fn state(&self) -> BreakerState {
        self.state
    }

    /// Lets a call through, or says how long until the next trial.
    pub(crate) fn admit(&mut self, now: Instant) -> Result<Admission, Duration> {
        match self.state {
            BreakerState::Closed => Ok(Admission::Pass),
            BreakerState::Open => {
                let opened = self.opened_at.unwrap_or(now);
                let reopen = opened + self.policy.open_for;
                if now >= reopen {
                    self.state = BreakerState::HalfOpen;
                    self.trial_running = true;
                    Ok(Admission::Trial)
                } else {
                    Err(reopen - now)
                }
            }
            BreakerState::HalfOpen if !self.trial_running => {
                self.trial_running = true;
                Ok(Admission::Trial)
            }
            BreakerState::HalfOpen => Err(self.policy.open_for),
        }
    }

    /// Records a call's outcome: `failure` is a transport failure or a timeout.
    pub(crate) fn record(&mut self, admission: Admission, failure: bool, now: Instant) {
        if self.policy.failures == 0 {
            return;
        }
        if admission == Admission::Trial {
            self.trial_running = false;
        }
        if failure {
            self.consecutive_failures = self.consecutive_failures.saturating_add(1);
            let trips = self.state == BreakerState::HalfOpen
                || self.consecutive_failures >= self.policy.failures;
            if trips && self.state != BreakerState::Open {
                self.state = BreakerState::Open;
                self.opened_at = Some(now);
            } else if self.state == BreakerState::Open {
                self.opened_at = Some(now);
            }
        } else {
            self.consecutive_failures = 0;
            if self.state != BreakerState::Closed {
                self.state = BreakerState::Closed;
                self.opened_at = None;
            }
        }
    }

    /// A call admitted but never run (e.g. no instance could start): frees the trial slot.
    pub(crate) fn abandon(&mut self, admission: Admission) {
        if admission == Admission::Trial {
            self.trial_running = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker() -> Breaker {
        Breaker::new(BreakerPolicy {
            failures: 3,
            open_for: Duration::from_secs(10),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_and_recovers() {
        let start = Instant::now();
        let mut breaker = breaker();
        for _ in 0..2 {
            let admission = breaker.admit(start).unwrap();
            breaker.record(admission, true, start);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
        let admission = breaker.admit(start).unwrap();
        breaker.record(admission, true, start);
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(
            breaker.admit(start + Duration::from_secs(3)),
            Err(Duration::from_secs(7))
        );
        let trial = breaker.admit(start + Duration::from_secs(10)).unwrap();
        assert_eq!(trial, Admission::Trial);
        assert!(
            breaker.admit(start + Duration::from_secs(10)).is_err(),
            "one trial at a time"
        );
        breaker.record(trial, false, start + Duration::from_secs(11));
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn failed_trial_reopens_and_success_resets_the_count() {
        let start = Instant::now();
        let mut breaker = breaker();
        for failure in [true, true, false, true, true] {
            let admission = breaker.admit(start).unwrap();
            breaker.record(admission, failure, start);
        }
        assert_eq!(
            breaker.state(),
            BreakerState::Closed,
            "a success in between resets"
        );
        let admission = breaker.admit(start).unwrap();
        breaker.record(admission, true, start);
        assert_eq!(breaker.state(), BreakerState::Open);
        let trial = breaker.admit(start + Duration::from_secs(10)).unwrap();
        breaker.record(trial, true, start + Duration::from_secs(10));
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(breaker.admit(start + Duration::from_secs(15)).is_err());
    }

    #[test]
    fn disabled_breaker_never_opens() {
        let start = Instant::now();
        let mut breaker = Breaker::new(BreakerPolicy {
            failures: 0,
            open_for: Duration::from_secs(1),
        });
        for _ in 0..100 {
            let admission = breaker.admit(start).unwrap();
            breaker.record(admission, true, start);
        }
        assert_eq!(breaker.state(), BreakerState::Closed);
    }
}
