//! `lb import-keepalived`: a keepalived.conf read as keepalived reads it
//! (grammar.rs) and mapped to lb.toml with keepalived's defaults (map.rs),
//! with a report of everything it could not map.

pub mod grammar;
pub mod map;

use std::path::Path;

pub use map::Note;

pub struct Imported {
    pub toml: String,
    /// In file order.
    pub notes: Vec<Note>,
}

impl Imported {
    /// Whether something essential could not be expressed.
    pub fn failed(&self) -> bool {
        self.notes.iter().any(|n| n.essential)
    }
}

/// Read `path` (with its includes; conditional lines for `router_id`).
/// `tunnel_source`: this balancer's addresses, the outer source of TUN
/// services (else the file's unicast_src_ip / mcast_src_ip).
pub fn import(
    path: &Path,
    router_id: Option<&str>,
    tunnel_source: &[std::net::IpAddr],
) -> std::io::Result<Imported> {
    let (nodes, skipped) = grammar::read(path, router_id)?;
    let mut out = map::map(&nodes);
    if let Some(at) = out.tunnel.clone() {
        let sources = if tunnel_source.is_empty() {
            out.own.clone()
        } else {
            tunnel_source.to_vec()
        };
        if sources.is_empty() {
            out.notes.push(Note {
                at,
                what: "lb_kind TUN: the outer source is this balancer's address, which the file does not name; pass --tunnel-source ADDR".into(),
                essential: true,
            });
        } else {
            out.tunnel_source = sources;
        }
    }
    out.notes.extend(skipped.into_iter().map(|s| Note {
        at: s.at,
        what: s.why,
        essential: false,
    }));
    out.notes
        .sort_by(|a, b| (&a.at.file, a.at.line).cmp(&(&b.at.file, b.at.line)));
    Ok(Imported {
        toml: out.render(),
        notes: out.notes,
    })
}
