//! The VRRP state machine of RFC 5798 §6.4 (and RFC 3768 §6.4 for v2) as a
//! pure value: `step(event, now)` returns the actions to take, and
//! `deadline()` when the next `Timer` event is due. No I/O, no clock.

use std::{net::IpAddr, time::Duration};

use tokio::time::Instant;

use super::codec::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    Init,
    Backup,
    Master,
    /// A tracked interface is down: never master, VIPs removed.
    Fault,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            State::Init => "INIT",
            State::Backup => "BACKUP",
            State::Master => "MASTER",
            State::Fault => "FAULT",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    pub version: Version,
    /// Configured priority, 1-255 (255: address owner).
    pub priority: u8,
    /// Our advertisement interval, centiseconds.
    pub advert_cs: u16,
    pub preempt: bool,
    pub preempt_delay: Duration,
    /// Our primary address on the interface: the tie-breaker.
    pub primary: IpAddr,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    Startup,
    /// Startup of an agent restarted while it was master here: its VIPs
    /// are still on the interface and its data plane still forwards them.
    /// It resumes as master at once (advertising at once, so a peer that
    /// took over meanwhile with a lower priority backs off, and one with a
    /// higher priority takes it back by the usual rules) instead of going
    /// through backup, which would stop forwarding for a
    /// Master_Down_Interval.
    Resume,
    Shutdown,
    /// `deadline()` has passed.
    Timer,
    Advert {
        from: IpAddr,
        priority: u8,
        interval_cs: u16,
    },
    /// A tracked interface went down (true) or all are up again (false).
    Fault(bool),
    /// Tracking changed the effective priority.
    Priority(u8),
    /// Another instance of our sync group became master: a backup follows.
    GroupMaster,
    /// Another instance of our sync group left mastership for backup: a
    /// master follows (a priority-0 advert lets the peer take over at once).
    GroupBackup,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    SendAdvert {
        priority: u8,
    },
    /// Add the VIPs to the interface and announce them (GARP / NA).
    TakeVips,
    RemoveVips,
    Transition {
        from: State,
        to: State,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Machine {
    p: Params,
    state: State,
    /// Priority after tracking; `p.priority` when nothing failed.
    effective: u8,
    /// The master's advertised interval (Backup).
    master_adver_cs: u16,
    master_down_at: Option<Instant>,
    adver_at: Option<Instant>,
    /// When a lower-priority master was first seen (preempt_delay).
    lower_seen: Option<Instant>,
    /// Current master's address, when known.
    master: Option<IpAddr>,
}

fn cs(n: u64) -> Duration {
    Duration::from_millis(n * 10)
}

impl Machine {
    pub fn new(p: Params) -> Self {
        Machine {
            p,
            state: State::Init,
            effective: p.priority,
            master_adver_cs: p.advert_cs,
            master_down_at: None,
            adver_at: None,
            lower_seen: None,
            master: None,
        }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn priority(&self) -> u8 {
        self.effective
    }

    pub fn master(&self) -> Option<IpAddr> {
        self.master
    }

    /// The master's advertisement interval as we last heard it.
    pub fn master_adver(&self) -> Duration {
        cs(self.master_adver_cs as u64)
    }

    /// Skew_Time for our priority over the master's interval.
    pub fn skew(&self) -> Duration {
        let prio = 256 - self.effective as u64;
        match self.p.version {
            // RFC 3768: (256 - Priority) / 256 seconds.
            Version::V2 => Duration::from_micros(prio * 1_000_000 / 256),
            Version::V3 => Duration::from_micros(prio * self.master_adver_cs as u64 * 10_000 / 256),
        }
    }

    /// Master_Down_Interval: 3 x Master_Adver_Interval + Skew_Time.
    pub fn master_down_interval(&self) -> Duration {
        3 * self.master_adver() + self.skew()
    }

    /// When the next `Timer` event is due.
    pub fn deadline(&self) -> Option<Instant> {
        match self.state {
            State::Backup => self.master_down_at,
            State::Master => self.adver_at,
            State::Init | State::Fault => None,
        }
    }

    fn go(&mut self, to: State, out: &mut Vec<Action>) {
        if to != self.state {
            out.push(Action::Transition {
                from: self.state,
                to,
            });
            self.state = to;
        }
    }

    fn become_master(&mut self, now: Instant, out: &mut Vec<Action>) {
        // RFC 5798 §6.4.2 sends the advert, then the gratuitous ARPs. Here
        // the VIPs are taken (data plane on, addresses, first GARP) first:
        // the old master forwards until our advert reaches it, and by then
        // clients already send here, so no packet falls between the two.
        out.push(Action::TakeVips);
        out.push(Action::SendAdvert {
            priority: self.effective,
        });
        self.adver_at = Some(now + cs(self.p.advert_cs as u64));
        self.master_down_at = None;
        self.master = Some(self.p.primary);
        self.go(State::Master, out);
    }

    fn become_backup(&mut self, now: Instant, master_cs: u16, out: &mut Vec<Action>) {
        if self.state == State::Master {
            out.push(Action::RemoveVips);
        }
        self.adver_at = None;
        self.master_adver_cs = master_cs;
        self.master_down_at = Some(now + self.master_down_interval());
        self.go(State::Backup, out);
    }

    /// Leave mastership (shutdown, fault): a priority-0 advert lets the
    /// backup take over after its skew time instead of Master_Down_Interval.
    fn resign(&mut self, to: State, out: &mut Vec<Action>) {
        if self.state == State::Master {
            out.push(Action::SendAdvert { priority: 0 });
            out.push(Action::RemoveVips);
            self.master = None;
        }
        self.adver_at = None;
        self.master_down_at = None;
        self.go(to, out);
    }

    fn start(&mut self, now: Instant, out: &mut Vec<Action>) {
        if self.effective == 255 {
            self.become_master(now, out);
        } else {
            self.become_backup(now, self.p.advert_cs, out);
        }
    }

    pub fn step(&mut self, ev: Event, now: Instant) -> Vec<Action> {
        let mut out = Vec::new();
        match (self.state, ev) {
            (State::Init, Event::Startup) => self.start(now, &mut out),
            (State::Init, Event::Resume) => self.become_master(now, &mut out),
            (State::Init | State::Fault, Event::Priority(p)) => self.effective = p,
            (_, Event::Shutdown) => self.resign(State::Init, &mut out),
            (State::Fault, Event::Fault(false)) => self.start(now, &mut out),
            (State::Backup | State::Master, Event::Fault(true)) => {
                self.resign(State::Fault, &mut out)
            }
            (State::Backup, Event::Timer) if self.master_down_at.is_some_and(|t| now >= t) => {
                self.become_master(now, &mut out);
            }
            (State::Master, Event::Timer) if self.adver_at.is_some_and(|t| now >= t) => {
                out.push(Action::SendAdvert {
                    priority: self.effective,
                });
                self.adver_at = Some(now + cs(self.p.advert_cs as u64));
            }
            (
                State::Backup,
                Event::Advert {
                    from,
                    priority,
                    interval_cs,
                },
            ) => self.backup_advert(from, priority, interval_cs, now, &mut out),
            (
                State::Master,
                Event::Advert {
                    from,
                    priority,
                    interval_cs,
                },
            ) => {
                if priority == 0 {
                    // A leaving peer: assert ourselves at once.
                    out.push(Action::SendAdvert {
                        priority: self.effective,
                    });
                    self.adver_at = Some(now + cs(self.p.advert_cs as u64));
                } else if priority > self.effective
                    || (priority == self.effective && from > self.p.primary)
                {
                    self.master = Some(from);
                    self.become_backup(now, interval_cs, &mut out);
                }
                // Lower priority (or a lower address at equal priority):
                // discarded; our own adverts make that peer back off.
            }
            (State::Backup, Event::GroupMaster) => self.become_master(now, &mut out),
            (State::Master, Event::GroupBackup) => {
                out.push(Action::SendAdvert { priority: 0 });
                self.master = None;
                self.become_backup(now, self.p.advert_cs, &mut out);
            }
            (State::Backup, Event::Priority(p)) => self.effective = p,
            (State::Master, Event::Priority(p)) if p != self.effective => {
                self.effective = p;
                // Tell the peers now, so a better one can preempt.
                out.push(Action::SendAdvert { priority: p });
                self.adver_at = Some(now + cs(self.p.advert_cs as u64));
            }
            _ => {}
        }
        out
    }

    fn backup_advert(
        &mut self,
        from: IpAddr,
        priority: u8,
        interval_cs: u16,
        now: Instant,
        out: &mut Vec<Action>,
    ) {
        if priority == 0 {
            // The master is leaving: take over after the skew time only.
            self.master = None;
            self.master_down_at = Some(now + self.skew());
            return;
        }
        // Equal priority is accepted: the address tie-break is for two
        // masters (RFC 5798 §6.4.3), not a reason to preempt.
        let lower = priority < self.effective;
        let accept = if !lower || !self.p.preempt {
            self.lower_seen = None;
            true
        } else {
            // A lower master we may preempt, once preempt_delay has passed.
            let since = *self.lower_seen.get_or_insert(now);
            now < since + self.p.preempt_delay
        };
        if accept {
            self.master = Some(from);
            self.master_adver_cs = interval_cs;
            self.master_down_at = Some(now + self.master_down_interval());
        }
        let _ = out;
    }
}
