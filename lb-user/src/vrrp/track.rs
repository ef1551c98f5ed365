//! Tracking: what lowers an instance's priority or puts it in FAULT.
//! Tracked interfaces (down -> FAULT), track scripts and tracked services
//! (failed -> priority minus their weight), as keepalived's `track_*`.

use std::collections::BTreeSet;

use futures::TryStreamExt;
use netlink_packet_route::link::LinkFlags;
use rtnetlink::Handle;
use tokio::sync::mpsc;

use crate::{
    config::{TrackScript, Vrrp},
    exec,
};

/// RFC 5798 §5.2.4: 255 is the address owner's, which nothing lowers.
pub const PRIORITY_OWNER: u8 = 255;

/// Base priority less the weights of failed track scripts (by index) and
/// of tracked services with no healthy backend, kept within 1-254; an
/// owner stays at 255.
pub fn priority(cfg: &Vrrp, failed_scripts: &BTreeSet<usize>, down: &BTreeSet<String>) -> u8 {
    if cfg.priority == PRIORITY_OWNER {
        return PRIORITY_OWNER;
    }
    let minus: u32 = failed_scripts
        .iter()
        .filter_map(|&i| cfg.track_scripts.get(i))
        .map(|t| t.weight as u32)
        .chain(
            cfg.track_services
                .iter()
                .filter(|t| down.contains(&t.service))
                .map(|t| t.weight as u32),
        )
        .sum();
    (cfg.priority as u32).saturating_sub(minus).clamp(1, 254) as u8
}

/// Whether any tracked interface is missing, down or without carrier.
pub async fn links_down(net: &Handle, names: &[String]) -> bool {
    for name in names {
        let mut links = net.link().get().match_name(name.clone()).execute();
        match links.try_next().await {
            Ok(Some(l)) => {
                let f = l.header.flags;
                if !f.contains(LinkFlags::Up) || !f.contains(LinkFlags::LowerUp) {
                    return true;
                }
            }
            _ => return true,
        }
    }
    false
}

/// Run track script `i` every interval (each run bounded by its timeout);
/// report its result when it changes.
pub async fn script(i: usize, t: TrackScript, tx: mpsc::Sender<(usize, bool)>) {
    let mut last = None;
    loop {
        let ok = exec::run_for(&t.command, &[], &[], t.timeout).await.is_ok();
        if last != Some(ok) {
            last = Some(ok);
            if tx.send((i, ok)).await.is_err() {
                return;
            }
        }
        tokio::time::sleep(t.interval).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{TrackService, Version};
    use std::time::Duration;

    fn cfg(priority: u8) -> Vrrp {
        let script = |weight| TrackScript {
            command: vec!["true".into()],
            interval: Duration::from_secs(1),
            timeout: Duration::from_secs(1),
            weight,
        };
        Vrrp {
            name: "VI_1".into(),
            interface: "eth0".into(),
            vrid: 1,
            priority,
            version: Version::V3,
            advert_interval: Duration::from_secs(1),
            vips: vec![],
            vips_excluded: vec![],
            preempt: true,
            preempt_delay: Duration::ZERO,
            auth_pass: None,
            unicast_peers: vec![],
            heartbeat_paths: vec![],
            garp_repeat: 1,
            garp_interval: Duration::from_secs(1),
            garp_refresh: None,
            track_interfaces: vec![],
            track_scripts: vec![script(30), script(200)],
            track_services: vec![TrackService {
                service: "203.0.113.10:80/tcp".into(),
                weight: 20,
            }],
            notify: None,
            v3_checksum_as_v2: false,
            sync_group: None,
        }
    }

    #[test]
    fn failed_tracks_subtract_their_weights_within_bounds() {
        let none = BTreeSet::new();
        let up = BTreeSet::new();
        let svc: BTreeSet<String> = ["203.0.113.10:80/tcp".to_string()].into();
        assert_eq!(priority(&cfg(150), &none, &up), 150);
        assert_eq!(priority(&cfg(150), &[0].into(), &up), 120);
        assert_eq!(priority(&cfg(150), &[0].into(), &svc), 100);
        // Never below 1, however much fails.
        assert_eq!(priority(&cfg(150), &[0, 1].into(), &svc), 1);
        // The owner is never lowered.
        assert_eq!(priority(&cfg(255), &[0, 1].into(), &svc), 255);
    }
}
