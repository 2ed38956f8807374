//! The seed article's three-stage migration: an orchestrator chains `activity_one`,
//! `activity_two` and `activity_three`, passing an `ActivityStatus` from one to the next;
//! each activity moves records in batches and checkpoints the last processed id, so a
//! process killed at any moment resumes where it stopped instead of starting over.
//!
//! ```text
//! cargo run --release --example migration -- --store DIR --records N
//! ```
//!
//! `DIR/app` is the application's own fjall database (a generated `source` table and the
//! `target` table the stages fill; the seed's Table Storage); `DIR/durable` is the workflow
//! store. Kill the process (even with `kill -9`) and run the same command again: it
//! resumes instance `migration`, finishes, and verifies that every record went through all
//! three stages exactly once. The last line is `migrated N records through 3 stages`
//! (exit 0), or the records that are wrong are listed (exit 1). `RUST_LOG=info` shows the
//! runtime's own logs on stderr.
//!
//! Without `--store`, each run starts fresh: it migrates 100,000 records in a new
//! directory under the system's temp dir, prints the command that resumes it there, and
//! removes the directory once the migration is verified (a killed or failed run keeps it,
//! to be resumed or inspected).

use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use durable_core::record::Status;
use durable_core::{
    ActivityContext, ActivityError, FjallStore, OrchestrationContext, Runtime, Store, activity,
    orchestrator,
};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode, UserKey, UserValue};
use serde::{Deserialize, Serialize};

/// The fixed instance id: a second run finds the instance the first one started.
const INSTANCE_ID: &str = "migration";
/// How long `main` waits for the migration before giving up (it keeps its progress).
const WAIT: Duration = Duration::from_secs(3600);
/// The key in `meta` that records a completed generation of the source table.
const SOURCE_RECORDS_KEY: &[u8] = b"source-records";

#[derive(Debug, Parser)]
#[command(about = "Migrates generated records through three durable stages")]
struct Args {
    /// Directory of the application data (`app/`) and of the durable store (`durable/`);
    /// run again with the same one to resume [default: a new directory under the temp
    /// dir, removed after a verified run].
    #[arg(long)]
    store: Option<PathBuf>,
    /// How many source records to generate on the first run [default: 100000].
    #[arg(long)]
    records: Option<u64>,
    /// How many records each activity moves between two checkpoints.
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    batch: u64,
}

// ---- The status passed along the chain (the seed's `ActivityStatus`) ----

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct ActivityStatus {
    /// The last record id processed by the latest stage that ran; `None` before any.
    last_processed_id: Option<u64>,
    processing_status: ProcessingStatus,
    processing_stage: ProcessingStage,
    /// Set by the activities. The seed sets `LastUpdated = DateTime.UtcNow` in the
    /// orchestrator, which would differ on every replay; here only activities read the clock.
    last_updated_unix_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
enum ProcessingStatus {
    New,
    InProgress,
    Complete,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[expect(clippy::enum_variant_names, reason = "the seed article's names")]
enum ProcessingStage {
    ActivityOne,
    ActivityTwo,
    ActivityThree,
}

impl ProcessingStage {
    fn number(self) -> u8 {
        match self {
            ProcessingStage::ActivityOne => 1,
            ProcessingStage::ActivityTwo => 2,
            ProcessingStage::ActivityThree => 3,
        }
    }
}

// ---- The orchestrator: the seed's `RunOrchestrator` ----

/// The failure of the migration: the last status an activity returned and what went wrong.
#[derive(Debug, Serialize, Deserialize)]
struct MigrationFailed {
    status: ActivityStatus,
    error: String,
}

impl std::fmt::Display for MigrationFailed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "migration failed in stage {}: {}",
            self.status.processing_stage.number(),
            self.error
        )
    }
}

#[orchestrator]
async fn migrate(ctx: OrchestrationContext, _input: ()) -> Result<ActivityStatus, MigrationFailed> {
    let mut status = ActivityStatus {
        last_processed_id: None,
        processing_status: ProcessingStatus::New,
        processing_stage: ProcessingStage::ActivityOne,
        last_updated_unix_ms: None,
    };

    // The seed's `try`. Each awaited result is recorded in the instance's history, which
    // is the seed's "save processing state": after a crash these calls are not run again.
    let chained: Result<(), ActivityError> = async {
        status = ctx.call(activity_one, status.clone()).await?;

        status.processing_status = ProcessingStatus::New;
        status.processing_stage = ProcessingStage::ActivityTwo;

        status = ctx.call(activity_two, status.clone()).await?;

        status.processing_status = ProcessingStatus::New;
        status.processing_stage = ProcessingStage::ActivityThree;

        status = ctx.call(activity_three, status.clone()).await?;
        Ok(())
    }
    .await;

    // The seed's `catch`: the error is recorded as the instance's failure, next to the
    // last status an activity returned.
    match chained {
        Ok(()) => Ok(status),
        Err(error) => Err(MigrationFailed {
            status,
            error: error.to_string(),
        }),
    }
}

// ---- The activities: the seed's `ActivityOne` and its two siblings ----

#[activity]
async fn activity_one(
    ctx: ActivityContext,
    status: ActivityStatus,
) -> Result<ActivityStatus, MigrationError> {
    run_stage(&ctx, status, ProcessingStage::ActivityOne).await
}

#[activity]
async fn activity_two(
    ctx: ActivityContext,
    status: ActivityStatus,
) -> Result<ActivityStatus, MigrationError> {
    run_stage(&ctx, status, ProcessingStage::ActivityTwo).await
}

#[activity]
async fn activity_three(
    ctx: ActivityContext,
    status: ActivityStatus,
) -> Result<ActivityStatus, MigrationError> {
    run_stage(&ctx, status, ProcessingStage::ActivityThree).await
}

/// The durable progress checkpoint of one stage, saved after every batch.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
struct Checkpoint {
    last_id: u64,
    processed: u64,
}

/// The body the three activities share: pass through if the status is another stage's,
/// else process every record from the last checkpoint on.
async fn run_stage(
    ctx: &ActivityContext,
    mut status: ActivityStatus,
    stage: ProcessingStage,
) -> Result<ActivityStatus, MigrationError> {
    let n = stage.number();
    if status.processing_stage != stage {
        println!(
            "stage {n}: last processing state has stage {:?}, passing through",
            status.processing_stage
        );
        return Ok(status);
    }
    status.processing_status = ProcessingStatus::InProgress;

    let tables = ctx.state::<Tables>();
    let total = tables.records;
    let batch = ctx.state::<BatchSize>().0;
    let mut checkpoint = ctx.progress::<Checkpoint>()?;
    match checkpoint {
        Some(c) => println!(
            "resuming stage {n} at id {} ({}/{total} records done, attempt {})",
            c.last_id + 1,
            c.processed,
            ctx.attempt()
        ),
        None if ctx.attempt() > 1 => println!(
            "resuming stage {n} at id 0 (attempt {}, no batch was checkpointed)",
            ctx.attempt()
        ),
        None => println!("stage {n}: migrating {total} records"),
    }

    let mut skipped = 0;
    loop {
        let after = checkpoint.map(|c| c.last_id);
        // fjall blocks (the batch commit waits for fsync): let tokio move other tasks off
        // this worker meanwhile.
        let done = tokio::task::block_in_place(|| tables.apply_batch(stage, after, batch))?;
        let Some(done) = done else { break };
        let before = checkpoint.map_or(0, |c| c.processed);
        let next = Checkpoint {
            last_id: done.last_id,
            processed: before + done.count,
        };
        // The batch is on disk; now the checkpoint. A crash in between redoes the batch,
        // and `apply_batch` skips the records it already changed.
        ctx.save_progress(&next).await?;
        checkpoint = Some(next);
        skipped += done.skipped;
        if next.processed * 10 / total.max(1) > before * 10 / total.max(1) {
            println!("stage {n}: {}/{total} records", next.processed);
        }
    }

    status.last_processed_id = checkpoint.map(|c| c.last_id);
    status.processing_status = ProcessingStatus::Complete;
    status.last_updated_unix_ms = Some(unix_ms());
    let skipped = match skipped {
        0 => String::new(),
        n => format!(" ({n} were already done, skipped)"),
    };
    println!(
        "stage {n}: all work done{skipped}; status moved to {:?}",
        status.processing_status
    );
    Ok(status)
}

/// What an activity returns on failure; recorded in history, so serializable.
#[derive(Debug, Serialize, Deserialize)]
enum MigrationError {
    /// The application database or the durable store failed.
    Storage(String),
    /// A record is not in a state this stage can follow from.
    Inconsistent { stage: u8, id: u64, stages: Vec<u8> },
}

impl std::fmt::Display for MigrationError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MigrationError::Storage(e) => write!(f, "storage error: {e}"),
            MigrationError::Inconsistent { stage, id, stages } => write!(
                f,
                "record {id} has been through stages {stages:?}, so stage {stage} cannot apply to it"
            ),
        }
    }
}

impl std::error::Error for MigrationError {}

impl From<fjall::Error> for MigrationError {
    fn from(e: fjall::Error) -> Self {
        MigrationError::Storage(format!("application database: {e}"))
    }
}

impl From<durable_core::Error> for MigrationError {
    fn from(e: durable_core::Error) -> Self {
        MigrationError::Storage(format!("durable store: {e}"))
    }
}

impl From<postcard::Error> for MigrationError {
    fn from(e: postcard::Error) -> Self {
        MigrationError::Storage(format!("undecodable record: {e}"))
    }
}

// ---- The application data: the seed's `TableServiceClient` singleton ----

/// A record of the target table: its value and the stages applied to it, in order.
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
struct TargetRecord {
    value: u64,
    stages: Vec<u8>,
}

/// The value generated for source record `id`.
fn source_value(id: u64) -> u64 {
    id.wrapping_mul(2_654_435_761) % 1_000_000_007
}

/// Each stage's transformation. None is idempotent, so applying one twice would show.
fn transform(stage: u8, value: u64) -> u64 {
    match stage {
        1 => value,
        2 => value * 3,
        _ => value + 17,
    }
}

/// The value a source record must end with in the target.
fn expected_value(source: u64) -> u64 {
    (1..=3).fold(source, |value, stage| transform(stage, value))
}

/// The handle the activities get from `ctx.state::<Tables>()`.
#[derive(Clone)]
struct Tables {
    db: Database,
    source: Keyspace,
    target: Keyspace,
    /// How many records the source holds.
    records: u64,
}

/// How many records an activity moves between checkpoints (application state too).
#[derive(Clone, Copy, Debug)]
struct BatchSize(u64);

/// What one batch did.
struct Batch {
    last_id: u64,
    count: u64,
    skipped: u64,
}

impl Tables {
    /// Opens the application database in `dir`, generating `requested` source records
    /// (or 100,000) unless an earlier run finished generating them.
    fn open(dir: &Path, requested: Option<u64>) -> Result<Self, Box<dyn std::error::Error>> {
        if !dir.exists() {
            create_database(dir)?;
        }
        let db = Database::builder(dir).open()?;
        let meta = db.keyspace("meta", KeyspaceCreateOptions::default)?;
        let source = db.keyspace("source", KeyspaceCreateOptions::default)?;
        let target = db.keyspace("target", KeyspaceCreateOptions::default)?;
        let generated = meta.get(SOURCE_RECORDS_KEY)?.map(|v| decode_u64(&v));
        let records = match generated {
            Some(existing) => {
                if let Some(requested) = requested.filter(|&n| n != existing) {
                    println!(
                        "{} already holds {existing} source records; --records {requested} is ignored",
                        dir.display()
                    );
                }
                existing
            }
            None => {
                let records = requested.unwrap_or(100_000);
                // A run killed while generating leaves no marker: start the table over.
                source.clear()?;
                for chunk_start in (0..records).step_by(10_000) {
                    let mut batch = db.batch();
                    for id in chunk_start..(chunk_start + 10_000).min(records) {
                        batch.insert(&source, id.to_be_bytes(), source_value(id).to_be_bytes());
                    }
                    batch.commit()?;
                }
                let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
                batch.insert(&meta, SOURCE_RECORDS_KEY, records.to_be_bytes());
                batch.commit()?;
                println!("generated {records} source records in {}", dir.display());
                records
            }
        };
        Ok(Self {
            db,
            source,
            target,
            records,
        })
    }

    /// Applies `stage` to up to `limit` records after id `after` and commits them to disk
    /// in one batch. `None` when no record is left.
    fn apply_batch(
        &self,
        stage: ProcessingStage,
        after: Option<u64>,
        limit: u64,
    ) -> Result<Option<Batch>, MigrationError> {
        let n = stage.number();
        // Stage 1 reads the source; stages 2 and 3 rework the target in place.
        let table = if n == 1 { &self.source } else { &self.target };
        let start = after.map_or(Bound::Unbounded, |id| Bound::Excluded(id.to_be_bytes()));
        let rows = table
            .range::<[u8; 8], _>((start, Bound::Unbounded))
            .take(limit as usize)
            .map(|guard| guard.into_inner())
            .collect::<Result<Vec<(UserKey, UserValue)>, _>>()?;
        let Some((last_key, _)) = rows.last() else {
            return Ok(None);
        };
        let last_id = decode_u64(last_key);

        let applied: Vec<u8> = (1..=n).collect();
        let mut batch = self.db.batch().durability(Some(PersistMode::SyncAll));
        let mut skipped = 0;
        for (key, value) in &rows {
            let id = decode_u64(key);
            let current = if n == 1 {
                match self.target.get(key)? {
                    Some(bytes) => postcard::from_bytes(&bytes)?,
                    // Not copied yet: the source value, through no stage so far.
                    None => TargetRecord {
                        value: decode_u64(value),
                        stages: Vec::new(),
                    },
                }
            } else {
                postcard::from_bytes::<TargetRecord>(value)?
            };
            // The idempotency check: a record this stage already changed (before a crash
            // made the batch run again) is left alone.
            if current.stages.starts_with(&applied) {
                skipped += 1;
                continue;
            }
            if current.stages != applied[..applied.len() - 1] {
                return Err(MigrationError::Inconsistent {
                    stage: n,
                    id,
                    stages: current.stages,
                });
            }
            let mut next = current;
            next.value = transform(n, next.value);
            next.stages.push(n);
            batch.insert(&self.target, key.clone(), postcard::to_allocvec(&next)?);
        }
        batch.commit()?;
        Ok(Some(Batch {
            last_id,
            count: rows.len() as u64,
            skipped,
        }))
    }

    /// Checks that every source record reached the target through stages 1, 2, 3 exactly
    /// once with the expected value, and that the target holds nothing else. Returns the
    /// problems found.
    fn verify(&self) -> Result<Vec<String>, MigrationError> {
        let mut problems = Vec::new();
        let mut sources = 0u64;
        for guard in self.source.iter() {
            let (key, value) = guard.into_inner()?;
            sources += 1;
            let id = decode_u64(&key);
            let expected = TargetRecord {
                value: expected_value(decode_u64(&value)),
                stages: vec![1, 2, 3],
            };
            match self.target.get(&key)? {
                None => problems.push(format!("id {id}: missing from the target")),
                Some(bytes) => {
                    let found: TargetRecord = postcard::from_bytes(&bytes)?;
                    if found != expected {
                        problems.push(format!(
                            "id {id}: expected value {} after stages {:?}, found value {} after stages {:?}",
                            expected.value, expected.stages, found.value, found.stages
                        ));
                    }
                }
            }
        }
        if sources != self.records {
            problems.push(format!(
                "the source holds {sources} records, {} were generated",
                self.records
            ));
        }
        for guard in self.target.iter() {
            let key = guard.key()?;
            if !self.source.contains_key(&key)? {
                problems.push(format!(
                    "id {}: in the target but not in the source",
                    decode_u64(&key)
                ));
            }
        }
        Ok(problems)
    }
}

/// Creates an empty fjall database at `dir` so that a kill at any moment leaves either none
/// or a whole one: fjall's first open, killed halfway, leaves a directory that no later
/// open accepts. So it is built beside `dir` and renamed into place.
fn create_database(dir: &Path) -> Result<(), Box<dyn std::error::Error>> {
    let staging = dir.with_extension("creating");
    if staging.exists() {
        std::fs::remove_dir_all(&staging)?;
    }
    Database::builder(&staging)
        .open()?
        .persist(PersistMode::SyncAll)?;
    std::fs::rename(&staging, dir)?;
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::File::open(parent)?.sync_all()?;
    Ok(())
}

fn decode_u64(bytes: &[u8]) -> u64 {
    let array: [u8; 8] = bytes
        .try_into()
        .expect("ids and values are 8-byte big-endian");
    u64::from_be_bytes(array)
}

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// ---- The host: the seed's Program.cs, then a check of the result ----

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()).await {
        Ok(code) => code,
        Err(error) => {
            println!("error: {error}");
            ExitCode::FAILURE
        }
    }
}

/// A new directory for a run without `--store`: under the temp dir, named by the process
/// id and the time, so no earlier run's store is found there.
fn fresh_store() -> PathBuf {
    std::env::temp_dir().join(format!(
        "durable-migration-{}-{}",
        std::process::id(),
        unix_ms()
    ))
}

async fn run(args: Args) -> Result<ExitCode, Box<dyn std::error::Error>> {
    let (dir, fresh) = match &args.store {
        Some(dir) => (dir.clone(), false),
        None => (fresh_store(), true),
    };
    println!("store: {}", dir.display());
    if fresh {
        println!(
            "a new store; if this run is killed, resume it with: \
             cargo run --release --example migration -- --store {}",
            dir.display()
        );
    }
    if !migrate_in(&dir, &args).await? {
        return Ok(ExitCode::FAILURE);
    }
    if fresh {
        std::fs::remove_dir_all(&dir)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs (or resumes) the migration in `dir` and verifies it; returns whether every record
/// went through all three stages once.
async fn migrate_in(dir: &Path, args: &Args) -> Result<bool, Box<dyn std::error::Error>> {
    std::fs::create_dir_all(dir)?;
    let tables = Tables::open(&dir.join("app"), args.records)?;
    let store = FjallStore::open(dir.join("durable"))?;

    // Looked up before the runtime starts: `start` resumes unfinished work at once, and
    // this line should come before the activities' own "resuming stage" lines.
    match store.instance(INSTANCE_ID)?.map(|record| record.status) {
        None => {}
        Some(Status::Completed { .. }) => {
            println!("instance {INSTANCE_ID} already completed in an earlier run");
        }
        Some(Status::Failed { .. }) => {
            println!("instance {INSTANCE_ID} already failed in an earlier run");
        }
        Some(_) => println!("resuming existing instance {INSTANCE_ID}"),
    }

    let runtime = Runtime::builder(store)
        .orchestrator(migrate)
        .activity(activity_one)
        .activity(activity_two)
        .activity(activity_three)
        .state(tables.clone())
        .state(BatchSize(args.batch))
        .start()
        .await?;
    // Returns the existing instance if an earlier run started it.
    let instance = runtime.client().start(migrate, INSTANCE_ID, ()).await?;
    if instance.is_new() {
        println!("started instance {}", instance.id());
    }
    let outcome = instance.wait(WAIT).await;
    runtime.shutdown().await;

    let status = match outcome {
        Ok(status) => status,
        Err(error) => {
            println!("{error}");
            println!(
                "the instance id is fixed: remove {} to start over",
                dir.display()
            );
            return Ok(false);
        }
    };
    println!("final status: {status:?}");

    let problems = tables.verify()?;
    if problems.is_empty() {
        println!("migrated {} records through 3 stages", tables.records);
        return Ok(true);
    }
    println!("verification found {} problems:", problems.len());
    for problem in problems.iter().take(20) {
        println!("  {problem}");
    }
    if problems.len() > 20 {
        println!("  ... and {} more", problems.len() - 20);
    }
    Ok(false)
}
