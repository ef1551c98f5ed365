//! VRRP sync groups (keepalived's vrrp_sync_group): instances that change
//! state together, so a NAT pair's outside VIP and the backends' gateway
//! are always on one node. Each member publishes its own state and its own
//! fault on a shared channel; `follow` says what a member does when the
//! others change: a fault anywhere puts every member in FAULT (and its end
//! lets them all start again), a member becoming MASTER takes the backups
//! along, a master falling back to BACKUP takes the masters along.

use std::sync::Arc;

use tokio::sync::watch;

use super::state::{Event, State};

/// One member as the group sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Member {
    /// Its own fault (a tracked interface down), not one the group caused.
    pub fault: bool,
    /// None until it has started.
    pub state: Option<State>,
}

/// The events member `me` (own fault `own_fault`, machine in `mine`) must
/// take when the group goes from `before` to `now`.
pub fn follow(
    me: usize,
    own_fault: bool,
    mine: State,
    before: &[Member],
    now: &[Member],
) -> Vec<Event> {
    let others = |f: &dyn Fn(usize, &Member) -> bool| {
        now.iter().enumerate().any(|(i, m)| i != me && f(i, m))
    };
    let fault = own_fault || others(&|_, m| m.fault);
    if fault {
        return if mine == State::Fault {
            Vec::new()
        } else {
            vec![Event::Fault(true)]
        };
    }
    if mine == State::Fault {
        return vec![Event::Fault(false)];
    }
    let was = |i: usize| before.get(i).and_then(|m| m.state);
    let became_master = others(&|i, m| m.state == Some(State::Master) && was(i) != m.state);
    let fell_back = others(&|i, m| m.state == Some(State::Backup) && was(i) == Some(State::Master));
    match mine {
        State::Backup if became_master => vec![Event::GroupMaster],
        State::Master if fell_back => vec![Event::GroupBackup],
        _ => Vec::new(),
    }
}

/// Whether a member other than `me` has a fault of its own.
pub fn others_fault(me: usize, now: &[Member]) -> bool {
    now.iter().enumerate().any(|(i, m)| i != me && m.fault)
}

/// A member's end of its group's channel.
#[derive(Clone)]
pub struct Link {
    pub me: usize,
    pub tx: Arc<watch::Sender<Vec<Member>>>,
    pub rx: watch::Receiver<Vec<Member>>,
    /// The group as this member last acted on it.
    pub seen: Vec<Member>,
}

impl Link {
    /// Links for a group of `n` members.
    pub fn group(n: usize) -> Vec<Link> {
        let (tx, rx) = watch::channel(vec![Member::default(); n]);
        let tx = Arc::new(tx);
        (0..n)
            .map(|me| Link {
                me,
                tx: tx.clone(),
                rx: rx.clone(),
                seen: vec![Member::default(); n],
            })
            .collect()
    }

    /// Publish this member's own state.
    pub fn publish(&self, m: Member) {
        self.tx.send_if_modified(|v| {
            let changed = v.get(self.me) != Some(&m);
            if changed && let Some(slot) = v.get_mut(self.me) {
                *slot = m;
            }
            changed
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(fault: bool, state: State) -> Member {
        Member {
            fault,
            state: Some(state),
        }
    }

    #[test]
    fn a_fault_anywhere_faults_all_and_its_end_restarts_all() {
        let before = [m(false, State::Master), m(false, State::Master)];
        let now = [m(true, State::Fault), m(false, State::Master)];
        assert_eq!(
            follow(1, false, State::Master, &before, &now),
            vec![Event::Fault(true)]
        );
        // Already in FAULT because of the group: nothing more.
        assert!(follow(1, false, State::Fault, &now, &now).is_empty());
        // The faulty member recovers: the others start again.
        let healed = [m(false, State::Backup), m(false, State::Fault)];
        assert_eq!(
            follow(1, false, State::Fault, &now, &healed),
            vec![Event::Fault(false)]
        );
        // A member's own fault keeps it in FAULT whatever the others do.
        assert!(follow(1, true, State::Fault, &now, &healed).is_empty());
    }

    #[test]
    fn masters_and_backups_follow_a_transition() {
        let before = [m(false, State::Backup), m(false, State::Backup)];
        let now = [m(false, State::Master), m(false, State::Backup)];
        assert_eq!(
            follow(1, false, State::Backup, &before, &now),
            vec![Event::GroupMaster]
        );
        // The member that moved does not react to itself.
        assert!(follow(0, false, State::Master, &before, &now).is_empty());
        let back = [m(false, State::Backup), m(false, State::Master)];
        assert_eq!(
            follow(1, false, State::Master, &now, &back),
            vec![Event::GroupBackup]
        );
        // Levels do not re-trigger: a master seen again is no transition.
        assert!(follow(1, false, State::Backup, &now, &now).is_empty());
    }
}
