//! One import, start to end: source -> parse -> batch -> store.
//!
//! Memory is bounded by the batch: games are parsed as they arrive, at most
//! `IMPORT_BATCH_SIZE` rows are held, and the batch is emptied once written.
//! Nothing here grows with the user's history, except under the `preload`
//! deduplication strategy, which exists to be measured against `batch`.
//!
//! Provider time is bounded by what is new: an import first reads what the database holds
//! completely of the user's history (`crate::sync`) and asks only for the rest: lichess windows
//! newest first, chess.com months not recorded whole. What a batch completes is recorded in the
//! batch's own transaction.

use std::collections::HashSet;
use std::sync::Arc;

use chrono::Utc;

use crate::config::{Config, DedupStrategy};
use crate::job::{Counters, Job, Platform};
use crate::metrics::Metrics;
use crate::pgn::{Framed, GameRow, parse_game};
use crate::spool::{Extent, Spool, SpoolError};
use crate::store::{Store, StoreError, SyncState};
use crate::sync::{Coverage, MonthRecord, Pending, SyncProgress, Validators, Window, WindowKind};
use crate::upstream::{ChessComSource, Client, Item, LichessSource, MonthRead, UpstreamError};

/// Why an import failed; the message is what the job's `error` says.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The provider answered 404 with an empty body: its answer for an unknown or closed account.
    #[error("user {user} not found on {platform} (unknown or closed account)")]
    UserNotFound {
        /// The username.
        user: String,
        /// The platform name.
        platform: &'static str,
    },
    /// The provider refused (any status but an empty 404) or kept rate limiting: its message names it.
    #[error(transparent)]
    Refused(UpstreamError),
    /// The provider's bad day (a 5xx, an error page, a transport error, a stream that broke
    /// without progress): what was read is committed, and the import waits in the queue.
    #[error("{source}")]
    ProviderTrouble {
        /// The provider.
        platform: Platform,
        /// What it answered.
        #[source]
        source: UpstreamError,
    },
    /// Any other upstream failure.
    #[error("{platform} upstream: {source}")]
    Upstream {
        /// The platform name.
        platform: &'static str,
        /// The cause.
        #[source]
        source: UpstreamError,
    },
    /// The database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A chess.com month could not be kept on disk while it was chosen from (`crate::spool`).
    #[error("cannot keep the chess.com month on disk: {0}")]
    Spool(#[from] SpoolError),
    /// The process is stopping; what was read is committed and the job resumes at the next start.
    #[error("interrupted by shutdown; resumes at the next start")]
    Interrupted,
}

/// An import that stopped before its end: why, and the counters of what it did (those its
/// committed batches wrote).
#[derive(Debug)]
pub struct ImportFailure {
    /// Why.
    pub error: ImportError,
    /// What it did.
    pub counters: Counters,
}

/// What every import needs, shared.
pub struct ImportContext {
    /// The database.
    pub store: Store,
    /// The upstream client.
    pub client: Client,
    /// The configuration.
    pub config: Arc<Config>,
    /// Process-wide counters.
    pub metrics: Arc<Metrics>,
    /// Becomes true when the process is asked to stop.
    pub stopping: tokio::sync::watch::Receiver<bool>,
}

/// Resolves once `rx` says the process is stopping.
async fn stopped(mut rx: tokio::sync::watch::Receiver<bool>) {
    while !*rx.borrow_and_update() {
        if rx.changed().await.is_err() {
            return std::future::pending().await;
        }
    }
}

/// Stored ids known before the stream starts (`preload` strategy only).
async fn preload_ids(ctx: &ImportContext, job: &Job) -> Result<HashSet<String>, StoreError> {
    let mut known = HashSet::new();
    let mut after: Option<String> = None;
    loop {
        let page = ctx
            .store
            .stored_ids_page(
                &job.user_id,
                job.platform,
                after.as_deref(),
                ctx.config.import.existing_games_page_size,
            )
            .await?;
        let full = page.len() == ctx.config.import.existing_games_page_size;
        after = page.last().cloned();
        known.extend(page);
        if !full {
            return Ok(known);
        }
    }
}

struct Batcher<'a> {
    ctx: &'a ImportContext,
    job: &'a Job,
    rows: Vec<GameRow>,
    preloaded: Option<HashSet<String>>,
    counters: Counters,
    /// lichess: the window being read, and how far it is complete.
    coverage: Option<Coverage>,
    /// What the next write completes of the user's history.
    sync: SyncProgress,
    /// The `hungry` test build keeps a copy of every row until the import ends: memory that grows
    /// with a user's history, the regression the harness's gate must catch (`make gate-check`).
    #[cfg(feature = "hungry")]
    kept: Vec<GameRow>,
}

/// A game as the batch or a month's survey holds it, known by the key it is stored under.
trait Keyed {
    fn key(&self) -> &str;
}

impl Keyed for GameRow {
    fn key(&self) -> &str {
        &self.provider_game_id
    }
}

impl Keyed for Surveyed {
    fn key(&self) -> &str {
        &self.key
    }
}

impl Batcher<'_> {
    /// Games the limit still leaves room for: the job's limit less what it imported.
    fn room(&self) -> usize {
        usize::try_from(self.job.limit - self.counters.games_imported).unwrap_or(0)
    }

    /// Whether the limit is reached: nothing more is to be read.
    fn limit_reached(&self) -> bool {
        self.room() == 0
    }

    /// Keeps of `games` only the new ones: a game seen before in `games` (a stream read again
    /// repeats games; each counts once) or stored already is dropped and counted as skipped.
    /// The database is asked only when more than `ask_over` games are left after the repeats
    /// (with fewer, the insert itself tells which were stored); preloaded ids are always used.
    async fn keep_new<T: Keyed>(&mut self, games: &mut Vec<T>, ask_over: usize) -> Result<(), StoreError> {
        let before = games.len();
        let mut seen = HashSet::with_capacity(games.len());
        games.retain(|g| seen.insert(g.key().to_string()));
        drop(seen);
        self.counters.games_skipped_existing += (before - games.len()) as i64;
        let before = games.len();
        let stored: HashSet<String> = match &self.preloaded {
            Some(known) => games
                .iter()
                .filter(|g| known.contains(g.key()))
                .map(|g| g.key().to_string())
                .collect(),
            None if games.len() <= ask_over => HashSet::new(),
            None => {
                let keys: Vec<&str> = games.iter().map(Keyed::key).collect();
                self.stored_among(&keys).await?
            }
        };
        games.retain(|g| !stored.contains(g.key()));
        self.counters.games_skipped_existing += (before - games.len()) as i64;
        Ok(())
    }

    /// Which of `keys` are stored already, asked a page (`EXISTING_GAMES_PAGE_SIZE`) at a time.
    async fn stored_among(&self, keys: &[&str]) -> Result<HashSet<String>, StoreError> {
        let mut stored = HashSet::new();
        for page in keys.chunks(self.ctx.config.import.existing_games_page_size) {
            stored.extend(
                with_retry(&self.job.import_id, "checking stored games", || {
                    self.ctx
                        .store
                        .stored_among(&self.job.user_id, self.job.platform, page)
                })
                .await?,
            );
        }
        Ok(stored)
    }

    /// Writes the batch's new games (at most the remaining limit) and what they complete of the
    /// user's history, then empties it.
    async fn flush(&mut self) -> Result<(), StoreError> {
        self.write(false).await
    }

    /// [`Batcher::flush`] at the end of a lichess window's stream: the whole window is complete.
    async fn finish_window(&mut self) -> Result<(), StoreError> {
        self.write(true).await
    }

    async fn write(&mut self, window_ended: bool) -> Result<(), StoreError> {
        let had_rows = !self.rows.is_empty();
        let room = self.room();
        // When the whole batch fits the limit, the insert itself tells which games were stored
        // (ON CONFLICT DO NOTHING): asking first would only cost a round trip.
        let mut rows = std::mem::take(&mut self.rows);
        let kept = self.keep_new(&mut rows, room).await;
        self.rows = rows;
        kept?;
        // Games beyond the limit are left out, and so is the part of the window they are in.
        let cut = self.rows.len() > room;
        self.rows.truncate(room);
        if let Some(coverage) = &self.coverage {
            self.sync.range = if window_ended && !cut {
                coverage.finished()
            } else if cut {
                let oldest_kept = self.rows.last().and_then(|r| r.played_at);
                oldest_kept.and_then(|at| coverage.complete(Some(at.timestamp_millis())))
            } else {
                coverage.complete(None)
            };
        }
        if !had_rows && self.sync.is_empty() {
            return Ok(());
        }
        if self.rows.is_empty() {
            with_retry(&self.job.import_id, "writing progress", || {
                self.ctx.store.write_progress(
                    self.job,
                    &self.ctx.config.queue.instance_id,
                    &self.counters,
                    &self.sync,
                )
            })
            .await?;
        } else {
            let inserted = with_retry(&self.job.import_id, "writing a batch", || {
                self.ctx.store.write_batch(
                    self.job,
                    &self.ctx.config.queue.instance_id,
                    &self.rows,
                    &self.counters,
                    Utc::now(),
                    &self.sync,
                )
            })
            .await?;
            let after = self.counters.after_batch(self.rows.len(), inserted);
            let raced = after.games_skipped_existing - self.counters.games_skipped_existing;
            self.counters = after;
            self.ctx.metrics.games_imported(self.job.platform, inserted);
            tracing::debug!(import_id = %self.job.import_id, inserted, raced, "batch written");
        }
        self.rows.clear();
        self.sync = SyncProgress::default();
        Ok(())
    }
}

/// One surveyed game of a chess.com month: all that is kept of it in memory beyond one batch.
struct Surveyed {
    /// When it ended, ms since the epoch; `None` sorts last.
    end_ms: Option<i64>,
    /// Its place in the month as received: ties on the end time keep this order.
    arrival: usize,
    /// The key it is stored under.
    key: String,
    /// Where its PGN lies in the spool.
    extent: Extent,
}

/// The games of one chess.com month, surveyed as the month arrives and before any is stored: the
/// month PGN's order is not documented, so when the limit ends inside a month the newest of it
/// (by end time) must be chosen. A small key per game is kept in memory, the game itself in the
/// spool (`crate::spool`); the rows only while they fit one batch.
#[derive(Default)]
struct MonthSurvey {
    /// Each game of the month that parsed.
    games: Vec<Surveyed>,
    /// The rows, while the month has not outgrown a batch: such a month is never read back.
    held: Option<Vec<GameRow>>,
}

/// What to store of a surveyed month.
enum Choice {
    /// Nothing: every game is stored already.
    Nothing,
    /// These rows, held from the survey.
    Held(Vec<GameRow>),
    /// The games at these extents of the spool, in the order they arrived.
    Spooled(Vec<Extent>),
}

impl MonthSurvey {
    fn new(batch: usize) -> MonthSurvey {
        MonthSurvey {
            games: Vec::new(),
            held: Some(Vec::with_capacity(batch.min(1024))),
        }
    }

    /// Notes a game, whose PGN is at `extent` in the spool.
    fn push(&mut self, row: GameRow, extent: Extent, batch: usize) {
        let end = row.ended_at.map(|t| t.timestamp_millis());
        self.games.push(Surveyed {
            end_ms: end,
            arrival: self.games.len(),
            key: row.provider_game_id.clone(),
            extent,
        });
        if let Some(held) = &mut self.held {
            if held.len() < batch {
                held.push(row);
            } else {
                self.held = None;
            }
        }
    }
}

impl Batcher<'_> {
    /// Decides what to store of a surveyed month: its new games, and when more are new than the
    /// limit leaves room for, the newest by end time (ties: the order received).
    async fn choose(&mut self, survey: MonthSurvey) -> Result<(Choice, bool), StoreError> {
        let MonthSurvey { mut games, held } = survey;
        // A month read again after a break repeats games; a survey is always checked against
        // the database, since the limit is applied after (newest first).
        self.keep_new(&mut games, 0).await?;
        if games.is_empty() {
            return Ok((Choice::Nothing, true));
        }
        let room = self.room();
        let whole = games.len() <= room;
        if !whole {
            // Newest first; a game without an end time after those with one.
            games.sort_by(|a, b| b.end_ms.cmp(&a.end_ms).then(a.arrival.cmp(&b.arrival)));
            games.truncate(room);
        }
        let choice = match held {
            Some(mut rows) => {
                let mut wanted: HashSet<String> = games.into_iter().map(|g| g.key).collect();
                rows.retain(|r| wanted.remove(&r.provider_game_id));
                Choice::Held(rows)
            }
            None => {
                // In the order they arrived: the spool is read forward.
                games.sort_by_key(|g| g.arrival);
                Choice::Spooled(games.into_iter().map(|g| g.extent).collect())
            }
        };
        Ok((choice, whole))
    }

    /// Adds a row to the batch and writes the batch when it is full.
    async fn push(&mut self, row: GameRow) -> Result<(), StoreError> {
        #[cfg(feature = "hungry")]
        self.kept.push(row.clone());
        self.rows.push(row);
        // Also written once it holds as many games as the limit still allows: reading on to fill
        // the batch would only fetch games the limit then leaves out.
        if self.rows.len() >= self.ctx.config.import.batch_size || self.rows.len() >= self.room() {
            self.flush().await?;
        }
        Ok(())
    }
}

/// Attempts at each database step of a batch; a step is all or nothing, so a retry never doubles a
/// game or its counters (a batch and its job's counters commit in one transaction).
///
/// Ten, with waits from 100 ms doubling up to [`DB_RETRY_MAX_WAIT`] (about 11 s in all, besides
/// each attempt's own wait for a connection): a managed host (Neon, Supabase, RDS) restarting its
/// compute or its pooler ends every backend (57P01), refuses new ones while it starts, and may do
/// it again a moment later. Three attempts 200 and 400 ms apart failed imports whose backends were
/// ended every 150 ms for a few seconds (`tests/it/db_restarts.rs`), where waiting was enough.
const DB_ATTEMPTS: u32 = 10;

/// The longest wait between two attempts of a database step.
const DB_RETRY_MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Runs a database step, again after a failure (a lost connection is replaced by the pool), at
/// most [`DB_ATTEMPTS`] times with waits doubling from 100 ms.
pub(crate) async fn with_retry<T, F, Fut>(
    import_id: &str,
    step: &'static str,
    mut op: F,
) -> Result<T, StoreError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut attempt = 1;
    let mut wait = std::time::Duration::from_millis(100);
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < DB_ATTEMPTS && e.is_transient() => {
                tracing::warn!(import_id, step, attempt, wait_ms = wait.as_millis() as u64, error = %e,
                    "database step failed, retrying");
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(DB_RETRY_MAX_WAIT);
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Runs one import to its end and returns its final counters.
pub async fn run_import(ctx: &ImportContext, job: &Job) -> Result<Counters, ImportFailure> {
    let mut batcher = Batcher {
        ctx,
        job,
        rows: Vec::with_capacity(ctx.config.import.batch_size.min(1024)),
        preloaded: None,
        counters: job.counters,
        coverage: None,
        sync: SyncProgress::default(),
        #[cfg(feature = "hungry")]
        kept: Vec::new(),
    };
    match import_into(&mut batcher).await {
        Ok(()) => Ok(batcher.counters),
        // The games read before the trouble are whole: kept, with the part of the window they
        // complete, so that the import resumes after them.
        Err(e @ ImportError::ProviderTrouble { .. }) => match batcher.flush().await {
            Ok(()) => Err(ImportFailure {
                error: e,
                counters: batcher.counters,
            }),
            Err(store) => Err(ImportFailure {
                error: store.into(),
                counters: batcher.counters,
            }),
        },
        Err(error) => Err(ImportFailure {
            error,
            counters: batcher.counters,
        }),
    }
}

async fn import_into(b: &mut Batcher<'_>) -> Result<(), ImportError> {
    let (ctx, job) = (b.ctx, b.job);
    if b.limit_reached() {
        return Ok(());
    }
    if ctx.config.import.dedup_strategy == DedupStrategy::Preload {
        b.preloaded = Some(preload_ids(ctx, job).await?);
    }
    let state = with_retry(&job.import_id, "reading what is stored", || {
        ctx.store.sync_state(&job.user_id, job.platform)
    })
    .await?;
    match job.platform {
        Platform::Lichess => import_lichess(b, &state).await,
        Platform::ChessCom => import_chess_com(b, &state).await,
    }
}

/// What a provider's failure means for the job.
fn upstream_error(job: &Job) -> impl Fn(UpstreamError) -> ImportError + '_ {
    let platform = job.platform.as_str();
    move |source| match source {
        UpstreamError::NotFound => ImportError::UserNotFound {
            user: job.user_id.clone(),
            platform,
        },
        source if source.is_transient() => ImportError::ProviderTrouble {
            platform: job.platform,
            source,
        },
        source @ UpstreamError::Refused { .. } => ImportError::Refused(source),
        source => ImportError::Upstream { platform, source },
    }
}

/// The next item of a source, unless the process is stopping: then the batch read so far is
/// committed and the import returns `Interrupted` (a stalled stream must not hold up a shutdown).
async fn next_unless_stopping<T>(
    b: &mut Batcher<'_>,
    next: impl std::future::Future<Output = Result<T, UpstreamError>>,
) -> Result<T, ImportError> {
    let upstream = upstream_error(b.job);
    tokio::select! {
        biased;
        () = stopped(b.ctx.stopping.clone()) => {
            b.flush().await?;
            Err(ImportError::Interrupted)
        }
        next = next => next.map_err(upstream),
    }
}

/// Parses a framed game of `platform`.
fn parse(platform: Platform, framed: Framed) -> Result<GameRow, crate::pgn::ParseFailure> {
    match framed {
        Framed::Game(bytes) => parse_game(platform, &bytes),
        Framed::Oversized => Err(crate::pgn::ParseFailure::Oversized),
    }
}

/// Parses a framed game; a failure is counted and logged, and `None`.
fn parse_counted(b: &mut Batcher<'_>, framed: Framed) -> Option<GameRow> {
    match parse(b.job.platform, framed) {
        Ok(row) => Some(row),
        Err(reason) => {
            b.counters.games_failed_parse += 1;
            b.ctx.metrics.game_failed_parse();
            tracing::warn!(import_id = %b.job.import_id, user = %b.job.user_id,
                platform = b.job.platform.as_str(), %reason, "game skipped: does not parse");
            None
        }
    }
}

/// A lichess game still being played (exported because of `ongoing=true`): not stored yet.
fn is_ongoing(row: &GameRow) -> bool {
    row.result.as_deref() == Some("*") && row.termination.as_deref() == Some("Unterminated")
}

/// lichess: the windows outside what is stored, newest first, until the limit is reached.
async fn import_lichess(b: &mut Batcher<'_>, state: &SyncState) -> Result<(), ImportError> {
    let windows = crate::sync::windows(&state.ranges, &state.pending);
    tracing::debug!(import_id = %b.job.import_id, ranges = state.ranges.len(),
        pending = state.pending.len(), windows = windows.len(), "lichess windows planned");
    // Each window ends written: by `finish_window`, or by the flush that reached the limit.
    for window in windows {
        read_window(b, window).await?;
        if b.limit_reached() {
            break;
        }
    }
    Ok(())
}

/// Reads one lichess window to its end or to the limit.
async fn read_window(b: &mut Batcher<'_>, window: Window) -> Result<(), ImportError> {
    let (ctx, job) = (b.ctx, b.job);
    let mut source = LichessSource::open(
        &ctx.client,
        &ctx.config.upstream.lichess_base_url,
        &job.user_id,
        &window,
    )
    .await
    .map_err(upstream_error(job))?;
    let target = match &window.kind {
        WindowKind::Pending(id) => Some(id.clone()),
        _ => None,
    };
    // A pending game seen finished, or not seen at all (gone), is no longer pending.
    let mut target_still_ongoing = false;
    b.coverage = Some(Coverage::new(window));
    while let Some(framed) = next_unless_stopping(b, source.next()).await? {
        b.counters.games_fetched += 1;
        let Some(row) = parse_counted(b, framed) else {
            continue;
        };
        if let Some(at) = row.played_at {
            source.note_played_at(at);
            if let Some(c) = &mut b.coverage {
                c.saw(at.timestamp_millis());
            }
        }
        if is_ongoing(&row) {
            if target.as_deref() == Some(row.provider_game_id.as_str()) {
                target_still_ongoing = true;
            } else if let Some(at) = row.played_at {
                b.sync.pending_found.push(Pending {
                    game_id: row.provider_game_id,
                    created_ms: at.timestamp_millis(),
                });
            }
            continue;
        }
        b.push(row).await?;
        if b.limit_reached() {
            return Ok(());
        }
    }
    if let Some(id) = target
        && !target_still_ongoing
    {
        b.sync.pending_done.push(id);
    }
    b.finish_window().await?;
    Ok(())
}

/// chess.com: month by month, newest first, as planned from the recorded months. Each month is
/// downloaded once: surveyed as it arrives, its games spooled (see `MonthSurvey`), then the games
/// chosen are stored and the month is recorded whole or partial with its last batch.
async fn import_chess_com(b: &mut Batcher<'_>, state: &SyncState) -> Result<(), ImportError> {
    let (ctx, job) = (b.ctx, b.job);
    let mut source = ChessComSource::open(
        &ctx.client,
        &ctx.config.upstream.chess_com_base_url,
        &job.user_id,
        &state.months,
    )
    .await
    .map_err(upstream_error(job))?;
    // Opened before any month is asked: a TMPDIR that cannot take it fails the import before it
    // costs chess.com a request.
    let mut spool = Spool::create_in(&std::env::temp_dir())?;
    let batch = ctx.config.import.batch_size;
    let mut survey = MonthSurvey::new(batch);
    while let Some(item) = next_unless_stopping(b, source.next()).await? {
        match item {
            Item::Game(framed) => {
                b.counters.games_fetched += 1;
                if let Some(row) = parse_counted(b, framed) {
                    let extent = spool.append(row.pgn.as_bytes())?;
                    survey.push(row, extent, batch);
                }
            }
            Item::MonthUnchanged(read) => {
                tracing::debug!(import_id = %job.import_id, month = %read.month, "chess.com month unchanged (304)");
                // Checked now: it goes to the back of the months asked again in turn.
                b.sync.month = Some(MonthRecord {
                    month: read.month,
                    complete: true,
                    validators: read.validators,
                    checked_ms: None,
                });
                b.flush().await?;
            }
            Item::MonthEnd(read) => {
                let survey = std::mem::replace(&mut survey, MonthSurvey::new(batch));
                store_month(b, survey, read, &mut spool).await?;
                if b.limit_reached() {
                    return Ok(());
                }
            }
        }
    }
    b.flush().await?;
    Ok(())
}

/// Stores what is chosen of a surveyed month, from the held rows or the spool, and records the
/// month with the last batch; then empties the spool for the next month.
async fn store_month(
    b: &mut Batcher<'_>,
    survey: MonthSurvey,
    read: MonthRead,
    spool: &mut Spool,
) -> Result<(), ImportError> {
    let spooled = spool.len();
    let (choice, whole) = b.choose(survey).await?;
    let record = MonthRecord {
        checked_ms: None,
        month: read.month,
        complete: whole,
        // A partial month is read whole again: no validators for it.
        validators: if whole {
            read.validators
        } else {
            Validators::default()
        },
    };
    match choice {
        Choice::Nothing => {}
        Choice::Held(rows) => {
            for row in rows {
                b.push(row).await?;
            }
        }
        Choice::Spooled(extents) => {
            tracing::debug!(import_id = %b.job.import_id, month = %read.month, spooled_bytes = spooled,
                chosen = extents.len(), "chess.com month read back from the spool");
            read_back(b, spool, &extents).await?;
        }
    }
    spool.clear()?;
    b.sync.month = Some(record);
    b.flush().await?;
    Ok(())
}

/// Stores the games at `extents` of the spool. A stop commits the batch read so far and returns
/// `Interrupted`: the month is not recorded, so the next start surveys it again and chooses the
/// same games less those stored.
async fn read_back(b: &mut Batcher<'_>, spool: &Spool, extents: &[Extent]) -> Result<(), ImportError> {
    let mut pgn = Vec::new();
    for &extent in extents {
        if *b.ctx.stopping.borrow() {
            b.flush().await?;
            return Err(ImportError::Interrupted);
        }
        spool.read(extent, &mut pgn)?;
        // It parsed as it arrived, and the spool holds the PGN it parsed to: failing now means
        // the file changed under us, which must not pass for a game that does not parse.
        let row = parse_game(b.job.platform, &pgn).map_err(|reason| {
            SpoolError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the game at byte {} read back does not parse: {reason}",
                    extent.offset
                ),
            ))
        })?;
        b.push(row).await?;
    }
    Ok(())
}
