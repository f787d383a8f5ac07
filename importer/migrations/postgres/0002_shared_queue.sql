-- The queue lives in import_jobs so that several importer processes can share
-- it: a running job belongs to `owner` until `lease_until` (Unix ms), and a job
-- whose owner stopped renewing is taken over. `seq` gives the queue order.
ALTER TABLE import_jobs ADD COLUMN IF NOT EXISTS owner TEXT;
ALTER TABLE import_jobs ADD COLUMN IF NOT EXISTS lease_until BIGINT;
ALTER TABLE import_jobs ADD COLUMN IF NOT EXISTS seq BIGSERIAL;
-- Jobs left running by a version without leases have no owner to wait for.
UPDATE import_jobs SET status = 'queued' WHERE status = 'running' AND owner IS NULL;
-- One queued or running import per user and platform, across every process.
CREATE UNIQUE INDEX IF NOT EXISTS import_jobs_one_active
    ON import_jobs (user_id, platform) WHERE status IN ('queued', 'running');
CREATE INDEX IF NOT EXISTS import_jobs_queue ON import_jobs (seq) WHERE status IN ('queued', 'running');
