//! A TCP proxy on port 0 for fault tests: it forwards every connection to one
//! upstream (PostgreSQL, say) until it is cut, then closes the open ones and
//! refuses new ones until it is restored. Lets a test take a shared database
//! away from one gateway without stopping it for anyone else.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug)]
struct Shared {
    up: AtomicBool,
    /// Cancelled by `cut`: every connection opened before it closes.
    open: Mutex<CancellationToken>,
    accepted: AtomicU64,
    refused: AtomicU64,
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
            open: Mutex::new(CancellationToken::new()),
            accepted: AtomicU64::new(0),
            refused: AtomicU64::new(0),
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
                if !s.up.load(Ordering::SeqCst) {
                    s.refused.fetch_add(1, Ordering::Relaxed);
                    drop(client);
                    continue;
                }
                s.accepted.fetch_add(1, Ordering::Relaxed);
                let cut = match s.open.lock() {
                    Ok(t) => t.clone(),
                    Err(p) => p.into_inner().clone(),
                };
                let st = st.clone();
                tr.spawn(async move {
                    let Ok(mut server) = TcpStream::connect(upstream).await else {
                        return;
                    };
                    let mut client = client;
                    tokio::select! {
                        () = cut.cancelled() => {}
                        () = st.cancelled() => {}
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                    }
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
        self.shared.up.store(false, Ordering::SeqCst);
        let mut open = match self.shared.open.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        open.cancel();
        *open = CancellationToken::new();
    }

    /// Forwards again.
    pub fn restore(&self) {
        self.shared.up.store(true, Ordering::SeqCst);
    }

    /// Connections refused while cut.
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
