//! What `lb realserver up` changed on this host, so `down` reverts exactly
//! that and nothing the operator had set before. A JSON file.

use std::{
    net::IpAddr,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// Default state file: runtime state, gone with a reboot like everything
/// it records (addresses, sysctls, programs).
pub const DEFAULT_STATE: &str = "/run/lb/realserver.json";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub mode: String,
    pub interface: Option<String>,
    pub vips: Vec<IpAddr>,
    pub gue_port: u16,
    /// Addresses `up` added (not those that were there already).
    pub addresses: Vec<Added>,
    /// Settings `up` changed, with the value each had before.
    pub sysctls: Vec<Changed>,
    /// The XDP decap program's pin directory, when `up` attached one.
    pub decap_pin_dir: Option<PathBuf>,
    /// Kernel tunnel pieces `up` set (--kernel-tunnel).
    pub kernel: Option<super::kernel::Changes>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Added {
    pub addr: IpAddr,
    pub prefix: u8,
    pub dev: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// Path below /proc/sys.
    pub key: String,
    pub old: String,
    pub new: String,
}

impl State {
    /// The recorded state, or None when `up` has not run (or `down` did).
    pub fn load(path: &Path) -> Result<Option<State>> {
        match std::fs::read_to_string(path) {
            Ok(text) => serde_json::from_str(&text)
                .map(Some)
                .with_context(|| format!("{}: not a realserver state file", path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
    }

    /// Record a setting's change unless an earlier `up` already did (its
    /// old value is the one to restore).
    pub fn changed(&mut self, key: &str, old: String, new: &str) {
        if !self.sysctls.iter().any(|c| c.key == key) {
            self.sysctls.push(Changed {
                key: key.to_string(),
                old,
                new: new.to_string(),
            });
        }
    }
}
