//! The local ledger journal: every record is appended here, one JSON line in a
//! segment file, before it is handed to the background writer, and removed
//! only once the database has committed it. A gateway that dies, or a
//! database that is away, loses nothing: the next writer replays what the
//! journal still holds, and inserts are idempotent by request id.
//!
//! Durability. An append is one `write(2)` of a whole line into the active
//! segment, made while the request is still being answered. Once it returns,
//! the line is in the kernel's page cache and survives the process (a panic,
//! `kill -9`, the OOM killer). It survives a power loss or a kernel crash only
//! once it has reached the disk: the writer calls `fdatasync` on the active
//! segment once per batch, off the request path, and a segment is synced when
//! it is sealed. So a power loss can lose the records appended since the last
//! batch (by default at most about 200 ms of them), never a process crash.
//! An `fsync` per record would put a disk flush (milliseconds on most disks)
//! into every answer; that is the trade this makes.
//!
//! Bounds. Segments are rotated at `segment_bytes`; the whole journal holds at
//! most `max_bytes` for new work. When it is that full, `when_full` decides:
//! `refuse` turns away new paid requests (the gateway answers 503) while the
//! records of requests already in flight still go in, up to one eighth more;
//! `drop` keeps serving and counts each record it cannot append. Past the hard
//! bound (`max_bytes` + one eighth) a record is dropped and counted either way.
//!
//! One process owns a journal directory at a time (an exclusive file lock), so
//! two replicas pointed at the same directory fail at start instead of
//! replaying each other's records.

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use tracing::{error, warn};

use super::LedgerRecord;

/// What to do with new work when the journal is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WhenFull {
    /// Refuse new paid requests (503) until the writer has caught up.
    Refuse,
    /// Keep serving; records that do not fit are dropped and counted.
    Drop,
}

/// Where the journal lives and how large it may grow.
#[derive(Debug, Clone)]
pub struct JournalConfig {
    pub dir: PathBuf,
    /// A segment is sealed and a new one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// The most the journal holds for new work (see the module doc).
    pub max_bytes: u64,
    pub when_full: WhenFull,
}

/// Why a record could not be appended.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("ledger journal is full ({bytes} bytes of at most {limit})")]
    Full { bytes: u64, limit: u64 },
    #[error("ledger journal {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("ledger journal {path} is in use by another process")]
    Locked { path: String },
    #[error("cannot encode ledger record: {0}")]
    Encode(#[from] serde_json::Error),
}

/// One segment file and the records it holds.
#[derive(Debug)]
struct Segment {
    id: u64,
    path: PathBuf,
    bytes: u64,
    records: u64,
    /// The sequence number of the last record appended to it (0: none yet).
    last_seq: u64,
}

#[derive(Debug)]
struct Inner {
    /// Oldest first; the last one is the active segment.
    segments: VecDeque<Segment>,
    active: File,
    next_seq: u64,
}

/// Gauges and counters for `/metrics`.
#[derive(Debug, Default)]
pub struct JournalStats {
    bytes: AtomicU64,
    records: AtomicU64,
    dropped: AtomicU64,
    io_errors: AtomicU64,
}

impl JournalStats {
    /// Bytes in all segments now.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
    /// Records held that the database has not committed yet.
    pub fn records(&self) -> u64 {
        self.records.load(Ordering::Relaxed)
    }
    /// Records that could not be appended because the journal was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
    /// Appends, syncs and removals that failed on the file system.
    pub fn io_errors(&self) -> u64 {
        self.io_errors.load(Ordering::Relaxed)
    }
}

/// The journal of one gateway process.
#[derive(Debug)]
pub struct Journal {
    config: JournalConfig,
    inner: Mutex<Inner>,
    stats: JournalStats,
    /// Held open for the life of the journal: its exclusive lock is the claim.
    _lock: File,
}

/// Records read back at open, oldest first, with their sequence numbers.
pub type Replayed = Vec<(u64, LedgerRecord)>;

const SEGMENT_PREFIX: &str = "ledger-";
const SEGMENT_SUFFIX: &str = ".jsonl";

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn segment_path(dir: &Path, id: u64) -> PathBuf {
    dir.join(format!("{SEGMENT_PREFIX}{id:012}{SEGMENT_SUFFIX}"))
}

fn open_append(path: &Path) -> Result<File, JournalError> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(io_err(path))
}

impl Journal {
    /// Opens (creating) the journal directory, takes its lock and reads back
    /// every record a previous process left, to be replayed. A line that
    /// cannot be read (the torn end of a segment after a power loss) is
    /// skipped and logged. New records go to a fresh segment.
    pub fn open(config: JournalConfig) -> Result<(Self, Replayed), JournalError> {
        let dir = config.dir.clone();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(JournalError::Locked {
                    path: dir.display().to_string(),
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_err(&lock_path)(e)),
        }
        let mut ids: Vec<u64> = fs::read_dir(&dir)
            .map_err(io_err(&dir))?
            .filter_map(Result::ok)
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix(SEGMENT_PREFIX)?
                    .strip_suffix(SEGMENT_SUFFIX)?
                    .parse()
                    .ok()
            })
            .collect();
        ids.sort_unstable();
        let mut segments = VecDeque::new();
        let mut replayed = Vec::new();
        let mut seq = 0u64;
        for id in ids {
            let path = segment_path(&dir, id);
            let file = File::open(&path).map_err(io_err(&path))?;
            let bytes = file.metadata().map_err(io_err(&path))?.len();
            let mut records = 0;
            for (n, line) in BufReader::new(file).lines().enumerate() {
                let line = match line {
                    Ok(l) => l,
                    Err(e) => {
                        warn!(segment = %path.display(), line = n + 1, error = %e, "unreadable ledger journal line skipped");
                        break;
                    }
                };
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<LedgerRecord>(&line) {
                    Ok(rec) => {
                        seq += 1;
                        records += 1;
                        replayed.push((seq, rec));
                    }
                    Err(e) => {
                        warn!(segment = %path.display(), line = n + 1, error = %e, "unreadable ledger journal line skipped");
                    }
                }
            }
            segments.push_back(Segment {
                id,
                path,
                bytes,
                records,
                last_seq: seq,
            });
        }
        let next_id = segments.back().map_or(1, |s| s.id + 1);
        let path = segment_path(&dir, next_id);
        let active = open_append(&path)?;
        segments.push_back(Segment {
            id: next_id,
            path,
            bytes: 0,
            records: 0,
            last_seq: seq,
        });
        let stats = JournalStats::default();
        stats
            .bytes
            .store(segments.iter().map(|s| s.bytes).sum(), Ordering::Relaxed);
        stats
            .records
            .store(replayed.len() as u64, Ordering::Relaxed);
        let journal = Self {
            config,
            inner: Mutex::new(Inner {
                segments,
                active,
                next_seq: seq + 1,
            }),
            stats,
            _lock: lock,
        };
        // Segments holding nothing to replay are removed now.
        journal.commit(0);
        Ok((journal, replayed))
    }

    pub fn config(&self) -> &JournalConfig {
        &self.config
    }

    pub fn stats(&self) -> &JournalStats {
        &self.stats
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        match self.inner.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        }
    }

    /// The bound past which nothing is appended, whatever `when_full` says.
    pub fn hard_limit(&self) -> u64 {
        self.config
            .max_bytes
            .saturating_add(self.config.max_bytes / 8)
    }

    /// Whether the journal holds `max_bytes` or more: with `refuse`, new paid
    /// requests are turned away until the writer has caught up.
    pub fn is_full(&self) -> bool {
        self.stats.bytes() >= self.config.max_bytes
    }

    /// Appends one record with one `write(2)` and returns its sequence
    /// number. Fails when the journal is past its bound (the record is
    /// counted as dropped) or the file system fails.
    pub fn append(&self, rec: &LedgerRecord) -> Result<u64, JournalError> {
        let mut line = serde_json::to_vec(rec)?;
        line.push(b'\n');
        let len = line.len() as u64;
        let mut inner = self.lock();
        let bytes = self.stats.bytes();
        let limit = match self.config.when_full {
            WhenFull::Refuse => self.hard_limit(),
            WhenFull::Drop => self.config.max_bytes,
        };
        if bytes + len > limit {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(JournalError::Full { bytes, limit });
        }
        let Inner {
            segments,
            active,
            next_seq,
        } = &mut *inner;
        let Some(seg) = segments.back_mut() else {
            return Err(JournalError::Io {
                path: self.config.dir.display().to_string(),
                source: std::io::Error::other("no active segment"),
            });
        };
        if let Err(e) = active.write_all(&line) {
            self.stats.io_errors.fetch_add(1, Ordering::Relaxed);
            let err = io_err(&seg.path)(e);
            // Part of the line may be in the file; the next record starts a
            // fresh segment so it is not glued to the torn one.
            self.rotate(&mut inner);
            return Err(err);
        }
        let seq = *next_seq;
        *next_seq += 1;
        seg.bytes += len;
        seg.records += 1;
        seg.last_seq = seq;
        self.stats.bytes.fetch_add(len, Ordering::Relaxed);
        self.stats.records.fetch_add(1, Ordering::Relaxed);
        if seg.bytes >= self.config.segment_bytes {
            self.rotate(&mut inner);
        }
        Ok(seq)
    }

    /// Seals the active segment (synced, so it is on disk) and starts the next.
    fn rotate(&self, inner: &mut Inner) {
        let Some(last) = inner.segments.back() else {
            return;
        };
        let (id, last_seq) = (last.id + 1, last.last_seq);
        if inner.active.sync_data().is_err() {
            self.stats.io_errors.fetch_add(1, Ordering::Relaxed);
        }
        let path = segment_path(&self.config.dir, id);
        match open_append(&path) {
            Ok(f) => {
                inner.active = f;
                inner.segments.push_back(Segment {
                    id,
                    path,
                    bytes: 0,
                    records: 0,
                    last_seq,
                });
            }
            Err(e) => {
                // Keep appending to the old segment; rotation is retried on
                // the next append.
                self.stats.io_errors.fetch_add(1, Ordering::Relaxed);
                error!(error = %e, "cannot start a new ledger journal segment");
            }
        }
    }

    /// Forgets every record up to sequence `upto`, which the database has
    /// committed (or which was given up): sealed segments holding only such
    /// records are deleted, and the active one is truncated when all of its
    /// records are.
    pub fn commit(&self, upto: u64) {
        let mut inner = self.lock();
        let mut committed = 0u64;
        while inner.segments.len() > 1 {
            let Some(first) = inner.segments.front() else {
                break;
            };
            if first.last_seq > upto && first.records > 0 {
                break;
            }
            let Some(seg) = inner.segments.pop_front() else {
                break;
            };
            if let Err(e) = fs::remove_file(&seg.path) {
                self.stats.io_errors.fetch_add(1, Ordering::Relaxed);
                error!(segment = %seg.path.display(), error = %e, "cannot remove a committed ledger journal segment");
            }
            self.stats.bytes.fetch_sub(seg.bytes, Ordering::Relaxed);
            committed += seg.records;
        }
        let Inner {
            segments, active, ..
        } = &mut *inner;
        if let Some(seg) = segments.back_mut() {
            if seg.records > 0 && seg.last_seq <= upto {
                // Appends are O_APPEND, so they go on at the new end.
                match active.set_len(0) {
                    Ok(()) => {
                        self.stats.bytes.fetch_sub(seg.bytes, Ordering::Relaxed);
                        committed += seg.records;
                        seg.bytes = 0;
                        seg.records = 0;
                    }
                    Err(e) => {
                        self.stats.io_errors.fetch_add(1, Ordering::Relaxed);
                        error!(segment = %seg.path.display(), error = %e, "cannot truncate the ledger journal");
                    }
                }
            }
        }
        if committed > 0 {
            self.stats.records.fetch_sub(committed, Ordering::Relaxed);
        }
    }

    /// A handle on the active segment for `fdatasync` off the request path.
    pub fn active_file(&self) -> Option<File> {
        self.lock().active.try_clone().ok()
    }

    /// Flushes the active segment to disk (see the module doc); blocking.
    pub fn sync(&self) {
        if let Some(f) = self.active_file() {
            if f.sync_data().is_err() {
                self.stats.io_errors.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// The number of segment files now.
    pub fn segments(&self) -> usize {
        self.lock().segments.len()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn rec(id: &str) -> LedgerRecord {
        LedgerRecord {
            request_id: id.to_owned(),
            ts_ms: 1,
            team: "t".into(),
            key_id: "k".into(),
            route: "r".into(),
            backend: "b".into(),
            backend_kind: "openai".into(),
            model: "m".into(),
            privacy: "internal".into(),
            prompt_tokens: 1,
            completion_tokens: 2,
            cached_tokens: 0,
            cost_usd: 0.5,
            counterfactual_usd: 0.0,
            engine_seconds: 0.0,
            ttft_ms: None,
            latency_ms: 1.0,
            status: 200,
            error_code: None,
            finish_reason: None,
            stream: false,
            attempts: 1,
            difficulty: None,
            explanation: None,
        }
    }

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!(
            "watershed-journal-unit-{tag}-{}",
            std::process::id()
        ));
        let _ = fs::remove_dir_all(&d);
        d
    }

    fn cfg(dir: &Path, segment: u64, max: u64, when_full: WhenFull) -> JournalConfig {
        JournalConfig {
            dir: dir.to_owned(),
            segment_bytes: segment,
            max_bytes: max,
            when_full,
        }
    }

    #[test]
    fn records_survive_reopen_until_committed_and_segments_go_away() {
        let d = dir("reopen");
        let (j, replayed) = Journal::open(cfg(&d, 600, 1 << 20, WhenFull::Refuse)).unwrap();
        assert!(replayed.is_empty());
        let seqs: Vec<u64> = (0..10)
            .map(|i| j.append(&rec(&format!("r{i}"))).unwrap())
            .collect();
        assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
        assert!(j.segments() > 2, "600-byte segments rotate");
        j.commit(4);
        let left = j.stats().records();
        assert!(
            (6..10).contains(&left),
            "sealed segments of records 1..4 removed: {left} left"
        );
        drop(j);
        // A process that died here: everything not yet committed comes back,
        // at least records 5..10, maybe some committed ones whose segment was
        // still shared with uncommitted ones (replay is idempotent).
        let (j, replayed) = Journal::open(cfg(&d, 600, 1 << 20, WhenFull::Refuse)).unwrap();
        let ids: Vec<String> = replayed.iter().map(|(_, r)| r.request_id.clone()).collect();
        for i in 5..10 {
            assert!(ids.contains(&format!("r{i}")), "r{i} replayed: {ids:?}");
        }
        assert!(ids.len() <= 10);
        let last = replayed.last().unwrap().0;
        j.commit(last);
        assert_eq!(j.stats().records(), 0);
        assert_eq!(j.stats().bytes(), 0);
        assert_eq!(j.segments(), 1);
        drop(j);
        let (_j, replayed) = Journal::open(cfg(&d, 600, 1 << 20, WhenFull::Refuse)).unwrap();
        assert!(replayed.is_empty());
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_full_journal_refuses_or_drops_and_counts() {
        let d = dir("full");
        let one = serde_json::to_vec(&rec("r0000")).unwrap().len() as u64 + 1;
        let (j, _) = Journal::open(cfg(&d, 1 << 20, one * 8, WhenFull::Refuse)).unwrap();
        let mut ok = 0;
        for i in 0..20 {
            if j.append(&rec(&format!("r{i:04}"))).is_ok() {
                ok += 1;
            }
            if ok == 8 {
                assert!(j.is_full());
            }
        }
        // Refuse: the in-flight headroom of one eighth (one more record here).
        assert_eq!(ok, 9);
        assert_eq!(j.stats().dropped(), 11);
        drop(j);
        fs::remove_dir_all(&d).unwrap();

        let (j, _) = Journal::open(cfg(&d, 1 << 20, one * 8, WhenFull::Drop)).unwrap();
        let ok = (0..20)
            .filter(|i| j.append(&rec(&format!("r{i:04}"))).is_ok())
            .count();
        assert_eq!(ok, 8);
        assert_eq!(j.stats().dropped(), 12);
        j.commit(u64::MAX);
        assert!(!j.is_full());
        assert!(j.append(&rec("again")).is_ok());
        drop(j);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_second_process_cannot_open_the_same_journal() {
        let d = dir("lock");
        let (_j, _) = Journal::open(cfg(&d, 1 << 20, 1 << 20, WhenFull::Refuse)).unwrap();
        let err = Journal::open(cfg(&d, 1 << 20, 1 << 20, WhenFull::Refuse)).unwrap_err();
        assert!(matches!(err, JournalError::Locked { .. }), "{err}");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_torn_last_line_is_skipped_and_the_rest_replayed() {
        let d = dir("torn");
        {
            let (j, _) = Journal::open(cfg(&d, 1 << 20, 1 << 20, WhenFull::Refuse)).unwrap();
            j.append(&rec("a")).unwrap();
            j.append(&rec("b")).unwrap();
        }
        let seg = segment_path(&d, 1);
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"{\"request_id\":\"c\",\"ts_").unwrap();
        drop(f);
        let (_j, replayed) = Journal::open(cfg(&d, 1 << 20, 1 << 20, WhenFull::Refuse)).unwrap();
        let ids: Vec<&str> = replayed
            .iter()
            .map(|(_, r)| r.request_id.as_str())
            .collect();
        assert_eq!(ids, ["a", "b"]);
        fs::remove_dir_all(&d).unwrap();
    }
}
