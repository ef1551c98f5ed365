//! Carrying a running balancer's state across a map layout change (an
//! upgrade to an agent whose LAYOUT_VERSION differs). The new maps are
//! created empty in the new layout directory; before the program is
//! swapped, every entry that decides where a packet goes (services,
//! tables, backends, flows, active counts, health) is copied over; right
//! after the swap, flows the old program placed meanwhile are copied too.
//! Layouts change only by appending fields, so an entry is copied by the
//! common prefix of its old and new size, the rest zero. Per-CPU counters
//! (verdict reasons, packets and bytes, the wrr positions) start again.
//! This works on raw bytes through the bpf(2) map commands, so it needs
//! neither layout's Rust types.

use std::{
    io,
    os::fd::{AsFd, AsRawFd},
    path::{Path, PathBuf},
};

use aya::maps::MapData;
use lb_common::{ServiceMeta, names};

use super::{
    elem::{
        BPF_ANY, BPF_MAP_LOOKUP_ELEM, BPF_MAP_UPDATE_ELEM, BPF_NOEXIST, ElemAttr, bpf, next_key,
    },
    loader,
};

/// Maps copied entry by entry, whole (TABLES is copied per service slot).
const HASHES: [&str; 2] = [names::SERVICES, names::FLOWS];
const ARRAYS: [&str; 7] = [
    names::BACKENDS,
    names::HEALTH,
    names::ACTIVE,
    names::AGENT_STATS,
    names::VRRP,
    names::OWN_MAC,
    names::SLOT_SUMS,
];

/// A pinned map as raw bytes.
struct Raw {
    data: MapData,
    key: usize,
    value: usize,
    max: u32,
}

impl Raw {
    fn open(dir: &Path, name: &str) -> io::Result<Option<Raw>> {
        let path = dir.join(name);
        if !path.exists() {
            return Ok(None);
        }
        let data = MapData::from_pin(&path).map_err(io::Error::other)?;
        let info = data.info().map_err(io::Error::other)?;
        Ok(Some(Raw {
            key: info.key_size() as usize,
            value: info.value_size() as usize,
            max: info.max_entries(),
            data,
        }))
    }

    fn attr(&self, key: &[u8], value: *const u8, flags: u64) -> ElemAttr {
        ElemAttr {
            map_fd: self.data.fd().as_fd().as_raw_fd() as u32,
            _pad: 0,
            key: key.as_ptr() as u64,
            value: value as u64,
            flags,
        }
    }

    fn get(&self, key: &[u8]) -> io::Result<Option<Vec<u8>>> {
        let mut v = vec![0u8; self.value];
        match bpf(BPF_MAP_LOOKUP_ELEM, &self.attr(key, v.as_mut_ptr(), 0)) {
            Ok(()) => Ok(Some(v)),
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Write `value` (another layout's) under `key`: its common prefix, the
    /// rest zero. False when the map refused it (`flags`, or full).
    fn put(&self, key: &[u8], value: &[u8], flags: u64) -> io::Result<bool> {
        let mut k = vec![0u8; self.key];
        let n = k.len().min(key.len());
        k[..n].copy_from_slice(&key[..n]);
        let mut v = vec![0u8; self.value];
        let n = v.len().min(value.len());
        v[..n].copy_from_slice(&value[..n]);
        match bpf(BPF_MAP_UPDATE_ELEM, &self.attr(&k, v.as_ptr(), flags)) {
            Ok(()) => Ok(true),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EEXIST | libc::E2BIG)) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every key of a hash map (a concurrent writer may add or evict some).
    fn keys(&self) -> io::Result<Vec<Vec<u8>>> {
        let fd = self.data.fd().as_fd().as_raw_fd();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let mut next = vec![0u8; self.key];
        while next_key(fd, keys.last().map(Vec::as_slice), &mut next)? {
            keys.push(next.clone());
            if keys.len() > self.max as usize {
                break; // entries churned under us; enough
            }
        }
        Ok(keys)
    }
}

/// What a migration copied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub services: u64,
    pub flows: u64,
    pub table_entries: u64,
    pub array_entries: u64,
}

/// The newest other layout's pins under `pin_dir`, if any: a `v*` directory
/// other than ours, or (layout 2, before the subdirectories) `pin_dir`
/// itself. Only a directory whose XDP link is pinned is live state.
pub fn older(pin_dir: &Path) -> Option<PathBuf> {
    let ours = loader::layout_dir(pin_dir);
    let version = |p: &Path| -> u64 {
        p.file_name()
            .and_then(|n| n.to_str()?.strip_prefix('v')?.parse().ok())
            .unwrap_or(2)
    };
    loader::layout_dirs(pin_dir)
        .into_iter()
        .filter(|d| *d != ours)
        .chain(std::iter::once(pin_dir.to_path_buf()))
        .filter(|d| d.join(names::LINK_PIN).exists() && d.join(names::FLOWS).exists())
        .max_by_key(|d| version(d))
}

/// Copy the state that places packets from `old`'s maps into `new`'s.
pub fn copy(old: &Path, new: &Path) -> io::Result<Copied> {
    let mut c = Copied::default();
    for name in HASHES {
        let (Some(from), Some(to)) = (Raw::open(old, name)?, Raw::open(new, name)?) else {
            continue;
        };
        for k in from.keys()? {
            if let Some(v) = from.get(&k)?
                && to.put(&k, &v, BPF_ANY)?
            {
                if name == names::SERVICES {
                    c.services += 1;
                } else {
                    c.flows += 1;
                }
            }
        }
    }
    for name in ARRAYS {
        let (Some(from), Some(to)) = (Raw::open(old, name)?, Raw::open(new, name)?) else {
            continue;
        };
        for i in 0..from.max.min(to.max) {
            let k = i.to_ne_bytes();
            if let Some(v) = from.get(&k)?
                && v.iter().any(|&b| b != 0)
                && to.put(&k, &v, BPF_ANY)?
            {
                c.array_entries += 1;
            }
        }
    }
    c.table_entries = copy_tables(old, new)?;
    Ok(c)
}

/// Each service's active table slot (the rest of TABLES is never read).
fn copy_tables(old: &Path, new: &Path) -> io::Result<u64> {
    let (Some(services), Some(from), Some(to)) = (
        Raw::open(new, names::SERVICES)?,
        Raw::open(old, names::TABLES)?,
        Raw::open(new, names::TABLES)?,
    ) else {
        return Ok(0);
    };
    let mut n = 0;
    for k in services.keys()? {
        let Some(v) = services.get(&k)? else { continue };
        let mut meta = ServiceMeta::default();
        let bytes = bytemuck::bytes_of_mut(&mut meta);
        let common = bytes.len().min(v.len());
        bytes[..common].copy_from_slice(&v[..common]);
        let base = meta.active_base();
        for i in base..base.saturating_add(meta.active_len().min(meta.table_size)) {
            let k = i.to_ne_bytes();
            if let Some(v) = from.get(&k)?
                && to.put(&k, &v, BPF_ANY)?
            {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// After the swap: flows the old program placed since `copy`, without
/// overwriting what the new program has learnt since.
pub fn copy_new_flows(old: &Path, new: &Path) -> io::Result<u64> {
    let (Some(from), Some(to)) = (Raw::open(old, names::FLOWS)?, Raw::open(new, names::FLOWS)?)
    else {
        return Ok(0);
    };
    let mut n = 0;
    for k in from.keys()? {
        if let Some(v) = from.get(&k)?
            && to.put(&k, &v, BPF_NOEXIST)?
        {
            n += 1;
        }
    }
    Ok(n)
}
