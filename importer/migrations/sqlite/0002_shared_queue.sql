-- The queue lives in import_jobs: a running job belongs to `owner` until
-- `lease_until` (Unix ms). The queue order is the rowid.
ALTER TABLE import_jobs ADD COLUMN owner TEXT;
ALTER TABLE import_jobs ADD COLUMN lease_until INTEGER;
-- One queued or running import per user and platform.
CREATE UNIQUE INDEX IF NOT EXISTS import_jobs_one_active
    ON import_jobs (user_id, platform) WHERE status IN ('queued', 'running');
