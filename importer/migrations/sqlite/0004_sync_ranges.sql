-- What part of each user's history is held completely (see src/sync.rs): an import asks the
-- provider only for what lies outside. Written in the transaction of the batch that completes it.
-- lichess: games created in [lo_ms, hi_ms) (ms since the epoch) are stored.
CREATE TABLE IF NOT EXISTS sync_ranges (
    user_id  TEXT    NOT NULL,
    platform TEXT    NOT NULL CHECK (platform IN ('lichess', 'chess.com')),
    lo_ms    INTEGER NOT NULL,
    hi_ms    INTEGER NOT NULL,
    PRIMARY KEY (user_id, platform, lo_ms)
);
-- lichess games that were still being played when their range was read: fetched once finished.
CREATE TABLE IF NOT EXISTS sync_pending (
    user_id          TEXT    NOT NULL,
    platform         TEXT    NOT NULL CHECK (platform IN ('lichess', 'chess.com')),
    provider_game_id TEXT    NOT NULL,
    created_ms       INTEGER NOT NULL,
    PRIMARY KEY (user_id, platform, provider_game_id)
);
-- chess.com months ('YYYY/MM'), whole or partial, with the validators they came with.
CREATE TABLE IF NOT EXISTS sync_months (
    user_id       TEXT    NOT NULL,
    platform      TEXT    NOT NULL CHECK (platform IN ('lichess', 'chess.com')),
    month         TEXT    NOT NULL,
    complete      BOOLEAN NOT NULL,
    etag          TEXT,
    last_modified TEXT,
    PRIMARY KEY (user_id, platform, month)
);
