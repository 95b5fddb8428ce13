//! A TCP proxy that can be cut and restored, to take a shared server (the
//! test PostgreSQL) away from one gateway without stopping it for anyone
//! else: cutting closes every proxied connection and refuses new ones.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub struct CutProxy {
    /// The port to connect to instead of the upstream's.
    pub port: u16,
    cut: Arc<AtomicBool>,
    generation: Arc<Mutex<CancellationToken>>,
    /// Connections being forwarded now.
    open: Arc<AtomicUsize>,
    stop: CancellationToken,
    tracker: TaskTracker,
}

impl CutProxy {
    /// Listens on 127.0.0.1, port 0, and forwards to `upstream` (`host:port`).
    pub async fn start(upstream: &str) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let cut = Arc::new(AtomicBool::new(false));
        let generation = Arc::new(Mutex::new(CancellationToken::new()));
        let stop = CancellationToken::new();
        let tracker = TaskTracker::new();
        let open = Arc::new(AtomicUsize::new(0));
        let o = open.clone();
        let (c, g, s, t, up) = (
            cut.clone(),
            generation.clone(),
            stop.clone(),
            tracker.clone(),
            upstream.to_owned(),
        );
        tracker.spawn(async move {
            loop {
                let accepted = tokio::select! {
                    _ = s.cancelled() => return,
                    a = listener.accept() => a,
                };
                let Ok((mut client, _)) = accepted else {
                    continue;
                };
                if c.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let conn_stop = match g.lock() {
                    Ok(g) => g.clone(),
                    Err(p) => p.into_inner().clone(),
                };
                let up = up.clone();
                let o = o.clone();
                o.fetch_add(1, Ordering::SeqCst);
                t.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&up).await {
                        tokio::select! {
                            _ = conn_stop.cancelled() => {}
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        }
                    }
                    drop(client);
                    o.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        Ok(Self {
            port,
            cut,
            generation,
            open,
            stop,
            tracker,
        })
    }

    /// Closes every connection and refuses new ones until `restore`;
    /// returns once every forwarded connection is closed (at most 10 s).
    pub async fn cut(&self) {
        self.cut.store(true, Ordering::SeqCst);
        {
            let mut g = match self.generation.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            g.cancel();
            *g = CancellationToken::new();
        }
        for _ in 0..1000 {
            if self.open.load(Ordering::SeqCst) == 0 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }

    pub fn restore(&self) {
        self.cut.store(false, Ordering::SeqCst);
    }
}

impl Drop for CutProxy {
    fn drop(&mut self) {
        self.stop.cancel();
        if let Ok(g) = self.generation.lock() {
            g.cancel();
        }
        self.tracker.close();
    }
}
