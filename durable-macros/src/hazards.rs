//! The rule table of DETERMINISM.md: what a macro can see in a body that makes a replay
//! take another path than the first run. One `check_*` function per rule, each naming the
//! replay-safe replacement.
//!
//! The rules look at tokens, not resolved names: a path is matched by its segments after
//! the `use ... as` aliases declared in the body are expanded (see `body_check.rs`), so
//! `SystemTime::now`, `std::time::SystemTime::now` and `Clock::now` (with
//! `use std::time::SystemTime as Clock;`) are all the wall clock. A qualified path is
//! matched as the plain one: `<SystemTime>::now` and `<SystemTime as Trait>::now` as
//! `SystemTime::now`.

use proc_macro2::{TokenStream, TokenTree};

use crate::loop_scan::LoopScan;
use crate::site::{Hazard, Site};

/// The first rule the site breaks, if any.
pub(crate) fn check(site: &Site<'_>) -> Option<Hazard> {
    const RULES: [fn(&Site<'_>) -> Option<Hazard>; 14] = [
        check_wall_clock,
        check_randomness,
        check_uuid,
        check_sleeping,
        check_spawning,
        check_channels,
        check_select,
        check_hash_collections,
        check_environment,
        check_io,
        check_printing,
        check_shared_state,
        check_addresses,
        check_unbounded_loop,
    ];
    RULES.iter().find_map(|rule| rule(site))
}

/// Rule 1: the wall clock. Every replay reads a different time.
fn check_wall_clock(site: &Site<'_>) -> Option<Hazard> {
    const NOW: &str = "use `ctx.now()`, which is recorded in history";
    match site {
        Site::Path(path)
            if path.last2_in(
                &[
                    "SystemTime",
                    "Instant",
                    "Utc",
                    "Local",
                    "Timestamp",
                    "Zoned",
                    "UtcDateTime",
                ],
                &["now", "today"],
            ) || path.last2_in(&["OffsetDateTime"], &["now_utc", "now_local"]) =>
        {
            path.hazard(1, "it returns a different time on every replay", NOW)
        }
        Site::Path(path) if path.last2_in(&["SystemTime", "Instant"], &["elapsed"]) => {
            path.hazard(1, "it reads the clock again on every replay", NOW)
        }
        Site::Method(method) if method.name == "elapsed" && method.args == 0 => Some(Hazard {
            rule: 1,
            what: ".elapsed()".into(),
            note: String::new(),
            why: "it reads the clock again on every replay",
            fix: "subtract two readings of `ctx.now()`, which is recorded in history",
        }),
        _ => None,
    }
}

/// Rule 2: randomness. Every replay draws other numbers.
fn check_randomness(site: &Site<'_>) -> Option<Hazard> {
    let Site::Path(path) = site else { return None };
    let rand_fn = path.root() == "rand"
        && path.last_in(&[
            "random",
            "rng",
            "random_range",
            "random_bool",
            "random_ratio",
            "random_iter",
            "fill",
        ]);
    let global = path.last_in(&[
        "thread_rng",
        "ThreadRng",
        "OsRng",
        "from_entropy",
        "from_os_rng",
    ]) || path.root() == "getrandom"
        || (path.root() == "fastrand" && !path.has("with_seed"));
    if !(rand_fn || global) {
        return None;
    }
    path.hazard(
        2,
        "it returns different values on every replay",
        "use `ctx.random()` (a `u64` recorded in history), or seed an rng with it",
    )
}

/// Rule 3: fresh ids. Every replay makes a new one.
fn check_uuid(site: &Site<'_>) -> Option<Hazard> {
    const WHY: &str = "it makes a new id on every replay";
    const FIX: &str = "use `ctx.new_uuid()`, which is recorded in history";
    match site {
        Site::Path(path)
            if path.last2_in(
                &["Uuid"],
                &["new_v4", "new_v7", "now_v7", "now_v6", "now_v1"],
            ) || path.last2_in(&["Ulid"], &["new", "generate"]) =>
        {
            path.hazard(3, WHY, FIX)
        }
        Site::Macro(mac) if mac.last() == "nanoid" => mac.hazard(3, WHY, FIX),
        _ => None,
    }
}

/// Rule 4: sleeping and timers outside history. A replay waits again, and a restart
/// forgets the timer.
fn check_sleeping(site: &Site<'_>) -> Option<Hazard> {
    let Site::Path(path) = site else { return None };
    const WHY: &str = "its timer is not recorded, so a replay waits again and a restart forgets it";
    let timer_module = path.penultimate_in(&["thread", "time", "task"]);
    if path.root() == "futures_timer"
        || (timer_module && path.last_in(&["sleep", "sleep_ms", "sleep_until"]))
        || (path.written.len() == 1 && path.called && path.last_in(&["sleep", "sleep_until"]))
    {
        return path.hazard(
            4,
            WHY,
            "use `ctx.sleep(duration)` or `ctx.sleep_until(time)`, durable timers",
        );
    }
    if timer_module && path.last_in(&["timeout", "timeout_at"]) {
        return path.hazard(
            4,
            WHY,
            "use `ctx.timeout(duration, future)`, which races a durable timer",
        );
    }
    if timer_module && path.last_in(&["interval", "interval_at"]) {
        return path.hazard(
            4,
            WHY,
            "await `ctx.sleep(period)` in a loop, ending each round with `ctx.continue_as_new(input)`",
        );
    }
    None
}

/// Rule 5: spawning. The spawned work runs outside history: a replay runs it again and its
/// result is not recorded.
fn check_spawning(site: &Site<'_>) -> Option<Hazard> {
    const WHY: &str = "the spawned work runs outside history, so a replay runs it again and its result is not recorded";
    const FIX: &str =
        "do the work in an activity, and fan out with `ctx.join_all(...)` or a sub-orchestration";
    match site {
        Site::Path(path)
            if path.last_in(&[
                "spawn_blocking",
                "spawn_local",
                "block_in_place",
                "block_on",
            ]) || (path.last_in(&["spawn"])
                && path.penultimate_in(&[
                    "tokio",
                    "task",
                    "thread",
                    "rayon",
                    "async_std",
                    "smol",
                ]))
                || path.pair(&["thread"], &["scope"])
                || path.root() == "rayon"
                || path.has("JoinSet")
                || path.has("LocalSet") =>
        {
            path.hazard(5, WHY, FIX)
        }
        Site::Method(method)
            if [
                "spawn",
                "spawn_blocking",
                "spawn_local",
                "block_on",
                "into_par_iter",
            ]
            .contains(&method.name.as_str())
                || method.name.starts_with("par_") =>
        {
            Some(Hazard {
                rule: 5,
                what: format!(".{}()", method.name),
                note: String::new(),
                why: WHY,
                fix: FIX,
            })
        }
        _ => None,
    }
}

/// Rule 6: channels and notifications. What passes through them is not recorded, so a
/// replay does not see it.
fn check_channels(site: &Site<'_>) -> Option<Hazard> {
    let Site::Path(path) = site else { return None };
    // `watch` is also a common function name: only as a module (`watch::channel`).
    let n = path.resolved.len();
    let channel_module = n >= 2
        && path.resolved.iter().enumerate().any(|(i, s)| {
            ["mpsc", "oneshot", "broadcast"].contains(&s.as_str()) || (s == "watch" && i + 1 < n)
        });
    let channel_crate = [
        "crossbeam_channel",
        "flume",
        "async_channel",
        "async_broadcast",
        "kanal",
    ]
    .contains(&path.root())
        || path.pair(&["crossbeam"], &["channel"]);
    // `Notify` is also a likely name for a user's own type: only tokio's.
    let notify =
        path.pair(&["sync"], &["Notify"]) || path.last2_in(&["Notify"], &["new", "const_new"]);
    if channel_module || channel_crate || notify {
        return path.hazard(
            6,
            "what passes through it is not recorded, so a replay does not see it",
            "receive outside input with `ctx.wait_event::<T>(name)`",
        );
    }
    None
}

/// Rule 7: racing futures in a random order. A replay can take another branch.
fn check_select(site: &Site<'_>) -> Option<Hazard> {
    let Site::Macro(mac) = site else { return None };
    if mac.last() != "select" {
        return None;
    }
    const WHY: &str =
        "it picks a random branch when several are ready, so a replay can take another one";
    if mac.resolved.first().is_some_and(|root| root == "futures") {
        return mac.hazard(
            7,
            WHY,
            "use `ctx.when_any(...)`, or `tokio::select! { biased; ... }`",
        );
    }
    if mac.biased {
        return None;
    }
    Some(Hazard {
        rule: 7,
        what: format!("{}!` without `biased;", mac.written),
        note: String::new(),
        why: WHY,
        fix: "start it with `biased;` to poll the branches in order, or use `ctx.when_any(...)`",
    })
}

/// Rule 8: hash collections. They iterate in a random order, different in every process.
fn check_hash_collections(site: &Site<'_>) -> Option<Hazard> {
    let Site::Path(path) = site else { return None };
    const WHY: &str = "it iterates in a random order, different in every process";
    if path
        .resolved
        .iter()
        .any(|s| ["HashMap", "AHashMap", "DashMap"].contains(&s.as_str()))
    {
        return path.hazard(8, WHY, "use `BTreeMap`");
    }
    if path
        .resolved
        .iter()
        .any(|s| ["HashSet", "AHashSet", "DashSet"].contains(&s.as_str()))
    {
        return path.hazard(8, WHY, "use `BTreeSet`");
    }
    if path.has("RandomState") {
        return path.hazard(8, WHY, "use `BTreeMap` or `BTreeSet`");
    }
    None
}

/// Rule 9: the environment and the process. A replay runs in another process.
fn check_environment(site: &Site<'_>) -> Option<Hazard> {
    let Site::Path(path) = site else { return None };
    let env = &path.resolved;
    let env_index = match env.first().map(String::as_str) {
        Some("env") => Some(0),
        Some("std" | "core") if env.get(1).is_some_and(|s| s == "env") => Some(1),
        _ => None,
    };
    let reads_env = env_index.is_some_and(|i| env.get(i + 1).is_some_and(|item| item != "consts"));
    if reads_env
        || path.pair(&["process"], &["id"])
        || path.pair(&["thread"], &["current"])
        || path.last_in(&["available_parallelism"])
        || [
            "dotenv",
            "dotenvy",
            "num_cpus",
            "gethostname",
            "hostname",
            "whoami",
            "sysinfo",
        ]
        .contains(&path.root())
    {
        return path.hazard(
            9,
            "it reads the environment of whichever process replays it",
            "pass it in the input or read it in an activity (or record it with `ctx.side_effect(|| ...)`)",
        );
    }
    None
}

/// The crates whose every item does I/O: HTTP, databases, brokers, storage.
#[rustfmt::skip]
const IO_CRATES: &[&str] = &[
    "reqwest", "hyper", "hyper_util", "ureq", "surf", "isahc", "curl", "attohttpc", "awc",
    "tonic", "sqlx", "diesel", "diesel_async", "sea_orm", "redis", "deadpool_redis",
    "postgres", "tokio_postgres", "deadpool_postgres", "mysql", "mysql_async", "rusqlite",
    "mongodb", "scylla", "lapin", "rdkafka", "async_nats", "nats", "aws_config",
    "tokio_tungstenite", "tungstenite", "lettre", "ssh2", "socket2", "mio", "fjall", "sled",
    "rocksdb", "redb", "memmap2", "walkdir",
];

/// Rule 10: file and network I/O. It runs again on every replay, and its result is not
/// recorded.
fn check_io(site: &Site<'_>) -> Option<Hazard> {
    let Site::Path(path) = site else { return None };
    let io_module = path.pair(&["std", "tokio", "async_std", "smol"], &["fs", "net"])
        || (path.resolved.len() >= 2 && ["fs", "net"].contains(&path.root()))
        || path.pair(&["process"], &["Command"])
        || path.pair(&["tokio", "async_std"], &["process"])
        || path.pair(&["io"], &["stdin"]);
    // `File` is also a likely name for a user's own type: only its constructors.
    let io_type = path.last2_in(&["File"], &["open", "create", "create_new", "options"])
        || path.resolved.iter().any(|s| {
            [
                "OpenOptions",
                "TcpStream",
                "TcpListener",
                "UdpSocket",
                "UnixStream",
                "UnixListener",
                "UnixDatagram",
            ]
            .contains(&s.as_str())
        });
    let io_crate = IO_CRATES.contains(&path.root()) || path.root().starts_with("aws_sdk_");
    if io_module || io_type || io_crate {
        return path.hazard(
            10,
            "the I/O runs again on every replay and its result is not recorded",
            "do it in an activity",
        );
    }
    None
}

/// Rule 11: printing. Every replay prints again.
fn check_printing(site: &Site<'_>) -> Option<Hazard> {
    const WHY: &str = "it prints again on every replay";
    const FIX: &str = "use `tracing` (suppressed while replaying) or log in an activity";
    match site {
        Site::Macro(mac)
            if ["println", "eprintln", "print", "eprint", "dbg"].contains(&mac.last()) =>
        {
            mac.hazard(11, WHY, FIX)
        }
        Site::Path(path) if path.pair(&["io"], &["stdout", "stderr"]) => path.hazard(11, WHY, FIX),
        _ => None,
    }
}

/// Rule 12: shared mutable state. It differs between replays and between processes.
fn check_shared_state(site: &Site<'_>) -> Option<Hazard> {
    const WHY: &str = "state shared outside the instance differs between replays and processes";
    const FIX: &str = "pass state through the input and results";
    let hazard = |what: String| {
        Some(Hazard {
            rule: 12,
            what,
            note: String::new(),
            why: WHY,
            fix: FIX,
        })
    };
    match site {
        Site::Static(item) if matches!(item.mutability, syn::StaticMutability::Mut(_)) => {
            hazard(format!("static mut {}", item.ident))
        }
        Site::Static(item) if interior_mutability(&item.ty) => {
            hazard(format!("static {}", item.ident))
        }
        Site::Macro(mac) if mac.last() == "thread_local" => mac.hazard(12, WHY, FIX),
        Site::Path(path) if path.resolved.iter().any(|s| is_atomic(s)) => path.hazard(12, WHY, FIX),
        Site::Method(method)
            if ATOMIC_METHODS.contains(&method.name.as_str())
                || (["load", "store", "swap"].contains(&method.name.as_str())
                    && method.atomic_ordering) =>
        {
            hazard(format!(".{}()", method.name))
        }
        _ => None,
    }
}

/// The read-modify-write methods of the atomic types (exactly: `fetch_orders()` is fine).
const ATOMIC_METHODS: [&str; 15] = [
    "fetch_add",
    "fetch_sub",
    "fetch_and",
    "fetch_nand",
    "fetch_or",
    "fetch_xor",
    "fetch_max",
    "fetch_min",
    "fetch_not",
    "fetch_neg",
    "fetch_update",
    "fetch_ptr_add",
    "compare_exchange",
    "compare_exchange_weak",
    "compare_and_swap",
];

/// `AtomicU64`, `AtomicBool`, ...: `Atomic` then an upper-case letter.
fn is_atomic(segment: &str) -> bool {
    segment
        .strip_prefix("Atomic")
        .and_then(|rest| rest.chars().next())
        .is_some_and(|c| c.is_ascii_uppercase())
}

/// Whether a `static`'s type can change behind a shared reference.
fn interior_mutability(ty: &syn::Type) -> bool {
    fn scan(tokens: TokenStream) -> bool {
        tokens.into_iter().any(|tree| match tree {
            TokenTree::Ident(ident) => {
                let name = ident.to_string();
                is_atomic(&name)
                    || ["Mutex", "RwLock", "Cell", "RefCell", "UnsafeCell"].contains(&name.as_str())
            }
            TokenTree::Group(group) => scan(group.stream()),
            _ => false,
        })
    }
    scan(quote::quote!(#ty))
}

/// Rule 13: addresses. They differ on every run.
fn check_addresses(site: &Site<'_>) -> Option<Hazard> {
    const WHY: &str = "addresses differ on every run";
    const FIX: &str = "use stable ids";
    let hazard = |what: String| {
        Some(Hazard {
            rule: 13,
            what,
            note: String::new(),
            why: WHY,
            fix: FIX,
        })
    };
    const POINTER_METHODS: [&str; 5] = [
        "as_ptr",
        "as_mut_ptr",
        "addr",
        "expose_provenance",
        "expose_addr",
    ];
    match site {
        Site::Method(method) if POINTER_METHODS.contains(&method.name.as_str()) => {
            hazard(format!(".{}()", method.name))
        }
        Site::Path(path) if path.last_in(&POINTER_METHODS) => path.hazard(13, WHY, FIX),
        Site::Macro(mac) if ["addr_of", "addr_of_mut"].contains(&mac.last()) => {
            mac.hazard(13, WHY, FIX)
        }
        Site::Cast(cast) if matches!(*cast.ty, syn::Type::Ptr(_)) => hazard("as *const _".into()),
        Site::FormatString(text) if formats_pointer(text) => hazard("{:p}".into()),
        _ => None,
    }
}

/// Whether a format string has a `{...:p}` placeholder (also `{x:p}`, `{:#p}`, `{:>18p}`).
fn formats_pointer(text: &str) -> bool {
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        rest = &rest[open + 1..];
        if let Some(escaped) = rest.strip_prefix('{') {
            rest = escaped;
            continue;
        }
        let Some(close) = rest.find('}') else { break };
        let placeholder = &rest[..close];
        if placeholder
            .split_once(':')
            .is_some_and(|(_, spec)| spec.ends_with('p'))
        {
            return true;
        }
        rest = &rest[close + 1..];
    }
    false
}

/// Rule 16: a `loop` that awaits and has no way out. Its history grows on every turn, and
/// every replay runs all of it again.
fn check_unbounded_loop(site: &Site<'_>) -> Option<Hazard> {
    let Site::Loop(node) = site else { return None };
    let scan = LoopScan::of(node);
    (scan.awaits && !scan.exits && !scan.continues_as_new).then(|| Hazard {
        rule: 16,
        what: "loop".into(),
        note: String::new(),
        why: "it awaits on every turn and has no `break` or `return`, so its history grows without bound",
        fix: "end each round with `return ctx.continue_as_new(input).await;`, which starts over with a fresh history, or give the loop an exit",
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::site::PathSite;
    use syn::parse_quote;

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

    #[test]
    fn finds_pointer_placeholders() {
        assert!(formats_pointer("{:p}"));
        assert!(formats_pointer("at {x:#p}!"));
        assert!(formats_pointer("{0:>18p}"));
        assert!(!formats_pointer("{{:p}}"));
        assert!(!formats_pointer("{:?} {x} {}"));
        assert!(!formats_pointer("sleep 5s"));
    }

    #[test]
    fn tells_unbounded_loops_from_loops_with_an_exit() {
        let rule = |node: syn::ExprLoop| check(&Site::Loop(&node)).map(|h| h.rule);
        assert_eq!(
            rule(parse_quote!(loop {
                ctx.sleep(d).await;
            })),
            Some(16)
        );
        assert_eq!(
            rule(parse_quote!(loop {
                ctx.sleep(d).await;
                return ctx.continue_as_new(s).await;
            })),
            None
        );
        assert_eq!(
            rule(parse_quote!(loop {
                if ctx.call(a, ()).await? {
                    break;
                }
            })),
            None
        );
        assert_eq!(
            rule(parse_quote!(loop {
                x += 1;
            })),
            None
        );
        // A `break` of an inner loop does not end the outer one.
        assert_eq!(
            rule(parse_quote!(loop {
                ctx.sleep(d).await;
                for i in v {
                    break;
                }
            })),
            Some(16)
        );
        assert_eq!(
            rule(parse_quote!('outer: loop {
                ctx.sleep(d).await;
                loop {
                    break 'outer;
                }
            })),
            None
        );
        // A `return` in a closure returns from the closure.
        assert_eq!(
            rule(parse_quote!(loop {
                ctx.sleep(d).await;
                let f = || {
                    return 1;
                };
            })),
            Some(16)
        );
    }
}
