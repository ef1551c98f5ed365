//! One backend's health as a pure state machine with keepalived's timing:
//! `retries` consecutive failures take an up backend down (`retry_delay`
//! apart), `rise` consecutive passes bring a down one back (`interval`
//! apart), and a backend never seen passing joins on its first pass.

use std::time::Duration;

use crate::config::{Check, Initial};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Not checked yet, starting down: not used.
    Unknown,
    Up,
    Down,
}

impl Status {
    pub fn is_up(self) -> bool {
        self == Status::Up
    }

    pub fn name(self) -> &'static str {
        match self {
            Status::Unknown => "unknown",
            Status::Up => "up",
            Status::Down => "down",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    pub interval: Duration,
    pub retries: u32,
    pub retry_delay: Duration,
    pub rise: u32,
}

impl From<&Check> for Timing {
    fn from(c: &Check) -> Self {
        Timing {
            interval: c.interval,
            retries: c.retries,
            retry_delay: c.retry_delay,
            rise: c.rise,
        }
    }
}

/// What one result did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    /// The new status, when it changed.
    pub changed: Option<Status>,
    /// Wait this long before the next check.
    pub next_in: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Machine {
    timing: Timing,
    status: Status,
    ok: u32,
    fail: u32,
}

impl Machine {
    pub fn new(timing: Timing, initial: Initial) -> Self {
        let status = match initial {
            Initial::Up => Status::Up,
            Initial::Down => Status::Unknown,
        };
        Self::resume(timing, status)
    }

    /// Continue from a known status (a reload that changed the check).
    pub fn resume(timing: Timing, status: Status) -> Self {
        Machine {
            timing,
            status,
            ok: 0,
            fail: 0,
        }
    }

    pub fn status(&self) -> Status {
        self.status
    }

    /// Consecutive passes and failures so far.
    pub fn counts(&self) -> (u32, u32) {
        (self.ok, self.fail)
    }

    pub fn on_result(&mut self, pass: bool) -> Step {
        let t = self.timing;
        let before = self.status;
        let mut next_in = t.interval;
        if pass {
            self.ok = self.ok.saturating_add(1);
            self.fail = 0;
            let needed = match self.status {
                Status::Unknown => 1,
                Status::Down => t.rise,
                Status::Up => 0,
            };
            if self.status != Status::Up && self.ok >= needed {
                self.status = Status::Up;
            }
        } else {
            self.fail = self.fail.saturating_add(1);
            self.ok = 0;
            match self.status {
                Status::Up if self.fail < t.retries => next_in = t.retry_delay,
                _ => self.status = Status::Down,
            }
        }
        Step {
            changed: (self.status != before).then_some(self.status),
            next_in,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T: Timing = Timing {
        interval: Duration::from_secs(2),
        retries: 3,
        retry_delay: Duration::from_millis(500),
        rise: 2,
    };

    /// Feed `results`; return (status, changed, next_in) after each.
    fn run(m: &mut Machine, results: &[bool]) -> Vec<(Status, Option<Status>, Duration)> {
        results
            .iter()
            .map(|&r| {
                let s = m.on_result(r);
                (m.status(), s.changed, s.next_in)
            })
            .collect()
    }

    #[test]
    fn new_backend_starts_unknown_and_joins_on_first_pass() {
        let mut m = Machine::new(T, Initial::Down);
        assert_eq!(m.status(), Status::Unknown);
        let r = run(&mut m, &[true]);
        assert_eq!(r, vec![(Status::Up, Some(Status::Up), T.interval)]);
    }

    #[test]
    fn new_backend_failing_first_goes_down_then_needs_rise() {
        let mut m = Machine::new(T, Initial::Down);
        let r = run(&mut m, &[false, true, true]);
        assert_eq!(
            r,
            vec![
                (Status::Down, Some(Status::Down), T.interval),
                (Status::Down, None, T.interval),
                (Status::Up, Some(Status::Up), T.interval),
            ]
        );
    }

    #[test]
    fn initial_up_is_up_before_any_check() {
        let m = Machine::new(T, Initial::Up);
        assert_eq!(m.status(), Status::Up);
    }

    #[test]
    fn up_goes_down_after_retries_consecutive_failures_retry_delay_apart() {
        let mut m = Machine::new(T, Initial::Up);
        let r = run(&mut m, &[false, false, false]);
        assert_eq!(
            r,
            vec![
                (Status::Up, None, T.retry_delay),
                (Status::Up, None, T.retry_delay),
                (Status::Down, Some(Status::Down), T.interval),
            ]
        );
        assert_eq!(m.counts(), (0, 3));
    }

    #[test]
    fn a_pass_between_failures_resets_the_count() {
        let mut m = Machine::new(T, Initial::Up);
        let r = run(&mut m, &[false, false, true, false, false]);
        assert!(r.iter().all(|(s, c, _)| *s == Status::Up && c.is_none()));
        assert_eq!(r[2].2, T.interval, "back to the interval after a pass");
        assert_eq!(m.counts(), (0, 2));
    }

    #[test]
    fn retries_one_goes_down_at_once() {
        let mut m = Machine::new(Timing { retries: 1, ..T }, Initial::Up);
        assert_eq!(m.on_result(false).changed, Some(Status::Down));
    }

    #[test]
    fn down_needs_rise_consecutive_passes() {
        let mut m = Machine::resume(T, Status::Down);
        let r = run(&mut m, &[true, false, true, true]);
        assert_eq!(
            r,
            vec![
                (Status::Down, None, T.interval),
                (Status::Down, None, T.interval),
                (Status::Down, None, T.interval),
                (Status::Up, Some(Status::Up), T.interval),
            ]
        );
    }

    #[test]
    fn down_keeps_checking_at_the_interval() {
        let mut m = Machine::resume(T, Status::Down);
        for _ in 0..5 {
            assert_eq!(
                m.on_result(false),
                Step {
                    changed: None,
                    next_in: T.interval
                }
            );
        }
    }
}
