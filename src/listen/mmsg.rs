//! Batched datagram I/O (UDP, and receiving on the Unix datagram socket): `recvmmsg(2)`
//! and `sendmmsg(2)` over preallocated buffers.
//!
//! Owns: the `unsafe` FFI code of statsgate (the only other `unsafe` is the prefetch hint of
//! `aggregate/prefetch.rs`), the FFI calls and the raw header arrays they
//! fill. Must never: allocate per call, hand out a slot the kernel did not fill, or keep
//! pointers into memory it does not own (every pointer targets a field of the batch itself,
//! whose heap buffers never move after construction).

use std::io;
use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::AsRawFd;

/// Datagrams per receive call: enough to amortise the syscall, few enough that the
/// buffers' touched pages stay small.
pub const DEFAULT_BATCH: usize = 32;

/// Up to `capacity` datagrams of up to `slot` bytes, received with one system call.
pub struct RecvBatch {
    slot: usize,
    /// `capacity * slot` bytes; slot `i` is `buf[i * slot..(i + 1) * slot]`.
    buf: Box<[u8]>,
    addrs: Box<[libc::sockaddr_storage]>,
    /// Never read: kept alive because `headers` point into it.
    #[allow(dead_code)]
    iovecs: Box<[libc::iovec]>,
    headers: Box<[libc::mmsghdr]>,
    /// Datagrams filled by the last `recv`.
    filled: usize,
}

// SAFETY: the raw pointers in `iovecs` and `headers` point only into this struct's own
// boxed buffers, which move with it and are never shared; sending the batch to another
// thread moves sole ownership of all of them together.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// `slot` is the largest datagram kept whole; a longer one is cut but reports its full
    /// length, so the caller can count and drop it.
    pub fn new(capacity: usize, slot: usize) -> Self {
        let capacity = capacity.max(1);
        let slot = slot.max(1);
        let mut buf = vec![0u8; capacity * slot].into_boxed_slice();
        // SAFETY: sockaddr_storage is plain old data; all-zero is a valid (AF_UNSPEC) value.
        let mut addrs: Box<[libc::sockaddr_storage]> = (0..capacity)
            .map(|_| unsafe { std::mem::zeroed() })
            .collect();
        let mut iovecs: Box<[libc::iovec]> = buf
            .chunks_mut(slot)
            .map(|chunk| libc::iovec {
                iov_base: chunk.as_mut_ptr().cast(),
                iov_len: chunk.len(),
            })
            .collect();
        let headers: Box<[libc::mmsghdr]> = iovecs
            .iter_mut()
            .zip(addrs.iter_mut())
            .map(|(iov, addr)| {
                // SAFETY: mmsghdr is plain old data (pointers and integers); zero is valid
                // and the fields that matter are set right below.
                let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
                h.msg_hdr.msg_name = (addr as *mut libc::sockaddr_storage).cast();
                h.msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_storage>() as u32;
                h.msg_hdr.msg_iov = iov;
                h.msg_hdr.msg_iovlen = 1;
                h
            })
            .collect();
        RecvBatch {
            slot,
            buf,
            addrs,
            iovecs,
            headers,
            filled: 0,
        }
    }

    /// Blocks until at least one datagram arrives (or the socket's read timeout passes),
    /// then takes every queued datagram that fits without waiting again. Any datagram
    /// socket: a Unix one's senders have no IP address, so their `source` is `None`.
    pub fn recv(&mut self, socket: &impl AsRawFd) -> io::Result<usize> {
        self.filled = 0;
        let name_len = std::mem::size_of::<libc::sockaddr_storage>() as u32;
        for h in self.headers.iter_mut() {
            // The kernel shrinks these to what it wrote; restore them for this call.
            h.msg_hdr.msg_namelen = name_len;
            h.msg_len = 0;
        }
        // SAFETY: `headers` holds `headers.len()` initialised mmsghdr entries whose name and
        // iovec pointers target `addrs`, `iovecs` and `buf`, all owned by `self`, alive and
        // unaliased for the duration of the call (we hold `&mut self`); each iovec's length is
        // its slot's length, so the kernel writes only inside `buf`. A null timeout is allowed.
        let n = unsafe {
            libc::recvmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                self.headers.len() as libc::c_uint,
                // MSG_TRUNC: `msg_len` is the datagram's real length even when cut.
                libc::MSG_WAITFORONE | libc::MSG_TRUNC,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        self.filled = n as usize;
        Ok(self.filled)
    }

    /// Datagrams filled by the last `recv`.
    pub fn len(&self) -> usize {
        self.filled
    }

    pub fn is_empty(&self) -> bool {
        self.filled == 0
    }

    /// Datagram `i` of the last `recv`: its bytes (cut at the slot), its full length, and
    /// its source. `None` past the filled count.
    pub fn get(&self, i: usize) -> Option<(&[u8], usize, Option<SocketAddr>)> {
        if i >= self.filled {
            return None;
        }
        let h = &self.headers[i];
        let full = h.msg_len as usize;
        let start = i * self.slot;
        let data = &self.buf[start..start + full.min(self.slot)];
        let source = to_socket_addr(&self.addrs[i], h.msg_hdr.msg_namelen);
        Some((data, full, source))
    }
}

/// The source address the kernel wrote, for IPv4 and IPv6.
fn to_socket_addr(storage: &libc::sockaddr_storage, len: u32) -> Option<SocketAddr> {
    let len = len as usize;
    match i32::from(storage.ss_family) {
        libc::AF_INET if len >= std::mem::size_of::<libc::sockaddr_in>() => {
            // SAFETY: the family says the storage holds a sockaddr_in, and sockaddr_storage
            // is large and aligned enough for every socket address type.
            let a =
                unsafe { &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
            let ip = u32::from_be(a.sin_addr.s_addr);
            Some(SocketAddr::V4(SocketAddrV4::new(
                ip.into(),
                u16::from_be(a.sin_port),
            )))
        }
        libc::AF_INET6 if len >= std::mem::size_of::<libc::sockaddr_in6>() => {
            // SAFETY: as above, for sockaddr_in6.
            let a = unsafe {
                &*(storage as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>()
            };
            Some(SocketAddr::V6(SocketAddrV6::new(
                a.sin6_addr.s6_addr.into(),
                u16::from_be(a.sin6_port),
                a.sin6_flowinfo,
                a.sin6_scope_id,
            )))
        }
        _ => None,
    }
}

/// Sends many datagrams on a connected socket with one `sendmmsg(2)` call.
pub struct SendBatch {
    iovecs: Vec<libc::iovec>,
    headers: Vec<libc::mmsghdr>,
}

// SAFETY: the pointers are rebuilt from borrowed slices on every `send` and not used after
// it returns; between calls they are inert integers.
unsafe impl Send for SendBatch {}

impl SendBatch {
    pub fn new(capacity: usize) -> Self {
        SendBatch {
            iovecs: Vec::with_capacity(capacity),
            headers: Vec::with_capacity(capacity),
        }
    }

    /// Sends `datagrams` in order; returns how many were sent (a prefix of them).
    pub fn send(&mut self, socket: &UdpSocket, datagrams: &[&[u8]]) -> io::Result<usize> {
        self.iovecs.clear();
        self.headers.clear();
        self.iovecs.extend(datagrams.iter().map(|d| libc::iovec {
            // The kernel only reads through this pointer; sendmmsg's API is not const.
            iov_base: d.as_ptr().cast_mut().cast(),
            iov_len: d.len(),
        }));
        for iov in &mut self.iovecs {
            // SAFETY: mmsghdr is plain old data; zero is valid (no name: connected socket).
            let mut h: libc::mmsghdr = unsafe { std::mem::zeroed() };
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            self.headers.push(h);
        }
        if self.headers.is_empty() {
            return Ok(0);
        }
        // SAFETY: `headers` has `headers.len()` initialised entries pointing at `iovecs`
        // (not resized since), whose pointers target the borrowed `datagrams`, alive for the
        // call; the kernel only reads them.
        let n = unsafe {
            libc::sendmmsg(
                socket.as_raw_fd(),
                self.headers.as_mut_ptr(),
                self.headers.len() as libc::c_uint,
                0,
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_round_trip_with_sources_and_truncation() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        tx.connect(rx.local_addr().unwrap()).unwrap();
        let mut send = SendBatch::new(4);
        let big = [b'x'; 20];
        let sent = send.send(&tx, &[b"a:1|c", b"b:2|c\nc:3|c", &big]).unwrap();
        assert_eq!(sent, 3);
        let mut batch = RecvBatch::new(8, 16);
        let mut got = Vec::new();
        while got.len() < 3 {
            batch.recv(&rx).unwrap();
            for i in 0..batch.len() {
                let (data, full, source) = batch.get(i).unwrap();
                assert_eq!(source, Some(tx.local_addr().unwrap()));
                got.push((data.to_vec(), full));
            }
        }
        assert_eq!(got[0], (b"a:1|c".to_vec(), 5));
        assert_eq!(got[1], (b"b:2|c\nc:3|c".to_vec(), 11));
        assert_eq!(
            got[2],
            (vec![b'x'; 16], 20),
            "cut at the slot, full length known"
        );
        assert!(batch.get(batch.len()).is_none());
    }
}
