//! BPF programs attached to a cgroup, through the bpf(2) syscall (`include/uapi/linux/bpf.h`):
//! BPF_PROG_QUERY per attach type, then each program's id, name and loader.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::Path;

const BPF_PROG_GET_FD_BY_ID: libc::c_long = 13;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_PROG_QUERY: libc::c_long = 16;
/// Bytes of `union bpf_attr` passed; the kernel reads what it knows, the rest is zero.
const ATTR: usize = 128;

/// An attached program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Prog {
    pub(crate) id: u32,
    pub(crate) name: String,
    /// The uid that loaded it.
    pub(crate) uid: u32,
}

fn bpf(cmd: libc::c_long, attr: &mut [u8; ATTR]) -> io::Result<libc::c_long> {
    // SAFETY: bpf(2) with a live, zero-padded attribute buffer of the size passed.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), ATTR) };
    if r < 0 { Err(io::Error::last_os_error()) } else { Ok(r) }
}

/// The programs attached directly to cgroup `dir`, for each of `types`.
pub(crate) fn attached(dir: &Path, types: &[u32]) -> io::Result<Vec<(u32, Prog)>> {
    let cgroup = fs_open_dir(dir)?;
    let mut out = Vec::new();
    for &attach in types {
        let mut ids = [0u32; 64];
        let mut attr = [0u8; ATTR];
        attr[0..4].copy_from_slice(&u32::try_from(cgroup.as_raw_fd()).unwrap_or(0).to_ne_bytes());
        attr[4..8].copy_from_slice(&attach.to_ne_bytes());
        attr[16..24].copy_from_slice(&(ids.as_mut_ptr() as u64).to_ne_bytes());
        attr[24..28].copy_from_slice(&64u32.to_ne_bytes());
        match bpf(BPF_PROG_QUERY, &mut attr) {
            Ok(_) => {}
            // An attach type this kernel does not know, or nothing of that kind.
            Err(e) if matches!(e.raw_os_error(), Some(libc::EINVAL | libc::ENOENT)) => continue,
            Err(e) => return Err(e),
        }
        let count = u32::from_ne_bytes([attr[24], attr[25], attr[26], attr[27]]).min(64) as usize;
        for &id in &ids[..count] {
            out.push((attach, info(id).unwrap_or(Prog { id, name: String::new(), uid: 0 })));
        }
    }
    Ok(out)
}

fn fs_open_dir(dir: &Path) -> io::Result<OwnedFd> {
    let c = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::other("a path with a NUL byte"))?;
    // SAFETY: open(2) on a NUL-terminated path; the result is checked before use.
    let fd =
        unsafe { libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh descriptor nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn info(id: u32) -> io::Result<Prog> {
    let mut attr = [0u8; ATTR];
    attr[0..4].copy_from_slice(&id.to_ne_bytes());
    let fd = bpf(BPF_PROG_GET_FD_BY_ID, &mut attr)?;
    // SAFETY: the syscall returned a fresh descriptor that we own.
    let fd =
        unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).map_err(|_| io::Error::other("fd"))?) };
    let mut info = [0u8; 80];
    let mut attr = [0u8; ATTR];
    attr[0..4].copy_from_slice(&u32::try_from(fd.as_raw_fd()).unwrap_or(0).to_ne_bytes());
    attr[4..8].copy_from_slice(&80u32.to_ne_bytes());
    attr[8..16].copy_from_slice(&(info.as_mut_ptr() as u64).to_ne_bytes());
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    let name = &info[64..80];
    let end = name.iter().position(|b| *b == 0).unwrap_or(16);
    Ok(Prog {
        id,
        name: String::from_utf8_lossy(&name[..end]).into_owned(),
        uid: u32::from_ne_bytes([info[48], info[49], info[50], info[51]]),
    })
}
