//! Schema version 4: the indexes by status and by creation leave entities out (partial, on
//! `left(orchestrator, 1) <> '@'`); a database of version 3 gets them when opened and
//! keeps its data; the listings' statements read them, and entities are listed on the
//! primary key.

use durable_store::{
    Commit, InstanceFilter, InstanceRecord, PostgresStore, SCHEMA_VERSION, Status, StatusKind,
    Store, TestServer,
};

/// The plan of `sql` (its text lines), with sequential scans turned off so that the plan
/// shows which index can serve it, whatever the table's size.
fn plan(sql: &mut postgres::Client, statement: &str) -> String {
    let mut tx = sql.transaction().unwrap();
    tx.batch_execute("SET LOCAL enable_seqscan = off").unwrap();
    let rows = tx.query(&format!("EXPLAIN {statement}"), &[]).unwrap();
    rows.iter()
        .map(|row| row.get::<_, String>(0))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_version_3_database_is_migrated_and_its_listings_leave_entities_out_through_indexes() {
    let database = TestServer::shared().database();
    let flow = InstanceRecord::pending("flow".into(), 1, Vec::new(), 10, 1, None);
    let account = |created| InstanceRecord {
        status: Status::Running,
        ..InstanceRecord::pending("@Account".into(), 0, b"5".to_vec(), created, 1, None)
    };
    let store = PostgresStore::open(database.url()).unwrap();
    store
        .commit(&[Commit {
            instances: vec![
                ("f".into(), flow.clone()),
                ("@Account@b".into(), account(3)),
                ("@Account@a".into(), account(4)),
            ],
            ..Commit::default()
        }])
        .unwrap();
    drop(store);
    // Made a database of version 3, as this build's predecessor left it.
    let mut sql = postgres::Client::connect(database.url(), postgres::NoTls).unwrap();
    sql.batch_execute(
        "DROP INDEX durable.instances_by_status; DROP INDEX durable.instances_by_created; \
         CREATE INDEX instances_by_status ON durable.instances (status, created_ms); \
         CREATE INDEX instances_by_created ON durable.instances (created_ms); \
         UPDATE durable.meta SET value = '3' WHERE key = 'schema_version'",
    )
    .unwrap();
    let store = PostgresStore::open(database.url()).unwrap();
    assert_eq!(
        super::stored_schema_version(&mut sql),
        SCHEMA_VERSION.to_string()
    );
    assert_eq!(SCHEMA_VERSION, 5);
    let partial_indexes: i64 = sql
        .query_one(
            "SELECT count(*) FROM pg_indexes WHERE schemaname = 'durable' \
             AND indexname IN ('instances_by_status', 'instances_by_created') \
             AND indexdef LIKE '%WHERE (\"left\"(orchestrator, 1) <> ''@''::text)'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(partial_indexes, 2, "both indexes leave entities out");
    let statistics: i64 = sql
        .query_one(
            "SELECT count(*) FROM pg_statistic_ext WHERE stxname = 'instances_kind'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(
        statistics, 1,
        "the planner learns how many rows are entities'"
    );

    // The data stays; the views of orchestrations leave the entities out.
    assert_eq!(store.instance("f").unwrap(), Some(flow));
    let counts = store.count_by_status().unwrap();
    assert_eq!(counts[&StatusKind::Pending], 1);
    assert_eq!(counts[&StatusKind::Running], 0, "entities are not counted");
    let listed = store
        .list_instances(&InstanceFilter::default(), None, 10)
        .unwrap();
    let ids: Vec<&str> = listed.instances.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["f"]);
    let entities = store.instances_with_prefix("@Account@", None, 10).unwrap();
    let ids: Vec<&str> = entities.iter().map(|(id, _)| id.as_str()).collect();
    assert_eq!(ids, ["@Account@a", "@Account@b"], "in key order");

    // The statements of `query.rs`, as they are sent, read an index: one of the partial
    // ones for orchestrations (which of the two depends on the table's statistics), the
    // primary key for entities.
    let partial = "instances_by_";
    let orchestrations = "left(orchestrator, 1) <> '@'";
    for (statement, index) in [
        (
            format!(
                "SELECT id, record FROM durable.instances WHERE {orchestrations} \
                 ORDER BY created_ms, id LIMIT 101"
            ),
            partial,
        ),
        (
            format!(
                "SELECT id, record FROM durable.instances WHERE {orchestrations} \
                 AND status = ANY('{{running,pending}}'::text[]) \
                 ORDER BY created_ms, id LIMIT 101"
            ),
            partial,
        ),
        (
            format!(
                "SELECT status, count(*) FROM durable.instances WHERE {orchestrations} \
                 GROUP BY status"
            ),
            partial,
        ),
        (
            "SELECT id, record FROM durable.instances WHERE id >= '\\x404163636f756e7440'::bytea \
             AND id < '\\x404163636f756e7441'::bytea ORDER BY id LIMIT 101"
                .to_owned(),
            "instances_pkey",
        ),
    ] {
        let plan = plan(&mut sql, &statement);
        assert!(
            plan.contains(index) && !plan.contains("Seq Scan"),
            "`{statement}` should read an index `{index}..`:\n{plan}"
        );
    }
}
