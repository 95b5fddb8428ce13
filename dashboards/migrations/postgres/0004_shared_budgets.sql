-- The budget book replicas share (gateway `budget::shared`): each budget's
-- spend in its current UTC day and month plus the money reserved by requests
-- in flight, and one row per reservation so one whose replica died is swept
-- when it expires.
CREATE TABLE IF NOT EXISTS budget_spend (
    -- 'team:NAME' or 'key:ID'
    scope TEXT PRIMARY KEY,
    -- Days since 0001-01-01 and year * 12 + month0 of the windows the sums are for.
    day_idx BIGINT NOT NULL,
    day_usd DOUBLE PRECISION NOT NULL,
    month_idx BIGINT NOT NULL,
    month_usd DOUBLE PRECISION NOT NULL,
    reserved_usd DOUBLE PRECISION NOT NULL DEFAULT 0
);

CREATE TABLE IF NOT EXISTS budget_reservations (
    id TEXT PRIMARY KEY,
    scopes TEXT[] NOT NULL,
    amount_usd DOUBLE PRECISION NOT NULL,
    at_ms BIGINT NOT NULL,
    expires_ms BIGINT NOT NULL
);

CREATE INDEX IF NOT EXISTS budget_reservations_expires ON budget_reservations (expires_ms);
