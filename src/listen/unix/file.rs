//! The socket files at `statsd.unix_listen` and `statsd.unix_stream_listen`: clearing the
//! path before bind, the mode after it, and removal at shutdown.
//!
//! Owns: telling a stale socket (left by a crash: nobody listens, connect is refused) from
//! a live one (another process listens) and from any other file, and removing only the
//! socket file this process bound. Must never: follow a symbolic link, remove anything but
//! a dead socket or our own, or remove a socket file that a newer instance bound at the
//! same path since (it is recognised by its inode).

use anyhow::{Context, bail};
use socket2::{Domain, SockAddr, Socket, Type};
use std::fs::{FileType, Permissions};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// What is listening at a socket file.
#[derive(Debug)]
enum Probe {
    /// Another process's socket accepted (or queued) a connection.
    Listening,
    /// Connect was refused: no socket is bound to this file any more.
    Stale,
    /// Something else (e.g. no write permission on the file): we cannot tell.
    Unknown(io::Error),
}

/// Makes `path` free for a bind: nothing is there, or a stale socket file, which is
/// removed (and logged). Anything else is refused with a message naming `key`.
pub fn clear(key: &str, path: &Path) -> anyhow::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => bail!("{key}: cannot look at {}: {e}", path.display()),
    };
    if !meta.file_type().is_socket() {
        bail!(
            "{key}: {} already exists and is {}, not a socket; statsgate replaces only a \
             stale socket file: move it away or choose another path",
            path.display(),
            describe(meta.file_type())
        );
    }
    match probe(path) {
        Probe::Listening => bail!(
            "{key}: another process is listening on {}; stop it (a second gateway?) or \
             choose another path",
            path.display()
        ),
        Probe::Unknown(e) => bail!(
            "{key}: {} is a socket, but whether another process listens on it cannot be \
             told ({e}); remove it if it is stale",
            path.display()
        ),
        Probe::Stale => {
            std::fs::remove_file(path).with_context(|| {
                format!("{key}: removing the stale socket file {}", path.display())
            })?;
            tracing::warn!(
                key,
                path = %path.display(),
                "replaced a stale socket file (left by a process that ended without removing it)"
            );
            Ok(())
        }
    }
}

fn describe(t: FileType) -> &'static str {
    if t.is_symlink() {
        "a symbolic link"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_file() {
        "a regular file"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_block_device() || t.is_char_device() {
        "a device"
    } else {
        "something else"
    }
}

/// Connects without blocking: a stream socket first; a datagram socket at the path answers
/// that with EPROTOTYPE, so then a datagram connect. A file no socket is bound to refuses
/// both (ECONNREFUSED).
fn probe(path: &Path) -> Probe {
    match connect(path, Type::STREAM) {
        Ok(()) => Probe::Listening,
        // A listener whose backlog is full is still a listener.
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => Probe::Listening,
        Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Probe::Stale,
        Err(e) if e.raw_os_error() == Some(libc::EPROTOTYPE) => match connect(path, Type::DGRAM) {
            Ok(()) => Probe::Listening,
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) => Probe::Stale,
            Err(e) => Probe::Unknown(e),
        },
        Err(e) => Probe::Unknown(e),
    }
}

fn connect(path: &Path, kind: Type) -> io::Result<()> {
    let socket = Socket::new(Domain::UNIX, kind, None)?;
    socket.set_nonblocking(true)?;
    socket.connect(&SockAddr::unix(path)?)
}

/// A socket file this process bound; removed when dropped (at shutdown, or when start-up
/// fails after the bind) if it is still the same file.
#[derive(Debug)]
pub struct SocketFile {
    path: PathBuf,
    dev: u64,
    ino: u64,
}

impl SocketFile {
    /// Right after the bind created `path`: remembers its inode, then sets `mode`.
    pub fn claim(key: &str, path: &Path, mode: u32) -> anyhow::Result<SocketFile> {
        let meta = std::fs::symlink_metadata(path)
            .with_context(|| format!("{key}: the socket file {} after bind", path.display()))?;
        // Built before the chmod, so a failed chmod still removes the file (on drop).
        let file = SocketFile {
            path: path.to_owned(),
            dev: meta.dev(),
            ino: meta.ino(),
        };
        std::fs::set_permissions(path, Permissions::from_mode(mode)).with_context(|| {
            format!(
                "{key}: setting mode {mode:04o} (statsd.unix_mode) on {}",
                path.display()
            )
        })?;
        Ok(file)
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for SocketFile {
    fn drop(&mut self) {
        let path = self.path.display();
        match std::fs::symlink_metadata(&self.path) {
            Ok(m) if m.dev() == self.dev && m.ino() == self.ino => {
                if let Err(e) = std::fs::remove_file(&self.path) {
                    tracing::warn!(path = %path, error = %e, "could not remove the socket file");
                }
            }
            Ok(_) => tracing::info!(
                path = %path,
                "socket file left in place: another process has bound a new one there since"
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(path = %path, error = %e, "could not look at the socket file"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::net::{UnixDatagram, UnixListener};

    #[test]
    fn nothing_there_is_clear() {
        let dir = tempfile::tempdir().unwrap();
        clear("k", &dir.path().join("s")).unwrap();
    }

    #[test]
    fn a_dead_socket_of_either_kind_is_removed_and_a_live_one_refused() {
        let dir = tempfile::tempdir().unwrap();
        let stream = dir.path().join("stream");
        let dgram = dir.path().join("dgram");
        let live_stream = UnixListener::bind(&stream).unwrap();
        let live_dgram = UnixDatagram::bind(&dgram).unwrap();
        for p in [&stream, &dgram] {
            let e = clear("statsd.unix_listen", p).unwrap_err().to_string();
            assert!(e.starts_with("statsd.unix_listen: another process"), "{e}");
            assert!(p.exists());
        }
        drop((live_stream, live_dgram));
        for p in [&stream, &dgram] {
            clear("k", p).unwrap();
            assert!(!p.exists());
        }
    }

    #[test]
    fn other_files_are_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "keep").unwrap();
        let sub = dir.path().join("dir");
        std::fs::create_dir(&sub).unwrap();
        // A link to a dead socket: still not followed.
        let target = dir.path().join("target");
        drop(UnixListener::bind(&target).unwrap());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        for (p, what) in [
            (&file, "a regular file"),
            (&sub, "a directory"),
            (&link, "a symbolic link"),
        ] {
            let e = clear("statsd.unix_stream_listen", p)
                .unwrap_err()
                .to_string();
            assert!(e.starts_with("statsd.unix_stream_listen: "), "{e}");
            assert!(e.contains(what), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&file).unwrap(), "keep");
        assert!(sub.is_dir() && target.exists());
        assert!(std::fs::symlink_metadata(&link).is_ok());
    }

    #[test]
    fn a_claimed_file_gets_its_mode_and_is_removed_only_while_it_is_ours() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s");
        let socket = UnixDatagram::bind(&path).unwrap();
        let file = SocketFile::claim("k", &path, 0o640).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640);
        drop(file);
        assert!(!path.exists());
        drop(socket);

        // Replaced by a newer instance: left in place.
        let ours = UnixDatagram::bind(&path).unwrap();
        let file = SocketFile::claim("k", &path, 0o600).unwrap();
        std::fs::remove_file(&path).unwrap();
        let theirs = UnixDatagram::bind(&path).unwrap();
        drop(file);
        assert!(path.exists());
        drop((ours, theirs));
    }
}
