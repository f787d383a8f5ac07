CREATE TABLE IF NOT EXISTS games (
    id               INTEGER PRIMARY KEY,
    user_id          TEXT    NOT NULL,
    platform         TEXT    NOT NULL CHECK (platform IN ('lichess', 'chess.com')),
    provider_game_id TEXT    NOT NULL,
    played_at        TEXT,
    white            TEXT,
    black            TEXT,
    white_elo        INTEGER,
    black_elo        INTEGER,
    result           TEXT,
    time_control     TEXT,
    eco              TEXT,
    opening          TEXT,
    termination      TEXT,
    variant          TEXT    NOT NULL,
    ply_count        INTEGER NOT NULL,
    pgn              TEXT    NOT NULL,
    imported_at      TEXT    NOT NULL,
    UNIQUE (user_id, platform, provider_game_id)
);

CREATE TABLE IF NOT EXISTS import_jobs (
    id                     TEXT    PRIMARY KEY,
    user_id                TEXT    NOT NULL,
    platform               TEXT    NOT NULL CHECK (platform IN ('lichess', 'chess.com')),
    game_limit             INTEGER NOT NULL,
    status                 TEXT    NOT NULL CHECK (status IN ('queued', 'running', 'completed', 'failed')),
    games_fetched          INTEGER NOT NULL DEFAULT 0,
    games_imported         INTEGER NOT NULL DEFAULT 0,
    games_skipped_existing INTEGER NOT NULL DEFAULT 0,
    games_failed_parse     INTEGER NOT NULL DEFAULT 0,
    error                  TEXT,
    created_at             TEXT    NOT NULL,
    started_at             TEXT,
    finished_at            TEXT
);

CREATE INDEX IF NOT EXISTS import_jobs_by_status ON import_jobs (status, created_at);
