-- One row per request that reached dispatch, keyed by the request id so a
-- replayed record is a no-op. Prompt and response text are never stored here.
CREATE TABLE IF NOT EXISTS ledger (
    request_id         TEXT             PRIMARY KEY,
    ts_ms              BIGINT           NOT NULL,
    team               TEXT             NOT NULL,
    key_id             TEXT             NOT NULL,
    route              TEXT             NOT NULL,
    backend            TEXT             NOT NULL,
    backend_kind       TEXT             NOT NULL,
    model              TEXT             NOT NULL,
    privacy            TEXT             NOT NULL,
    prompt_tokens      BIGINT           NOT NULL,
    completion_tokens  BIGINT           NOT NULL,
    cached_tokens      BIGINT           NOT NULL,
    cost_usd           DOUBLE PRECISION NOT NULL,
    counterfactual_usd DOUBLE PRECISION NOT NULL,
    engine_seconds     DOUBLE PRECISION NOT NULL,
    ttft_ms            DOUBLE PRECISION,
    latency_ms         DOUBLE PRECISION NOT NULL,
    status             BIGINT           NOT NULL,
    error_code         TEXT,
    finish_reason      TEXT,
    stream             BOOLEAN          NOT NULL,
    attempts           BIGINT           NOT NULL,
    difficulty         DOUBLE PRECISION
);

CREATE INDEX IF NOT EXISTS ledger_ts ON ledger (ts_ms);
CREATE INDEX IF NOT EXISTS ledger_team_ts ON ledger (team, ts_ms);
