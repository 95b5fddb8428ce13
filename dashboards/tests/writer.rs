//! The batched background writer: batching, draining on shutdown, surviving a
//! store that fails for a while, and never blocking the caller.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use common::{record, report_contract};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use watershed_dashboards::ledger::{
    open_store, Journal, JournalConfig, LedgerError, LedgerRecord, LedgerStore, LedgerWriter,
    SettledSpend, WhenFull, WriterConfig,
};
use watershed_dashboards::report::{Dimension, Summary};

/// Wraps a real store, counts transactions and fails the first `fail_first`
/// of them (or every one touching `poison`).
struct Counting {
    inner: Arc<dyn LedgerStore>,
    calls: AtomicUsize,
    fail_first: usize,
    poison: Option<String>,
}

impl Counting {
    async fn new(fail_first: usize, poison: Option<&str>) -> Arc<Self> {
        Arc::new(Self {
            inner: open_store("sqlite::memory:").await.unwrap(),
            calls: AtomicUsize::new(0),
            fail_first,
            poison: poison.map(str::to_owned),
        })
    }
    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }
}

#[async_trait]
impl LedgerStore for Counting {
    async fn migrate(&self) -> Result<(), LedgerError> {
        self.inner.migrate().await
    }
    async fn insert_batch(&self, rows: &[LedgerRecord]) -> Result<(), LedgerError> {
        let n = self.calls.fetch_add(1, Ordering::SeqCst);
        if n < self.fail_first {
            return Err(LedgerError::Invalid(format!("transient failure {n}")));
        }
        if let Some(p) = &self.poison {
            if rows.iter().any(|r| &r.request_id == p) {
                return Err(LedgerError::Invalid("poison row".into()));
            }
        }
        self.inner.insert_batch(rows).await
    }
    async fn fetch(&self, id: &str) -> Result<Option<LedgerRecord>, LedgerError> {
        self.inner.fetch(id).await
    }
    async fn count(&self) -> Result<i64, LedgerError> {
        self.inner.count().await
    }
    async fn list(&self, a: i64, b: i64, l: i64) -> Result<Vec<LedgerRecord>, LedgerError> {
        self.inner.list(a, b, l).await
    }
    async fn summarize(
        &self,
        from_day: i64,
        to_day: i64,
        by: Option<Dimension>,
        team: Option<&str>,
    ) -> Result<Vec<(String, Summary)>, LedgerError> {
        self.inner.summarize(from_day, to_day, by, team).await
    }
    async fn settled_spend(&self, m: i64, d: i64) -> Result<Vec<SettledSpend>, LedgerError> {
        self.inner.settled_spend(m, d).await
    }
}

fn fast_retries() -> WriterConfig {
    WriterConfig {
        retry_base: Duration::from_millis(5),
        retry_max: Duration::from_millis(20),
        ..WriterConfig::default()
    }
}

#[tokio::test]
async fn a_thousand_records_are_written_in_a_few_transactions() {
    let store = Counting::new(0, None).await;
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let handle = LedgerWriter::start(store.clone(), &tracker, shutdown.clone());
    for i in 0..1000 {
        handle.record(record(i));
    }
    handle.flush().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 1000);
    // 1000 records queued at once: batches of at most 256 -> 4 transactions.
    assert_eq!(store.calls(), 4, "transactions");
    assert_eq!(handle.stats().written(), 1000);
    assert_eq!(handle.stats().batches(), 4);
    assert_eq!(handle.stats().failed(), 0);
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
}

#[tokio::test]
async fn a_lone_record_is_written_after_the_batch_delay() {
    let store = Counting::new(0, None).await;
    let tracker = TaskTracker::new();
    let config = WriterConfig {
        max_delay: Duration::from_millis(50),
        ..WriterConfig::default()
    };
    let handle =
        LedgerWriter::start_with(config, store.clone(), &tracker, CancellationToken::new());
    handle.record(record(1));
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(store.count().await.unwrap(), 0, "still waiting for company");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(store.count().await.unwrap(), 1, "written by the timer");
    assert_eq!(store.calls(), 1);
}

#[tokio::test]
async fn shutdown_drains_everything_queued() {
    let store = Counting::new(0, None).await;
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let config = WriterConfig {
        // Long enough that nothing would be written before shutdown on its own.
        max_delay: Duration::from_secs(3600),
        max_batch: 10_000,
        ..WriterConfig::default()
    };
    let handle = LedgerWriter::start_with(config, store.clone(), &tracker, shutdown.clone());
    for i in 0..777 {
        handle.record(record(i));
    }
    shutdown.cancel();
    tracker.close();
    tokio::time::timeout(Duration::from_secs(10), tracker.wait())
        .await
        .unwrap();
    assert_eq!(store.count().await.unwrap(), 777);
    assert_eq!(handle.stats().written(), 777);
    // After the writer ended, records are refused loudly, not silently lost.
    handle.record(record(9999));
    assert_eq!(handle.stats().dropped(), 1);
    assert!(matches!(
        handle.flush().await,
        Err(LedgerError::WriterClosed)
    ));
}

#[tokio::test]
async fn records_survive_a_store_that_fails_twice() {
    let store = Counting::new(2, None).await;
    let tracker = TaskTracker::new();
    let handle = LedgerWriter::start_with(
        fast_retries(),
        store.clone(),
        &tracker,
        CancellationToken::new(),
    );
    for i in 0..50 {
        handle.record(record(i));
    }
    handle.flush().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 50);
    assert_eq!(
        store.calls(),
        3,
        "two failures, then the same batch succeeds"
    );
    assert_eq!(handle.stats().retries(), 2);
    assert_eq!(handle.stats().written(), 50);
    assert_eq!(handle.stats().failed(), 0);
}

#[tokio::test]
async fn a_poison_row_costs_only_itself() {
    let store = Counting::new(0, Some("req-000003")).await;
    let tracker = TaskTracker::new();
    let config = WriterConfig {
        max_attempts: 2,
        ..fast_retries()
    };
    let handle =
        LedgerWriter::start_with(config, store.clone(), &tracker, CancellationToken::new());
    for i in 0..10 {
        handle.record(record(i));
    }
    handle.flush().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 9);
    assert_eq!(store.fetch("req-000003").await.unwrap(), None);
    assert_eq!(handle.stats().written(), 9);
    assert_eq!(handle.stats().failed(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn record_never_waits_on_a_stuck_store() {
    /// A store whose inserts hang until released.
    struct Stuck {
        inner: Arc<dyn LedgerStore>,
        release: tokio::sync::Notify,
    }
    #[async_trait]
    impl LedgerStore for Stuck {
        async fn migrate(&self) -> Result<(), LedgerError> {
            Ok(())
        }
        async fn insert_batch(&self, rows: &[LedgerRecord]) -> Result<(), LedgerError> {
            self.release.notified().await;
            self.inner.insert_batch(rows).await
        }
        async fn fetch(&self, id: &str) -> Result<Option<LedgerRecord>, LedgerError> {
            self.inner.fetch(id).await
        }
        async fn count(&self) -> Result<i64, LedgerError> {
            self.inner.count().await
        }
        async fn list(&self, a: i64, b: i64, l: i64) -> Result<Vec<LedgerRecord>, LedgerError> {
            self.inner.list(a, b, l).await
        }
        async fn summarize(
            &self,
            from_day: i64,
            to_day: i64,
            by: Option<Dimension>,
            team: Option<&str>,
        ) -> Result<Vec<(String, Summary)>, LedgerError> {
            self.inner.summarize(from_day, to_day, by, team).await
        }
        async fn settled_spend(&self, m: i64, d: i64) -> Result<Vec<SettledSpend>, LedgerError> {
            self.inner.settled_spend(m, d).await
        }
    }
    let store = Arc::new(Stuck {
        inner: open_store("sqlite::memory:").await.unwrap(),
        release: tokio::sync::Notify::new(),
    });
    let tracker = TaskTracker::new();
    let handle = LedgerWriter::start(store.clone(), &tracker, CancellationToken::new());
    let started = std::time::Instant::now();
    for i in 0..5000 {
        handle.record(record(i));
    }
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "record() returned only after {:?}",
        started.elapsed()
    );
    // Let every pending and future insert through, then check nothing was lost.
    let flushed = handle.flush();
    tokio::pin!(flushed);
    loop {
        tokio::select! {
            done = &mut flushed => {
                done.unwrap();
                break;
            }
            () = tokio::time::sleep(Duration::from_millis(5)) => store.release.notify_waiters(),
        }
    }
    assert_eq!(store.count().await.unwrap(), 5000);
}

#[tokio::test]
async fn the_writer_keeps_the_rollups_equal_to_the_rows_it_wrote() {
    // A poisoned row makes its batches fail, so the writer falls back to
    // writing rows one by one: the rollups must still count each stored row
    // exactly once, and the poisoned one not at all.
    let rows = report_contract::generated(1200);
    let store = Counting::new(2, Some(&rows[700].request_id)).await;
    let tracker = TaskTracker::new();
    let handle = LedgerWriter::start_with(
        fast_retries(),
        store.clone(),
        &tracker,
        CancellationToken::new(),
    );
    for (i, r) in rows.iter().enumerate() {
        handle.record(r.clone());
        if i % 97 == 0 {
            // A replay with different figures changes nothing.
            handle.record(LedgerRecord {
                cost_usd: 1e6,
                ..rows[i / 2].clone()
            });
        }
    }
    handle.flush().await.unwrap();
    assert_eq!(handle.stats().failed(), 1);
    report_contract::rollups_equal_raw_aggregation(&*store, rows.len() - 1).await;
}

/// A store that can be taken away: while `down`, every operation fails, as
/// a database that cannot be reached does.
struct Switch {
    inner: Arc<dyn LedgerStore>,
    down: std::sync::atomic::AtomicBool,
}

impl Switch {
    async fn new(down: bool) -> Arc<Self> {
        Arc::new(Self {
            inner: open_store("sqlite::memory:").await.unwrap(),
            down: std::sync::atomic::AtomicBool::new(down),
        })
    }
    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }
    fn check(&self) -> Result<(), LedgerError> {
        if self.down.load(Ordering::SeqCst) {
            Err(LedgerError::Unavailable)
        } else {
            Ok(())
        }
    }
}

#[async_trait]
impl LedgerStore for Switch {
    async fn migrate(&self) -> Result<(), LedgerError> {
        self.check()?;
        self.inner.migrate().await
    }
    async fn insert_batch(&self, rows: &[LedgerRecord]) -> Result<(), LedgerError> {
        self.check()?;
        self.inner.insert_batch(rows).await
    }
    async fn fetch(&self, id: &str) -> Result<Option<LedgerRecord>, LedgerError> {
        self.check()?;
        self.inner.fetch(id).await
    }
    async fn count(&self) -> Result<i64, LedgerError> {
        self.check()?;
        self.inner.count().await
    }
    async fn list(&self, a: i64, b: i64, l: i64) -> Result<Vec<LedgerRecord>, LedgerError> {
        self.inner.list(a, b, l).await
    }
    async fn summarize(
        &self,
        from_day: i64,
        to_day: i64,
        by: Option<Dimension>,
        team: Option<&str>,
    ) -> Result<Vec<(String, Summary)>, LedgerError> {
        self.inner.summarize(from_day, to_day, by, team).await
    }
    async fn settled_spend(&self, m: i64, d: i64) -> Result<Vec<SettledSpend>, LedgerError> {
        self.inner.settled_spend(m, d).await
    }
}

fn journal_dir(tag: &str) -> std::path::PathBuf {
    let d = common::temp_db(tag).with_extension("journal");
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn journal_config(dir: &std::path::Path) -> JournalConfig {
    JournalConfig {
        dir: dir.to_owned(),
        segment_bytes: 64 * 1024,
        max_bytes: 64 * 1024 * 1024,
        when_full: WhenFull::Refuse,
    }
}

#[tokio::test]
async fn a_database_that_is_away_loses_nothing_and_gets_everything_when_back() {
    let dir = journal_dir("writer-away");
    let store = Switch::new(true).await;
    let (journal, replayed) = Journal::open(journal_config(&dir)).unwrap();
    assert!(replayed.is_empty());
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let handle = LedgerWriter::start_journaled(
        fast_retries(),
        store.clone(),
        Arc::new(journal),
        replayed,
        &tracker,
        shutdown.clone(),
    );
    for i in 0..600 {
        handle.record(record(i));
    }
    assert!(matches!(
        handle.flush().await,
        Err(LedgerError::Unavailable)
    ));
    let stats = handle.stats();
    assert!(!stats.db_up());
    assert_eq!(stats.backlog(), 600);
    assert!(stats.failed_batches() >= 1);
    assert_eq!(
        stats.failed(),
        0,
        "nothing given up while the database is away"
    );
    let j = handle.journal().unwrap();
    assert_eq!(j.stats().records(), 600);
    assert!(j.stats().bytes() > 64 * 1024, "several segments");
    assert!(j.segments() > 1);

    store.set_down(false);
    handle.flush().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 600);
    assert!(stats.db_up());
    assert_eq!(stats.backlog(), 0);
    assert_eq!(stats.written(), 600);
    assert_eq!(j.stats().records(), 0);
    assert_eq!(j.stats().bytes(), 0, "committed segments are removed");
    assert_eq!(j.segments(), 1);
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn records_left_by_a_dead_writer_are_replayed_once() {
    let dir = journal_dir("writer-replay");
    let store = Switch::new(true).await;
    {
        // A gateway that dies while the database is away: its writer is
        // stopped and never wrote anything.
        let (journal, _) = Journal::open(journal_config(&dir)).unwrap();
        let tracker = TaskTracker::new();
        let shutdown = CancellationToken::new();
        let handle = LedgerWriter::start_journaled(
            fast_retries(),
            store.clone(),
            Arc::new(journal),
            Vec::new(),
            &tracker,
            shutdown.clone(),
        );
        for i in 0..300 {
            handle.record(record(i));
        }
        shutdown.cancel();
        tracker.close();
        tokio::time::timeout(Duration::from_secs(10), tracker.wait())
            .await
            .unwrap();
        // Queued after the writer ended: in the journal, so not dropped.
        handle.record(record(300));
        assert_eq!(handle.stats().dropped(), 0);
    }
    // Some were already in the database before the crash: replay must not
    // add them twice.
    store.set_down(false);
    store.insert_batch(&[record(5), record(6)]).await.unwrap();
    let (journal, replayed) = Journal::open(journal_config(&dir)).unwrap();
    assert_eq!(replayed.len(), 301);
    let tracker = TaskTracker::new();
    let shutdown = CancellationToken::new();
    let handle = LedgerWriter::start_journaled(
        fast_retries(),
        store.clone(),
        Arc::new(journal),
        replayed,
        &tracker,
        shutdown.clone(),
    );
    handle.flush().await.unwrap();
    assert_eq!(store.count().await.unwrap(), 301);
    assert_eq!(handle.journal().unwrap().stats().records(), 0);
    shutdown.cancel();
    tracker.close();
    tracker.wait().await;
    drop(handle);
    let (_j, replayed) = Journal::open(journal_config(&dir)).unwrap();
    assert!(
        replayed.is_empty(),
        "committed records are not replayed again"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn a_full_journal_refuses_paid_requests_and_counts_what_it_drops() {
    let dir = journal_dir("writer-full");
    let store = Switch::new(true).await;
    let one = serde_json::to_vec(&record(0)).unwrap().len() as u64 + 1;
    let config = JournalConfig {
        max_bytes: one * 100,
        ..journal_config(&dir)
    };
    let (journal, _) = Journal::open(config).unwrap();
    let tracker = TaskTracker::new();
    let handle = LedgerWriter::start_journaled(
        fast_retries(),
        store.clone(),
        Arc::new(journal),
        Vec::new(),
        &tracker,
        CancellationToken::new(),
    );
    for i in 0..99 {
        handle.record(record(i));
    }
    assert!(handle.accepts_paid_requests());
    for i in 99..200 {
        handle.record(record(i));
    }
    assert!(!handle.accepts_paid_requests());
    // 100 fit, then one eighth more for requests already in flight.
    assert_eq!(handle.journal().unwrap().stats().records(), 112);
    assert_eq!(handle.stats().dropped_journal_full(), 88);
    store.set_down(false);
    handle.flush().await.unwrap();
    assert!(handle.accepts_paid_requests(), "room again once written");
    assert_eq!(store.count().await.unwrap(), 112);
    std::fs::remove_dir_all(&dir).unwrap();
}
