//! The baseline for `scripts/side_by_side.sh`: a receive-and-count loop with no parsing and
//! no aggregation, using the same `recvmmsg` batches as statsgate's readers. It serves the
//! line count on `/metrics` with statsgate's counter name, so `statsgate bench` measures it
//! exactly as it measures statsgate.
//!
//! Run: `cargo run --release --example bare_recv -- [UDP_ADDR] [ADMIN_ADDR]`
//! (defaults 127.0.0.1:8125 and 127.0.0.1:8126). Stops on SIGTERM/SIGINT (default action).

use statsgate::listen::mmsg::{DEFAULT_BATCH, RecvBatch};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

fn main() -> std::io::Result<()> {
    let mut args = std::env::args().skip(1);
    let udp: SocketAddr = parse(args.next(), "127.0.0.1:8125")?;
    let admin: SocketAddr = parse(args.next(), "127.0.0.1:8126")?;
    // The same socket set-up as statsgate: SO_REUSEPORT and an 8 MiB receive buffer.
    let listener = statsgate::listen::bind(udp, 1, 8 << 20)?;
    let socket = listener
        .sockets
        .into_iter()
        .next()
        .ok_or_else(|| std::io::Error::other("no socket"))?;
    socket.set_read_timeout(None)?;
    let http = TcpListener::bind(admin)?;
    eprintln!(
        "bare_recv listening udp={} admin={}",
        listener.local_addr,
        http.local_addr()?
    );
    let lines = Arc::new(AtomicU64::new(0));
    let served = Arc::clone(&lines);
    std::thread::spawn(move || serve(&http, &served));
    receive(&socket, &lines)
}

fn parse(arg: Option<String>, default: &str) -> std::io::Result<SocketAddr> {
    arg.as_deref()
        .unwrap_or(default)
        .parse()
        .map_err(std::io::Error::other)
}

/// Counts the lines of every datagram: newlines, plus one for an unterminated last line.
fn receive(socket: &UdpSocket, lines: &AtomicU64) -> std::io::Result<()> {
    let mut batch = RecvBatch::new(DEFAULT_BATCH, 65_536);
    let mut total = 0u64;
    loop {
        if let Err(e) = batch.recv(socket) {
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for i in 0..batch.len() {
            if let Some((d, _, _)) = batch.get(i) {
                let newlines = memchr::memchr_iter(b'\n', d).count() as u64;
                total += newlines + u64::from(d.last().is_some_and(|&b| b != b'\n'));
            }
        }
        // Single writer: a plain store is enough for the reader thread to see it.
        lines.store(total, Relaxed);
    }
}

/// A minimal `/metrics`: one counter, statsgate's name for it.
fn serve(http: &TcpListener, lines: &AtomicU64) {
    for mut conn in http.incoming().flatten() {
        let mut req = [0u8; 1024];
        let _ = conn.read(&mut req);
        let body = format!(
            "statsgate_lines_accepted_total{{type=\"counter\"}} {}\n",
            lines.load(Relaxed)
        );
        let _ = write!(
            conn,
            "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
}
