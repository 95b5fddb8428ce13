-- One row per request that reached dispatch, keyed by the request id so a
-- replayed record is a no-op. Prompt and response text are never stored here.
CREATE TABLE IF NOT EXISTS ledger (
    request_id         TEXT    PRIMARY KEY NOT NULL,
    ts_ms              INTEGER NOT NULL,
    team               TEXT    NOT NULL,
    key_id             TEXT    NOT NULL,
    route              TEXT    NOT NULL,
    backend            TEXT    NOT NULL,
    backend_kind       TEXT    NOT NULL,
    model              TEXT    NOT NULL,
    privacy            TEXT    NOT NULL,
    prompt_tokens      INTEGER NOT NULL,
    completion_tokens  INTEGER NOT NULL,
    cached_tokens      INTEGER NOT NULL,
    cost_usd           REAL    NOT NULL,
    counterfactual_usd REAL    NOT NULL,
    engine_seconds     REAL    NOT NULL,
    ttft_ms            REAL,
    latency_ms         REAL    NOT NULL,
    status             INTEGER NOT NULL,
    error_code         TEXT,
    finish_reason      TEXT,
    stream             INTEGER NOT NULL,
    attempts           INTEGER NOT NULL,
    difficulty         REAL
);

CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts_ms);
CREATE INDEX IF NOT EXISTS ledger_team_ts ON ledger (team, ts_ms);
