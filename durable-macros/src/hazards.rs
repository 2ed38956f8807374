//! The rule table of DETERMINISM.md: what a macro can see in a body that makes a replay
//! take another path than the first run. One `check_*` function per rule, each naming the
//! replay-safe replacement, in two groups: `values.rs`, what a replay reads differently
//! (the clock, randomness, ids, hash order, the environment, shared state, addresses),
//! and `effects.rs`, what runs or waits outside history (timers, spawned work, channels,
//! racing, I/O, printing, a loop that never ends).
//!
//! The rules look at tokens, not resolved names: a path is matched by its segments after
//! the `use ... as` aliases declared in the body are expanded (see `body_check.rs`), so
//! `SystemTime::now`, `std::time::SystemTime::now` and `Clock::now` (with
//! `use std::time::SystemTime as Clock;`) are all the wall clock. A qualified path is
//! matched as the plain one: `<SystemTime>::now` and `<SystemTime as Trait>::now` as
//! `SystemTime::now`.

mod effects;
mod loop_scan;
mod values;

use crate::site::{Hazard, Site};

/// The first rule the site breaks, if any.
pub(crate) fn check(site: &Site<'_>) -> Option<Hazard> {
    const RULES: [fn(&Site<'_>) -> Option<Hazard>; 14] = [
        values::check_wall_clock,
        values::check_randomness,
        values::check_uuid,
        effects::check_sleeping,
        effects::check_spawning,
        effects::check_channels,
        effects::check_select,
        values::check_hash_collections,
        values::check_environment,
        effects::check_io,
        effects::check_printing,
        values::check_shared_state,
        values::check_addresses,
        effects::check_unbounded_loop,
    ];
    RULES.iter().find_map(|rule| rule(site))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::PathSite;

    fn path(text: &str, called: bool) -> PathSite {
        let segments: Vec<String> = text.split("::").map(String::from).collect();
        PathSite {
            written: segments.clone(),
            resolved: segments,
            alias: None,
            called,
        }
    }

    fn rule_of(text: &str) -> Option<u8> {
        check(&Site::Path(&path(text, true))).map(|h| h.rule)
    }

    #[test]
    fn matches_paths_by_their_last_segments() {
        let cases = [
            ("SystemTime::now", Some(1)),
            ("std::time::Instant::now", Some(1)),
            ("chrono::Utc::now", Some(1)),
            ("OffsetDateTime::now_utc", Some(1)),
            ("rand::random", Some(2)),
            ("rand::thread_rng", Some(2)),
            ("uuid::Uuid::new_v4", Some(3)),
            ("std::thread::sleep", Some(4)),
            ("tokio::time::timeout", Some(4)),
            ("tokio::spawn", Some(5)),
            ("tokio::task::spawn_blocking", Some(5)),
            ("tokio::sync::mpsc::channel", Some(6)),
            ("std::collections::HashMap::new", Some(8)),
            ("std::env::var", Some(9)),
            ("std::process::id", Some(9)),
            ("std::fs::read_to_string", Some(10)),
            ("reqwest::get", Some(10)),
            ("AtomicU64::new", Some(12)),
            ("Arc::as_ptr", Some(13)),
        ];
        for (text, rule) in cases {
            assert_eq!(rule_of(text), rule, "{text}");
        }
    }

    #[test]
    fn leaves_look_alikes_alone() {
        for text in [
            "now",
            "Duration::from_secs",
            "BTreeMap::new",
            "std::env::consts::OS",
            "SystemTime::UNIX_EPOCH",
            "rand_chacha::ChaCha8Rng::seed_from_u64",
            "fastrand::Rng::with_seed",
            "my::watch",
            "Ordering::Less",
            "sleep_for_a_while",
            "File::name",
            "Notify::Email",
        ] {
            assert_eq!(rule_of(text), None, "{text}");
        }
        // `sleep` alone is only the hazard when called.
        assert!(check(&Site::Path(&path("sleep", false))).is_none());
    }

    #[test]
    fn words_the_alias_in_the_message() {
        let site = PathSite {
            written: vec!["Clock".into(), "now".into()],
            resolved: vec![
                "std".into(),
                "time".into(),
                "SystemTime".into(),
                "now".into(),
            ],
            alias: Some(("Clock".into(), "std::time::SystemTime".into())),
            called: true,
        };
        let message = check(&Site::Path(&site))
            .unwrap()
            .message("orchestrator `f`");
        assert_eq!(
            message,
            "`Clock::now()` (`Clock` is `std::time::SystemTime`) is not replay-safe in orchestrator `f`: it returns a different time on every replay; use `ctx.now()`, which is recorded in history"
        );
    }
}
