//! `durable schedules ...` (issue 16): the CLI, run in-process over a fjall store where a
//! runtime on a `ManualClock` ran two schedules and then released the store, lists and
//! shows them, and its requests (pause, trigger, backfill, delete) take effect once a
//! runtime runs again.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_core::admin::view::{ScheduleDetail, ScheduleList};
use durable_core::schedule::{OverlapPolicy, Schedule, ScheduleAction, ScheduleSpec, run_id};
use durable_core::{
    Client, Error, FjallStore, ManualClock, OrchestrationContext, Runtime, orchestrator,
};

use crate::cli::durable;
use crate::common::lifetime;
// The waits of the schedules' tests, which the other schedule test files take from here.
pub(crate) use crate::schedules::{exists, until};

const MINUTE: Duration = Duration::from_secs(60);

/// A tick of an every-minute schedule.
pub(crate) fn tick(n: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_700_000_040 + 60 * n)
}

fn ms(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

/// A run: waits for `done`.
#[orchestrator(name = "views-job")]
pub(crate) async fn views_job(ctx: OrchestrationContext, label: String) -> Result<String, String> {
    ctx.wait_event::<bool>("done").await;
    Ok(label)
}

/// Every minute, `views_job` with `label`, under `overlap`.
pub(crate) fn every_minute(label: &str, overlap: OverlapPolicy) -> Schedule {
    let spec = ScheduleSpec::every(MINUTE).unwrap();
    Schedule::new(
        spec,
        ScheduleAction::start(views_job, label.to_string()).unwrap(),
    )
    .overlap(overlap)
}

/// A runtime with schedules and `views_job` on the store in `dir`, at `clock`.
pub(crate) async fn runtime(dir: &Path, clock: &ManualClock) -> Runtime {
    Runtime::builder(FjallStore::open(dir).unwrap())
        .schedules()
        .orchestrator(views_job)
        .clock(clock.clone())
        .start()
        .await
        .unwrap()
}

/// Schedules `nightly` (allow all) and `held` (paused with a note that is HTML), and
/// nightly's run of tick 1 started.
pub(crate) async fn two_schedules(client: &Client, clock: &ManualClock) {
    client
        .create_schedule("nightly", every_minute("n", OverlapPolicy::AllowAll))
        .await
        .unwrap();
    client
        .create_schedule_paused(
            "held",
            every_minute("h", OverlapPolicy::Skip),
            Some("<b>until</b> the migration".into()),
        )
        .await
        .unwrap();
    clock.set(tick(1));
    let run = run_id("nightly", tick(1));
    until("nightly's first run started", || exists(client, &run)).await;
    let nightly = client.schedule("nightly");
    until("nightly handled tick 1", || async {
        let d = nightly.describe(1).await.unwrap();
        d.next_runs.first().is_some_and(|next| *next > tick(1)) && !d.recent_runs.is_empty()
    })
    .await;
}

#[test]
fn the_cli_lists_shows_and_operates_schedules() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new(tick(0) + Duration::from_secs(1));
    lifetime(async {
        let runtime = runtime(dir.path(), &clock).await;
        two_schedules(&runtime.client(), &clock).await;
        runtime.shutdown().await;
    });
    let store = dir.path();

    let list: ScheduleList = durable(store, &["schedules", "list", "--json"]).json();
    let ids: Vec<&str> = list.schedules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["held", "nightly"], "{list:?}");
    let held = &list.schedules[0];
    assert_eq!(held.paused.as_deref(), Some("<b>until</b> the migration"));
    assert_eq!(held.next_run_ms, None, "a paused schedule has no next run");
    let nightly = &list.schedules[1];
    assert_eq!(nightly.paused, None);
    assert_eq!(nightly.orchestrator, "views-job");
    assert_eq!(nightly.next_run_ms, Some(ms(tick(2))));
    assert_eq!(nightly.started, 1);

    // A page at a time.
    let first: ScheduleList =
        durable(store, &["schedules", "list", "--json", "--page-size", "1"]).json();
    assert_eq!(first.schedules.len(), 1);
    let next = first.next.clone().expect("a next page");
    let second: ScheduleList = durable(
        store,
        &[
            "schedules",
            "list",
            "--json",
            "--page-size",
            "1",
            "--after",
            &next,
        ],
    )
    .json();
    assert_eq!(second.schedules[0].id, "nightly", "{second:?}");

    let table = durable(store, &["schedules", "list"]).ok();
    assert!(
        table.contains("nightly") && table.contains("active"),
        "{table}"
    );
    assert!(
        table.contains("paused: <b>until</b> the migration"),
        "{table}"
    );

    let detail: ScheduleDetail = durable(store, &["schedules", "show", "nightly", "--json"]).json();
    assert_eq!(detail.overlap, "allow_all");
    assert_eq!(detail.input, serde_json::json!("n"));
    assert_eq!(detail.next_runs_ms.first(), Some(&ms(tick(2))));
    assert_eq!(detail.recent_runs.len(), 1, "{detail:?}");
    let run = &detail.recent_runs[0];
    assert_eq!(run.instance_id, run_id("nightly", tick(1)));
    assert_eq!(run.scheduled_at_ms, ms(tick(1)));
    assert!(
        matches!(run.status.as_deref(), Some("running" | "pending")),
        "{run:?}"
    );
    let text = durable(store, &["schedules", "show", "nightly"]).ok();
    assert!(
        text.contains(&run.instance_id) && text.contains("allow_all"),
        "{text}"
    );

    let err = durable(store, &["schedules", "show", "nope"]).fails(1);
    assert!(err.contains("no schedule `nope`"), "{err}");
    let err = durable(store, &["schedules", "pause", "nope"]).fails(1);
    assert!(err.contains("no schedule `nope`"), "{err}");
    let err = durable(
        store,
        &[
            "schedules",
            "backfill",
            "nightly",
            "0",
            "60000",
            "--overlap",
            "sometimes",
        ],
    )
    .fails(2);
    assert!(err.contains("overlap"), "{err}");

    // The requests: raised to the schedule, handled when a runtime runs it.
    let ok = |args: &[&str]| {
        let out: serde_json::Value = durable(store, args).json();
        assert_eq!(out, serde_json::json!({ "ok": true }), "{args:?}");
    };
    ok(&[
        "schedules",
        "pause",
        "nightly",
        "--note",
        "maintenance",
        "--json",
    ]);
    ok(&["schedules", "unpause", "held", "--json"]);
    ok(&["schedules", "trigger", "held", "--json"]);
    let (from, to) = (ms(tick(0)) - 120_000, ms(tick(0)));
    ok(&[
        "schedules",
        "backfill",
        "nightly",
        &from.to_string(),
        &to.to_string(),
        "--overlap",
        "allow_all",
        "--json",
    ]);
    lifetime(async {
        let runtime = runtime(store, &clock).await;
        let client = runtime.client();
        let nightly = client.schedule("nightly");
        until("nightly paused", || async {
            nightly.describe(1).await.unwrap().paused.as_deref() == Some("maintenance")
        })
        .await;
        for back in [tick(0) - 2 * MINUTE, tick(0) - MINUTE] {
            let run = run_id("nightly", back);
            until("a backfilled run started", || exists(&client, &run)).await;
        }
        let held = client.schedule("held");
        until("held unpaused and triggered", || async {
            let d = held.describe(1).await.unwrap();
            d.paused.is_none() && d.started == 1
        })
        .await;
        runtime.shutdown().await;
    });

    ok(&["schedules", "delete", "held", "--json"]);
    lifetime(async {
        let runtime = runtime(store, &clock).await;
        let held = runtime.client().schedule("held");
        until("held deleted", || async {
            matches!(held.describe(1).await, Err(Error::ScheduleNotFound(_)))
        })
        .await;
        runtime.shutdown().await;
    });
    let list: ScheduleList = durable(store, &["schedules", "list", "--json"]).json();
    let ids: Vec<&str> = list.schedules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["nightly"], "{list:?}");
    // Deleting the ended schedule again purges its instance.
    ok(&["schedules", "delete", "held", "--json"]);
    let err = durable(store, &["schedules", "delete", "held"]).fails(1);
    assert!(err.contains("no schedule `held`"), "{err}");
}
