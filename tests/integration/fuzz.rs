//! Fuzzing with proptest: decoding any bytes as a stored record, and the replay step over
//! any history, never panic.
//!
//! Three sources of input: arbitrary bytes; valid records damaged at random (most random
//! bytes fail on their first tag, damaged ones get further); and histories written by
//! running an orchestrator with random results, which a fresh execution must replay to the
//! same outcome, and which are then damaged too. Failing cases are kept by proptest in
//! `fuzz.proptest-regressions` beside this file and replayed first on every run.

use std::time::Duration;

use durable_core::record::{
    ActivityTask, Event, Failure, FailureKind, InstanceRecord, ParentLink, Site, Status, WorkItem,
};
use durable_core::replay_test::{Command, Execution, Outcome, SavedHistory};
use durable_core::{
    ActivityContext, Either, OrchestrationContext, Orchestrator, RetryPolicy, activity,
    orchestrator,
};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

/// `cases` per property, or `PROPTEST_CASES` for a longer hunt.
fn config(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(cases);
    ProptestConfig {
        cases,
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

/// A store record, as the store encodes it (postcard).
fn encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).unwrap()
}

/// A user payload, as the runtime encodes it (JSON).
fn payload_of<T: serde::Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap()
}

// ---- Generators of records ----

/// Payloads: a `u64`, a string, an empty payload, or any bytes.
fn payload() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        any::<u64>().prop_map(|n| payload_of(&n)),
        "[a-z]{0,6}".prop_map(|s| payload_of(&s)),
        Just(Vec::new()),
        vec(any::<u8>(), 0..12),
    ]
}

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("act".to_string()),
        Just("go".to_string()),
        Just("fz_chain".to_string()),
        "[a-z]{0,4}",
    ]
}

fn site() -> impl Strategy<Value = Site> {
    (name(), any::<u32>(), any::<i64>()).prop_map(|(function, line, line_offset)| Site {
        function,
        file: "fuzz.rs".into(),
        line,
        line_offset,
    })
}

fn failure() -> impl Strategy<Value = Failure> {
    let kind = prop_oneof![
        payload().prop_map(|payload| FailureKind::Returned { payload }),
        Just(FailureKind::Panicked),
        name().prop_map(|type_name| FailureKind::Decode { type_name }),
        Just(FailureKind::Nondeterminism),
        Just(FailureKind::TimedOut),
        Just(FailureKind::Terminated),
        Just(FailureKind::Rejected),
        name().prop_map(|name| FailureKind::Unregistered { name }),
        (any::<u64>(), any::<u64>())
            .prop_map(|(size, limit)| FailureKind::TooLarge { size, limit }),
    ];
    (kind, "[ -~]{0,8}").prop_map(|(kind, message)| Failure { kind, message })
}

/// Any event, with step numbers small enough to meet the steps an orchestrator issues.
fn event() -> impl Strategy<Value = Event> {
    let seq = 0..8_u64;
    prop_oneof![
        (name(), payload()).prop_map(|(orchestrator, input)| Event::Started {
            orchestrator,
            input
        }),
        (seq.clone(), name(), payload(), site()).prop_map(|(seq, activity, input, site)| {
            Event::ActivityScheduled {
                seq,
                activity,
                input,
                site,
            }
        }),
        (seq.clone(), payload()).prop_map(|(seq, output)| Event::ActivityCompleted { seq, output }),
        (seq.clone(), 0..4_u32, failure()).prop_map(|(seq, attempt, failure)| {
            Event::ActivityFailed {
                seq,
                attempt,
                failure,
            }
        }),
        (seq.clone(), any::<u64>(), site()).prop_map(|(seq, fire_at_ms, site)| {
            Event::TimerCreated {
                seq,
                fire_at_ms,
                site,
            }
        }),
        seq.clone().prop_map(|seq| Event::TimerFired { seq }),
        (seq.clone(), name(), name(), payload(), site()).prop_map(
            |(seq, orchestrator, instance, input, site)| Event::SubOrchestrationScheduled {
                seq,
                orchestrator,
                instance,
                input,
                site,
            }
        ),
        (seq.clone(), payload())
            .prop_map(|(seq, output)| Event::SubOrchestrationCompleted { seq, output }),
        (seq.clone(), failure())
            .prop_map(|(seq, failure)| Event::SubOrchestrationFailed { seq, failure }),
        (seq, name(), payload(), site()).prop_map(|(seq, what, value, site)| Event::Recorded {
            seq,
            what,
            value,
            site
        }),
        (name(), payload()).prop_map(|(name, payload)| Event::EventRaised { name, payload }),
        payload().prop_map(|status| Event::CustomStatusSet { status }),
        payload().prop_map(|output| Event::Completed { output }),
        failure().prop_map(|failure| Event::Failed { failure }),
        payload().prop_map(|input| Event::ContinuedAsNew { input }),
        name().prop_map(|reason| Event::TerminateRequested { reason }),
        name().prop_map(|reason| Event::SuspendRequested { reason }),
        Just(Event::ResumeRequested),
        (name(), 0..4_u32, payload(), name()).prop_map(|(name, index, payload, reason)| {
            Event::EventSetAside {
                name,
                index,
                payload,
                reason,
            }
        }),
    ]
}

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![
        Just(Status::Pending),
        Just(Status::Running),
        payload().prop_map(|output| Status::Completed { output }),
        failure().prop_map(|failure| Status::Failed { failure }),
        failure().prop_map(|failure| Status::Stalled { failure }),
        name().prop_map(|reason| Status::Terminated { reason }),
        name().prop_map(|reason| Status::Suspended { reason }),
    ]
}

fn instance_record() -> impl Strategy<Value = InstanceRecord> {
    (
        (name(), any::<u32>(), payload(), status()),
        (any::<u64>(), any::<u64>(), any::<u32>(), any::<u32>()),
        (
            proptest::option::of(payload()),
            proptest::option::of((name(), any::<u64>(), any::<u32>(), any::<u64>())),
            any::<u64>(),
        ),
    )
        .prop_map(
            |(
                (orchestrator, version, input, status),
                (created_ms, updated_ms, history_len, generation),
                (custom_status, parent, incarnation),
            )| InstanceRecord {
                orchestrator,
                version,
                input,
                status,
                created_ms,
                updated_ms,
                history_len,
                incarnation,
                generation,
                custom_status,
                parent: parent.map(|(instance, incarnation, generation, seq)| ParentLink {
                    instance,
                    incarnation,
                    generation,
                    seq,
                }),
            },
        )
}

fn work_item() -> impl Strategy<Value = WorkItem> {
    let task = (
        (name(), any::<u32>(), any::<u64>(), any::<u64>()),
        (
            name(),
            payload(),
            any::<u32>(),
            (any::<u64>(), proptest::option::of(any::<u64>())),
        ),
    )
        .prop_map(
            |(
                (instance, generation, seq, key_seq),
                (activity, input, attempt, (incarnation, attempt_timeout_ms)),
            )| {
                ActivityTask {
                    instance,
                    incarnation,
                    generation,
                    seq,
                    key_seq,
                    activity,
                    input,
                    attempt,
                    attempt_timeout_ms,
                }
            },
        );
    prop_oneof![
        (
            name(),
            any::<u64>(),
            proptest::option::of(any::<u32>()),
            event()
        )
            .prop_map(
                |(instance, incarnation, generation, event)| WorkItem::Message {
                    instance,
                    incarnation,
                    generation,
                    event
                }
            ),
        task.prop_map(WorkItem::Activity),
        (
            name(),
            any::<u64>(),
            any::<u32>(),
            any::<u64>(),
            any::<u64>()
        )
            .prop_map(|(instance, incarnation, generation, seq, fire_at_ms)| {
                WorkItem::Timer {
                    instance,
                    incarnation,
                    generation,
                    seq,
                    fire_at_ms,
                }
            }),
    ]
}

/// Decodes `bytes` as every record the store or a saved history holds.
fn decode_all(bytes: &[u8]) {
    let _ = postcard::from_bytes::<Event>(bytes);
    let _ = postcard::from_bytes::<WorkItem>(bytes);
    let _ = postcard::from_bytes::<InstanceRecord>(bytes);
    let _ = postcard::from_bytes::<Status>(bytes);
    let _ = postcard::from_bytes::<Failure>(bytes);
    let _ = postcard::from_bytes::<ActivityTask>(bytes);
    let _ = postcard::from_bytes::<SavedHistory>(bytes);
}

/// Bytes damaged as a disk or a bad copy might: cut short, bytes overwritten, or bytes
/// inserted.
#[derive(Clone, Debug)]
enum Damage {
    Cut(usize),
    Overwrite(usize, u8),
    Insert(usize, u8),
}

fn damage() -> impl Strategy<Value = Vec<Damage>> {
    let one = prop_oneof![
        any::<usize>().prop_map(Damage::Cut),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Damage::Overwrite(at, b)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Damage::Insert(at, b)),
    ];
    vec(one, 1..4)
}

fn apply_damage(mut bytes: Vec<u8>, damage: &[Damage]) -> Vec<u8> {
    for d in damage {
        let len = bytes.len();
        match *d {
            Damage::Cut(at) => bytes.truncate(at % (len + 1)),
            Damage::Overwrite(at, b) if len > 0 => bytes[at % len] = b,
            Damage::Overwrite(..) => {}
            Damage::Insert(at, b) => bytes.insert(at % (len + 1), b),
        }
    }
    bytes
}

proptest! {
    #![proptest_config(config(2048))]

    #[test]
    fn any_bytes_decode_as_any_record_without_panicking(bytes in vec(any::<u8>(), 0..96)) {
        decode_all(&bytes);
    }

    #[test]
    fn damaged_records_decode_without_panicking(
        event in event(),
        item in work_item(),
        record in instance_record(),
        damage in damage(),
    ) {
        decode_all(&apply_damage(encode(&event), &damage));
        decode_all(&apply_damage(encode(&item), &damage));
        decode_all(&apply_damage(encode(&record), &damage));
    }
}

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn records_round_trip(event in event(), item in work_item(), record in instance_record()) {
        prop_assert_eq!(postcard::from_bytes::<Event>(&encode(&event)).unwrap(), event);
        prop_assert_eq!(postcard::from_bytes::<WorkItem>(&encode(&item)).unwrap(), item);
        prop_assert_eq!(
            postcard::from_bytes::<InstanceRecord>(&encode(&record)).unwrap(),
            record
        );
    }
}

// ---- The orchestrators replayed: every kind of durable operation, and no panics of
// their own, so a panic outcome can only come from the engine. ----

#[activity]
async fn act(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

#[orchestrator]
async fn fz_chain(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.call(act, n).await?;
    let b = ctx.call(act, a.wrapping_add(1)).await?;
    Ok(a.wrapping_add(b))
}

#[orchestrator]
async fn fz_fan(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let calls = (0..n % 5).map(|i| ctx.call(act, i)).collect();
    let mut sum = 0_u64;
    for result in ctx.join_all(calls).await {
        sum = sum.wrapping_add(result.unwrap_or(1));
    }
    let (x, ()) = ctx
        .join2(ctx.call(act, 1), ctx.sleep(Duration::from_millis(5)))
        .await;
    Ok(sum.wrapping_add(x?))
}

#[orchestrator]
async fn fz_race(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let (index, first) = ctx
        .when_any(vec![ctx.call(act, n), ctx.call(act, n ^ 1)])
        .await;
    let second = match ctx
        .select2(ctx.call(act, 7), ctx.sleep(Duration::from_secs(1)))
        .await
    {
        Either::Left(result) => result.unwrap_or(0),
        Either::Right(()) => 1,
    };
    let third = ctx
        .timeout(Duration::from_secs(1), ctx.wait_event::<u64>("go"))
        .await
        .unwrap_or(2);
    Ok((index as u64)
        .wrapping_add(first.unwrap_or(3))
        .wrapping_add(second)
        .wrapping_add(third))
}

#[orchestrator]
async fn fz_events(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let a = ctx.wait_event::<u64>("go").await;
    ctx.set_custom_status(&a);
    let b = ctx.wait_event::<u64>("go").await;
    Ok(a.wrapping_add(b).wrapping_add(n))
}

#[orchestrator]
async fn fz_family(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let child = ctx.sub_orchestration(fz_chain, n).await.unwrap_or(0);
    let named = ctx.sub_orchestration_with_id(fz_chain, "named", n).await?;
    Ok(child.wrapping_add(named))
}

#[orchestrator]
async fn fz_retry(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let policy = RetryPolicy::exponential(3, Duration::from_millis(10))
        .attempt_timeout(Duration::from_secs(1));
    Ok(ctx.call_with_retry(act, n, policy).await?)
}

#[orchestrator]
async fn fz_recorded(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let time = ctx
        .now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let random = ctx.random();
    let id = ctx.new_uuid().as_u64_pair().0;
    let flag: u64 = ctx.side_effect(|| 5);
    if ctx.patched("change") {
        ctx.call(act, n).await?;
    } else {
        ctx.sleep(Duration::from_millis(1)).await;
    }
    if !n.is_multiple_of(3) {
        return ctx.continue_as_new(n.wrapping_add(1)).await;
    }
    Ok(time ^ random ^ id ^ flag)
}

/// The orchestrators by index, as a proptest strategy picks one.
const ORCHESTRATORS: usize = 7;

/// Runs `$body` with `$o` bound to orchestrator number `$index`.
macro_rules! with_orchestrator {
    ($index:expr, $o:ident => $body:expr) => {
        match $index % ORCHESTRATORS {
            0 => {
                let $o = fz_chain;
                $body
            }
            1 => {
                let $o = fz_fan;
                $body
            }
            2 => {
                let $o = fz_race;
                $body
            }
            3 => {
                let $o = fz_events;
                $body
            }
            4 => {
                let $o = fz_family;
                $body
            }
            5 => {
                let $o = fz_retry;
                $body
            }
            _ => {
                let $o = fz_recorded;
                $body
            }
        }
    };
}

fn started<O: Orchestrator>(input: Vec<u8>) -> Event {
    Event::Started {
        orchestrator: O::NAME.to_string(),
        input,
    }
}

/// The engine's own panics surface as a panicked orchestrator (the poll is guarded);
/// these orchestrators never panic, so any such outcome is the engine's.
fn check_outcome(outcome: &Outcome) -> Result<(), TestCaseError> {
    if let Outcome::Failed(failure) | Outcome::Stalled(failure) = outcome {
        prop_assert!(
            failure.kind != FailureKind::Panicked,
            "the engine panicked: {}",
            failure.message
        );
    }
    Ok(())
}

/// Replays `history` split at `split` (recorded, then new), then feeds `more` in a second
/// turn of the same execution.
fn replay_split<O: Orchestrator>(
    o: O,
    history: &[Event],
    split: usize,
    more: Vec<Event>,
) -> Result<(), TestCaseError> {
    let split = split % (history.len() + 1);
    let mut execution = Execution::of(o, "fz");
    let turn = execution.turn(&history[..split], history[split..].to_vec());
    check_outcome(&turn.outcome)?;
    let turn = execution.turn(&[], more);
    check_outcome(&turn.outcome)
}

/// A run of `o` on `input`, the results of its operations chosen by `choices`: each turn
/// delivers some of the results owed (a success, a failure, a payload that does not
/// decode, or twice), and sometimes an external event. Returns the history it wrote and
/// its last outcome.
fn simulate<O: Orchestrator>(o: O, input: Vec<u8>, choices: &[u8]) -> (Vec<Event>, Outcome) {
    let mut live = Execution::of(o, "fz");
    let mut choices = choices.iter().copied().cycle();
    let mut next = move || choices.next().unwrap_or(0);
    let mut owed: Vec<Event> = Vec::new();
    let mut history = Vec::new();
    let mut new = vec![started::<O>(input)];
    for _ in 0..12 {
        let turn = live.turn(&[], std::mem::take(&mut new));
        history.extend(turn.appended);
        for command in turn.commands {
            let pick = next();
            owed.push(match command {
                Command::ScheduleActivity { seq, attempt, .. } => match pick % 8 {
                    0 => Event::ActivityFailed {
                        seq,
                        attempt,
                        failure: Failure {
                            kind: FailureKind::Returned {
                                payload: payload_of(&"no".to_string()),
                            },
                            message: "no".into(),
                        },
                    },
                    1 => Event::ActivityCompleted {
                        seq,
                        output: vec![0xff; 11],
                    },
                    _ => Event::ActivityCompleted {
                        seq,
                        output: payload_of(&u64::from(pick)),
                    },
                },
                Command::CreateTimer { seq, .. } => Event::TimerFired { seq },
                Command::StartSubOrchestration { seq, .. } => match pick % 4 {
                    0 => Event::SubOrchestrationFailed {
                        seq,
                        failure: Failure {
                            kind: FailureKind::Rejected,
                            message: "taken".into(),
                        },
                    },
                    _ => Event::SubOrchestrationCompleted {
                        seq,
                        output: payload_of(&u64::from(pick)),
                    },
                },
                other => panic!("a command this simulation does not answer: {other:?}"),
            });
        }
        if !matches!(turn.outcome, Outcome::Running) {
            return (history, turn.outcome);
        }
        // Deliver some of what is owed, in a chosen order; sometimes twice.
        let mut keep = Vec::new();
        for event in owed.drain(..) {
            match next() % 4 {
                0 => keep.push(event),
                1 => {
                    new.push(event.clone());
                    new.push(event);
                }
                _ => new.push(event),
            }
        }
        owed = keep;
        if next() % 3 == 0 {
            new.push(Event::EventRaised {
                name: "go".into(),
                payload: payload_of(&u64::from(next())),
            });
        }
        if new.is_empty() && owed.is_empty() {
            new.push(Event::EventRaised {
                name: "go".into(),
                payload: payload_of(&7_u64),
            });
        }
        let len = new.len().max(1);
        new.rotate_left(usize::from(next()) % len);
    }
    let turn = live.turn(&[], Vec::new());
    history.extend(turn.appended);
    (history, turn.outcome)
}

/// What an outcome must replay to: a replayed run ends as the live one did.
fn same_end(live: &Outcome, replayed: &Outcome) -> bool {
    match (live, replayed) {
        (Outcome::Failed(a), Outcome::Failed(b)) => a.kind == b.kind && a.message == b.message,
        (a, b) => a == b,
    }
}

/// Removes, duplicates, swaps or rewrites events of a history.
#[derive(Clone, Debug)]
enum Edit {
    Remove(usize),
    Duplicate(usize),
    Swap(usize, usize),
    Replace(usize, Event),
    Insert(usize, Event),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    let one = prop_oneof![
        any::<usize>().prop_map(Edit::Remove),
        any::<usize>().prop_map(Edit::Duplicate),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::Swap(a, b)),
        (any::<usize>(), event()).prop_map(|(at, e)| Edit::Replace(at, e)),
        (any::<usize>(), event()).prop_map(|(at, e)| Edit::Insert(at, e)),
    ];
    vec(one, 1..4)
}

fn apply_edits(mut history: Vec<Event>, edits: &[Edit]) -> Vec<Event> {
    for edit in edits {
        let len = history.len();
        if len == 0 {
            if let Edit::Insert(_, e) | Edit::Replace(_, e) = edit {
                history.push(e.clone());
            }
            continue;
        }
        match edit {
            Edit::Remove(at) => {
                history.remove(at % len);
            }
            Edit::Duplicate(at) => history.insert(at % len, history[at % len].clone()),
            Edit::Swap(a, b) => history.swap(a % len, b % len),
            Edit::Replace(at, e) => history[at % len] = e.clone(),
            Edit::Insert(at, e) => history.insert(at % (len + 1), e.clone()),
        }
    }
    history
}

fn input() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        4 => (0..40_u64).prop_map(|n| payload_of(&n)),
        1 => vec(any::<u8>(), 0..4),
    ]
}

proptest! {
    #![proptest_config(config(1024))]

    #[test]
    fn replaying_any_history_never_panics(
        which in 0..ORCHESTRATORS,
        history in vec(event(), 0..16),
        more in vec(event(), 0..4),
        split in any::<usize>(),
    ) {
        with_orchestrator!(which, o => {
            // With and without a valid start in front.
            replay_split(o, &history, split, more.clone())?;
            let mut started = vec![started_of(o, payload_of(&3_u64))];
            started.extend(history.iter().cloned());
            replay_split(o, &started, split, more)?;
        });
    }

    #[test]
    fn a_recorded_run_replays_to_the_same_end_and_issues_nothing_new(
        which in 0..ORCHESTRATORS,
        input in input(),
        choices in vec(any::<u8>(), 1..48),
    ) {
        with_orchestrator!(which, o => {
            let (history, live) = simulate(o, input, &choices);
            check_outcome(&live)?;
            let replayed = Execution::of(o, "fz").turn(&history, Vec::new());
            prop_assert!(
                replayed.commands.is_empty(),
                "replay issued {:?} after {:?}", replayed.commands, history
            );
            prop_assert!(
                same_end(&live, &replayed.outcome),
                "live {:?}, replayed {:?}, history {:?}", live, replayed.outcome, history
            );
        });
    }

    #[test]
    fn replaying_a_damaged_recorded_run_never_panics(
        which in 0..ORCHESTRATORS,
        input in input(),
        choices in vec(any::<u8>(), 1..48),
        edits in edits(),
        split in any::<usize>(),
        more in vec(event(), 0..3),
    ) {
        with_orchestrator!(which, o => {
            let (history, _) = simulate(o, input, &choices);
            let damaged = apply_edits(history, &edits);
            replay_split(o, &damaged, split, more)?;
        });
    }
}

fn started_of<O: Orchestrator>(_o: O, input: Vec<u8>) -> Event {
    started::<O>(input)
}

// ---- A store holding any records ----

/// A key and a value written straight into one of the store's keyspaces.
#[derive(Clone, Debug)]
struct Raw {
    keyspace: &'static str,
    key: Vec<u8>,
    value: Vec<u8>,
}

fn raw_history_key(id: &str, tail: &[u8]) -> Vec<u8> {
    let mut key = (id.len() as u16).to_be_bytes().to_vec();
    key.extend_from_slice(id.as_bytes());
    key.extend_from_slice(tail);
    key
}

/// Entries that read as records of instance `a` or `b` (or almost), or as nothing.
fn raw() -> impl Strategy<Value = Raw> {
    let id = prop_oneof![Just("a"), Just("b")];
    let garbage = || vec(any::<u8>(), 0..12);
    prop_oneof![
        (
            prop_oneof![id.clone().prop_map(|id| id.as_bytes().to_vec()), garbage()],
            prop_oneof![instance_record().prop_map(|r| encode(&r)), garbage()],
        )
            .prop_map(|(key, value)| Raw {
                keyspace: "instances",
                key,
                value
            }),
        (
            id,
            prop_oneof![(0..4_u32).prop_map(|i| i.to_be_bytes().to_vec()), garbage()],
            prop_oneof![event().prop_map(|e| encode(&e)), garbage()],
        )
            .prop_map(|(id, tail, value)| Raw {
                keyspace: "history",
                key: raw_history_key(id, &tail),
                value,
            }),
        (
            prop_oneof![(0..8_u64).prop_map(|w| w.to_be_bytes().to_vec()), garbage()],
            prop_oneof![work_item().prop_map(|w| encode(&w)), garbage()],
        )
            .prop_map(|(key, value)| Raw {
                keyspace: "work",
                key,
                value
            }),
    ]
}

proptest! {
    #![proptest_config(config(32))]

    /// Reads of a store holding anything, and a runtime started on it, end in a value
    /// or an error: no panic, no hang.
    #[test]
    fn a_store_holding_any_records_reads_and_starts_without_panicking(
        entries in vec(raw(), 1..8),
    ) {
        use durable_core::{FjallStore, Runtime, Store};
        let dir = tempfile::tempdir().unwrap();
        drop(FjallStore::open(dir.path()).unwrap());
        {
            let db = fjall::Database::builder(dir.path()).open().unwrap();
            for entry in &entries {
                let space = db
                    .keyspace(entry.keyspace, fjall::KeyspaceCreateOptions::default)
                    .unwrap();
                if !entry.key.is_empty() {
                    space.insert(&entry.key, &entry.value).unwrap();
                }
            }
            db.persist(fjall::PersistMode::SyncAll).unwrap();
        }
        let store = FjallStore::open(dir.path()).unwrap();
        let _ = store.instances();
        let _ = store.work_items();
        for id in ["a", "b"] {
            let _ = store.instance(id);
            let _ = store.history(id);
        }
        let tokio = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let started = tokio.block_on(async {
            let runtime = Runtime::builder(store)
                .orchestrator(fz_chain)
                .orchestrator(fz_fan)
                .orchestrator(fz_events)
                .activity(act)
                .start()
                .await;
            if let Ok(runtime) = runtime {
                tokio::time::sleep(Duration::from_millis(20)).await;
                tokio::time::timeout(Duration::from_secs(10), runtime.shutdown())
                    .await
                    .is_ok()
            } else {
                true
            }
        });
        prop_assert!(started, "shutdown hung on {:?}", entries);
    }
}
