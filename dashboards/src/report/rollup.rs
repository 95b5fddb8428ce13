//! Daily rollups of the ledger: the sums a report needs per UTC day and (team,
//! key, route, backend, backend kind, model, privacy level), plus a latency
//! histogram with fixed log-spaced buckets so percentiles come from the rollup
//! too. The ledger stores add to them in the same transaction as each insert
//! batch (`migrations/*/0002_rollup.sql` holds the table and fills it for
//! records stored before it existed); reports read only the rollups.
//!
//! The SQL both stores run is built here, once, with the few places where
//! SQLite and PostgreSQL differ (placeholders, casts, two-argument min/max)
//! behind `Dialect`.

use std::collections::BTreeMap;

use serde::Serialize;
use watershed_providers::BackendKind;

use crate::ledger::LedgerRecord;

/// Milliseconds in a UTC day.
pub const DAY_MS: i64 = 86_400_000;

/// Number of latency buckets: one under 1 ms, 80 log-spaced ones up to 2^20 ms,
/// one open-ended above.
pub const LATENCY_BUCKETS: usize = 82;

/// Lower bounds of buckets 1..=81 in milliseconds: 2^(k/4) for k in 0..=80,
/// four buckets per doubling. The same literals are in the 0002 migrations,
/// which fill the histogram for records stored before it existed.
pub const LATENCY_BOUNDS_MS: [f64; LATENCY_BUCKETS - 1] = [
    1.0,
    1.189207115002721,
    std::f64::consts::SQRT_2,
    1.681792830507429,
    2.0,
    2.378414230005442,
    2.8284271247461903,
    3.363585661014858,
    4.0,
    4.756828460010884,
    5.656854249492381,
    6.727171322029716,
    8.0,
    9.513656920021768,
    11.313708498984761,
    13.454342644059432,
    16.0,
    19.027313840043536,
    22.627416997969522,
    26.908685288118864,
    32.0,
    38.05462768008707,
    45.254833995939045,
    53.81737057623773,
    64.0,
    76.10925536017415,
    90.50966799187809,
    107.63474115247546,
    128.0,
    152.2185107203483,
    181.01933598375618,
    215.2694823049509,
    256.0,
    304.4370214406966,
    362.03867196751236,
    430.5389646099018,
    512.0,
    608.8740428813932,
    724.0773439350247,
    861.0779292198037,
    1024.0,
    1217.7480857627863,
    1448.1546878700494,
    1722.1558584396073,
    2048.0,
    2435.4961715255727,
    2896.309375740099,
    3444.3117168792146,
    4096.0,
    4870.992343051145,
    5792.618751480198,
    6888.623433758429,
    8192.0,
    9741.98468610229,
    11585.237502960395,
    13777.246867516858,
    16384.0,
    19483.96937220458,
    23170.47500592079,
    27554.493735033717,
    32768.0,
    38967.93874440916,
    46340.95001184158,
    55108.98747006743,
    65536.0,
    77935.87748881833,
    92681.90002368316,
    110217.97494013487,
    131072.0,
    155871.75497763665,
    185363.80004736633,
    220435.94988026973,
    262144.0,
    311743.5099552733,
    370727.60009473265,
    440871.89976053947,
    524288.0,
    623487.0199105466,
    741455.2001894653,
    881743.7995210789,
    1048576.0,
];

/// How far a percentile read from the histogram can be from the exact one:
/// the estimate is its bucket's geometric middle, at most 2^(1/8) away from
/// any value in that bucket.
pub const PERCENTILE_RELATIVE_ERROR: f64 = 0.090_507_732_665_257_66;

/// The histogram bucket of a latency in milliseconds.
pub fn latency_bucket(ms: f64) -> usize {
    LATENCY_BOUNDS_MS.partition_point(|b| *b <= ms)
}

/// The value a percentile that falls into `bucket` is reported as: the
/// bucket's geometric middle (0.5 ms for the first bucket, the lower bound for
/// the last).
pub fn bucket_estimate(bucket: usize) -> f64 {
    match bucket {
        0 => 0.5,
        b if b >= LATENCY_BUCKETS - 1 => LATENCY_BOUNDS_MS[LATENCY_BUCKETS - 2],
        b => (LATENCY_BOUNDS_MS[b - 1] * LATENCY_BOUNDS_MS[b]).sqrt(),
    }
}

/// The UTC day (days since 1970-01-01) of a unix-ms timestamp.
pub fn day_of(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(DAY_MS)
}

/// Privacy levels whose requests the policy keeps inside the trust boundary.
pub const KEPT_HOME_LEVELS: [&str; 2] = ["confidential", "restricted"];

/// The `backend_kind` the ledger records for the in-process engine.
pub fn local_kind() -> &'static str {
    BackendKind::Local.otel_name()
}

/// What one rollup row is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RollupKey {
    pub day: i64,
    pub team: String,
    pub key_id: String,
    pub route: String,
    pub backend: String,
    pub backend_kind: String,
    pub model: String,
    pub privacy: String,
}

impl RollupKey {
    pub fn of(r: &LedgerRecord) -> Self {
        Self {
            day: day_of(r.ts_ms),
            team: r.team.clone(),
            key_id: r.key_id.clone(),
            route: r.route.clone(),
            backend: r.backend.clone(),
            backend_kind: r.backend_kind.clone(),
            model: r.model.clone(),
            privacy: r.privacy.clone(),
        }
    }
}

/// Sums over a set of ledger records: one rollup row, or any number of them
/// added together (a group of a report). Counts and tokens are exact; money,
/// engine time and latency are float sums.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Summary {
    pub requests: i64,
    /// Requests answered with a status below 400.
    pub ok_requests: i64,
    /// Requests answered with a status of 400 or more.
    pub errors: i64,
    /// Requests that tried more than one target.
    pub fallbacks: i64,
    /// Requests at a level kept home (confidential, restricted).
    pub privacy_routed: i64,
    /// Requests the in-process engine answered (or was tried last for).
    pub local_requests: i64,
    pub prompt_tokens: i64,
    pub completion_tokens: i64,
    pub cached_tokens: i64,
    /// Completion tokens of requests with a status below 400.
    pub ok_completion_tokens: i64,
    /// Requests that recorded a time to first token.
    pub ttft_count: i64,
    /// USD as recorded: API prices for remote backends, the share of the
    /// fleet's time for local ones.
    pub cost_usd: f64,
    /// The local backends' part of `cost_usd`.
    pub local_cost_usd: f64,
    pub counterfactual_usd: f64,
    pub engine_seconds: f64,
    /// Sum of latencies, ms.
    pub latency_ms: f64,
    /// Sum of the latencies of requests with a status below 400, ms.
    pub ok_latency_ms: f64,
    /// Sum of times to first token, ms.
    pub ttft_ms: f64,
    /// Smallest and largest latency, ms (infinite when there are no requests).
    pub latency_min_ms: f64,
    pub latency_max_ms: f64,
    /// Requests per latency bucket (`LATENCY_BUCKETS` entries).
    pub latency_hist: Vec<i64>,
}

impl Default for Summary {
    fn default() -> Self {
        Self {
            requests: 0,
            ok_requests: 0,
            errors: 0,
            fallbacks: 0,
            privacy_routed: 0,
            local_requests: 0,
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            ok_completion_tokens: 0,
            ttft_count: 0,
            cost_usd: 0.0,
            local_cost_usd: 0.0,
            counterfactual_usd: 0.0,
            engine_seconds: 0.0,
            latency_ms: 0.0,
            ok_latency_ms: 0.0,
            ttft_ms: 0.0,
            latency_min_ms: f64::INFINITY,
            latency_max_ms: f64::NEG_INFINITY,
            latency_hist: vec![0; LATENCY_BUCKETS],
        }
    }
}

impl Summary {
    /// Adds one record.
    pub fn add(&mut self, r: &LedgerRecord) {
        let ok = r.status < 400;
        self.requests += 1;
        self.ok_requests += i64::from(ok);
        self.errors += i64::from(!ok);
        self.fallbacks += i64::from(r.attempts > 1);
        self.privacy_routed += i64::from(KEPT_HOME_LEVELS.contains(&r.privacy.as_str()));
        let local = r.backend_kind == local_kind();
        self.local_requests += i64::from(local);
        self.prompt_tokens += r.prompt_tokens;
        self.completion_tokens += r.completion_tokens;
        self.cached_tokens += r.cached_tokens;
        if ok {
            self.ok_completion_tokens += r.completion_tokens;
            self.ok_latency_ms += r.latency_ms;
        }
        if let Some(t) = r.ttft_ms {
            self.ttft_count += 1;
            self.ttft_ms += t;
        }
        self.cost_usd += r.cost_usd;
        if local {
            self.local_cost_usd += r.cost_usd;
        }
        self.counterfactual_usd += r.counterfactual_usd;
        self.engine_seconds += r.engine_seconds;
        self.latency_ms += r.latency_ms;
        self.latency_min_ms = self.latency_min_ms.min(r.latency_ms);
        self.latency_max_ms = self.latency_max_ms.max(r.latency_ms);
        self.latency_hist[latency_bucket(r.latency_ms)] += 1;
    }

    /// Adds another summary (a rollup row, a day) to this one.
    pub fn merge(&mut self, o: &Summary) {
        self.requests += o.requests;
        self.ok_requests += o.ok_requests;
        self.errors += o.errors;
        self.fallbacks += o.fallbacks;
        self.privacy_routed += o.privacy_routed;
        self.local_requests += o.local_requests;
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.cached_tokens += o.cached_tokens;
        self.ok_completion_tokens += o.ok_completion_tokens;
        self.ttft_count += o.ttft_count;
        self.cost_usd += o.cost_usd;
        self.local_cost_usd += o.local_cost_usd;
        self.counterfactual_usd += o.counterfactual_usd;
        self.engine_seconds += o.engine_seconds;
        self.latency_ms += o.latency_ms;
        self.ok_latency_ms += o.ok_latency_ms;
        self.ttft_ms += o.ttft_ms;
        self.latency_min_ms = self.latency_min_ms.min(o.latency_min_ms);
        self.latency_max_ms = self.latency_max_ms.max(o.latency_max_ms);
        for (a, b) in self.latency_hist.iter_mut().zip(&o.latency_hist) {
            *a += b;
        }
    }

    /// The latency (ms) at quantile `q` in 0..=1, read from the histogram:
    /// the nearest-rank order statistic's bucket, reported at the bucket's
    /// geometric middle and kept within the observed minimum and maximum.
    /// Within `PERCENTILE_RELATIVE_ERROR` of the exact value; `None` without
    /// requests.
    pub fn latency_percentile(&self, q: f64) -> Option<f64> {
        let n: i64 = self.latency_hist.iter().sum();
        if n == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * n as f64).ceil() as i64).max(1);
        let mut seen = 0;
        for (bucket, count) in self.latency_hist.iter().enumerate() {
            seen += count;
            if seen >= rank {
                let v = bucket_estimate(bucket);
                let (lo, hi) = (self.latency_min_ms, self.latency_max_ms);
                return Some(if lo <= hi { v.clamp(lo, hi) } else { v });
            }
        }
        None
    }
}

/// Adds `records` up per rollup key.
pub fn rollup<'a>(
    records: impl IntoIterator<Item = &'a LedgerRecord>,
) -> BTreeMap<RollupKey, Summary> {
    let mut out: BTreeMap<RollupKey, Summary> = BTreeMap::new();
    for r in records {
        out.entry(RollupKey::of(r)).or_default().add(r);
    }
    out
}

/// The SQL differences between the two stores.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    Sqlite,
    Postgres,
}

impl Dialect {
    /// The `i`th (1-based) bind placeholder. SQLite's are anonymous `?`,
    /// bound in order: with numbered ones (`?NNN`) SQLite looks every
    /// parameter's name up in a list, which makes binding a statement of
    /// thousands of parameters quadratic.
    pub fn param(self, i: usize) -> String {
        match self {
            Dialect::Sqlite => "?".to_owned(),
            Dialect::Postgres => format!("${i}"),
        }
    }

    /// A sum of an integer expression, read back as a 64-bit integer
    /// (PostgreSQL sums BIGINT into NUMERIC).
    fn sum_int(self, expr: &str) -> String {
        match self {
            Dialect::Sqlite => format!("COALESCE(SUM({expr}), 0)"),
            Dialect::Postgres => format!("COALESCE(SUM({expr}), 0)::BIGINT"),
        }
    }

    fn least(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MIN",
            Dialect::Postgres => "LEAST",
        }
    }

    fn greatest(self) -> &'static str {
        match self {
            Dialect::Sqlite => "MAX",
            Dialect::Postgres => "GREATEST",
        }
    }
}

/// The two rollup tables. `Fine` has every dimension a report groups by;
/// `ByBackend` (day, team, backend, model) is 10-20 times smaller and serves
/// everything but the key and route breakdowns, which is what keeps the
/// dashboard's queries fast.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollupTable {
    Fine,
    ByBackend,
}

impl RollupTable {
    pub fn name(self) -> &'static str {
        match self {
            RollupTable::Fine => "ledger_rollup",
            RollupTable::ByBackend => "ledger_rollup_backend",
        }
    }

    /// Its key columns, in bind order.
    pub fn key_columns(self) -> &'static [&'static str] {
        match self {
            RollupTable::Fine => &[
                "day",
                "team",
                "key_id",
                "route",
                "backend",
                "backend_kind",
                "model",
                "privacy",
            ],
            RollupTable::ByBackend => &["day", "team", "backend", "backend_kind", "model"],
        }
    }

    /// The table that can answer a grouping by `by` (`None`: the whole
    /// selection).
    pub fn for_grouping(by: Option<Dimension>) -> Self {
        match by {
            Some(Dimension::Key | Dimension::Route) => RollupTable::Fine,
            _ => RollupTable::ByBackend,
        }
    }
}

/// Integer sums stored in both rollup tables, in bind order.
const INT_COLUMNS: [&str; 10] = [
    "requests",
    "ok_requests",
    "errors",
    "fallbacks",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "ok_completion_tokens",
    "ttft_count",
    "privacy_routed",
];

/// Float sums stored in both rollup tables, in bind order.
const REAL_COLUMNS: [&str; 6] = [
    "cost_usd",
    "counterfactual_usd",
    "engine_seconds",
    "latency_ms",
    "ok_latency_ms",
    "ttft_ms",
];

fn bucket_column(i: usize) -> String {
    format!("h{i:02}")
}

/// Every column of `table`, in bind order.
fn all_columns(table: RollupTable) -> Vec<String> {
    let mut cols: Vec<String> = table
        .key_columns()
        .iter()
        .map(|c| (*c).to_owned())
        .collect();
    cols.extend(INT_COLUMNS.iter().map(|c| (*c).to_owned()));
    cols.extend(REAL_COLUMNS.iter().map(|c| (*c).to_owned()));
    cols.push("latency_min_ms".into());
    cols.push("latency_max_ms".into());
    cols.extend((0..LATENCY_BUCKETS).map(bucket_column));
    cols
}

/// Binds per row of `table`.
pub fn params_per_row(table: RollupTable) -> usize {
    table.key_columns().len() + INT_COLUMNS.len() + REAL_COLUMNS.len() + 2 + LATENCY_BUCKETS
}

/// The rows of the by-backend table that `fine` adds up to.
pub fn by_backend(fine: &BTreeMap<RollupKey, Summary>) -> BTreeMap<RollupKey, Summary> {
    let mut out: BTreeMap<RollupKey, Summary> = BTreeMap::new();
    for (k, s) in fine {
        let coarse = RollupKey {
            key_id: String::new(),
            route: String::new(),
            privacy: String::new(),
            ..k.clone()
        };
        out.entry(coarse).or_default().merge(s);
    }
    out
}

/// An upsert of `rows` rows into `table` that adds each to the stored row
/// with the same key (or inserts it).
pub fn upsert_sql(d: Dialect, table: RollupTable, rows: usize) -> String {
    let t = table.name();
    let cols = all_columns(table);
    let per = cols.len();
    let values: Vec<String> = (0..rows)
        .map(|r| {
            let ps: Vec<String> = (1..=per).map(|i| d.param(r * per + i)).collect();
            format!("({})", ps.join(", "))
        })
        .collect();
    let mut set: Vec<String> = INT_COLUMNS
        .iter()
        .chain(REAL_COLUMNS.iter())
        .map(|c| format!("{c} = {t}.{c} + excluded.{c}"))
        .collect();
    set.push(format!(
        "latency_min_ms = {}({t}.latency_min_ms, excluded.latency_min_ms)",
        d.least()
    ));
    set.push(format!(
        "latency_max_ms = {}({t}.latency_max_ms, excluded.latency_max_ms)",
        d.greatest()
    ));
    set.extend((0..LATENCY_BUCKETS).map(|i| {
        let c = bucket_column(i);
        format!("{c} = {t}.{c} + excluded.{c}")
    }));
    format!(
        "INSERT INTO {t} ({}) VALUES {} ON CONFLICT ({}) DO UPDATE SET {}",
        cols.join(", "),
        values.join(", "),
        table.key_columns().join(", "),
        set.join(", ")
    )
}

/// Binds one row of `$table`, in `all_columns` order, to a query of either
/// store.
macro_rules! bind_rollup {
    ($query:expr, $table:expr, $k:expr, $s:expr) => {{
        let mut q = $query.bind($k.day).bind(&$k.team);
        if $table == $crate::report::rollup::RollupTable::Fine {
            q = q.bind(&$k.key_id).bind(&$k.route);
        }
        q = q.bind(&$k.backend).bind(&$k.backend_kind).bind(&$k.model);
        if $table == $crate::report::rollup::RollupTable::Fine {
            q = q.bind(&$k.privacy);
        }
        q = q
            .bind($s.requests)
            .bind($s.ok_requests)
            .bind($s.errors)
            .bind($s.fallbacks)
            .bind($s.prompt_tokens)
            .bind($s.completion_tokens)
            .bind($s.cached_tokens)
            .bind($s.ok_completion_tokens)
            .bind($s.ttft_count)
            .bind($s.privacy_routed)
            .bind($s.cost_usd)
            .bind($s.counterfactual_usd)
            .bind($s.engine_seconds)
            .bind($s.latency_ms)
            .bind($s.ok_latency_ms)
            .bind($s.ttft_ms)
            .bind($s.latency_min_ms)
            .bind($s.latency_max_ms);
        for h in &$s.latency_hist {
            q = q.bind(*h);
        }
        q
    }};
}
pub(crate) use bind_rollup;

/// What a report groups by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dimension {
    Day,
    Team,
    Key,
    Route,
    Backend,
    Model,
}

impl Dimension {
    pub const ALL: [Dimension; 6] = [
        Dimension::Day,
        Dimension::Team,
        Dimension::Key,
        Dimension::Route,
        Dimension::Backend,
        Dimension::Model,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::Day => "day",
            Dimension::Team => "team",
            Dimension::Key => "key",
            Dimension::Route => "route",
            Dimension::Backend => "backend",
            Dimension::Model => "model",
        }
    }

    /// The rollup column it groups on.
    pub fn column(self) -> &'static str {
        match self {
            Dimension::Day => "day",
            Dimension::Team => "team",
            Dimension::Key => "key_id",
            Dimension::Route => "route",
            Dimension::Backend => "backend",
            Dimension::Model => "model",
        }
    }

    /// This dimension's value for a record, as a report shows it.
    pub fn value_of(self, r: &LedgerRecord) -> String {
        match self {
            Dimension::Day => day_label(day_of(r.ts_ms)),
            Dimension::Team => r.team.clone(),
            Dimension::Key => r.key_id.clone(),
            Dimension::Route => r.route.clone(),
            Dimension::Backend => r.backend.clone(),
            Dimension::Model => r.model.clone(),
        }
    }
}

impl std::fmt::Display for Dimension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for Dimension {
    type Err = crate::LedgerError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Dimension::ALL
            .into_iter()
            .find(|d| d.as_str() == s)
            .ok_or_else(|| {
                crate::LedgerError::Invalid(format!(
                    "unknown grouping \"{s}\" (expected day, team, key, route, backend or model)"
                ))
            })
    }
}

/// `YYYY-MM-DD` of a UTC day number.
pub fn day_label(day: i64) -> String {
    chrono::DateTime::from_timestamp_millis(day.saturating_mul(DAY_MS))
        .map(|t| t.format("%Y-%m-%d").to_string())
        .unwrap_or_else(|| format!("day {day}"))
}

/// A grouped read of the rollups (from the smallest table that can answer it): one row per value of `by` (one row for the
/// whole selection when `by` is `None`), days `from_day <= day < to_day`, one
/// team when `team` is bound. Columns: the group, then `summary_columns`.
pub fn summarize_sql(d: Dialect, by: Option<Dimension>, team: bool) -> String {
    let local = local_kind();
    let mut cols = Vec::new();
    for c in INT_COLUMNS {
        cols.push(d.sum_int(c));
    }
    cols.push(d.sum_int(&format!(
        "CASE WHEN backend_kind = '{local}' THEN requests ELSE 0 END"
    )));
    // 0.0, not 0: SQLite sums integers to an integer.
    for c in REAL_COLUMNS {
        cols.push(format!("COALESCE(SUM({c}), 0.0)"));
    }
    cols.push(format!(
        "COALESCE(SUM(CASE WHEN backend_kind = '{local}' THEN cost_usd ELSE 0.0 END), 0.0)"
    ));
    cols.push("MIN(latency_min_ms)".into());
    cols.push("MAX(latency_max_ms)".into());
    for i in 0..LATENCY_BUCKETS {
        cols.push(d.sum_int(&bucket_column(i)));
    }
    let group = match by {
        Some(b) => b.column(),
        None => "0",
    };
    let mut sql = format!(
        "SELECT {group} AS g, {} FROM {} WHERE day >= {} AND day < {}",
        cols.join(", "),
        RollupTable::for_grouping(by).name(),
        d.param(1),
        d.param(2)
    );
    if team {
        sql.push_str(&format!(" AND team = {}", d.param(3)));
    }
    if by.is_some() {
        sql.push_str(" GROUP BY g ORDER BY g");
    }
    sql
}

/// Reads a `Summary` from a row of `summarize_sql`, its columns from index 1.
macro_rules! summary_from_row {
    ($row:expr) => {{
        let row = $row;
        // Column 0 is the group; then 10 integer sums (the last the kept-home
        // count), the local request count, 6 float sums, the local cost, min, max, buckets.
        let int = |i: usize| -> Result<i64, sqlx::Error> { row.try_get::<i64, _>(i) };
        let real =
            |i: usize| -> Result<Option<f64>, sqlx::Error> { row.try_get::<Option<f64>, _>(i) };
        let mut latency_hist = Vec::with_capacity($crate::report::rollup::LATENCY_BUCKETS);
        for b in 0..$crate::report::rollup::LATENCY_BUCKETS {
            latency_hist.push(int(21 + b)?);
        }
        Ok::<_, sqlx::Error>($crate::report::rollup::Summary {
            requests: int(1)?,
            ok_requests: int(2)?,
            errors: int(3)?,
            fallbacks: int(4)?,
            prompt_tokens: int(5)?,
            completion_tokens: int(6)?,
            cached_tokens: int(7)?,
            ok_completion_tokens: int(8)?,
            ttft_count: int(9)?,
            privacy_routed: int(10)?,
            local_requests: int(11)?,
            cost_usd: real(12)?.unwrap_or(0.0),
            counterfactual_usd: real(13)?.unwrap_or(0.0),
            engine_seconds: real(14)?.unwrap_or(0.0),
            latency_ms: real(15)?.unwrap_or(0.0),
            ok_latency_ms: real(16)?.unwrap_or(0.0),
            ttft_ms: real(17)?.unwrap_or(0.0),
            local_cost_usd: real(18)?.unwrap_or(0.0),
            latency_min_ms: real(19)?.unwrap_or(f64::INFINITY),
            latency_max_ms: real(20)?.unwrap_or(f64::NEG_INFINITY),
            latency_hist,
        })
    }};
}
pub(crate) use summary_from_row;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_are_four_per_doubling_and_match_the_migrations() {
        for (k, b) in LATENCY_BOUNDS_MS.iter().enumerate() {
            let want = 2f64.powf(k as f64 / 4.0);
            assert!((b / want - 1.0).abs() < 1e-12, "{k}: {b} vs {want}");
        }
        for sql in [
            include_str!("../../migrations/sqlite/0002_rollup.sql"),
            include_str!("../../migrations/postgres/0002_rollup.sql"),
        ] {
            for b in LATENCY_BOUNDS_MS {
                assert!(
                    sql.contains(&format!("latency_ms >= {b:?} THEN")),
                    "{b:?} missing from a migration"
                );
            }
            assert!(sql.contains("h81"));
            assert!(!sql.contains("h82"));
        }
    }

    #[test]
    fn buckets_by_hand() {
        assert_eq!(latency_bucket(0.0), 0);
        assert_eq!(latency_bucket(0.999), 0);
        assert_eq!(latency_bucket(-3.0), 0);
        assert_eq!(latency_bucket(f64::NAN), 0);
        assert_eq!(latency_bucket(1.0), 1);
        assert_eq!(latency_bucket(1.18), 1);
        assert_eq!(latency_bucket(1.19), 2);
        // 1000 ms: 2^(39/4) = 861.08 <= 1000 < 1024 = 2^(40/4) -> bucket 40.
        assert_eq!(latency_bucket(1000.0), 40);
        assert_eq!(latency_bucket(1024.0), 41);
        assert_eq!(latency_bucket(1_048_575.9), 80);
        assert_eq!(latency_bucket(1_048_576.0), 81);
        assert_eq!(latency_bucket(1e12), 81);
        // Bucket 40 is [861.08, 1024): reported at sqrt(861.08 * 1024) = 939.0.
        assert!((bucket_estimate(40) - (861.0779292198037f64 * 1024.0).sqrt()).abs() < 1e-9);
        assert_eq!(bucket_estimate(0), 0.5);
        assert_eq!(bucket_estimate(81), 1_048_576.0);
    }

    fn rec(latency_ms: f64) -> LedgerRecord {
        LedgerRecord {
            request_id: String::new(),
            ts_ms: 0,
            team: "t".into(),
            key_id: "k".into(),
            route: "r".into(),
            backend: "b".into(),
            backend_kind: "openai".into(),
            model: "m".into(),
            privacy: "internal".into(),
            prompt_tokens: 0,
            completion_tokens: 0,
            cached_tokens: 0,
            cost_usd: 0.0,
            counterfactual_usd: 0.0,
            engine_seconds: 0.0,
            ttft_ms: None,
            latency_ms,
            status: 200,
            error_code: None,
            finish_reason: None,
            stream: false,
            attempts: 1,
            difficulty: None,
            explanation: None,
        }
    }

    #[test]
    fn percentiles_by_hand() {
        let mut s = Summary::default();
        assert_eq!(s.latency_percentile(0.5), None);
        // 100 requests: 1..=100 ms.
        for ms in 1..=100 {
            s.add(&rec(f64::from(ms)));
        }
        // Nearest rank: p50 is the 50th value, 50 ms, in bucket
        // [45.25, 53.82) -> reported at sqrt(45.25 * 53.82) = 49.35.
        let p50 = s.latency_percentile(0.5).unwrap();
        assert!((p50 - (45.254833995939045f64 * 53.81737057623773).sqrt()).abs() < 1e-9);
        assert!((p50 / 50.0 - 1.0).abs() <= PERCENTILE_RELATIVE_ERROR);
        // p99 is 99 ms in [90.51, 107.63) -> 98.70, within the bound.
        let p99 = s.latency_percentile(0.99).unwrap();
        assert!(
            (p99 / 99.0 - 1.0).abs() <= PERCENTILE_RELATIVE_ERROR,
            "{p99}"
        );
        // p100 of 1..=100 is 100 ms, in the same bucket: 98.70.
        assert_eq!(s.latency_percentile(1.0), Some(p99));
        // Estimates stay within the observed range: the top of 1..=95 is
        // 95 ms, whose bucket's middle (98.70) is clamped to 95.
        let mut s = Summary::default();
        for ms in 1..=95 {
            s.add(&rec(f64::from(ms)));
        }
        assert_eq!(s.latency_percentile(1.0), Some(95.0));
        // One request: every percentile is that request's latency.
        let mut one = Summary::default();
        one.add(&rec(1234.5));
        assert_eq!(one.latency_percentile(0.5), Some(1234.5));
        assert_eq!(one.latency_percentile(0.99), Some(1234.5));
    }

    #[test]
    fn merge_equals_adding_every_record() {
        let mut a = Summary::default();
        let mut b = Summary::default();
        let mut all = Summary::default();
        for i in 0..50 {
            let mut r = rec(f64::from(i) * 37.0);
            r.status = if i % 7 == 0 { 502 } else { 200 };
            r.attempts = 1 + i64::from(i % 3 == 0);
            r.ttft_ms = (i % 2 == 0).then_some(f64::from(i));
            r.completion_tokens = i64::from(i);
            if i % 2 == 0 {
                a.add(&r)
            } else {
                b.add(&r)
            }
            all.add(&r);
        }
        a.merge(&b);
        assert_eq!(a, all);
        assert_eq!(all.errors, 8);
        assert_eq!(all.fallbacks, 17);
        assert_eq!(all.ttft_count, 25);
    }

    #[test]
    fn upsert_has_one_placeholder_per_column() {
        let sql = upsert_sql(Dialect::Postgres, RollupTable::Fine, 2);
        let per = params_per_row(RollupTable::Fine);
        assert_eq!(per, 108);
        assert_eq!(params_per_row(RollupTable::ByBackend), 105);
        assert!(sql.contains(&format!("${}", 2 * per)));
        assert!(!sql.contains(&format!("${}", 2 * per + 1)));
        assert!(upsert_sql(Dialect::Sqlite, RollupTable::ByBackend, 1)
            .contains("MIN(ledger_rollup_backend.latency_min_ms"));
    }
}
