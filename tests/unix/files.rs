//! The socket files: mode, removal at SIGTERM, stale ones replaced, anything else at the
//! path refused (and left alone), a live socket refused, a newer instance's file kept.

use super::common::{start, value};
use super::{is_socket, refused, sockets_config, stop, wait_accepted};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixDatagram, UnixListener, UnixStream};
use std::time::Duration;

#[test]
fn files_get_the_mode_and_sigterm_removes_them() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, dgram, stream) = sockets_config(dir.path(), "  unix_mode: \"0640\"\n");
    let gw = start(&yaml);
    for p in [&dgram, &stream] {
        assert!(is_socket(p), "{} is not a socket", p.display());
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o640, "mode of {}", p.display());
    }
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"fin.d:1|c", &dgram)
        .unwrap();
    // Held open across the SIGTERM: its last line (no newline) is read at stop.
    let mut held = UnixStream::connect(&stream).unwrap();
    held.write_all(b"fin.s:2|c\nfin.open:3|c").unwrap();
    wait_accepted(&gw, "unix_stream", 1);
    wait_accepted(&gw, "unix", 1);
    let metrics = stop(gw);
    assert!(!dgram.exists() && !stream.exists(), "socket files left");
    assert_eq!(value(&metrics, "fin.d", &[]), 1.0);
    assert_eq!(value(&metrics, "fin.s", &[]), 2.0);
    assert_eq!(value(&metrics, "fin.open", &[]), 3.0);
    // The gateway closed its end.
    let mut rest = Vec::new();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    assert_eq!(held.read_to_end(&mut rest).unwrap(), 0);
}

#[test]
fn stale_socket_files_are_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, dgram, stream) = sockets_config(dir.path(), "");
    // What a crash leaves: bound, never unlinked, nobody listening.
    drop(UnixDatagram::bind(&dgram).unwrap());
    drop(UnixListener::bind(&stream).unwrap());
    assert!(is_socket(&dgram) && is_socket(&stream));
    let gw = start(&yaml);
    let log = gw.stderr.lock().unwrap().clone();
    assert_eq!(
        log.matches("replaced a stale socket file").count(),
        2,
        "{log}"
    );
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"stale.d:1|c", &dgram)
        .unwrap();
    UnixStream::connect(&stream)
        .unwrap()
        .write_all(b"stale.s:1|c\n")
        .unwrap();
    wait_accepted(&gw, "unix", 1);
    wait_accepted(&gw, "unix_stream", 1);
    // A real crash: kill -9 leaves both files; the next start replaces them again.
    gw.kill9();
    assert!(is_socket(&dgram) && is_socket(&stream));
    let gw = start(&yaml);
    assert_eq!(
        gw.stderr
            .lock()
            .unwrap()
            .matches("replaced a stale socket file")
            .count(),
        2
    );
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"stale.d:1|c", &dgram)
        .unwrap();
    wait_accepted(&gw, "unix", 1);
    stop(gw);
}

#[test]
fn other_files_at_the_path_refuse_start_up_and_are_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, dgram, stream) = sockets_config(dir.path(), "");

    std::fs::write(&dgram, "precious").unwrap();
    let (code, err) = refused(&yaml);
    assert_ne!(code, 0);
    assert!(err.contains("statsd.unix_listen: "), "{err}");
    assert!(err.contains(&dgram.display().to_string()), "{err}");
    assert!(err.contains("a regular file"), "{err}");
    assert_eq!(std::fs::read_to_string(&dgram).unwrap(), "precious");
    assert!(!stream.exists());
    std::fs::remove_file(&dgram).unwrap();

    // A directory, and a link to a dead socket (never followed, never removed).
    std::fs::create_dir(&stream).unwrap();
    let (code, err) = refused(&yaml);
    assert_ne!(code, 0);
    assert!(err.contains("statsd.unix_stream_listen: "), "{err}");
    assert!(err.contains("a directory"), "{err}");
    assert!(stream.is_dir());
    // The datagram socket it bound before failing is gone again.
    assert!(!dgram.exists(), "the datagram socket file was left behind");
    std::fs::remove_dir(&stream).unwrap();

    let dead = dir.path().join("dead.socket");
    drop(UnixListener::bind(&dead).unwrap());
    std::os::unix::fs::symlink(&dead, &stream).unwrap();
    let (code, err) = refused(&yaml);
    assert_ne!(code, 0);
    assert!(err.contains("statsd.unix_stream_listen: "), "{err}");
    assert!(err.contains("a symbolic link"), "{err}");
    assert!(is_socket(&dead) && std::fs::symlink_metadata(&stream).is_ok());
}

#[test]
fn a_live_socket_at_the_path_refuses_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, dgram, stream) = sockets_config(dir.path(), "");
    // Another gateway holds both paths.
    let first = start(&yaml);
    let (code, err) = refused(&yaml);
    assert_ne!(code, 0);
    assert!(
        err.contains("statsd.unix_listen: another process is listening on"),
        "{err}"
    );
    assert!(err.contains(&dgram.display().to_string()), "{err}");
    // Only the stream path taken: the second's own datagram socket file is removed again.
    let own = dir.path().join("own.socket");
    let second = format!(
        "statsd:\n  unix_listen: {}\n  unix_stream_listen: {}\n",
        own.display(),
        stream.display()
    );
    let (code, err) = refused(&second);
    assert_ne!(code, 0);
    assert!(
        err.contains("statsd.unix_stream_listen: another process is listening on"),
        "{err}"
    );
    assert!(!own.exists());
    // The first gateway kept its sockets and still reads them.
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"live.d:1|c", &dgram)
        .unwrap();
    UnixStream::connect(&stream)
        .unwrap()
        .write_all(b"live.s:1|c\n")
        .unwrap();
    wait_accepted(&first, "unix", 1);
    wait_accepted(&first, "unix_stream", 1);

    // Not a gateway: any listener counts.
    let other = dir.path().join("other.socket");
    let _listener = UnixListener::bind(&other).unwrap();
    let (code, err) = refused(&format!(
        "statsd:\n  unix_stream_listen: {}\n",
        other.display()
    ));
    assert_ne!(code, 0);
    assert!(
        err.contains("statsd.unix_stream_listen: another process"),
        "{err}"
    );
    assert!(UnixStream::connect(&other).is_ok());
    stop(first);
}

#[test]
fn a_socket_file_a_newer_instance_bound_is_left_at_stop() {
    let dir = tempfile::tempdir().unwrap();
    let (yaml, dgram, stream) = sockets_config(dir.path(), "");
    let gw = start(&yaml);
    // An operator (or a newer instance) moved the old file away and bound a new one.
    std::fs::remove_file(&dgram).unwrap();
    let newer = UnixDatagram::bind(&dgram).unwrap();
    stop(gw);
    assert!(is_socket(&dgram), "the newer socket file was removed");
    assert!(!stream.exists());
    UnixDatagram::unbound()
        .unwrap()
        .send_to(b"x:1|c", &dgram)
        .unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(newer.recv(&mut buf).unwrap(), 5);
}
