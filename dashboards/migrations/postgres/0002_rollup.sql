-- Daily rollups of the ledger: one row per UTC day and (team, key, route,
-- backend, backend kind, model, privacy level), with the sums reports need and a
-- latency histogram, so a report over months of traffic reads thousands of rows
-- instead of millions. The ledger writer adds to them in the same transaction as
-- each insert batch, counting only the records that batch actually inserted, so a
-- replayed record never counts twice.
--
-- Latency buckets h00..h81: h00 holds latencies under 1 ms; h<i> for i in 1..80
-- holds [2^((i-1)/4), 2^(i/4)) ms (four buckets per doubling, each 19% wide);
-- h81 holds 2^20 ms (about 17.5 minutes) and above.
CREATE TABLE IF NOT EXISTS ledger_rollup (
    day                  BIGINT NOT NULL,
    team                 TEXT NOT NULL,
    key_id               TEXT NOT NULL,
    route                TEXT NOT NULL,
    backend              TEXT NOT NULL,
    backend_kind         TEXT NOT NULL,
    model                TEXT NOT NULL,
    privacy              TEXT NOT NULL,
    requests             BIGINT NOT NULL,
    ok_requests          BIGINT NOT NULL,
    errors               BIGINT NOT NULL,
    fallbacks            BIGINT NOT NULL,
    prompt_tokens        BIGINT NOT NULL,
    completion_tokens    BIGINT NOT NULL,
    cached_tokens        BIGINT NOT NULL,
    ok_completion_tokens BIGINT NOT NULL,
    ttft_count           BIGINT NOT NULL,
    cost_usd             DOUBLE PRECISION NOT NULL,
    counterfactual_usd   DOUBLE PRECISION NOT NULL,
    engine_seconds       DOUBLE PRECISION NOT NULL,
    latency_ms           DOUBLE PRECISION NOT NULL,
    ok_latency_ms        DOUBLE PRECISION NOT NULL,
    ttft_ms              DOUBLE PRECISION NOT NULL,
    latency_min_ms       DOUBLE PRECISION NOT NULL,
    latency_max_ms       DOUBLE PRECISION NOT NULL,
    h00                  BIGINT NOT NULL DEFAULT 0,
    h01                  BIGINT NOT NULL DEFAULT 0,
    h02                  BIGINT NOT NULL DEFAULT 0,
    h03                  BIGINT NOT NULL DEFAULT 0,
    h04                  BIGINT NOT NULL DEFAULT 0,
    h05                  BIGINT NOT NULL DEFAULT 0,
    h06                  BIGINT NOT NULL DEFAULT 0,
    h07                  BIGINT NOT NULL DEFAULT 0,
    h08                  BIGINT NOT NULL DEFAULT 0,
    h09                  BIGINT NOT NULL DEFAULT 0,
    h10                  BIGINT NOT NULL DEFAULT 0,
    h11                  BIGINT NOT NULL DEFAULT 0,
    h12                  BIGINT NOT NULL DEFAULT 0,
    h13                  BIGINT NOT NULL DEFAULT 0,
    h14                  BIGINT NOT NULL DEFAULT 0,
    h15                  BIGINT NOT NULL DEFAULT 0,
    h16                  BIGINT NOT NULL DEFAULT 0,
    h17                  BIGINT NOT NULL DEFAULT 0,
    h18                  BIGINT NOT NULL DEFAULT 0,
    h19                  BIGINT NOT NULL DEFAULT 0,
    h20                  BIGINT NOT NULL DEFAULT 0,
    h21                  BIGINT NOT NULL DEFAULT 0,
    h22                  BIGINT NOT NULL DEFAULT 0,
    h23                  BIGINT NOT NULL DEFAULT 0,
    h24                  BIGINT NOT NULL DEFAULT 0,
    h25                  BIGINT NOT NULL DEFAULT 0,
    h26                  BIGINT NOT NULL DEFAULT 0,
    h27                  BIGINT NOT NULL DEFAULT 0,
    h28                  BIGINT NOT NULL DEFAULT 0,
    h29                  BIGINT NOT NULL DEFAULT 0,
    h30                  BIGINT NOT NULL DEFAULT 0,
    h31                  BIGINT NOT NULL DEFAULT 0,
    h32                  BIGINT NOT NULL DEFAULT 0,
    h33                  BIGINT NOT NULL DEFAULT 0,
    h34                  BIGINT NOT NULL DEFAULT 0,
    h35                  BIGINT NOT NULL DEFAULT 0,
    h36                  BIGINT NOT NULL DEFAULT 0,
    h37                  BIGINT NOT NULL DEFAULT 0,
    h38                  BIGINT NOT NULL DEFAULT 0,
    h39                  BIGINT NOT NULL DEFAULT 0,
    h40                  BIGINT NOT NULL DEFAULT 0,
    h41                  BIGINT NOT NULL DEFAULT 0,
    h42                  BIGINT NOT NULL DEFAULT 0,
    h43                  BIGINT NOT NULL DEFAULT 0,
    h44                  BIGINT NOT NULL DEFAULT 0,
    h45                  BIGINT NOT NULL DEFAULT 0,
    h46                  BIGINT NOT NULL DEFAULT 0,
    h47                  BIGINT NOT NULL DEFAULT 0,
    h48                  BIGINT NOT NULL DEFAULT 0,
    h49                  BIGINT NOT NULL DEFAULT 0,
    h50                  BIGINT NOT NULL DEFAULT 0,
    h51                  BIGINT NOT NULL DEFAULT 0,
    h52                  BIGINT NOT NULL DEFAULT 0,
    h53                  BIGINT NOT NULL DEFAULT 0,
    h54                  BIGINT NOT NULL DEFAULT 0,
    h55                  BIGINT NOT NULL DEFAULT 0,
    h56                  BIGINT NOT NULL DEFAULT 0,
    h57                  BIGINT NOT NULL DEFAULT 0,
    h58                  BIGINT NOT NULL DEFAULT 0,
    h59                  BIGINT NOT NULL DEFAULT 0,
    h60                  BIGINT NOT NULL DEFAULT 0,
    h61                  BIGINT NOT NULL DEFAULT 0,
    h62                  BIGINT NOT NULL DEFAULT 0,
    h63                  BIGINT NOT NULL DEFAULT 0,
    h64                  BIGINT NOT NULL DEFAULT 0,
    h65                  BIGINT NOT NULL DEFAULT 0,
    h66                  BIGINT NOT NULL DEFAULT 0,
    h67                  BIGINT NOT NULL DEFAULT 0,
    h68                  BIGINT NOT NULL DEFAULT 0,
    h69                  BIGINT NOT NULL DEFAULT 0,
    h70                  BIGINT NOT NULL DEFAULT 0,
    h71                  BIGINT NOT NULL DEFAULT 0,
    h72                  BIGINT NOT NULL DEFAULT 0,
    h73                  BIGINT NOT NULL DEFAULT 0,
    h74                  BIGINT NOT NULL DEFAULT 0,
    h75                  BIGINT NOT NULL DEFAULT 0,
    h76                  BIGINT NOT NULL DEFAULT 0,
    h77                  BIGINT NOT NULL DEFAULT 0,
    h78                  BIGINT NOT NULL DEFAULT 0,
    h79                  BIGINT NOT NULL DEFAULT 0,
    h80                  BIGINT NOT NULL DEFAULT 0,
    h81                  BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (day, team, key_id, route, backend, backend_kind, model, privacy)
);

CREATE INDEX IF NOT EXISTS ledger_rollup_team_day ON ledger_rollup (team, day);

-- Rollups for the records stored before this migration.
INSERT INTO ledger_rollup (
    day,
    team,
    key_id,
    route,
    backend,
    backend_kind,
    model,
    privacy,
    requests,
    ok_requests,
    errors,
    fallbacks,
    prompt_tokens,
    completion_tokens,
    cached_tokens,
    ok_completion_tokens,
    ttft_count,
    cost_usd,
    counterfactual_usd,
    engine_seconds,
    latency_ms,
    ok_latency_ms,
    ttft_ms,
    latency_min_ms,
    latency_max_ms,
    h00,
    h01,
    h02,
    h03,
    h04,
    h05,
    h06,
    h07,
    h08,
    h09,
    h10,
    h11,
    h12,
    h13,
    h14,
    h15,
    h16,
    h17,
    h18,
    h19,
    h20,
    h21,
    h22,
    h23,
    h24,
    h25,
    h26,
    h27,
    h28,
    h29,
    h30,
    h31,
    h32,
    h33,
    h34,
    h35,
    h36,
    h37,
    h38,
    h39,
    h40,
    h41,
    h42,
    h43,
    h44,
    h45,
    h46,
    h47,
    h48,
    h49,
    h50,
    h51,
    h52,
    h53,
    h54,
    h55,
    h56,
    h57,
    h58,
    h59,
    h60,
    h61,
    h62,
    h63,
    h64,
    h65,
    h66,
    h67,
    h68,
    h69,
    h70,
    h71,
    h72,
    h73,
    h74,
    h75,
    h76,
    h77,
    h78,
    h79,
    h80,
    h81
)
SELECT
    day,
    team,
    key_id,
    route,
    backend,
    backend_kind,
    model,
    privacy,
    COUNT(*),
    SUM(CASE WHEN status < 400 THEN 1 ELSE 0 END),
    SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END),
    SUM(CASE WHEN attempts > 1 THEN 1 ELSE 0 END),
    SUM(prompt_tokens),
    SUM(completion_tokens),
    SUM(cached_tokens),
    SUM(CASE WHEN status < 400 THEN completion_tokens ELSE 0 END),
    COUNT(ttft_ms),
    SUM(cost_usd),
    SUM(counterfactual_usd),
    SUM(engine_seconds),
    SUM(latency_ms),
    SUM(CASE WHEN status < 400 THEN latency_ms ELSE 0 END),
    COALESCE(SUM(ttft_ms), 0),
    MIN(latency_ms),
    MAX(latency_ms),
    SUM(CASE WHEN bucket = 0 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 1 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 2 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 3 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 4 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 5 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 6 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 7 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 8 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 9 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 10 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 11 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 12 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 13 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 14 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 15 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 16 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 17 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 18 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 19 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 20 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 21 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 22 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 23 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 24 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 25 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 26 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 27 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 28 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 29 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 30 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 31 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 32 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 33 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 34 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 35 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 36 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 37 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 38 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 39 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 40 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 41 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 42 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 43 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 44 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 45 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 46 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 47 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 48 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 49 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 50 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 51 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 52 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 53 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 54 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 55 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 56 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 57 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 58 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 59 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 60 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 61 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 62 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 63 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 64 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 65 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 66 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 67 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 68 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 69 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 70 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 71 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 72 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 73 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 74 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 75 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 76 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 77 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 78 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 79 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 80 THEN 1 ELSE 0 END),
    SUM(CASE WHEN bucket = 81 THEN 1 ELSE 0 END)
FROM (
    SELECT ledger.*,
        (ts_ms - ((ts_ms % 86400000) + 86400000) % 86400000) / 86400000 AS day,
        ((CASE WHEN latency_ms >= 1.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 1.189207115002721 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 1.4142135623730951 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 1.681792830507429 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 2.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 2.378414230005442 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 2.8284271247461903 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 3.363585661014858 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 4.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 4.756828460010884 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 5.656854249492381 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 6.727171322029716 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 8.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 9.513656920021768 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 11.313708498984761 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 13.454342644059432 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 16.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 19.027313840043536 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 22.627416997969522 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 26.908685288118864 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 32.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 38.05462768008707 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 45.254833995939045 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 53.81737057623773 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 64.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 76.10925536017415 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 90.50966799187809 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 107.63474115247546 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 128.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 152.2185107203483 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 181.01933598375618 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 215.2694823049509 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 256.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 304.4370214406966 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 362.03867196751236 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 430.5389646099018 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 512.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 608.8740428813932 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 724.0773439350247 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 861.0779292198037 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 1024.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 1217.7480857627863 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 1448.1546878700494 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 1722.1558584396073 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 2048.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 2435.4961715255727 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 2896.309375740099 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 3444.3117168792146 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 4096.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 4870.992343051145 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 5792.618751480198 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 6888.623433758429 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 8192.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 9741.98468610229 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 11585.237502960395 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 13777.246867516858 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 16384.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 19483.96937220458 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 23170.47500592079 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 27554.493735033717 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 32768.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 38967.93874440916 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 46340.95001184158 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 55108.98747006743 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 65536.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 77935.87748881833 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 92681.90002368316 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 110217.97494013487 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 131072.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 155871.75497763665 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 185363.80004736633 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 220435.94988026973 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 262144.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 311743.5099552733 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 370727.60009473265 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 440871.89976053947 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 524288.0 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 623487.0199105466 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 741455.2001894653 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 881743.7995210789 THEN 1 ELSE 0 END) +
            (CASE WHEN latency_ms >= 1048576.0 THEN 1 ELSE 0 END)) AS bucket
    FROM ledger
) AS l
GROUP BY day, team, key_id, route, backend, backend_kind, model, privacy;
