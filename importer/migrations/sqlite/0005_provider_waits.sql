-- An import that met a provider's bad day (5xx, an HTML error page, a broken or stalled stream)
-- waits in the queue instead of failing: not claimed before `not_before` (Unix ms). Since when
-- its provider has brought nothing new (`provider_wait_since`, Unix ms), what the provider last
-- answered, and the milliseconds it has waited for providers in all (apart from the queue).
ALTER TABLE import_jobs ADD COLUMN not_before INTEGER;
ALTER TABLE import_jobs ADD COLUMN provider_wait_since INTEGER;
ALTER TABLE import_jobs ADD COLUMN provider_last_answer TEXT;
ALTER TABLE import_jobs ADD COLUMN provider_wait_ms INTEGER NOT NULL DEFAULT 0;
-- When a month's answer was last taken (read, or confirmed by a 304), Unix ms: a month served short
-- once is asked again, conditionally, in turn with the other months checked longest ago.
ALTER TABLE sync_months ADD COLUMN checked_ms INTEGER;
