//! Schema version 3: a database of version 2 gets the index of the unheld stalled
//! instances when opened, and keeps its data.

use std::time::Duration;

use durable_store::{
    ClaimFilter, Commit, Failure, FailureKind, Holding, InstanceRecord, PostgresStore,
    SCHEMA_VERSION, Status, Store, TestServer,
};

#[test]
fn a_version_2_database_is_migrated_and_keeps_its_data() {
    let database = TestServer::shared().database();
    let stalled = InstanceRecord {
        status: Status::Stalled {
            failure: Failure {
                kind: FailureKind::Panicked,
                message: "no code".into(),
            },
        },
        ..InstanceRecord::pending("flow".into(), 2, Vec::new(), 1, 1, None)
    };
    let store = PostgresStore::open(database.url()).unwrap();
    store
        .commit(&[Commit {
            instances: vec![("s".into(), stalled.clone())],
            ..Commit::default()
        }])
        .unwrap();
    drop(store);
    // Made a database of version 2, as this build's predecessor left it.
    let mut sql = postgres::Client::connect(database.url(), postgres::NoTls).unwrap();
    sql.batch_execute(
        "DROP INDEX durable.instances_stalled_unheld; \
         UPDATE durable.meta SET value = '2' WHERE key = 'schema_version'",
    )
    .unwrap();
    let store = PostgresStore::open(database.url()).unwrap();
    assert_eq!(
        super::stored_schema_version(&mut sql),
        SCHEMA_VERSION.to_string()
    );
    assert_eq!(SCHEMA_VERSION, 5);
    let index: i64 = sql
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'durable' \
             AND indexname = 'instances_stalled_unheld'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        index, 1,
        "the index of the unheld stalled instances is created"
    );
    assert_eq!(store.instance("s").unwrap(), Some(stalled));
    let worker = store.join(Duration::from_secs(60)).unwrap();
    let claim = store.claim(worker, &ClaimFilter::default()).unwrap();
    let claimed: Vec<(&str, Holding)> = (claim.instances.iter())
        .map(|instance| (instance.id.as_str(), instance.holding))
        .collect();
    assert_eq!(claimed, [("s", Holding::Claimed)]);
}
