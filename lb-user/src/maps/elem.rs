//! The bpf(2) map element commands, on raw bytes, for what aya's typed
//! maps do not do: entries of another layout's maps (migrate) and key
//! walks that resume after a given key (the NAT sweep).

use std::{io, os::fd::RawFd};

// bpf(2) commands and flags (include/uapi/linux/bpf.h).
pub const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
pub const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
pub const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
pub const BPF_ANY: u64 = 0;
pub const BPF_NOEXIST: u64 = 1;

/// The map element commands' part of `union bpf_attr`.
#[repr(C)]
pub struct ElemAttr {
    pub map_fd: u32,
    pub _pad: u32,
    /// 0 (NULL) asks BPF_MAP_GET_NEXT_KEY for the first key.
    pub key: u64,
    /// `value`, or `next_key` for BPF_MAP_GET_NEXT_KEY.
    pub value: u64,
    pub flags: u64,
}

pub fn bpf(cmd: libc::c_long, attr: &ElemAttr) -> io::Result<()> {
    // SAFETY: attr is a valid bpf_attr prefix for `cmd`; the key and value
    // pointers in it point at buffers of the map's key and value sizes.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            attr as *const ElemAttr,
            std::mem::size_of::<ElemAttr>(),
        )
    };
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// Write into `next` the key after `after` (the first key for None) of the
/// hash map `fd`, whose keys are `next.len()` bytes; false after the last.
pub fn next_key(fd: RawFd, after: Option<&[u8]>, next: &mut [u8]) -> io::Result<bool> {
    let attr = ElemAttr {
        map_fd: fd as u32,
        _pad: 0,
        key: after.map_or(0, |k| k.as_ptr() as u64),
        value: next.as_mut_ptr() as u64,
        flags: 0,
    };
    match bpf(BPF_MAP_GET_NEXT_KEY, &attr) {
        Ok(()) => Ok(true),
        Err(e) if e.raw_os_error() == Some(libc::ENOENT) => Ok(false),
        Err(e) => Err(e),
    }
}
