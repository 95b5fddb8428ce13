//! A TCP proxy on port 0 for fault tests: it forwards every connection to one
//! upstream (PostgreSQL, say) until it is cut, then closes the open ones and
//! refuses new ones until it is restored; or, black-holed, it closes the open
//! ones and accepts new ones that never get an answer (a database host gone
//! silent, the harder case: every wait needs its own bound). Lets a test take a shared database
//! away from one gateway without stopping it for anyone else.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug)]
struct Shared {
    up: AtomicBool,
    /// While cut: accept and hold connections instead of refusing them.
    silent: AtomicBool,
    /// Cancelled by `cut`: every connection opened before it closes.
    open: Mutex<CancellationToken>,
    accepted: AtomicU64,
    refused: AtomicU64,
    /// Connections being forwarded now.
    forwarding: AtomicUsize,
}

/// A running proxy; dropping it stops it.
#[derive(Debug)]
pub struct TcpProxy {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl TcpProxy {
    /// Listens on 127.0.0.1:0 and forwards to `upstream`, starting up.
    pub async fn start(upstream: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            up: AtomicBool::new(true),
            silent: AtomicBool::new(false),
            open: Mutex::new(CancellationToken::new()),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
            forwarding: AtomicUsize::new(0),
        });
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let (s, st, tr) = (shared.clone(), stop.clone(), tracker.clone());
        tracker.spawn(async move {
            loop {
                let conn = tokio::select! {
                    () = st.cancelled() => break,
                    c = listener.accept() => c,
                };
                let Ok((client, _)) = conn else { continue };
                let cut = match s.open.lock() {
                    Ok(t) => t.clone(),
                    Err(p) => p.into_inner().clone(),
                };
                if !s.up.load(Ordering::SeqCst) {
                    s.refused.fetch_add(1, Ordering::Relaxed);
                    if s.silent.load(Ordering::SeqCst) {
                        // Held open, never answered, until restored or stopped.
                        let st = st.clone();
                        tr.spawn(async move {
                            let _client = client;
                            tokio::select! {
                                () = cut.cancelled() => {}
                                () = st.cancelled() => {}
                            }
                        });
                    }
                    continue;
                }
                s.accepted.fetch_add(1, Ordering::Relaxed);
                s.forwarding.fetch_add(1, Ordering::SeqCst);
                let (st, s) = (st.clone(), s.clone());
                tr.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let mut client = client;
                        tokio::select! {
                            () = cut.cancelled() => {}
                            () = st.cancelled() => {}
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        }
                    }
                    s.forwarding.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(Self {
            addr,
            shared,
            stop,
            tracker,
        })
    }

    /// Closes every open connection and refuses new ones.
    pub fn cut(&self) {
        self.shared.silent.store(false, Ordering::SeqCst);
        self.close_all();
    }

    /// `cut`, then waits until every forwarded connection is closed (at most
    /// 10 s), so the gateway's next use of one fails at once.
    pub async fn cut_and_wait(&self) {
        self.cut();
        for _ in 0..1000 {
            if self.shared.forwarding.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    /// Closes every open connection and holds new ones without an answer.
    pub fn black_hole(&self) {
        self.shared.silent.store(true, Ordering::SeqCst);
        self.close_all();
    }

    fn close_all(&self) {
        self.shared.up.store(false, Ordering::SeqCst);
        let mut open = match self.shared.open.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        open.cancel();
        *open = CancellationToken::new();
    }

    /// Forwards again (held connections are closed).
    pub fn restore(&self) {
        self.shared.up.store(true, Ordering::SeqCst);
        let mut open = match self.shared.open.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        if self.shared.silent.swap(false, Ordering::SeqCst) {
            open.cancel();
            *open = CancellationToken::new();
        }
    }

    /// Connections refused (or held without an answer) while cut.
    pub fn refused(&self) -> u64 {
        self.shared.refused.load(Ordering::Relaxed)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        self.tracker.close();
    }
}
