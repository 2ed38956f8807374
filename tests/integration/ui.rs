//! The compile-time behaviour of `#[orchestrator]`, `#[activity]` and `#[entity]`: code that must
//! compile (`tests/ui/*/pass`) and code that must fail with the snapshotted errors
//! (`tests/ui/*/fail`). Regenerate snapshots with `TRYBUILD=overwrite` and read the diff.

#[test]
fn ui() {
    let t = trybuild::TestCases::new();
    t.pass("tests/ui/*/pass/*.rs");
    t.compile_fail("tests/ui/*/fail/*.rs");
}
