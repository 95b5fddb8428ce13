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
    open_store, LedgerError, LedgerRecord, LedgerStore, LedgerWriter, SettledSpend, WriterConfig,
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
