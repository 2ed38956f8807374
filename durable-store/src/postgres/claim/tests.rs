//! The claim's statements as the server plans and runs them: what they read, and that
//! nothing is compiled just in time.

use crate::record::StatusKind;

/// [`super::STALLED`] names the stalled status as a literal (for its generic plan to use
/// the partial index): it must be the name the store writes.
#[test]
fn the_stalled_statement_names_the_stalled_status() {
    let literal = format!("status = '{}'", StatusKind::Stalled.as_str());
    assert!(super::STALLED.contains(&literal), "{}", super::STALLED);
}

/// On a throwaway server ([`TestServer`]).
#[cfg(feature = "testing")]
mod on_a_server {
    use std::time::Duration;

    use crate::lease::{ClaimFilter, CommitLease};
    use crate::postgres::PostgresStore;
    use crate::postgres::claim::{PAGE, STALLED, START};
    use crate::postgres::connect::{Conn, Target};
    use crate::postgres::test_server::TestServer;
    use crate::record::{Commit, Failure, FailureKind, InstanceRecord, Status};
    use crate::store::Store;

    /// The plan of `sql` (with parameters of `types`) run with `args` on `conn`, as
    /// `EXPLAIN (ANALYZE, FORMAT JSON)` gives it: the generic plan the store's connections
    /// use.
    fn explain(conn: &mut Conn, types: &str, sql: &str, args: &str) -> serde_json::Value {
        let client = conn.client();
        client.batch_execute("DEALLOCATE ALL").unwrap();
        client
            .batch_execute(&format!("PREPARE explained {types} AS {sql}"))
            .unwrap();
        let explain = format!("EXPLAIN (ANALYZE, FORMAT JSON) EXECUTE explained ({args})");
        let plan = client
            .simple_query(&explain)
            .unwrap()
            .into_iter()
            .find_map(|m| match m {
                postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
                _ => None,
            });
        serde_json::from_str(&plan.unwrap()).unwrap()
    }

    /// The tables the nodes of `node` (a plan) read or write.
    fn relations(node: &serde_json::Value) -> Vec<String> {
        let own = (node.get("Relation Name").and_then(|name| name.as_str())).map(str::to_owned);
        let children = (node.get("Plans").and_then(|plans| plans.as_array()))
            .into_iter()
            .flatten()
            .flat_map(relations);
        own.into_iter().chain(children).collect()
    }

    /// The claim's first statement, on a connection as the store makes them, compiles
    /// nothing just in time: with sequential scans priced out, its scan of `workers` is
    /// costed past `jit_above_cost`, and the server spent 300 ms compiling it at every
    /// claim (measured in a `chain` bench with `pg_stat_statements`). And when no lease
    /// lapsed it reads `workers` only, not the holders of `work` and `instances`.
    #[test]
    fn a_claim_compiles_nothing_just_in_time() {
        let database = TestServer::shared().database();
        let store = PostgresStore::open(database.url()).unwrap();
        let worker = store.join(Duration::from_secs(120)).unwrap();
        let mut conn = Target::parse(database.url()).unwrap().connect().unwrap();
        let plan = explain(&mut conn, "(bigint)", START, &worker.to_string());
        assert!(plan[0].get("JIT").is_none(), "{plan:#}");
        let mut read = relations(&plan[0]["Plan"]);
        read.sort_unstable();
        read.dedup();
        assert_eq!(read, ["workers"], "{plan:#}");
    }

    /// A claim reads the stalled instances it may take, not those a live worker holds
    /// (a worker that stalls an instance holds it while it lives): with 300 stalled
    /// instances held and 2 unheld, [`STALLED`] reads 2 rows, as the store's
    /// connections run it (`enable_seqscan` off, generic plans).
    #[test]
    fn a_claim_reads_only_the_stalled_instances_no_worker_holds() {
        let database = TestServer::shared().database();
        let store = PostgresStore::open(database.url()).unwrap();
        let stalled = |n: u64| InstanceRecord {
            status: Status::Stalled {
                failure: Failure {
                    kind: FailureKind::Panicked,
                    message: "no code".into(),
                },
            },
            ..InstanceRecord::pending("flow".into(), 1, Vec::new(), n, 1, None)
        };
        let holder = store.join(Duration::from_secs(120)).unwrap();
        let held = Commit {
            instances: (0..300)
                .map(|n| (format!("held-{n}"), stalled(n)))
                .collect(),
            lease: Some(CommitLease {
                worker: holder,
                ..CommitLease::default()
            }),
            ..Commit::default()
        };
        let unheld = Commit {
            instances: (0..2).map(|n| (format!("free-{n}"), stalled(n))).collect(),
            ..Commit::default()
        };
        store.commit(&[held, unheld]).unwrap();

        // As the store's connections run it (`connect.rs`).
        let mut conn = Target::parse(database.url()).unwrap().connect().unwrap();
        conn.client()
            .batch_execute("ANALYZE durable.instances")
            .unwrap();
        let args = format!("{}, '', {}", i64::MIN, PAGE);
        let plan = explain(&mut conn, "(bigint, bytea, bigint)", STALLED, &args);
        // Every row a node of the plan read: the rows it returned and those it filtered out.
        fn read(node: &serde_json::Value) -> u64 {
            let own = [
                "Actual Rows",
                "Rows Removed by Filter",
                "Rows Removed by Index Recheck",
            ]
            .iter()
            .filter_map(|key| node.get(key)?.as_u64())
            .sum::<u64>();
            let scans = node
                .get("Node Type")
                .and_then(|t| t.as_str())
                .is_some_and(|t| t.contains("Scan"));
            let children: u64 = (node.get("Plans").and_then(|p| p.as_array()))
                .map_or(0, |plans| plans.iter().map(read).sum());
            if scans { own + children } else { children }
        }
        let read = read(&plan[0]["Plan"]);
        assert_eq!(
            read, 2,
            "the claim's read of the stalled instances: {plan:#}"
        );
        let claim = store
            .claim(
                store.join(Duration::from_secs(120)).unwrap(),
                &ClaimFilter::default(),
            )
            .unwrap();
        let ids: Vec<&str> = claim.instances.iter().map(|i| i.id.as_str()).collect();
        assert_eq!(ids, ["free-0", "free-1"]);
    }
}
