//! Pools: several OpenAI-compatible servers (vLLM, SGLang, llama.cpp server,
//! Ollama) behind one target. Dispatch leases a member for each attempt —
//! the usable one with the fewest requests outstanding, ties taken in turn —
//! and reports how it went; a member that fails `eject_after_failures`
//! requests in a row is ejected, and active health checks take members out
//! and bring them back. State lives with the target's handle, so a policy
//! reload starts every member healthy, like the breakers.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};
use watershed_policies::{HealthSettings, PoolSpec};
use watershed_providers::openai::OpenAiProvider;
use watershed_providers::remote::RemoteTarget;
use watershed_providers::{ChatStream, Provider, ProviderError};

use crate::metrics::{self, Metrics};
use crate::state::AppState;

/// Where a member stands, as `/readyz` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// Passing its health checks and not ejected: it gets requests.
    Healthy,
    /// Failed `unhealthy_threshold` health checks in a row.
    Unhealthy,
    /// Failed `eject_after_failures` requests in a row; back after
    /// `healthy_threshold` passed checks.
    Ejected,
}

impl MemberState {
    pub fn as_str(self) -> &'static str {
        match self {
            MemberState::Healthy => "healthy",
            MemberState::Unhealthy => "unhealthy",
            MemberState::Ejected => "ejected",
        }
    }

    /// The value of the `watershed_pool_member_state` gauge.
    pub fn gauge(self) -> f64 {
        match self {
            MemberState::Healthy => 0.0,
            MemberState::Unhealthy => 1.0,
            MemberState::Ejected => 2.0,
        }
    }
}

#[derive(Debug)]
struct Health {
    /// The last verdict of the active checks.
    checks_pass: bool,
    ejected: bool,
    /// Consecutive failed requests (passive), passed and failed checks (active).
    request_failures: u32,
    checks_ok: u32,
    checks_failed: u32,
}

/// What a report changed, for metrics and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Moved {
    Ejected,
    Unhealthy,
    Readmitted,
}

/// The pure bookkeeping of one member's health: passive failures, active
/// checks and the thresholds between them.
#[derive(Debug)]
pub struct HealthBook {
    settings: HealthSettings,
    inner: Mutex<Health>,
}

impl HealthBook {
    pub fn new(settings: HealthSettings) -> Self {
        HealthBook {
            settings,
            // Healthy until the checks say otherwise, so a pool serves from
            // the first request.
            inner: Mutex::new(Health {
                checks_pass: true,
                ejected: false,
                request_failures: 0,
                checks_ok: 0,
                checks_failed: 0,
            }),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&mut Health) -> R) -> R {
        match self.inner.lock() {
            Ok(mut g) => f(&mut g),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    pub fn state(&self) -> MemberState {
        self.with(|h| {
            if h.ejected {
                MemberState::Ejected
            } else if h.checks_pass {
                MemberState::Healthy
            } else {
                MemberState::Unhealthy
            }
        })
    }

    pub fn usable(&self) -> bool {
        self.state() == MemberState::Healthy
    }

    /// A request the member answered (or refused as bad: it is up).
    pub fn request_ok(&self) {
        self.with(|h| h.request_failures = 0);
    }

    /// A request failed on the member's side (connect error, 5xx, timeout).
    pub fn request_failed(&self) -> Option<Moved> {
        let limit = self.settings.eject_after_failures;
        self.with(|h| {
            h.request_failures = h.request_failures.saturating_add(1);
            (!h.ejected && h.request_failures >= limit).then(|| {
                h.ejected = true;
                // Re-admission takes fresh passes, counted from now.
                h.checks_ok = 0;
                Moved::Ejected
            })
        })
    }

    /// One active check's result.
    pub fn checked(&self, passed: bool) -> Option<Moved> {
        let s = &self.settings;
        self.with(|h| {
            if passed {
                h.checks_failed = 0;
                h.checks_ok = h.checks_ok.saturating_add(1);
                let out = h.ejected || !h.checks_pass;
                (out && h.checks_ok >= s.healthy_threshold).then(|| {
                    h.checks_pass = true;
                    h.ejected = false;
                    h.request_failures = 0;
                    Moved::Readmitted
                })
            } else {
                h.checks_ok = 0;
                h.checks_failed = h.checks_failed.saturating_add(1);
                (h.checks_pass && h.checks_failed >= s.unhealthy_threshold).then(|| {
                    h.checks_pass = false;
                    Moved::Unhealthy
                })
            }
        })
    }
}

/// One server of a pool.
pub struct Member {
    pub name: String,
    /// Its chat client, aimed at the member's URL but naming the pool's
    /// target in every error, so a member's URL never reaches a client.
    pub provider: Arc<dyn Provider>,
    health_url: reqwest::Url,
    /// Host and port, for the span's `server.address`.
    pub server: Option<(String, u16)>,
    pub health: HealthBook,
    outstanding: AtomicU32,
    ejections: AtomicU64,
}

impl std::fmt::Debug for Member {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Member")
            .field("name", &self.name)
            .field("state", &self.health.state())
            .finish_non_exhaustive()
    }
}

impl Member {
    pub fn outstanding(&self) -> u32 {
        self.outstanding.load(Ordering::Relaxed)
    }

    pub fn ejections(&self) -> u64 {
        self.ejections.load(Ordering::Relaxed)
    }
}

/// The members of one pool target and how to choose among them.
pub struct Pool {
    pub target: String,
    pub members: Vec<Arc<Member>>,
    settings: HealthSettings,
    /// Where the next tie-break starts, so equal members take turns.
    cursor: AtomicUsize,
    client: reqwest::Client,
    api_key: Option<String>,
    next_check: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("target", &self.target)
            .field("members", &self.members)
            .finish_non_exhaustive()
    }
}

/// A member's host and port, the port defaulted by the scheme.
pub fn server_of(url: &reqwest::Url) -> Option<(String, u16)> {
    let host = url.host_str()?.trim_matches(['[', ']']).to_owned();
    Some((host, url.port_or_known_default()?))
}

impl Pool {
    /// A pool for target `template.target`: one OpenAI-compatible client per
    /// member, each a copy of `template` at the member's URL.
    pub fn new(spec: &PoolSpec, template: &RemoteTarget) -> anyhow::Result<Pool> {
        let mut members = Vec::with_capacity(spec.members.len());
        for m in &spec.members {
            let base = reqwest::Url::parse(&m.url).map_err(|e| {
                anyhow::anyhow!(
                    "target \"{}\": endpoint \"{}\" is not a URL: {e}",
                    template.target,
                    m.name
                )
            })?;
            // The health path is absolute on the member's host: `/health`
            // sits beside `/v1`, not under it.
            let health_url = base.join(&spec.health.path).map_err(|e| {
                anyhow::anyhow!(
                    "target \"{}\": health path {:?}: {e}",
                    template.target,
                    spec.health.path
                )
            })?;
            let mut remote = template.clone();
            remote.base_url = m.url.clone();
            members.push(Arc::new(Member {
                name: m.name.clone(),
                provider: Arc::new(OpenAiProvider::new(remote)?),
                server: server_of(&base),
                health_url,
                health: HealthBook::new(spec.health.clone()),
                outstanding: AtomicU32::new(0),
                ejections: AtomicU64::new(0),
            }));
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("watershed/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_millis(spec.health.timeout_ms))
            .timeout(Duration::from_millis(spec.health.timeout_ms))
            .build()?;
        Ok(Pool {
            target: template.target.clone(),
            members,
            settings: spec.health.clone(),
            cursor: AtomicUsize::new(0),
            client,
            api_key: template.api_key.clone(),
            next_check: Mutex::new(None),
        })
    }

    /// Whether any member can take a request now.
    pub fn any_usable(&self) -> bool {
        self.members.iter().any(|m| m.health.usable())
    }

    /// Whether a usable member not in `tried` is left.
    pub fn has_untried(&self, tried: &[usize]) -> bool {
        self.members
            .iter()
            .enumerate()
            .any(|(i, m)| !tried.contains(&i) && m.health.usable())
    }

    /// Leases the usable member with the fewest outstanding requests,
    /// preferring members not in `tried` (those this request already tried);
    /// among equals, the one first after a cursor that moves on every pick.
    /// `None` when no member is usable.
    pub fn pick(&self, tried: &[usize]) -> Option<Lease> {
        let n = self.members.len();
        let start = self.cursor.fetch_add(1, Ordering::Relaxed);
        let usable: Vec<usize> = (0..n)
            .map(|k| (start + k) % n)
            .filter(|&i| self.members[i].health.usable())
            .collect();
        let fresh: Vec<usize> = usable
            .iter()
            .copied()
            .filter(|i| !tried.contains(i))
            .collect();
        let candidates = if fresh.is_empty() { usable } else { fresh };
        // `min_by_key` keeps the first of equals, which is the cursor's turn.
        let index = candidates
            .into_iter()
            .min_by_key(|&i| self.members[i].outstanding())?;
        let member = self.members[index].clone();
        member.outstanding.fetch_add(1, Ordering::Relaxed);
        Some(Lease { member, index })
    }

    /// Records that `member` was ejected.
    fn ejected(&self, member: &Member, metrics: &Metrics) {
        member.ejections.fetch_add(1, Ordering::Relaxed);
        metrics.add(
            metrics::POOL_EJECTIONS,
            vec![
                ("backend", self.target.clone()),
                ("member", member.name.clone()),
            ],
            1.0,
        );
        warn!(backend = %self.target, member = %member.name, "pool member ejected after failed requests");
    }

    /// Checks every member once, all at once, each bounded by the timeout.
    pub async fn check_all(&self, metrics: &Metrics) {
        let checks = self.members.iter().map(|m| async move {
            let mut req = self.client.get(m.health_url.clone());
            if let Some(key) = &self.api_key {
                req = req.bearer_auth(key);
            }
            let passed = matches!(req.send().await, Ok(r) if r.status().is_success());
            match m.health.checked(passed) {
                Some(Moved::Readmitted) => {
                    metrics.add(
                        metrics::POOL_READMISSIONS,
                        vec![("backend", self.target.clone()), ("member", m.name.clone())],
                        1.0,
                    );
                    info!(backend = %self.target, member = %m.name, "pool member passed its health checks and is back");
                }
                Some(Moved::Unhealthy) => {
                    warn!(backend = %self.target, member = %m.name, "pool member failed its health checks");
                }
                _ => {}
            }
        });
        futures::future::join_all(checks).await;
    }

    /// Whether this pool's checks are due at `now`; if so, the next are set
    /// one interval on.
    fn due(&self, now: Instant) -> bool {
        let mut next = match self.next_check.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        match *next {
            Some(at) if at > now => false,
            _ => {
                *next = Some(now + Duration::from_millis(self.settings.interval_ms));
                true
            }
        }
    }
}

/// A member lent to one attempt; the member counts it outstanding until the
/// lease is dropped (for a stream: when the stream ends or is dropped).
#[derive(Debug)]
pub struct Lease {
    pub member: Arc<Member>,
    /// The member's place in the pool, for the request's `tried` list.
    pub index: usize,
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.member.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Whether `e` says something about the member itself: it could not be
/// reached, timed out or failed on its side (5xx). A 429 is load, a 4xx the
/// request's fault.
pub fn member_fault(e: &ProviderError) -> bool {
    match e {
        ProviderError::Upstream { status, .. } => *status >= 500,
        ProviderError::Unreachable { .. } | ProviderError::Timeout { .. } => true,
        _ => false,
    }
}

impl Lease {
    /// The member answered (or refused the request as bad: it is up).
    pub fn report_ok(&self) {
        self.member.health.request_ok();
    }

    /// Reports the attempt's outcome; returns whether it ejected the member.
    pub fn report(&self, pool: &Pool, failed: Option<&ProviderError>, metrics: &Metrics) -> bool {
        match failed {
            Some(e) if member_fault(e) => {
                let moved = self.member.health.request_failed();
                if moved == Some(Moved::Ejected) {
                    pool.ejected(&self.member, metrics);
                }
                moved.is_some()
            }
            Some(_) => false,
            None => {
                self.member.health.request_ok();
                false
            }
        }
    }

    /// `stream` holding this lease until it ends, reporting a failure in it
    /// (a reset or a stall after the first event) against the member.
    pub fn hold(self, pool: Arc<Pool>, metrics: Arc<Metrics>, stream: ChatStream) -> ChatStream {
        Box::pin(stream.inspect(move |item| {
            if let Err(e) = item {
                self.report(&pool, Some(e), &metrics);
            }
        }))
    }
}

/// For `policy explain`: how each pool among `targets` chooses a member
/// (members by name, never their URLs, and the health settings). Member
/// states live in the serving gateway (`/readyz`, `/metrics`); the ledger
/// record of a served request names its member.
pub fn describe(cfg: &watershed_policies::Config, targets: &[String]) -> Option<serde_json::Value> {
    let pools: serde_json::Map<String, serde_json::Value> = targets
        .iter()
        .filter_map(|id| {
            let spec = match &cfg.models.get(id)?.spec {
                watershed_policies::TargetSpec::Remote(r) => r.pool.as_ref()?,
                watershed_policies::TargetSpec::Local(_) => return None,
            };
            let h = &spec.health;
            Some((
                id.clone(),
                serde_json::json!({
                    "balancing": "least_outstanding",
                    "members": spec.members.iter().map(|m| m.name.clone()).collect::<Vec<_>>(),
                    "health": {
                        "path": h.path,
                        "interval_ms": h.interval_ms,
                        "timeout_ms": h.timeout_ms,
                        "unhealthy_threshold": h.unhealthy_threshold,
                        "healthy_threshold": h.healthy_threshold,
                        "eject_after_failures": h.eject_after_failures,
                    },
                }),
            ))
        })
        .collect();
    (!pools.is_empty()).then_some(serde_json::Value::Object(pools))
}

/// Runs the health checks of every pool in the configuration in force,
/// each pool every `health.interval_ms`, until shutdown. A reload's new pools
/// are picked up within a second.
pub fn watch(state: Arc<AppState>, tracker: &TaskTracker, shutdown: CancellationToken) {
    tracker.spawn(async move {
        loop {
            let pools: Vec<Arc<Pool>> = state
                .runtime()
                .targets
                .values()
                .filter_map(|t| t.pool.clone())
                .collect();
            let now = Instant::now();
            let due: Vec<&Arc<Pool>> = pools.iter().filter(|p| p.due(now)).collect();
            let checks = futures::future::join_all(due.iter().map(|p| p.check_all(&state.metrics)));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = checks => {}
            }
            let wake = pools
                .iter()
                .filter_map(|p| match p.next_check.lock() {
                    Ok(g) => *g,
                    Err(e) => *e.into_inner(),
                })
                .min()
                .unwrap_or(now + Duration::from_secs(1))
                .min(Instant::now() + Duration::from_secs(1));
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use watershed_providers::BackendKind;

    fn settings() -> HealthSettings {
        HealthSettings {
            path: "/health".into(),
            interval_ms: 1_000,
            timeout_ms: 500,
            unhealthy_threshold: 2,
            healthy_threshold: 2,
            eject_after_failures: 3,
        }
    }

    fn pool(n: usize) -> Pool {
        let spec = PoolSpec {
            members: (0..n)
                .map(|i| watershed_policies::PoolMember {
                    name: format!("m{i}"),
                    url: format!("http://127.0.0.1:{}/v1", 9000 + i),
                })
                .collect(),
            health: settings(),
        };
        let t = RemoteTarget::new("p", BackendKind::OpenaiCompatible, "", "m");
        Pool::new(&spec, &t).unwrap()
    }

    fn fault() -> ProviderError {
        ProviderError::Upstream {
            target: "p".into(),
            status: 503,
            message: String::new(),
            retry_after_s: None,
        }
    }

    #[test]
    fn picks_the_member_with_fewest_outstanding_and_takes_turns_among_equals() {
        let p = pool(3);
        // Equal members take turns: three picks, released at once, land on
        // three different members, and the next three again.
        for _ in 0..2 {
            let mut seen: Vec<usize> = (0..3).map(|_| p.pick(&[]).unwrap().index).collect();
            seen.sort_unstable();
            assert_eq!(seen, [0, 1, 2]);
        }
        // Held leases steer the next picks to the least loaded member.
        let a = p.pick(&[]).unwrap();
        let b = p.pick(&[]).unwrap();
        let c = p.pick(&[]).unwrap();
        let mut held = [a.index, b.index, c.index];
        held.sort_unstable();
        assert_eq!(held, [0, 1, 2]);
        // Loads 1, 1, 1; releasing `a` makes its member the only one at 0.
        let a_index = a.index;
        drop(a);
        for _ in 0..5 {
            assert_eq!(p.pick(&[]).unwrap().index, a_index);
        }
        assert_eq!(p.members[b.index].outstanding(), 1);
        drop((b, c));
        assert!(p.members.iter().all(|m| m.outstanding() == 0));
    }

    #[test]
    fn a_retry_goes_to_another_member_where_there_is_one() {
        let p = pool(3);
        let mut tried = Vec::new();
        for _ in 0..3 {
            let l = p.pick(&tried).unwrap();
            assert!(!tried.contains(&l.index));
            tried.push(l.index);
        }
        // Everyone tried: the least loaded of them again, not nothing.
        assert!(!p.has_untried(&tried));
        assert!(p.pick(&tried).is_some());
    }

    #[test]
    fn failures_eject_a_member_and_health_checks_readmit_it() {
        let p = pool(2);
        let m = Metrics::default();
        let l = p.pick(&[]).unwrap();
        let bad = l.index;
        // A 429 or a bad request says nothing about the member's health.
        for e in [
            ProviderError::Upstream {
                target: "p".into(),
                status: 429,
                message: String::new(),
                retry_after_s: None,
            },
            ProviderError::BadRequest {
                message: "x".into(),
                param: None,
            },
        ] {
            assert!(!l.report(&p, Some(&e), &m));
        }
        assert!(!l.report(&p, Some(&fault()), &m));
        // A success in between resets the streak.
        l.report(&p, None, &m);
        assert!(!l.report(&p, Some(&fault()), &m));
        assert!(!l.report(&p, Some(&fault()), &m));
        assert!(l.report(&p, Some(&fault()), &m));
        assert_eq!(p.members[bad].health.state(), MemberState::Ejected);
        assert_eq!(p.members[bad].ejections(), 1);
        drop(l);
        // Every pick now goes to the other member.
        for _ in 0..4 {
            assert_ne!(p.pick(&[]).unwrap().index, bad);
        }
        // One passed check is not enough, a failed one starts again.
        let h = &p.members[bad].health;
        assert_eq!(h.checked(true), None);
        assert_eq!(h.checked(false), None);
        assert_eq!(h.checked(true), None);
        assert_eq!(h.checked(true), Some(Moved::Readmitted));
        assert_eq!(h.state(), MemberState::Healthy);
        assert!(m.render().contains("watershed_pool_ejections_total"));
    }

    #[test]
    fn health_checks_take_a_member_out_and_an_empty_pool_picks_nothing() {
        let p = pool(2);
        for member in &p.members {
            assert_eq!(member.health.checked(false), None);
            assert_eq!(member.health.checked(false), Some(Moved::Unhealthy));
            // Already out: no second move.
            assert_eq!(member.health.checked(false), None);
        }
        assert!(!p.any_usable());
        assert!(p.pick(&[]).is_none());
        assert_eq!(p.members[0].health.checked(true), None);
        assert_eq!(p.members[0].health.checked(true), Some(Moved::Readmitted));
        assert_eq!(p.pick(&[]).unwrap().index, 0);
    }

    #[tokio::test]
    async fn a_stream_holds_its_lease_until_it_ends_and_its_failure_counts() {
        use watershed_providers::StreamEvent;
        let p = Arc::new(pool(2));
        let metrics = Arc::new(Metrics::default());
        let run = |p: &Arc<Pool>| {
            let lease = p.pick(&[]).unwrap();
            let index = lease.index;
            let items: Vec<Result<StreamEvent, ProviderError>> =
                vec![Ok(StreamEvent::Delta("hi".into())), Err(fault())];
            let s: ChatStream = Box::pin(futures::stream::iter(items));
            (index, lease.hold(p.clone(), metrics.clone(), s))
        };
        let (index, mut s) = run(&p);
        assert!(s.next().await.unwrap().is_ok());
        // Mid-stream, the member still counts the request.
        assert_eq!(p.members[index].outstanding(), 1);
        assert!(s.next().await.unwrap().is_err());
        assert!(s.next().await.is_none());
        drop(s);
        assert_eq!(p.members[index].outstanding(), 0);
        // The reset counted against the member: with eject_after_failures
        // at 3, two more failures eject it.
        let h = &p.members[index].health;
        assert_eq!(h.request_failed(), None);
        assert_eq!(h.request_failed(), Some(Moved::Ejected));
        assert_eq!(p.members[index].health.state(), MemberState::Ejected);
    }

    #[test]
    fn the_health_url_sits_on_the_members_host() {
        let p = pool(1);
        assert_eq!(
            p.members[0].health_url.as_str(),
            "http://127.0.0.1:9000/health"
        );
        assert_eq!(p.members[0].server, Some(("127.0.0.1".into(), 9000)));
    }
}
