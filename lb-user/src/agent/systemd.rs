//! Telling systemd (`Type=notify`) where the agent is: ready once it
//! serves, reloading around a SIGHUP, stopping. Without NOTIFY_SOCKET
//! (not started by systemd) each call does nothing.

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!(error = %e, "sd_notify failed");
    }
}

pub fn ready(services: usize) {
    let status = format!("serving {services} services");
    send(&[NotifyState::Ready, NotifyState::Status(&status)]);
}

/// A reload begins; `ready` ends it.
pub fn reloading() {
    match NotifyState::monotonic_usec_now() {
        Ok(now) => send(&[NotifyState::Reloading, now]),
        Err(_) => send(&[NotifyState::Reloading]),
    }
}

pub fn stopping() {
    send(&[NotifyState::Stopping]);
}
