//! The embedded XDP object: loading it with the config's map sizes and pins
//! (in the pin directory's `v{LAYOUT_VERSION}`), attaching it (re-using a
//! pinned link, also an older layout's, so a restart or an upgrade never
//! unhooks the interface), and removing the pins.

use std::{
    io,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        Xdp, XdpMode,
        links::{FdLink, PinnedLink},
        xdp::XdpLink,
    },
};
use lb_common::{
    names::{self, LAYOUT_VERSION, LINK_PIN},
    stats::REASON_COUNT,
};
use thiserror::Error;

/// The XDP object built by build.rs from `lb-ebpf`.
pub static OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-ebpf"));

/// The backend side's decapsulation program (`lb realserver`).
pub static OBJECT_DECAP: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/lb-decap"));

/// bpffs magic from linux/magic.h.
const BPF_FS_MAGIC: i64 = 0xcafe_4a11;

#[derive(Debug, Error)]
pub enum EbpfError {
    #[error("loading the XDP object: {0}")]
    Load(#[from] aya::EbpfError),
    #[error("XDP program {0}: {1}")]
    Program(&'static str, aya::programs::ProgramError),
    #[error("pin {path}: {source}")]
    Pin { path: PathBuf, source: io::Error },
    #[error("bpffs: {0}")]
    BpfFs(io::Error),
    #[error("pinned link {path}: {message}")]
    Link { path: PathBuf, message: String },
}

/// Map sizes chosen by the config.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub flows: u32,
    pub max_services: u32,
    pub max_backends: u32,
    pub table_size: u32,
}

impl From<&crate::config::Agent> for Sizes {
    fn from(a: &crate::config::Agent) -> Self {
        Sizes {
            flows: a.flow_table_size,
            max_services: a.max_services,
            max_backends: a.max_backends,
            table_size: a.table_size,
        }
    }
}

/// Where this build's maps are pinned under the configured `pin_dir`.
pub fn layout_dir(pin_dir: &Path) -> PathBuf {
    pin_dir.join(format!("v{LAYOUT_VERSION}"))
}

/// Load the object with its maps pinned in (and re-used from) `pin_dir`'s
/// layout directory.
pub fn load(pin_dir: &Path, sizes: Sizes) -> Result<Ebpf, EbpfError> {
    ensure_bpffs(pin_dir)?;
    let pin_dir = &layout_dir(pin_dir);
    std::fs::create_dir_all(pin_dir).map_err(|source| EbpfError::Pin {
        path: pin_dir.into(),
        source,
    })?;
    let tables = sizes.max_services * 2 * sizes.table_size;
    let ebpf = EbpfLoader::new()
        .default_map_pin_directory(pin_dir)
        .map_max_entries(names::FLOWS, sizes.flows)
        .map_max_entries(names::SERVICES, sizes.max_services)
        .map_max_entries(names::TABLES, tables)
        .map_max_entries(names::BACKENDS, sizes.max_backends)
        .map_max_entries(names::HEALTH, sizes.max_backends)
        .map_max_entries(names::ACTIVE, sizes.max_backends)
        .map_max_entries(names::SERVICE_STATS, sizes.max_services)
        .map_max_entries(names::RR_STATE, sizes.max_services)
        .map_max_entries(names::SLOT_SUMS, sizes.max_services * 2)
        .map_max_entries(names::BACKEND_STATS, sizes.max_backends)
        .map_max_entries(names::REASON_STATS, REASON_COUNT)
        .load(OBJECT)?;
    Ok(ebpf)
}

/// Load (verify) one program of the object and return it.
pub fn program<'a>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut Xdp, EbpfError> {
    let prog: &mut Xdp = ebpf
        .program_mut(name)
        .ok_or(EbpfError::Program(
            name,
            aya::programs::ProgramError::NotLoaded,
        ))?
        .try_into()
        .map_err(|e| EbpfError::Program(name, e))?;
    if prog.fd().is_err() {
        prog.load().map_err(|e| EbpfError::Program(name, e))?;
    }
    Ok(prog)
}

/// How the program ended up attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attached {
    /// The pinned link already runs this very program (a restart of the
    /// same build): nothing to load, verify or swap.
    Kept,
    /// An existing pinned link now runs the new program.
    Replaced,
    Native,
    Generic,
}

/// Attach `lb_xdp` to `ifindex` and pin the link, or swap the program inside
/// an already pinned link: this layout's, else `older`'s (an upgrade; the
/// link then moves to this layout's directory). The swap is one
/// bpf_link_update: no packet meets an interface without the program.
/// Returns the pinned link (dropping it leaves the pin, and the program, in
/// place).
pub fn attach(
    ebpf: &mut Ebpf,
    interface: &str,
    mode: crate::config::XdpMode,
    pin_dir: &Path,
    older: Option<&Path>,
    link_name: &str,
) -> Result<(PinnedLink, Attached), EbpfError> {
    use crate::config::XdpMode as M;
    let link_path = layout_dir(pin_dir).join(link_name);
    if !link_path.exists()
        && let Some(old) = older.map(|o| o.join(link_name)).filter(|o| o.exists())
    {
        // The pin is a name for the same link: move the name.
        std::fs::rename(&old, &link_path).map_err(|source| EbpfError::Pin {
            path: old.clone(),
            source,
        })?;
    }
    let link_err = |message: String| EbpfError::Link {
        path: link_path.clone(),
        message,
    };
    let prog_path = program_pin(pin_dir);
    if link_path.exists() && prog_path.exists() {
        // We pinned this program when we attached it; the verifier's work
        // (a few hundred ms) need not be done again.
        let pinned = PinnedLink::from_pin(&link_path).map_err(|e| link_err(e.to_string()))?;
        return Ok((pinned, Attached::Kept));
    }
    let prog = program(ebpf, names::PROG_LB)?;
    let (link, how) = if link_path.exists() {
        let pinned = PinnedLink::from_pin(&link_path).map_err(|e| link_err(e.to_string()))?;
        let xdp_link =
            XdpLink::try_from(FdLink::from(pinned)).map_err(|e| link_err(e.to_string()))?;
        let id = prog
            .attach_to_link(xdp_link)
            .map_err(|e| EbpfError::Program(names::PROG_LB, e))?;
        (pin_link(prog, id, &link_path, true)?, Attached::Replaced)
    } else {
        let (id, how) = match mode {
            M::Generic => (prog.attach(interface, XdpMode::Skb), Attached::Generic),
            M::Native => (prog.attach(interface, XdpMode::Driver), Attached::Native),
            M::Auto => match prog.attach(interface, XdpMode::Driver) {
                Ok(id) => (Ok(id), Attached::Native),
                Err(e) => {
                    tracing::warn!(%interface, error = %e, "native XDP attach failed; falling back to generic (skb) mode");
                    (prog.attach(interface, XdpMode::Skb), Attached::Generic)
                }
            },
        };
        let id = id.map_err(|e| EbpfError::Program(names::PROG_LB, e))?;
        (pin_link(prog, id, &link_path, false)?, how)
    };
    // Name the program the link now runs, for the next restart.
    remove_program_pins(&layout_dir(pin_dir));
    prog.pin(&prog_path).map_err(|e| EbpfError::Link {
        path: prog_path.clone(),
        message: e.to_string(),
    })?;
    Ok((link, how))
}

/// Where the running program is pinned: its name carries a hash of the
/// embedded object, so another build never mistakes it for its own.
fn program_pin(pin_dir: &Path) -> PathBuf {
    let id = lb_common::hash::bytes_hash(OBJECT, 0);
    layout_dir(pin_dir).join(format!("{PROG_PIN_PREFIX}{id:016x}"))
}

/// Pinned programs are named `prog-HASH`.
const PROG_PIN_PREFIX: &str = "prog-";

fn remove_program_pins(dir: &Path) {
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(PROG_PIN_PREFIX) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

fn pin_link(
    prog: &mut Xdp,
    id: aya::programs::xdp::XdpLinkId,
    path: &Path,
    replace: bool,
) -> Result<PinnedLink, EbpfError> {
    let link = prog
        .take_link(id)
        .map_err(|e| EbpfError::Program(names::PROG_LB, e))?;
    let fd_link = FdLink::try_from(link).map_err(|e| EbpfError::Link {
        path: path.into(),
        message: format!("the kernel attached without a bpf_link ({e}); cannot pin"),
    })?;
    if replace {
        // The same link is already pinned at `path`; re-pinning would fail.
        let _ = std::fs::remove_file(path);
    }
    fd_link.pin(path).map_err(|e| EbpfError::Link {
        path: path.into(),
        message: e.to_string(),
    })
}

/// The pin name of the link on `interface`: the clients' interface has
/// `link`, NAT's backend side `link-IFACE`.
pub fn link_name(interface: &str, first: bool) -> String {
    if first {
        LINK_PIN.to_string()
    } else {
        format!("{LINK_PIN}-{interface}")
    }
}

/// Remove the pins of one layout directory, and the directory if empty.
pub fn unpin_dir(dir: &Path) {
    for name in names::ALL_MAPS {
        let _ = std::fs::remove_file(dir.join(name));
    }
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(LINK_PIN) {
            let _ = std::fs::remove_file(e.path());
        }
    }
    remove_program_pins(dir);
    let _ = std::fs::remove_dir(dir);
}

/// Remove every pin the agent made under `pin_dir`, of every layout
/// version, and the directory if empty. Detaches the program once the last
/// link fd is closed.
pub fn unpin_all(pin_dir: &Path) {
    for d in layout_dirs(pin_dir) {
        unpin_dir(&d);
    }
    // Pins of the layout before versioned subdirectories lay in pin_dir itself.
    unpin_dir(pin_dir);
}

/// The `v*` layout directories under `pin_dir`, any version.
pub fn layout_dirs(pin_dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(pin_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            let n = e.file_name();
            let n = n.to_string_lossy();
            n.strip_prefix('v')
                .is_some_and(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|e| e.path())
        .collect()
}

/// Mount bpffs at /sys/fs/bpf when the pin directory lies under it and no
/// bpffs is mounted there (a fresh mount namespace, a minimal container).
pub fn ensure_bpffs(pin_dir: &Path) -> Result<(), EbpfError> {
    let root = Path::new("/sys/fs/bpf");
    if !pin_dir.starts_with(root) || is_bpffs(root) {
        return Ok(());
    }
    std::fs::create_dir_all(root).map_err(EbpfError::BpfFs)?;
    let c = |s: &str| std::ffi::CString::new(s).expect("no NUL");
    let (src, target, fstype) = (c("bpf"), c("/sys/fs/bpf"), c("bpf"));
    // SAFETY: valid C strings; no data argument.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            fstype.as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc != 0 {
        return Err(EbpfError::BpfFs(io::Error::last_os_error()));
    }
    tracing::info!("mounted bpffs at /sys/fs/bpf");
    Ok(())
}

fn is_bpffs(p: &Path) -> bool {
    let Ok(c) = std::ffi::CString::new(p.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs fills the zeroed struct on success.
    let mut st: libc::statfs = unsafe { std::mem::zeroed() };
    (unsafe { libc::statfs(c.as_ptr(), &mut st) } == 0) && st.f_type as i64 == BPF_FS_MAGIC
}
