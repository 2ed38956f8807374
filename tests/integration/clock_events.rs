//! Events raised to an instance that waits on a durable timer, on a `ManualClock` moved
//! around the timer's time.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_core::{Either, ManualClock, OrchestrationContext, Runtime, Store, orchestrator};
use serde::{Deserialize, Serialize};

use crate::common::lifetime;

const MINUTE: u64 = 60_000;
const WAIT: Duration = Duration::from_secs(20);

fn tick(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_700_000_040_000 + MINUTE * n)
}

#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq)]
struct Ticks {
    want: usize,
    events: Vec<u32>,
    timers: u32,
}

/// As a schedule waits: for the next minute or an event, then continues as new.
#[orchestrator]
async fn ticker(ctx: OrchestrationContext, ticks: Ticks) -> Result<Ticks, String> {
    let mut ticks = ticks;
    if ticks.events.len() >= ticks.want {
        return Ok(ticks);
    }
    let now = ctx.now().duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    let wake = UNIX_EPOCH + Duration::from_millis((now / MINUTE + 1) * MINUTE);
    match ctx
        .select2(ctx.sleep_until(wake), ctx.wait_event::<u32>("control"))
        .await
    {
        Either::Left(()) => ticks.timers += 1,
        Either::Right(n) => ticks.events.push(n),
    }
    ctx.continue_as_new(ticks).await
}

#[derive(Clone, Copy, Debug)]
enum Step {
    Raise(u32),
    Set(SystemTime),
    Pause,
}

fn run(store: impl Store, steps: &[Step]) {
    let clock = ManualClock::new(tick(1));
    let want = steps.iter().filter(|s| matches!(s, Step::Raise(_))).count();
    lifetime(async {
        let runtime = Runtime::builder(store)
            .orchestrator(ticker)
            .clock(clock.clone())
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let instance = client
            .start(
                ticker,
                "t",
                Ticks {
                    want,
                    ..Ticks::default()
                },
            )
            .await
            .unwrap();
        for step in steps {
            match *step {
                Step::Raise(n) => client.raise_event("t", "control", &n).await.unwrap(),
                Step::Set(to) => clock.set(to),
                Step::Pause => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
        let ticks = instance
            .wait(WAIT)
            .await
            .unwrap_or_else(|e| panic!("{steps:?}: {e}"));
        let mut events = ticks.events.clone();
        events.sort();
        assert_eq!(events, (1..=want as u32).collect::<Vec<_>>(), "{steps:?}");
        runtime.shutdown().await;
    });
}

fn scenarios() -> Vec<Vec<Step>> {
    use Step::*;
    let s = Duration::from_secs;
    vec![
        vec![
            Pause,
            Raise(1),
            Pause,
            Raise(2),
            Pause,
            Set(tick(1) + s(30)),
            Raise(3),
        ],
        vec![Pause, Raise(1), Set(tick(1) + s(30)), Raise(2)],
        vec![Pause, Raise(1), Pause, Set(tick(2)), Raise(2)],
        vec![Pause, Set(tick(2)), Raise(1), Raise(2), Raise(3)],
        vec![Pause, Raise(1), Set(tick(2) + s(30)), Raise(2), Raise(3)],
        vec![
            Raise(1),
            Set(tick(3)),
            Raise(2),
            Pause,
            Set(tick(4)),
            Raise(3),
            Raise(4),
        ],
    ]
}

#[test]
fn events_raised_around_a_timer_on_a_manual_clock_reach_the_history_on_fjall() {
    for steps in scenarios() {
        let dir = tempfile::tempdir().unwrap();
        run(durable_core::FjallStore::open(dir.path()).unwrap(), &steps);
    }
}

#[test]
fn events_raised_around_a_timer_on_a_manual_clock_reach_the_history_in_memory() {
    for steps in scenarios() {
        run(durable_store::MemoryStore::default(), &steps);
    }
}

/// The fault as reported: a schedule on a `ManualClock`, paused and unpaused at tick 1,
/// then triggered, started no run. Its control event did reach the schedule's history;
/// but a trigger named its run by the time it was handled, at tick 1 that was tick 1's
/// run, which ran: one run per name, so the trigger started nothing, counted nowhere. A
/// trigger now asks for a run of its own (`-2` appended to a name taken); moved on by
/// 30 s, the clock names it.
mod schedules {
    use std::time::Duration;

    use durable_core::schedule::run_id;
    use durable_core::{FjallStore, ManualClock, Runtime, Store};
    use durable_store::WorkItem;

    use crate::common::lifetime;
    use crate::schedule_views::{exists, tick, two_schedules, until, views_job};

    const SCHEDULE: &str = "schedule:nightly";

    /// The schedule's control messages still in the store, and its generation.
    fn controls(store: &FjallStore) -> (usize, u32) {
        let messages = (store.work_items().unwrap().into_iter())
            .filter(|(_, item)| matches!(item, WorkItem::Message { instance, .. } if instance == SCHEDULE))
            .count();
        (
            messages,
            store.instance(SCHEDULE).unwrap().unwrap().generation,
        )
    }

    #[test]
    fn a_trigger_on_a_still_clock_reaches_the_schedule_and_starts_a_run_of_its_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = FjallStore::open(dir.path()).unwrap();
        let clock = ManualClock::new(tick(0) + Duration::from_secs(1));
        lifetime(async {
            let runtime = Runtime::builder(store.clone())
                .schedules()
                .orchestrator(views_job)
                .clock(clock.clone())
                .start()
                .await
                .unwrap();
            let client = runtime.client();
            two_schedules(&client, &clock).await;
            let nightly = client.schedule("nightly");
            nightly.pause("api").await.unwrap();
            until("paused", || async {
                nightly.describe(1).await.unwrap().paused.is_some()
            })
            .await;
            nightly.unpause().await.unwrap();
            until("unpaused", || async {
                nightly.describe(1).await.unwrap().paused.is_none()
            })
            .await;

            // At tick 1 still: handled, as a run of its own beside tick 1's (it used to
            // take tick 1's id and start nothing).
            let (_, generation) = controls(&store);
            nightly.trigger().await.unwrap();
            until("the trigger handled", || async {
                controls(&store) == (0, generation + 1)
            })
            .await;
            let described = nightly.describe(1).await.unwrap();
            assert_eq!(described.started, 2, "{described:?}");
            let tick_run = run_id("nightly", tick(1));
            assert!(exists(&client, &tick_run).await);
            assert!(exists(&client, &format!("{tick_run}-2")).await);

            // 30 s on: named for its time.
            let later = tick(1) + Duration::from_secs(30);
            clock.set(later);
            nightly.trigger().await.unwrap();
            until("the trigger's run started", || async {
                nightly.describe(1).await.unwrap().started == 3
            })
            .await;
            assert!(exists(&client, &run_id("nightly", later)).await);
            runtime.shutdown().await;
        });
    }
}
