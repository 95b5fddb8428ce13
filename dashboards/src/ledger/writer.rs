//! The batched background ledger writer. Request handlers hand records to a
//! `LedgerHandle` without waiting on the database: with a journal (what the
//! gateway runs) the record is first appended to it (see `journal.rs`), then
//! queued. One task owned by the shutdown machinery collects records into
//! batches, writes each batch in one transaction, retries a failing store
//! with backoff, and tells the journal what was committed so it can let go.
//!
//! While the database is away the writer keeps every record (the journal
//! holds them on disk, the queue in memory, both bounded by the journal's
//! size) and tries again every `retry_max`; when it answers, the backlog is
//! written in order. Without a journal (tests, embedded uses) a batch is
//! given up after its retries, as the records then exist nowhere else.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};
use tokio::time::{sleep, sleep_until, timeout, Instant};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use super::journal::{Journal, JournalError, Replayed, WhenFull};
use super::{LedgerError, LedgerRecord, LedgerStore};

/// How the writer batches and retries.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// A batch is written as soon as it holds this many records.
    pub max_batch: usize,
    /// ... or when its oldest record has waited this long.
    pub max_delay: Duration,
    /// Tries per batch while the database answers, before its rows are tried
    /// one by one (and those that still fail are given up and logged).
    pub max_attempts: u32,
    /// First retry delay; doubled after every failure up to `retry_max`,
    /// which is also how often a database found unreachable is tried again.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// The bound on one database operation (a batch insert, a probe; a
    /// migration gets three times it): past it the operation counts as failed.
    pub op_timeout: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        Self {
            max_batch: 256,
            max_delay: Duration::from_millis(200),
            max_attempts: 6,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
            op_timeout: Duration::from_secs(10),
        }
    }
}

/// Counters and gauges for metrics and `/readyz`.
#[derive(Debug, Default)]
pub struct WriterStats {
    written: AtomicU64,
    failed: AtomicU64,
    dropped: AtomicU64,
    dropped_full: AtomicU64,
    batches: AtomicU64,
    retries: AtomicU64,
    failed_batches: AtomicU64,
    backlog: AtomicU64,
    db_up: AtomicBool,
}

impl WriterStats {
    /// Records the database committed.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }
    /// Records given up: rows the database refused one by one while it
    /// answered, or (without a journal) batches that failed every try.
    pub fn failed(&self) -> u64 {
        self.failed.load(Ordering::Relaxed)
    }
    /// Records lost because the writer had stopped and no journal held them.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Records not taken because the journal was full.
    pub fn dropped_journal_full(&self) -> u64 {
        self.dropped_full.load(Ordering::Relaxed)
    }
    /// Batches committed.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }
    /// Batch inserts tried again after a failure.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }
    /// Batch inserts (and migrations) that failed or timed out.
    pub fn failed_batches(&self) -> u64 {
        self.failed_batches.load(Ordering::Relaxed)
    }
    /// Records handed to the writer and not yet committed or given up.
    pub fn backlog(&self) -> u64 {
        self.backlog.load(Ordering::Relaxed)
    }
    /// Whether the last database operation succeeded (false until one has).
    pub fn db_up(&self) -> bool {
        self.db_up.load(Ordering::Relaxed)
    }
}

enum Msg {
    /// A record and its journal sequence number (0: not journaled).
    Record(Box<LedgerRecord>, u64),
    Flush(oneshot::Sender<bool>),
}

/// The cheap, cloneable sending side held by request handlers.
#[derive(Clone)]
pub struct LedgerHandle {
    tx: mpsc::UnboundedSender<Msg>,
    stats: Arc<WriterStats>,
    store: Arc<dyn LedgerStore>,
    journal: Option<Arc<Journal>>,
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
            Msg::Record(r, seq) => write!(f, "Record({}, {seq})", r.request_id),
            Msg::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl LedgerHandle {
    /// Appends one record to the journal (one `write(2)`, no fsync) and
    /// queues it for the database. Never waits on the database. A record the
    /// journal cannot take because it is full is dropped and counted; one it
    /// cannot take because the file system failed is still queued (in memory
    /// only) and logged.
    pub fn record(&self, rec: LedgerRecord) {
        let seq = match &self.journal {
            None => 0,
            Some(j) => match j.append(&rec) {
                Ok(seq) => seq,
                Err(e @ JournalError::Full { .. }) => {
                    self.stats.dropped_full.fetch_add(1, Ordering::Relaxed);
                    error!(request_id = %rec.request_id, error = %e, "ledger record dropped");
                    return;
                }
                Err(e) => {
                    error!(request_id = %rec.request_id, error = %e, "ledger record not journaled; kept in memory only");
                    0
                }
            },
        };
        self.stats.backlog.fetch_add(1, Ordering::Relaxed);
        if let Err(mpsc::error::SendError(msg)) = self.tx.send(Msg::Record(Box::new(rec), seq)) {
            self.stats.backlog.fetch_sub(1, Ordering::Relaxed);
            if let Msg::Record(rec, seq) = msg {
                if seq > 0 {
                    // In the journal: the next start writes it.
                    debug!(request_id = %rec.request_id, "ledger writer has stopped; record left in the journal");
                } else {
                    self.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    error!(
                        request_id = %rec.request_id,
                        "ledger writer has stopped; record dropped"
                    );
                }
            }
        }
    }

    /// Waits until every record queued before this call has been written (or
    /// given up). With a journal, fails with `Unavailable` when the database
    /// could not be reached; the records then stay journaled and queued.
    pub async fn flush(&self) -> Result<(), LedgerError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Flush(done))
            .map_err(|_| LedgerError::WriterClosed)?;
        match wait.await {
            Ok(true) => Ok(()),
            Ok(false) => Err(LedgerError::Unavailable),
            Err(_) => Err(LedgerError::WriterClosed),
        }
    }

    pub fn stats(&self) -> &Arc<WriterStats> {
        &self.stats
    }

    /// The journal records go through, when there is one.
    pub fn journal(&self) -> Option<&Arc<Journal>> {
        self.journal.as_ref()
    }

    /// False while a full journal with `when_full: refuse` turns away new
    /// paid requests.
    pub fn accepts_paid_requests(&self) -> bool {
        self.journal
            .as_ref()
            .is_none_or(|j| j.config().when_full != WhenFull::Refuse || !j.is_full())
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
    /// `tracker`, without a journal. When `shutdown` is cancelled the writer
    /// stops accepting records, writes everything already queued and ends;
    /// cancel it after the HTTP server has drained its requests.
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
        Self::spawn(config, store, None, Vec::new(), tracker, shutdown)
    }

    /// Starts the writer behind `journal`, first writing the records a
    /// previous process left in it (`replayed`, from `Journal::open`). At
    /// shutdown it makes one try per batch and ends at the first failure:
    /// what it could not write stays in the journal for the next start.
    pub fn start_journaled(
        config: WriterConfig,
        store: Arc<dyn LedgerStore>,
        journal: Arc<Journal>,
        replayed: Replayed,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> LedgerHandle {
        Self::spawn(config, store, Some(journal), replayed, tracker, shutdown)
    }

    fn spawn(
        config: WriterConfig,
        store: Arc<dyn LedgerStore>,
        journal: Option<Arc<Journal>>,
        replayed: Replayed,
        tracker: &TaskTracker,
        shutdown: CancellationToken,
    ) -> LedgerHandle {
        let (tx, rx) = mpsc::unbounded_channel();
        let stats = Arc::new(WriterStats::default());
        stats
            .backlog
            .store(replayed.len() as u64, Ordering::Relaxed);
        if !replayed.is_empty() {
            info!(records = replayed.len(), "replaying the ledger journal");
        }
        let task = Task {
            config,
            store: store.clone(),
            stats: stats.clone(),
            journal: journal.clone(),
            pending: replayed.into(),
            migrated: false,
            shutdown: shutdown.clone(),
        };
        tracker.spawn(task.run(rx));
        LedgerHandle {
            tx,
            stats,
            store,
            journal,
        }
    }
}

struct Task {
    config: WriterConfig,
    store: Arc<dyn LedgerStore>,
    stats: Arc<WriterStats>,
    journal: Option<Arc<Journal>>,
    /// Records not yet committed, oldest first, with their journal sequence.
    pending: VecDeque<(u64, LedgerRecord)>,
    migrated: bool,
    shutdown: CancellationToken,
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<Msg>) {
        // A batch is due when full, when its oldest record has waited
        // `max_delay`, or (the database having failed) at the next retry.
        let mut deadline: Option<Instant> = (!self.pending.is_empty()).then(Instant::now);
        let mut retry_at: Option<Instant> = None;
        loop {
            let due = if self.pending.is_empty() {
                None
            } else if retry_at.is_some() {
                retry_at
            } else if self.pending.len() >= self.config.max_batch {
                Some(Instant::now())
            } else {
                deadline
            };
            let timer = sleep_until(due.unwrap_or_else(Instant::now));
            tokio::select! {
                biased;
                _ = self.shutdown.cancelled() => break,
                msg = rx.recv() => match msg {
                    None => break,
                    Some(Msg::Record(rec, seq)) => {
                        if self.pending.is_empty() {
                            deadline = Some(Instant::now() + self.config.max_delay);
                        }
                        self.pending.push_back((seq, *rec));
                    }
                    Some(Msg::Flush(done)) => {
                        let ok = self.write_all(false).await;
                        retry_at = (!ok).then(|| Instant::now() + self.config.retry_max);
                        deadline = None;
                        // The flusher may have gone away; nothing to tell it then.
                        let _ = done.send(ok);
                    }
                },
                _ = timer, if due.is_some() => {
                    let ok = self.write_all(false).await;
                    retry_at = (!ok).then(|| Instant::now() + self.config.retry_max);
                    deadline = None;
                }
            }
        }
        // Refuse new records (journaled ones wait for the next start; others
        // are counted as dropped), then write what is already queued.
        rx.close();
        let mut drained = 0usize;
        while let Some(msg) = rx.recv().await {
            drained += 1;
            match msg {
                Msg::Record(rec, seq) => self.pending.push_back((seq, *rec)),
                Msg::Flush(done) => {
                    let _ = done.send(false);
                }
            }
        }
        let ok = self.write_all(true).await;
        if let Some(j) = &self.journal {
            j.sync();
        }
        if ok {
            debug!(drained, "ledger writer drained and stopped");
        } else {
            warn!(
                left = self.pending.len(),
                "ledger writer stopped with records the database has not taken; they stay in the journal for the next start"
            );
        }
    }

    /// Runs one database operation under `op_timeout`.
    async fn op<T>(
        &self,
        fut: impl std::future::Future<Output = Result<T, LedgerError>>,
    ) -> Result<T, LedgerError> {
        match timeout(self.config.op_timeout, fut).await {
            Ok(r) => r,
            Err(_) => Err(LedgerError::Timeout(self.config.op_timeout)),
        }
    }

    /// Migrates under three operations' time: a migration (creating tables
    /// on a busy server) is heavier than one insert, and one cut short by a
    /// tight bound would be cut short again on every retry.
    async fn migrate(&self) -> Result<(), LedgerError> {
        match timeout(self.config.op_timeout * 3, self.store.migrate()).await {
            Ok(r) => r,
            Err(_) => Err(LedgerError::Timeout(self.config.op_timeout * 3)),
        }
    }

    async fn insert(&mut self, rows: &[LedgerRecord]) -> Result<(), LedgerError> {
        if !self.migrated {
            self.migrate().await?;
            self.migrated = true;
        }
        self.op(self.store.insert_batch(rows)).await
    }

    /// Writes every pending record, batch by batch. False when the database
    /// could not be reached: what is left stays pending (and journaled).
    async fn write_all(&mut self, shutting_down: bool) -> bool {
        if self.pending.is_empty() && !self.migrated && self.journal.is_some() {
            // Nothing to write, but a flush asks whether the database is there.
            match self.migrate().await {
                Ok(()) => {
                    self.migrated = true;
                    self.stats.db_up.store(true, Ordering::Relaxed);
                }
                Err(e) => {
                    self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                    self.down(&e);
                    return false;
                }
            }
        }
        if let Some(j) = &self.journal {
            if !self.pending.is_empty() {
                // What is about to be written reaches the disk first (see the
                // journal's module doc), off the async workers.
                let j = j.clone();
                let _ = tokio::task::spawn_blocking(move || j.sync()).await;
            }
        }
        while !self.pending.is_empty() {
            if !self.write_batch(shutting_down).await {
                return false;
            }
        }
        true
    }

    fn down(&self, e: &LedgerError) {
        if self.stats.db_up.swap(false, Ordering::Relaxed) {
            warn!(error = %e, backlog = self.stats.backlog(), "ledger database unreachable; records are kept in the journal");
        }
    }

    /// Removes the first `n` pending records, which were committed or given up.
    fn done(&mut self, n: usize) {
        let mut last = 0;
        for _ in 0..n {
            if let Some((seq, _)) = self.pending.pop_front() {
                last = last.max(seq);
            }
        }
        self.stats.backlog.fetch_sub(n as u64, Ordering::Relaxed);
        if let Some(j) = &self.journal {
            if last > 0 {
                j.commit(last);
            }
        }
    }

    /// Writes the oldest batch in one transaction, retrying with backoff.
    /// After the last try the rows are written one by one so a single bad
    /// row cannot take the rest of its batch with it; what still fails is
    /// logged by id and given up. With a journal, a database that does not
    /// answer at all gives nothing up: the batch stays and false is returned.
    async fn write_batch(&mut self, shutting_down: bool) -> bool {
        let n = self.pending.len().min(self.config.max_batch);
        let rows: Vec<LedgerRecord> = self
            .pending
            .iter()
            .take(n)
            .map(|(_, r)| r.clone())
            .collect();
        let journaled = self.journal.is_some();
        // Once the database is known to be away (or the process is stopping)
        // one try per round is enough: the round itself is the retry.
        let tries = if journaled && (shutting_down || !self.stats.db_up()) {
            1
        } else {
            self.config.max_attempts.max(1)
        };
        let mut delay = self.config.retry_base;
        let mut attempt = 1u32;
        loop {
            match self.insert(&rows).await {
                Ok(()) => {
                    self.stats.written.fetch_add(n as u64, Ordering::Relaxed);
                    self.stats.batches.fetch_add(1, Ordering::Relaxed);
                    if !self.stats.db_up.swap(true, Ordering::Relaxed) && journaled {
                        info!(
                            backlog = self.stats.backlog(),
                            "ledger database reachable; writing the backlog"
                        );
                    }
                    self.done(n);
                    return true;
                }
                Err(e) => {
                    self.stats.failed_batches.fetch_add(1, Ordering::Relaxed);
                    if attempt >= tries {
                        warn!(error = %e, attempt, rows = n, "ledger batch insert failed");
                        break;
                    }
                    self.stats.retries.fetch_add(1, Ordering::Relaxed);
                    warn!(error = %e, attempt, rows = n, "ledger batch insert failed; retrying");
                    if journaled {
                        tokio::select! {
                            () = sleep(delay) => {}
                            () = self.shutdown.cancelled(), if !shutting_down => return false,
                        }
                    } else {
                        sleep(delay).await;
                    }
                    delay = (delay * 2).min(self.config.retry_max);
                    attempt += 1;
                }
            }
        }
        if journaled {
            if shutting_down {
                // The journal keeps the batch for the next start.
                return false;
            }
            // Is the database there at all? If not, keep everything.
            if let Err(e) = self.op(self.store.count()).await {
                self.down(&e);
                return false;
            }
            self.stats.db_up.store(true, Ordering::Relaxed);
        }
        let mut lost = Vec::new();
        let mut last_error = None;
        for row in &rows {
            match self.insert(std::slice::from_ref(row)).await {
                Ok(()) => {
                    self.stats.written.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    lost.push(row.request_id.clone());
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
        self.done(n);
        true
    }
}
