//! Which VIPs a node announces, and why. A VIP is announced while every
//! service on it can be served here: not a VRRP standby, and at least
//! `min_backends` healthy backends. A VIP that this node cannot serve in
//! full is better served by the other nodes behind the router's ECMP.

use std::{collections::BTreeMap, net::IpAddr};

use serde::Serialize;

/// One service as the plan sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub vip: IpAddr,
    /// "203.0.113.10:80/tcp".
    pub service: String,
    pub up: usize,
    pub total: usize,
    /// A VRRP-managed VIP this node does not hold.
    pub standby: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VipPlan {
    pub vip: IpAddr,
    pub announce: bool,
    pub why: String,
}

/// Every VIP of `services`, in address order, with its decision.
pub fn plan(services: &[Health], min_backends: usize) -> Vec<VipPlan> {
    let mut by_vip: BTreeMap<IpAddr, Vec<&Health>> = BTreeMap::new();
    for s in services {
        by_vip.entry(s.vip).or_default().push(s);
    }
    by_vip
        .into_iter()
        .map(|(vip, svcs)| {
            let blocked: Vec<String> = svcs
                .iter()
                .filter_map(|s| {
                    if s.standby {
                        Some(format!("{} is a VRRP standby here", s.service))
                    } else if s.up < min_backends {
                        Some(format!(
                            "{} has {} of {} backends up (min_backends {min_backends})",
                            s.service, s.up, s.total
                        ))
                    } else {
                        None
                    }
                })
                .collect();
            let announce = blocked.is_empty();
            let why = if announce {
                let ups: Vec<String> = svcs
                    .iter()
                    .map(|s| format!("{} {}/{} up", s.service, s.up, s.total))
                    .collect();
                ups.join(", ")
            } else {
                blocked.join("; ")
            };
            VipPlan { vip, announce, why }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(vip: &str, port: u16, up: usize, standby: bool) -> Health {
        Health {
            vip: vip.parse().unwrap(),
            service: format!("{vip}:{port}/tcp"),
            up,
            total: 3,
            standby,
        }
    }

    #[test]
    fn a_vip_is_announced_while_each_of_its_services_has_enough_backends() {
        let services = [
            h("203.0.113.10", 80, 3, false),
            h("203.0.113.10", 443, 1, false),
            h("2001:db8:f::10", 80, 0, false),
            h("203.0.113.11", 80, 2, true),
        ];
        let p = plan(&services, 1);
        let got: Vec<(String, bool)> = p.iter().map(|v| (v.vip.to_string(), v.announce)).collect();
        assert_eq!(
            got,
            [
                ("203.0.113.10".to_string(), true),
                ("203.0.113.11".to_string(), false),
                ("2001:db8:f::10".to_string(), false),
            ]
        );
        assert_eq!(
            p[0].why,
            "203.0.113.10:80/tcp 3/3 up, 203.0.113.10:443/tcp 1/3 up"
        );
        assert!(p[1].why.contains("VRRP standby"), "{}", p[1].why);
        assert_eq!(
            p[2].why,
            "2001:db8:f::10:80/tcp has 0 of 3 backends up (min_backends 1)"
        );
        // A higher bar withdraws the VIP whose second service has one.
        let p = plan(&services, 2);
        assert!(!p[0].announce);
        assert!(p[0].why.contains(":443/tcp has 1 of 3"), "{}", p[0].why);
    }
}
