//! The admin views of instances a runtime ran: history rows timed by the turns that
//! wrote them (on a `ManualClock`), the timeline and pending work of an instance, and the
//! list rows of a stalled instance and one with a custom status.

use std::time::{Duration, UNIX_EPOCH};

use durable_core::admin::{Admin, EntityFilter, ListFilter};
use durable_core::{
    ActivityContext, Client, Error, InstanceQuery, ManualClock, OrchestrationContext, Runtime,
    StatusKind, activity, orchestrator,
};

use crate::common::{lifetime, store};

const WAIT: Duration = Duration::from_secs(30);
const HOUR: Duration = Duration::from_secs(3600);
const START_MS: u64 = 1_700_000_000_000;

#[activity]
async fn weigh(_ctx: ActivityContext, n: u64) -> Result<u64, String> {
    Ok(n * 2)
}

/// Weighs `n`, sleeps an hour, says so in its custom status, waits for `go`, returns.
#[orchestrator]
async fn parcel(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let weight = ctx.call(weigh, n).await?;
    ctx.sleep(HOUR).await;
    ctx.set_custom_status(&serde_json::json!({"stage": "waiting", "weight": weight}));
    let go: u64 = ctx.wait_event("go").await;
    Ok(weight + go)
}

#[activity]
async fn ship(_ctx: ActivityContext, weight: u64) -> Result<u64, String> {
    Ok(weight)
}

/// Weighs `n`, then ships it.
#[orchestrator]
async fn weigh_and_ship(ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    let weight = ctx.call(weigh, n).await?;
    Ok(ctx.call(ship, weight).await?)
}

/// Waits for `approve`, returns it.
#[orchestrator]
async fn approval(ctx: OrchestrationContext, _: ()) -> Result<bool, String> {
    Ok(ctx.wait_event::<bool>("approve").await)
}

/// Waits until the history of `id` has an event of kind `kind`.
async fn until_kind(admin: &Admin, id: &str, kind: &str) {
    for _ in 0..2_000 {
        let rows = admin.history(id).await.unwrap().unwrap_or_default();
        if rows.iter().any(|row| row.kind == kind) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("`{id}` never had a `{kind}` event");
}

#[test]
fn history_rows_are_timed_by_their_turns_and_the_timeline_spans_each_step() {
    let (_dir, store) = store();
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_millis(START_MS));
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .orchestrator(parcel)
            .activity(weigh)
            .clock(clock.clone())
            .start()
            .await
            .unwrap();
        let admin = Admin::new(runtime.client());
        let instance = runtime.client().start(parcel, "p", 5).await.unwrap();
        until_kind(&admin, "p", "TimerCreated").await;
        // Pending: the timer, firing an hour after the turn that created it.
        let detail = admin.instance("p").await.unwrap().unwrap();
        assert_eq!(detail.pending.timers.len(), 1, "{:?}", detail.pending);
        assert!(detail.pending.timers[0].fire_at_ms >= START_MS + 3_600_000);
        assert!(detail.pending.activities.is_empty());
        clock.advance(2 * HOUR);
        until_kind(&admin, "p", "TimerFired").await;
        until_kind(&admin, "p", "CustomStatusSet").await;
        clock.advance(Duration::from_secs(60));
        admin
            .raise_event("p", "go", serde_json::json!(1))
            .await
            .unwrap();
        assert_eq!(instance.wait(WAIT).await.unwrap(), 11);

        let rows = admin.history("p").await.unwrap().unwrap();
        let times: Vec<u64> = (rows.iter())
            .map(|row| row.at_ms.expect("every row is timed"))
            .collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");
        assert_eq!(times[0], START_MS);
        let at = |kind: &str| rows.iter().find(|r| r.kind == kind).unwrap().at_ms.unwrap();
        assert!(at("ActivityCompleted") >= at("ActivityScheduled"));
        assert!(at("TimerFired") >= at("TimerCreated") + 3_600_000);
        assert!(at("Completed") >= START_MS + 2 * 3_600_000 + 60_000);
        let scheduled = rows.iter().find(|r| r.kind == "ActivityScheduled").unwrap();
        let site = scheduled.site.as_ref().unwrap();
        assert!(site.file.ends_with("admin_views.rs"), "{site:?}");
        assert_eq!(scheduled.name.as_deref(), Some("weigh"));
        let result = rows.iter().find(|r| r.kind == "ActivityCompleted").unwrap();
        assert_eq!(
            result.name.as_deref(),
            Some("weigh"),
            "named after its step"
        );
        assert_eq!(result.payload, Some(serde_json::json!(10)));

        let detail = admin.instance("p").await.unwrap().unwrap();
        assert_eq!(detail.summary.status, "completed");
        assert_eq!(detail.output, Some(serde_json::json!(11)));
        assert_eq!(detail.input, Some(serde_json::json!(5)));
        assert_eq!(
            detail.summary.custom_status,
            Some(serde_json::json!({"stage": "waiting", "weight": 10}))
        );
        let timeline: Vec<_> = (detail.timeline.iter())
            .map(|row| (row.kind.as_str(), row.outcome.as_str(), row.attempts))
            .collect();
        assert_eq!(
            timeline,
            [
                ("activity", "completed", 1),
                ("timer", "fired", 1),
                ("event", "completed", 1)
            ]
        );
        let timer = &detail.timeline[1];
        assert!(timer.ended_at_ms.unwrap() >= timer.started_at_ms.unwrap() + 3_600_000);
        assert_eq!(detail.pending, Default::default());
        runtime.shutdown().await;
    });
}

#[test]
fn list_rows_carry_the_failure_the_custom_status_and_where_a_stalled_instance_stopped() {
    let (_dir, store) = store();
    lifetime(async {
        // A deploy without `ship`: `stuck` stalls at its call, after weighing.
        let runtime = Runtime::builder(store.clone())
            .orchestrator(weigh_and_ship)
            .activity(weigh)
            .start()
            .await
            .unwrap();
        let err = (runtime
            .client()
            .start(weigh_and_ship, "stuck", 1)
            .await
            .unwrap())
        .wait(WAIT)
        .await
        .unwrap_err();
        assert!(matches!(err, Error::Stalled { .. }), "{err:?}");
        runtime.shutdown().await;
    });
    lifetime(async {
        let client = Client::open(store.clone()).await.unwrap();
        let page = client
            .list(&InstanceQuery::new().status(StatusKind::Stalled))
            .await
            .unwrap();
        let stuck = &page.instances[0];
        assert!(
            stuck.message.as_deref().unwrap().contains("ship"),
            "{stuck:?}"
        );
        let stopped = stuck.stopped_at.as_ref().unwrap();
        // The last step it recorded: the stalled turn wrote nothing.
        assert_eq!(stopped.step, 0);
        assert!(stopped.operation.contains("weigh"), "{stopped:?}");
        assert!(stopped.site.file.ends_with("admin_views.rs"));
        assert_eq!(stuck.custom_status, None);

        let admin = Admin::new(client);
        let list = admin
            .list(&ListFilter {
                status: Some("stalled".into()),
                ..ListFilter::default()
            })
            .await
            .unwrap();
        let row = &list.instances[0];
        assert_eq!(row.message, stuck.message);
        let stopped = row.stopped_at.as_ref().unwrap();
        assert_eq!(
            (stopped.step, stopped.site.line),
            (0, stuck.stopped_at.as_ref().unwrap().site.line)
        );
        assert_eq!(list.counts["stalled"], 1);
        assert_eq!(list.counts["completed"], 0);
        let err = admin
            .list(&ListFilter {
                status: Some("stuck".into()),
                ..ListFilter::default()
            })
            .await
            .unwrap_err();
        assert!(matches!(err, Error::InvalidArgument { .. }), "{err:?}");
        let detail = admin.instance("stuck").await.unwrap().unwrap();
        assert_eq!(detail.error.as_ref().unwrap().kind, "unregistered");
        let stats = admin.stats().await.unwrap();
        assert_eq!(stats.counts["stalled"], 1);
        assert_eq!(admin.instance("nobody").await.unwrap(), None);
        assert_eq!(admin.history("nobody").await.unwrap(), None);
    });
}

#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Meter {
    total: i64,
}

#[durable_core::entity]
impl Meter {
    pub fn add(&mut self, n: i64) {
        self.total += n;
    }
}

#[orchestrator]
async fn echo(_ctx: OrchestrationContext, n: u64) -> Result<u64, String> {
    Ok(n)
}

#[test]
fn entities_are_listed_with_their_state_and_finished_instances_purged_by_filter() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .orchestrator(echo)
            .entity::<Meter>()
            .start()
            .await
            .unwrap();
        let client = runtime.client();
        let admin = Admin::new(client.clone());
        client.signal_entity(Meter::add, "b", 2).await.unwrap();
        client.signal_entity(Meter::add, "a", 1).await.unwrap();
        for i in 0..3 {
            let done = client.start(echo, format!("e{i}"), i).await.unwrap();
            assert_eq!(done.wait(WAIT).await.unwrap(), i);
        }
        let filter = EntityFilter {
            name: Some("Meter".into()),
            page_size: Some(1),
            ..EntityFilter::default()
        };
        let first = loop {
            let first = admin.entities(&filter).await.unwrap();
            let all = admin.entities(&EntityFilter::default()).await.unwrap();
            if all.entities.iter().all(|e| e.state.is_some()) && all.entities.len() == 2 {
                break first;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        };
        assert_eq!(first.entities.len(), 1);
        assert_eq!(
            (
                first.entities[0].name.as_str(),
                first.entities[0].key.as_str()
            ),
            ("Meter", "a")
        );
        assert_eq!(
            first.entities[0].state,
            Some(serde_json::json!({"total": 1}))
        );
        let second = admin
            .entities(&EntityFilter {
                after: first.next.clone(),
                ..filter.clone()
            })
            .await
            .unwrap();
        assert_eq!(second.entities[0].key, "b");
        assert_eq!(second.next, None);
        // Entities are not orchestrations.
        assert_eq!(
            admin
                .list(&ListFilter::default())
                .await
                .unwrap()
                .instances
                .len(),
            3
        );

        let err = admin
            .purge_where(
                &ListFilter {
                    status: Some("running".into()),
                    ..ListFilter::default()
                },
                &mut |_| {},
            )
            .await
            .unwrap_err();
        assert!(matches!(err, Error::PurgeUnfinished { .. }), "{err:?}");
        let mut seen = Vec::new();
        let purged = admin
            .purge_where(&ListFilter::default(), &mut |n| seen.push(n))
            .await
            .unwrap();
        assert_eq!((purged, seen), (3, vec![3]));
        let list = admin.list(&ListFilter::default()).await.unwrap();
        assert!(list.instances.is_empty());
        assert_eq!(list.counts["completed"], 0);
        assert_eq!(
            admin
                .entities(&EntityFilter::default())
                .await
                .unwrap()
                .entities
                .len(),
            2
        );
        runtime.shutdown().await;
    });
}

#[test]
fn an_instance_waiting_for_an_event_shows_it_pending_and_in_its_timeline_until_raised() {
    let (_dir, store) = store();
    let clock = ManualClock::new(UNIX_EPOCH + Duration::from_millis(START_MS));
    lifetime(async {
        let runtime = Runtime::builder(store.clone())
            .orchestrator(approval)
            .clock(clock.clone())
            .start()
            .await
            .unwrap();
        let admin = Admin::new(runtime.client());
        let instance = runtime.client().start(approval, "a", ()).await.unwrap();
        until_kind(&admin, "a", "EventAwaited").await;

        let detail = admin.instance("a").await.unwrap().unwrap();
        assert_eq!(detail.pending.events, ["approve"], "{:?}", detail.pending);
        assert_eq!(detail.timeline.len(), 1, "{:?}", detail.timeline);
        let wait = &detail.timeline[0];
        assert_eq!(
            (wait.kind.as_str(), wait.name.as_str(), wait.step),
            ("event", "approve", None)
        );
        assert_eq!(wait.outcome, "pending");
        assert_eq!(
            (wait.started_at_ms, wait.ended_at_ms),
            (Some(START_MS), None)
        );
        let site = wait.site.as_ref().expect("the wait's site");
        assert!(site.file.ends_with("admin_views.rs"), "{site:?}");
        assert_eq!(site.function, "approval");
        let rows = admin.history("a").await.unwrap().unwrap();
        let awaited = rows.iter().find(|r| r.kind == "EventAwaited").unwrap();
        assert_eq!(awaited.name.as_deref(), Some("approve"));
        assert_eq!(awaited.site.as_ref(), Some(site));

        clock.advance(Duration::from_secs(60));
        admin
            .raise_event("a", "approve", serde_json::json!(true))
            .await
            .unwrap();
        assert!(instance.wait(WAIT).await.unwrap());
        let detail = admin.instance("a").await.unwrap().unwrap();
        assert_eq!(detail.timeline.len(), 1, "{:?}", detail.timeline);
        let wait = &detail.timeline[0];
        assert_eq!(wait.outcome, "completed");
        assert_eq!(wait.ended_at_ms, Some(START_MS + 60_000));
        assert!(detail.pending.events.is_empty());
        // Raised once, awaited once: one wait in the history.
        let rows = admin.history("a").await.unwrap().unwrap();
        assert_eq!(rows.iter().filter(|r| r.kind == "EventAwaited").count(), 1);
        runtime.shutdown().await;
    });
}
