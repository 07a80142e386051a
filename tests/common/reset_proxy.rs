//! A TCP proxy in front of the fake Monasca that, while switched on, answers every new
//! connection with a reset (SO_LINGER 0 then close): what a crashing load balancer or API
//! worker looks like to a client.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub struct ResetProxy {
    pub addr: SocketAddr,
    pub resetting: Arc<AtomicBool>,
    pub resets: Arc<AtomicU64>,
    /// Client sides of the connections being piped, cut when resetting starts.
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl ResetProxy {
    pub fn start(upstream: SocketAddr) -> ResetProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let resetting = Arc::new(AtomicBool::new(false));
        let resets = Arc::new(AtomicU64::new(0));
        let open: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let (flag, count, conns) = (
            Arc::clone(&resetting),
            Arc::clone(&resets),
            Arc::clone(&open),
        );
        std::thread::spawn(move || {
            for client in listener.incoming().map_while(Result::ok) {
                if flag.load(Ordering::SeqCst) {
                    let socket = socket2::Socket::from(client);
                    let _ = socket.set_linger(Some(Duration::ZERO));
                    count.fetch_add(1, Ordering::SeqCst);
                    drop(socket);
                    continue;
                }
                let Ok(server) = TcpStream::connect(upstream) else {
                    continue;
                };
                if let Ok(c) = client.try_clone() {
                    conns.lock().unwrap().push(c);
                }
                pipe(client, server);
            }
        });
        ResetProxy {
            addr,
            resetting,
            resets,
            open,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}/v2.0", self.addr)
    }

    /// On: kept-alive connections are cut now and new ones are reset.
    pub fn set_resetting(&self, on: bool) {
        self.resetting.store(on, Ordering::SeqCst);
        if on {
            for c in self.open.lock().unwrap().drain(..) {
                let _ = socket2::SockRef::from(&c).set_linger(Some(Duration::ZERO));
                let _ = c.shutdown(std::net::Shutdown::Both);
                self.resets.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

/// Copies both ways until either side closes.
fn pipe(client: TcpStream, server: TcpStream) {
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::spawn(move || copy(client, server));
    std::thread::spawn(move || copy(s2, c2));
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let _ = std::io::copy(&mut from, &mut to);
    let _ = to.shutdown(std::net::Shutdown::Write);
}
