//! The batched background ledger writer. Request handlers hand records to a
//! `LedgerHandle` without waiting; one task owned by the shutdown machinery
//! collects them into batches, writes each batch in one transaction, retries a
//! failing store with backoff, and drains everything before it ends.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, sleep_until, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};

use super::{LedgerError, LedgerRecord, LedgerStore};

/// How the writer batches and retries.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// A batch is written as soon as it holds this many records.
    pub max_batch: usize,
    /// ... or when its oldest record has waited this long.
    pub max_delay: Duration,
    /// Tries per batch before its records are given up (and logged).
    pub max_attempts: u32,
    /// First retry delay; doubled after every failure up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            max_batch: 256,
            max_delay: Duration::from_millis(200),
            max_attempts: 6,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
        }
    }
}

/// Counters for metrics: records written, given up after retries, dropped
/// because the writer had stopped, batches committed and retries made.
#[derive(Debug, Default)]
pub struct WriterStats {
    written: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    batches: AtomicU64,
    retries: AtomicU64,
}

impl WriterStats {
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
}

enum Msg {
    Record(Box<LedgerRecord>),
    Flush(oneshot::Sender<()>),
}

/// The cheap, cloneable sending side held by request handlers.
#[derive(Clone)]
pub struct LedgerHandle {
    tx: mpsc::UnboundedSender<Msg>,
    stats: Arc<WriterStats>,
    store: Arc<dyn LedgerStore>,
}

impl std::fmt::Debug for LedgerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LedgerHandle")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Msg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Msg::Record(r) => write!(f, "Record({})", r.request_id),
            Msg::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl LedgerHandle {
    /// Queues one record. Never waits and never blocks; if the writer has
    /// already stopped the record is counted as dropped and logged.
    pub fn record(&self, rec: LedgerRecord) {
        if let Err(mpsc::error::SendError(msg)) = self.tx.send(Msg::Record(Box::new(rec))) {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            if let Msg::Record(rec) = msg {
                error!(
                    request_id = %rec.request_id,
                    "ledger writer has stopped; record dropped"
                );
            }
        }
    }

    /// Waits until every record queued before this call has been written (or
    /// given up after retries).
    pub async fn flush(&self) -> Result<(), LedgerError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Flush(done))
            .map_err(|_| LedgerError::WriterClosed)?;
        wait.await.map_err(|_| LedgerError::WriterClosed)
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// The store the writer writes to, for reading the ledger back (reports,
    /// the dashboard). Records still queued are not in it yet; `flush` first
    /// when that matters.
    pub fn store(&self) -> &Arc<dyn LedgerStore> {
        &self.store
    }
}

/// Starts the background writer.
#[derive(Debug)]
pub struct LedgerWriter;

impl LedgerWriter {
    /// Starts the writer with the default batching (256 records / 200 ms) on
    /// `tracker`. When `shutdown` is cancelled the writer stops accepting
    /// records, writes everything already queued and ends; cancel it after the
    /// HTTP server has drained its requests.
    pub fn start(
        store: Arc<dyn LedgerStore>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> LedgerHandle {
        Self::start_with(WriterConfig::default(), store, tracker, shutdown)
    }

    pub fn start_with(
        config: WriterConfig,
        store: Arc<dyn LedgerStore>,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> LedgerHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(WriterStats::default());
        let task = Task {
            config,
            store: store.clone(),
            stats: stats.clone(),
            buf: Vec::new(),
        };
        tracker.spawn(task.run(rx, shutdown));
        LedgerHandle { tx, stats, store }
    }
}

struct Task {
    config: WriterConfig,
    store: Arc<dyn LedgerStore>,
    stats: Arc<WriterStats>,
    buf: Vec<LedgerRecord>,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>, shutdown: CancellationToken) {
        let mut deadline: Option<Instant> = None;
        loop {
            let timer = sleep_until(deadline.unwrap_or_else(Instant::now));
            tokio::select! {
                biased;
                _ = shutdown.cancelled() => break,
                msg = rx.recv() => match msg {
                    None => break,
                    Some(msg) => {
                        if self.buf.is_empty() {
                            deadline = Some(Instant::now() + self.config.max_delay);
                        }
                        if self.handle(msg).await {
                            deadline = None;
                        }
                    }
                },
                _ = timer, if deadline.is_some() => {
                    self.write().await;
                    deadline = None;
                }
            }
        }
        // Refuse new records (they are counted as dropped), then write what
        // is already queued.
        rx.close();
        let mut drained = 0usize;
        while let Some(msg) = rx.recv().await {
            drained += 1;
            self.handle(msg).await;
        }
        self.write().await;
        debug!(drained, "ledger writer drained and stopped");
    }

    /// Takes one message; returns true when the buffer was written.
    async fn handle(&mut self, msg: Msg) -> bool {
        match msg {
            Msg::Record(rec) => {
                self.buf.push(*rec);
                if self.buf.len() >= self.config.max_batch {
                    self.write().await;
                    return true;
                }
                false
            }
            Msg::Flush(done) => {
                self.write().await;
                // The flusher may have gone away; nothing to tell it then.
                let _ = done.send(());
                true
            }
        }
    }

    /// Writes the buffer in one transaction, retrying with backoff. After the
    /// last try the rows are written one by one so a single bad row cannot
    /// take the rest of its batch with it; what still fails is logged by id.
    async fn write(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let rows = std::mem::take(&mut self.buf);
        let n = rows.len() as u64;
        let mut delay = self.config.retry_base;
        let mut attempt = 1u32;
        loop {
            match self.store.insert_batch(&rows).await {
                Ok(()) => {
                    self.stats.written.fetch_add(n, Ordering::Relaxed);
                    self.stats.batches.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                Err(e) if attempt < self.config.max_attempts => {
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, attempt, rows = n, "ledger batch insert failed; retrying");
                    sleep(delay).await;
                    delay = (delay * 2).min(self.config.retry_max);
                    attempt += 1;
                }
                Err(e) => {
                    warn!(error = %e, attempt, rows = n, "ledger batch insert failed; trying rows one by one");
                    break;
                }
            }
        }
        let mut lost = Vec::new();
        let mut last_error = None;
        for row in &rows {
            match self.store.insert_batch(std::slice::from_ref(row)).await {
                Ok(()) => {
                    self.stats.written.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    lost.push(row.request_id.as_str());
                    last_error = Some(e);
                }
            }
        }
        if let Some(e) = last_error {
            self.stats
                .failed
                .fetch_add(lost.len() as u64, Ordering::Relaxed);
            error!(
                error = %e,
                lost = lost.len(),
                request_ids = %lost.join(","),
                "ledger records could not be written"
            );
        }
    }
}
