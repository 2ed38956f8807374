//! Instance ids: reused, too long, with control characters, refused for children.

use super::*;

#[test]
fn starting_an_existing_id_after_a_restart_returns_it_and_ignores_the_new_input() {
    let (_dir, store) = store();
    lifetime(async {
        let runtime = builder(store.clone()).start().await.unwrap();
        let first = runtime.client().start(chain, "once", 1).await.unwrap();
        assert_eq!(first.wait(WAIT).await.unwrap(), 6);
        runtime.shutdown().await;
    });
    lifetime(async {
        let (builder, calls) = counting_builder(store.clone());
        let runtime = builder.start().await.unwrap();
        let again = runtime.client().start(chain, "once", 100).await.unwrap();
        assert!(!again.is_new());
        assert_eq!(again.wait(WAIT).await.unwrap(), 6, "the first run's output");
        assert_eq!(calls.count(), 0, "nothing ran again");
        runtime.shutdown().await;
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ids_are_measured_in_bytes_and_control_characters_are_refused() {
    let (_dir, store) = store();
    let runtime = builder(store.clone()).start().await.unwrap();
    let client = runtime.client();
    let accepted = [
        "x".repeat(256),
        "é".repeat(128),
        "order 7/ü:ß".to_string(),
        "zero\u{200b}width".to_string(),
    ];
    for id in &accepted {
        let instance = client.start(chain, id.clone(), 1).await.unwrap();
        assert_eq!(instance.wait(WAIT).await.unwrap(), 6, "{id:?}");
    }
    let refused = [
        "x".repeat(257),
        "é".repeat(129),
        "tab\there".to_string(),
        "nul\0".to_string(),
        "del\u{7f}".to_string(),
        "csi\u{9b}".to_string(),
    ];
    for id in &refused {
        let err = client.start(chain, id.clone(), 1).await.unwrap_err();
        assert!(
            matches!(&err, Error::InvalidInstanceId { id: given, .. } if given == id),
            "{id:?}: {err:?}"
        );
    }
    assert_eq!(store.instances().unwrap().len(), accepted.len());
    runtime.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_bad_ids_find_no_instance_and_write_nothing() {
    let (_dir, store) = store();
    let runtime = builder(store.clone()).start().await.unwrap();
    let client = runtime.client();
    for id in [String::new(), "a\nb".to_string(), "x".repeat(70_000)] {
        let results = [
            client.raise_event(&id, "go", &1).await,
            client.terminate(&id, "why").await,
            client.suspend(&id, "why").await,
            client.resume(&id).await,
            client.purge(&id).await,
            client.restart(&id).await,
        ];
        for result in results {
            assert!(
                matches!(result, Err(Error::InstanceNotFound(_))),
                "{:?}: {result:?}",
                short(&id)
            );
        }
        let status = client.instance(chain, id.clone()).status().await;
        assert!(
            matches!(status, Err(Error::InstanceNotFound(_))),
            "{status:?}"
        );
    }
    assert_eq!(store.instances().unwrap(), vec![]);
    assert_eq!(store.work_items().unwrap(), vec![]);
    runtime.shutdown().await;
}

/// The start of a long id, for messages.
fn short(id: &str) -> String {
    id.chars().take(12).collect()
}

/// Starts `chain` as a child under the id it is given; reports how the call ended.
#[orchestrator]
async fn names_its_child(ctx: OrchestrationContext, id: String) -> Result<String, String> {
    match ctx.sub_orchestration_with_id(chain, id, 1).await {
        Ok(output) => Ok(format!("ran: {output}")),
        Err(e) => Ok(format!("{:?}: {}", e.failure().kind, e.message())),
    }
}

/// FAILS today. An empty child id (or one over the store's key limit) makes the parent's
/// turn commit fail, and the runtime retries that turn forever: the parent hangs. A
/// control-character or over-long id, which `Client::start` refuses, is created.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sub_orchestration_id_the_client_would_refuse_is_refused_to_the_parent() {
    let (_dir, store) = store();
    let runtime = builder(store.clone())
        .orchestrator(names_its_child)
        .start()
        .await
        .unwrap();
    let client = runtime.client();
    let mut wrong = Vec::new();
    // `~` starts the ids the runtime generates: no explicit id may take one.
    for (n, child) in ["", "a\nb", &"x".repeat(300), "~p~1.0.0"]
        .into_iter()
        .enumerate()
    {
        let parent = client
            .start(names_its_child, format!("parent-{n}"), child.to_string())
            .await
            .unwrap();
        match parent.wait(SOON).await {
            Ok(out) if out.starts_with("Rejected: ") && out.contains("invalid instance id") => {}
            other => wrong.push(format!("child id {:?}: {other:?}", short(child))),
        }
    }
    assert!(wrong.is_empty(), "{wrong:#?}");
    runtime.shutdown().await;
}
