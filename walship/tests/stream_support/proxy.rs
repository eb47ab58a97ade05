//! A TCP proxy for network faults: it forwards 127.0.0.1:<port> to an upstream address,
//! and on [`Proxy::cut`] drops every open connection and stops listening (new connections are
//! refused: ECONNREFUSED) until [`Proxy::heal`]; on [`Proxy::stall`] it drops every open
//! connection and then accepts new ones but never forwards a byte (a silent server). Plain std
//! threads, two per connection.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Default)]
struct State {
    cut: AtomicBool,
    stall: AtomicBool,
    stop: AtomicBool,
    accepted: AtomicU64,
    open: Mutex<Vec<TcpStream>>,
}

/// A running proxy; stopped (every connection dropped) when dropped.
pub struct Proxy {
    port: u16,
    state: Arc<State>,
    thread: Option<JoinHandle<()>>,
}

impl Proxy {
    /// Listens on a free loopback port and forwards every connection to `upstream`.
    pub fn start(upstream: SocketAddr) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().unwrap().port();
        let state = Arc::new(State::default());
        let shared = state.clone();
        let thread = std::thread::spawn(move || accept_loop(listener, port, upstream, shared));
        Proxy {
            port,
            state,
            thread: Some(thread),
        }
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connections accepted and forwarded so far.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::SeqCst)
    }

    /// Drops every open connection (both directions) and refuses new ones until `heal`.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        drop_all(&self.state);
    }

    /// Drops every open connection, then accepts new ones and holds them silent until
    /// `heal`.
    pub fn stall(&self) {
        self.state.stall.store(true, Ordering::SeqCst);
        drop_all(&self.state);
    }

    /// Accepts and forwards connections again (silent ones held by `stall` are dropped).
    pub fn heal(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
        if self.state.stall.swap(false, Ordering::SeqCst) {
            drop_all(&self.state);
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::SeqCst);
        drop_all(&self.state);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn drop_all(state: &State) {
    for socket in state.open.lock().unwrap().drain(..) {
        let _ = socket.shutdown(Shutdown::Both);
    }
}

fn accept_loop(listener: TcpListener, port: u16, upstream: SocketAddr, state: Arc<State>) {
    let mut listener = Some(listener);
    while !state.stop.load(Ordering::SeqCst) {
        if state.cut.load(Ordering::SeqCst) {
            // Not listening at all: connection attempts are refused by the kernel.
            listener = None;
            std::thread::sleep(Duration::from_millis(10));
            continue;
        }
        let Some(l) = listener.as_ref() else {
            // std sets SO_REUSEADDR on Unix, so the same port binds again at once.
            match TcpListener::bind(("127.0.0.1", port)) {
                Ok(l) => listener = Some(l),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
            continue;
        };
        l.set_nonblocking(true).unwrap();
        match l.accept() {
            Ok((client, _)) if state.stall.load(Ordering::SeqCst) => {
                state.open.lock().unwrap().push(client);
            }
            Ok((client, _)) => {
                client.set_nonblocking(false).unwrap();
                match TcpStream::connect(upstream) {
                    Ok(server) => forward(client, server, &state),
                    Err(_) => drop(client),
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}

fn forward(client: TcpStream, server: TcpStream, state: &Arc<State>) {
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    {
        let mut open = state.open.lock().unwrap();
        open.push(client.try_clone().unwrap());
        open.push(server.try_clone().unwrap());
    }
    state.accepted.fetch_add(1, Ordering::SeqCst);
    let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
    std::thread::spawn(move || pump(client, server));
    std::thread::spawn(move || pump(s2, c2));
}

/// Copies `from` to `to` until either side ends, then shuts both down.
fn pump(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}
