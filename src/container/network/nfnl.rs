//! Elements of a network's port maps, added and deleted by nfnetlink directly: one
//! batch (`NFT_MSG_NEWSETELEM` or `DELSETELEM`) on a netfilter socket, so publishing a
//! port costs a message, not an `nft` process. The table and its maps are made once per
//! network by `nft.rs`. No well-kept crate under a licence we can take writes set
//! elements without linking the C libnftnl (the `nftnl` crate also has no map data), so
//! the few attributes are framed here with netlink-packet-core's NLA emitter.

use std::io;
use std::os::fd::{AsRawFd, RawFd};

use netlink_packet_core::{
    DefaultNla, Emitable, NLA_F_NESTED, NLM_F_ACK, NLM_F_CREATE, NLM_F_REQUEST,
};
use netlink_sys::{protocols::NETLINK_NETFILTER, Socket, SocketAddr};

const NFNL_SUBSYS_NFTABLES: u16 = 10;
const NFNL_MSG_BATCH_BEGIN: u16 = 0x10;
const NFNL_MSG_BATCH_END: u16 = 0x11;
const NFT_MSG_NEWSETELEM: u16 = 12;
const NFT_MSG_DELSETELEM: u16 = 14;
const NFTA_SET_ELEM_LIST_TABLE: u16 = 1;
const NFTA_SET_ELEM_LIST_SET: u16 = 2;
const NFTA_SET_ELEM_LIST_ELEMENTS: u16 = 3;
const NFTA_LIST_ELEM: u16 = 1;
const NFTA_SET_ELEM_KEY: u16 = 1;
const NFTA_SET_ELEM_DATA: u16 = 2;
const NFTA_DATA_VALUE: u16 = 1;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;

/// One map element: `key : data`, each the concatenation of its fields, every field
/// padded to 4 bytes (nftables' register size).
pub struct Element {
    pub set: &'static str,
    pub key: Vec<u8>,
    pub data: Vec<u8>,
}

/// Adds (`add`) or deletes `elements` in the table `table` of `family` (NFPROTO_*), in
/// one transaction: all or none.
pub fn elements(family: u8, table: &str, add: bool, elements: &[Element]) -> io::Result<()> {
    if elements.is_empty() {
        return Ok(());
    }
    let mut socket = Socket::new(NETLINK_NETFILTER)?;
    socket.bind_auto()?;
    socket.connect(&SocketAddr::new(0, 0))?;
    let mut batch = Vec::new();
    let mut seq = 1;
    push(
        &mut batch,
        NFNL_MSG_BATCH_BEGIN,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    let mut acked = Vec::new();
    let (kind, flags) = if add {
        (NFT_MSG_NEWSETELEM, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)
    } else {
        (NFT_MSG_DELSETELEM, NLM_F_REQUEST | NLM_F_ACK)
    };
    // One message per map (a message names one set).
    let mut sets: Vec<&str> = elements.iter().map(|e| e.set).collect();
    sets.dedup();
    for set in sets {
        let list: Vec<DefaultNla> = elements
            .iter()
            .filter(|e| e.set == set)
            .map(|e| {
                let mut parts = vec![nested(NFTA_SET_ELEM_KEY, &[value(&e.key)])];
                if add {
                    parts.push(nested(NFTA_SET_ELEM_DATA, &[value(&e.data)]));
                }
                nested(NFTA_LIST_ELEM, &parts)
            })
            .collect();
        let attrs = [
            DefaultNla::new(NFTA_SET_ELEM_LIST_TABLE, cstr(table)),
            DefaultNla::new(NFTA_SET_ELEM_LIST_SET, cstr(set)),
            nested(NFTA_SET_ELEM_LIST_ELEMENTS, &list),
        ];
        seq += 1;
        push(
            &mut batch,
            (NFNL_SUBSYS_NFTABLES << 8) | kind,
            flags,
            seq,
            family,
            0,
            &emit(&attrs),
        );
        acked.push(seq);
    }
    seq += 1;
    push(
        &mut batch,
        NFNL_MSG_BATCH_END,
        NLM_F_REQUEST,
        seq,
        0,
        NFNL_SUBSYS_NFTABLES,
        &[],
    );
    socket.send(&batch, 0)?;
    // Each message is acknowledged (error 0) or refused (its errno); on a refusal the
    // kernel aborts the whole batch.
    while !acked.is_empty() {
        let (data, _) = socket.recv_from_full()?;
        let mut offset = 0;
        while offset + NLMSG_HDRLEN <= data.len() {
            let len =
                u32::from_ne_bytes(data[offset..offset + 4].try_into().expect("4 bytes")) as usize;
            let kind =
                u16::from_ne_bytes(data[offset + 4..offset + 6].try_into().expect("2 bytes"));
            let seq =
                u32::from_ne_bytes(data[offset + 8..offset + 12].try_into().expect("4 bytes"));
            if len < NLMSG_HDRLEN || offset + len > data.len() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "short netlink reply",
                ));
            }
            if kind == NLMSG_ERROR && len >= NLMSG_HDRLEN + 4 {
                let code = i32::from_ne_bytes(
                    data[offset + NLMSG_HDRLEN..offset + NLMSG_HDRLEN + 4]
                        .try_into()
                        .expect("4 bytes"),
                );
                if code != 0 {
                    return Err(io::Error::from_raw_os_error(-code));
                }
                acked.retain(|s| *s != seq);
            }
            offset += (len + 3) & !3;
        }
    }
    if !add {
        close_elsewhere(socket);
    }
    Ok(())
}

/// Closes a netfilter socket in a process nobody waits for. Deleted elements are freed
/// by a kernel worker after an RCU grace period, and the last close of a netfilter
/// socket (NETLINK_URELEASE) waits for that worker: 5 to 16 ms on a busy host, on every
/// exit of a container with published ports. The deletion itself is committed (and
/// acknowledged) before this: only the wait moves. A child holding the socket (and no
/// other descriptor: no lock, no pipe a caller reads to its end) exits once this process
/// has let go of it (a pipe's end-of-file tells), so its close is the last one and it
/// pays the wait; a thread reaps it, so this process never waits for it to be scheduled.
/// When the fork fails the socket is simply closed here.
fn close_elsewhere(socket: Socket) {
    let sock = socket.as_raw_fd();
    let mut pipe: [RawFd; 2] = [-1; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return;
    }
    // SAFETY: the child makes only async-signal-safe system calls (close_range, read,
    // _exit) and touches no memory the parent's other threads could have left
    // inconsistent.
    let child = unsafe { libc::fork() };
    if child == 0 {
        // SAFETY: as above; system calls on descriptors this child owns, then _exit.
        unsafe {
            close_all_but([sock, pipe[0], -1]);
            let mut byte = 0u8;
            loop {
                let n = libc::read(pipe[0], (&mut byte as *mut u8).cast(), 1);
                if n >= 0 || *libc::__errno_location() != libc::EINTR {
                    break;
                }
            }
            libc::_exit(0);
        }
    }
    // Our copy of the socket goes first, then the pipe: the child's end-of-file comes
    // after, so its close is the last one.
    drop(socket);
    // SAFETY: closing the two pipe descriptors made above, which nothing else uses.
    unsafe {
        libc::close(pipe[0]);
        libc::close(pipe[1]);
    }
    if child > 0 {
        let pid = nix::unistd::Pid::from_raw(child);
        let reaper = std::thread::Builder::new()
            .name("nfnl-reaper".into())
            .spawn(move || nix::sys::wait::waitpid(pid, None));
        if reaper.is_err() {
            let _ = nix::sys::wait::waitpid(pid, None);
        }
    }
}

/// Closes every descriptor but the three `keep` (no allocation: for a forked child).
///
/// # Safety
/// Only for a process whose other descriptors nothing will use again.
unsafe fn close_all_but(mut keep: [RawFd; 3]) {
    keep.sort_unstable();
    let mut next: u32 = 0;
    for fd in keep {
        if fd < 0 {
            continue;
        }
        let fd = fd as u32;
        if fd > next {
            libc::syscall(libc::SYS_close_range, next, fd - 1, 0);
        }
        next = next.max(fd + 1);
    }
    libc::syscall(libc::SYS_close_range, next, u32::MAX, 0);
}

fn cstr(text: &str) -> Vec<u8> {
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    bytes
}

fn value(bytes: &[u8]) -> DefaultNla {
    DefaultNla::new(NFTA_DATA_VALUE, bytes.to_vec())
}

fn nested(kind: u16, children: &[DefaultNla]) -> DefaultNla {
    DefaultNla::new(kind | NLA_F_NESTED, emit(children))
}

fn emit(nlas: &[DefaultNla]) -> Vec<u8> {
    let mut buf = vec![0; nlas.buffer_len()];
    nlas.emit(&mut buf);
    buf
}

/// Appends one netlink message with an nfgenmsg header (`family`, version 0, `res_id`
/// big-endian) and `payload`.
fn push(
    out: &mut Vec<u8>,
    kind: u16,
    flags: u16,
    seq: u32,
    family: u8,
    res_id: u16,
    payload: &[u8],
) {
    let len = NLMSG_HDRLEN + 4 + payload.len();
    out.extend_from_slice(&(len as u32).to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(&flags.to_ne_bytes());
    out.extend_from_slice(&seq.to_ne_bytes());
    out.extend_from_slice(&0u32.to_ne_bytes());
    out.push(family);
    out.push(0);
    out.extend_from_slice(&res_id.to_be_bytes());
    out.extend_from_slice(payload);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}
