//! The chaos workload: one orchestrator per pattern, the instances the child starts under
//! fixed ids, what each must end with, and the effects ledger its activities write.
//!
//! Every activity effect goes into the ledger under the activity's idempotency key, with
//! the logical effect (`{instance}:{step}`) as its value. A redelivered activity finds its
//! key and applies nothing; an effect found under two keys was applied twice.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_core::{ActivityContext, OrchestrationContext, RetryPolicy, activity, orchestrator};
use fjall::{Database, Keyspace, KeyspaceCreateOptions, PersistMode};
use serde::{Deserialize, Serialize};

/// Generations of each `eternal` instance.
pub const GENERATIONS: u64 = 5;
/// Steps of each `chain` instance.
pub const CHAIN_STEPS: u64 = 5;
/// Branches of each `fan` instance.
pub const FAN_BRANCHES: u64 = 8;
/// Children of each `parent` instance.
pub const CHILDREN: u64 = 3;

/// The value every effect computes from its input; small, so chains never overflow.
pub fn f(x: u64) -> u64 {
    (x * 3 + 1) % 1_000_003
}

/// The patterns of the workload, one orchestrator each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Chain,
    Fan,
    Timer,
    Approval,
    Parent,
    Retry,
    Eternal,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Chain,
        Kind::Fan,
        Kind::Timer,
        Kind::Approval,
        Kind::Parent,
        Kind::Retry,
        Kind::Eternal,
    ];

    fn name(self) -> &'static str {
        match self {
            Kind::Chain => "chain",
            Kind::Fan => "fan",
            Kind::Timer => "timer",
            Kind::Approval => "approval",
            Kind::Parent => "parent",
            Kind::Retry => "retry",
            Kind::Eternal => "eternal",
        }
    }
}

/// One instance the child starts: `{kind}-{n}`.
#[derive(Clone, Copy, Debug)]
pub struct Spec {
    pub kind: Kind,
    pub n: u64,
    /// How long the instance sleeps (a durable timer) before its work: spreads the
    /// workload over the kills.
    pub delay_ms: u64,
}

impl Spec {
    /// The input of its orchestrator.
    pub fn job(&self) -> Job {
        Job {
            n: self.n,
            delay_ms: self.delay_ms,
        }
    }

    pub fn id(&self) -> String {
        format!("{}-{}", self.kind.name(), self.n)
    }

    /// The instances this one creates (sub-orchestrations) when it runs as incarnation
    /// `incarnation`, with their expected outputs.
    pub fn children(&self, incarnation: u64) -> Vec<(String, u64)> {
        match self.kind {
            Kind::Parent => {
                // Children get the ids the runtime generates,
                // `~{parent}~{incarnation as hex}.{generation}.{step}`; the delay timer is
                // step 0.
                (0..CHILDREN)
                    .map(|j| {
                        let id = format!("~{}~{incarnation:x}.0.{}", self.id(), 1 + j);
                        (id, child_output(self.n, j))
                    })
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// What the instance returns.
    pub fn expected_output(&self) -> u64 {
        let i = self.n;
        match self.kind {
            Kind::Chain => (0..CHAIN_STEPS).fold(i, |x, _| f(x)),
            Kind::Fan => (0..FAN_BRANCHES).map(|b| f(i * 100 + b)).sum(),
            Kind::Timer => f(f(i)),
            Kind::Approval => {
                let (first, late) = approval_payloads(i);
                f(f(f(i) + first) + late)
            }
            Kind::Parent => (0..CHILDREN).map(|j| child_output(i, j)).sum(),
            Kind::Retry => f(i),
            Kind::Eternal => (0..GENERATIONS).fold(i, |x, _| f(x)),
        }
    }

    /// The logical effects the instance (as incarnation `incarnation`) and its children
    /// apply, each exactly once.
    pub fn expected_effects(&self, incarnation: u64) -> Vec<String> {
        let id = self.id();
        let steps: Vec<String> = match self.kind {
            Kind::Chain => (0..CHAIN_STEPS).map(|k| format!("step-{k}")).collect(),
            Kind::Fan => (0..FAN_BRANCHES).map(|b| format!("item-{b}")).collect(),
            Kind::Timer => vec!["before".into(), "after".into()],
            Kind::Approval => vec!["first".into(), "second".into(), "third".into()],
            Kind::Parent => {
                return self
                    .children(incarnation)
                    .iter()
                    .flat_map(|(sub, _)| (0..2).map(move |k| format!("{sub}:step-{k}")))
                    .collect();
            }
            Kind::Retry => vec!["flaky".into()],
            Kind::Eternal => (0..GENERATIONS).map(|g| format!("gen-{g}")).collect(),
        };
        steps.into_iter().map(|s| format!("{id}:{s}")).collect()
    }
}

/// Every instance the child starts, `per_kind` of each pattern; instance `n` of each
/// starts its work after `n × stagger_ms`.
pub fn specs(per_kind: u64, stagger_ms: u64) -> Vec<Spec> {
    Kind::ALL
        .iter()
        .flat_map(|&kind| {
            (0..per_kind).map(move |n| Spec {
                kind,
                n,
                delay_ms: n * stagger_ms,
            })
        })
        .collect()
}

/// The payloads of `approval-{i}`'s two events: `approve`, raised right after the start
/// (before the instance waits for it), and `late`, raised once it says it is ready.
pub fn approval_payloads(i: u64) -> (u64, u64) {
    (i * 10 + 1, i * 10 + 2)
}

/// The durable timer of `timer-{i}`.
pub fn timer_duration(i: u64) -> Duration {
    Duration::from_millis(300 + 150 * (i % 4))
}

fn child_output(i: u64, j: u64) -> u64 {
    f(f(i * 10 + j))
}

// ---- The effects ledger: the application's own database ----

/// The effects ledger, the application's database: `effects` maps an idempotency key to
/// the logical effect applied under it; `repeats` counts deliveries that found their key.
/// A fjall database of its own when the workload runs on fjall; two tables beside
/// durable's schema when it runs on PostgreSQL, where every worker process writes it.
#[derive(Clone)]
pub enum Ledger {
    /// In the directory of the run.
    Fjall {
        db: Database,
        effects: Keyspace,
        repeats: Keyspace,
    },
    /// The tables `chaos_effects` and `chaos_repeats` of the run's database.
    Postgres(Arc<tokio_postgres::Client>),
}

impl std::fmt::Debug for Ledger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger").finish_non_exhaustive()
    }
}

/// Creates the ledger's tables in the database at `url` (the parent, before any worker).
pub fn create_postgres_ledger(url: &str) -> Result<(), String> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).map_err(|e| e.to_string())?;
    client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS chaos_effects (key text PRIMARY KEY, logical text NOT NULL);
             CREATE TABLE IF NOT EXISTS chaos_repeats (key text PRIMARY KEY, n bigint NOT NULL);",
        )
        .map_err(|e| e.to_string())
}

/// Every (idempotency key, logical effect) of the ledger at `url`, and the repeats.
pub fn read_postgres_ledger(url: &str) -> Result<(Vec<(String, String)>, u64), String> {
    let mut client = postgres::Client::connect(url, postgres::NoTls).map_err(|e| e.to_string())?;
    let effects = client
        .query("SELECT key, logical FROM chaos_effects", &[])
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let repeats: i64 = client
        .query_one("SELECT coalesce(sum(n), 0)::bigint FROM chaos_repeats", &[])
        .map_err(|e| e.to_string())?
        .get(0);
    Ok((effects, repeats as u64))
}

impl Ledger {
    /// Opens (or creates) the ledger in `dir`. The parent creates it before the first
    /// kill, so a child never finds a half-created database.
    pub fn open(dir: &Path) -> Result<Ledger, fjall::Error> {
        let db = Database::builder(dir).open()?;
        let effects = db.keyspace("effects", KeyspaceCreateOptions::default)?;
        let repeats = db.keyspace("repeats", KeyspaceCreateOptions::default)?;
        db.persist(PersistMode::SyncAll)?;
        Ok(Ledger::Fjall {
            db,
            effects,
            repeats,
        })
    }

    /// Connects to the ledger in the database at `url` (its tables exist: the parent made
    /// them). Call inside a tokio runtime, which drives the connection.
    pub async fn connect(url: &str) -> Result<Ledger, String> {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .map_err(|e| format!("ledger: {e}"))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                eprintln!("chaos: the ledger's connection failed: {e}");
            }
        });
        Ok(Ledger::Postgres(Arc::new(client)))
    }

    /// Applies `logical` under `key`, once: a key already there applies nothing.
    async fn apply(&self, key: &str, logical: &str) -> Result<(), String> {
        let (db, effects, repeats) = match self {
            Ledger::Fjall {
                db,
                effects,
                repeats,
            } => (db, effects, repeats),
            Ledger::Postgres(client) => {
                let io = |e: tokio_postgres::Error| format!("ledger: {e}");
                let applied = client
                    .execute(
                        "INSERT INTO chaos_effects (key, logical) VALUES ($1, $2) \
                         ON CONFLICT (key) DO NOTHING",
                        &[&key, &logical],
                    )
                    .await
                    .map_err(io)?;
                if applied == 0 {
                    client
                        .execute(
                            "INSERT INTO chaos_repeats (key, n) VALUES ($1, 1) \
                             ON CONFLICT (key) DO UPDATE SET n = chaos_repeats.n + 1",
                            &[&key],
                        )
                        .await
                        .map_err(io)?;
                }
                return Ok(());
            }
        };
        let io = |e: fjall::Error| format!("ledger: {e:?}");
        if effects.contains_key(key).map_err(io)? {
            let seen = repeats.get(key).map_err(io)?.map_or(0, |v| v[0]);
            let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
            batch.insert(repeats, key, [seen.saturating_add(1)]);
            return batch.commit().map_err(io);
        }
        let mut batch = db.batch().durability(Some(PersistMode::SyncAll));
        batch.insert(effects, key, logical);
        batch.commit().map_err(io)
    }

    /// Every (idempotency key, logical effect), and how many deliveries found their
    /// effect applied already (redeliveries after a kill).
    pub fn contents(&self) -> Result<(Vec<(String, String)>, u64), String> {
        let Ledger::Fjall {
            effects, repeats, ..
        } = self
        else {
            return Err("read a PostgreSQL ledger with `read_postgres_ledger`".into());
        };
        let io = |e: fjall::Error| format!("{e:?}");
        let entries = effects
            .iter()
            .map(|guard| {
                let (k, v) = guard.into_inner().map_err(io)?;
                Ok((
                    String::from_utf8_lossy(&k).into_owned(),
                    String::from_utf8_lossy(&v).into_owned(),
                ))
            })
            .collect::<Result<_, String>>()?;
        let repeats = repeats
            .iter()
            .map(|guard| Ok(u64::from(guard.into_inner().map_err(io)?.1[0])))
            .sum::<Result<u64, String>>()?;
        Ok((entries, repeats))
    }
}

// ---- Activities ----

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Effect {
    pub step: String,
    pub value: u64,
}

fn effect_of(step: impl Into<String>, value: u64) -> Effect {
    Effect {
        step: step.into(),
        value,
    }
}

/// How long the activities take around their effect, seeded by the run's seed.
///
/// A real activity does work before it writes its effect (it reads, computes, calls a
/// service) and after (it logs, answers, releases what it held), and its result is
/// committed only once it returns. A kill in the time after the effect and before that
/// commit is the case idempotency keys exist for: the redelivered activity finds its
/// effect applied already. So each activity takes `before` + `after` ms, drawn from the
/// seed and the call's idempotency key (a redelivery takes the same time).
#[derive(Clone, Copy, Debug)]
pub struct Pace {
    seed: u64,
}

impl Pace {
    pub fn new(seed: u64) -> Self {
        Pace { seed }
    }

    /// (before the effect, after it), for the call with idempotency key `key`: 5–24 ms,
    /// then 40–159 ms. Calls of an instance run one after another, so an instance that
    /// works spends most of its time after an effect, not yet committed.
    pub fn durations(&self, key: &str) -> (Duration, Duration) {
        // FNV-1a over the key, mixed with the seed (splitmix64's finaliser).
        let mut h = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        }) ^ self.seed.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        h ^= h >> 31;
        (
            Duration::from_millis(5 + h % 20),
            Duration::from_millis(40 + (h >> 32) % 120),
        )
    }
}

/// Does the work of an activity around its effect: waits `before`, applies `effect` under
/// the call's idempotency key, waits `after` (see [`Pace`]), and returns `f(value)`.
async fn paced(ctx: &ActivityContext, effect: &Effect) -> Result<u64, String> {
    let (before, after) = ctx.state::<Pace>().durations(ctx.idempotency_key());
    tokio::time::sleep(before).await;
    let logical = format!("{}:{}", ctx.instance_id(), effect.step);
    ctx.state::<Ledger>()
        .apply(ctx.idempotency_key(), &logical)
        .await?;
    tokio::time::sleep(after).await;
    Ok(f(effect.value))
}

/// Applies one logical effect under the call's idempotency key and returns `f(value)`.
#[activity]
pub async fn apply_effect(ctx: ActivityContext, effect: Effect) -> Result<u64, String> {
    paced(&ctx, &effect).await
}

/// Panics on its first attempt and fails on its second; applies its effect after.
#[activity]
pub async fn flaky(ctx: ActivityContext, effect: Effect) -> Result<u64, String> {
    match ctx.attempt() {
        1 => panic!("flaky panics on attempt 1"),
        2 => Err("flaky fails on attempt 2".to_string()),
        _ => paced(&ctx, &effect).await,
    }
}

/// The wall clock, in ms since the Unix epoch (an activity, so replays see one value).
#[activity]
pub async fn wall_clock(_ctx: ActivityContext, _: ()) -> Result<u64, String> {
    Ok(millis(SystemTime::now()))
}

fn millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

// ---- Orchestrators ----

/// The input of every top-level instance.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Job {
    pub n: u64,
    pub delay_ms: u64,
}

/// The input of each generation of `eternal`.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub struct Generation {
    pub job: Job,
    pub generation: u64,
    pub x: u64,
}

impl Job {
    /// How long the instance waits (a durable timer, its step 0) before its work.
    pub fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms)
    }
}

#[orchestrator]
pub async fn chain(ctx: OrchestrationContext, job: Job) -> Result<u64, String> {
    ctx.sleep(job.delay()).await;
    let mut x = job.n;
    for k in 0..CHAIN_STEPS {
        x = ctx
            .call(apply_effect, effect_of(format!("step-{k}"), x))
            .await?;
    }
    Ok(x)
}

#[orchestrator]
pub async fn fan(ctx: OrchestrationContext, job: Job) -> Result<u64, String> {
    ctx.sleep(job.delay()).await;
    let i = job.n;
    let calls = (0..FAN_BRANCHES)
        .map(|b| ctx.call(apply_effect, effect_of(format!("item-{b}"), i * 100 + b)))
        .collect();
    let mut sum = 0;
    for result in ctx.join_all(calls).await {
        sum += result?;
    }
    Ok(sum)
}

#[orchestrator]
pub async fn timer(ctx: OrchestrationContext, job: Job) -> Result<u64, String> {
    ctx.sleep(job.delay()).await;
    let i = job.n;
    let start = millis(ctx.now());
    let a = ctx.call(apply_effect, effect_of("before", i)).await?;
    let wait = timer_duration(i);
    ctx.sleep(wait).await;
    let end = ctx.call(wall_clock, ()).await?;
    if end.saturating_sub(start) < wait.as_millis() as u64 {
        return Err(format!(
            "the timer of {wait:?} fired after {} ms",
            end.saturating_sub(start)
        ));
    }
    Ok(ctx.call(apply_effect, effect_of("after", a)).await?)
}

#[orchestrator]
pub async fn approval(ctx: OrchestrationContext, job: Job) -> Result<u64, String> {
    ctx.sleep(job.delay()).await;
    let i = job.n;
    let a = ctx.call(apply_effect, effect_of("first", i)).await?;
    let first = ctx.wait_event::<u64>("approve").await;
    let b = ctx
        .call(apply_effect, effect_of("second", a + first))
        .await?;
    ctx.set_custom_status(&"ready");
    let late = ctx.wait_event::<u64>("late").await;
    Ok(ctx.call(apply_effect, effect_of("third", b + late)).await?)
}

#[orchestrator]
pub async fn child(ctx: OrchestrationContext, (i, j): (u64, u64)) -> Result<u64, String> {
    let a = ctx
        .call(apply_effect, effect_of("step-0", i * 10 + j))
        .await?;
    Ok(ctx.call(apply_effect, effect_of("step-1", a)).await?)
}

#[orchestrator]
pub async fn parent(ctx: OrchestrationContext, job: Job) -> Result<u64, String> {
    ctx.sleep(job.delay()).await;
    let i = job.n;
    let first = ctx.sub_orchestration(child, (i, 0));
    let second = ctx.sub_orchestration(child, (i, 1));
    let (a, b) = ctx.join2(first, second).await;
    let c = ctx.sub_orchestration(child, (i, 2)).await?;
    Ok(a? + b? + c)
}

#[orchestrator]
pub async fn retry(ctx: OrchestrationContext, job: Job) -> Result<u64, String> {
    ctx.sleep(job.delay()).await;
    let i = job.n;
    let policy = RetryPolicy::fixed(10, Duration::from_millis(50));
    Ok(ctx
        .call_with_retry(flaky, effect_of("flaky", i), policy)
        .await?)
}

#[orchestrator]
pub async fn eternal(ctx: OrchestrationContext, state: Generation) -> Result<u64, String> {
    let Generation { job, generation, x } = state;
    if generation == 0 {
        ctx.sleep(job.delay()).await;
    }
    let step = format!("gen-{generation}");
    let x = ctx.call(apply_effect, effect_of(step, x)).await?;
    if generation + 1 < GENERATIONS {
        let next = Generation {
            job,
            generation: generation + 1,
            x,
        };
        return ctx.continue_as_new(next).await;
    }
    Ok(x)
}
