//! The rules about work and waiting outside history, which a replay runs again and
//! whose results it does not see: timers, spawned work, channels, racing futures, I/O,
//! printing, and a loop whose history grows without bound.

use super::loop_scan::LoopScan;
use crate::site::{Hazard, Site};

/// Rule 4: sleeping and timers outside history. A replay waits again, and a restart
/// forgets the timer.
pub(super) fn check_sleeping(site: &Site<'_>) -> Option<Hazard> {
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
pub(super) fn check_spawning(site: &Site<'_>) -> Option<Hazard> {
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
pub(super) fn check_channels(site: &Site<'_>) -> Option<Hazard> {
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
pub(super) fn check_select(site: &Site<'_>) -> Option<Hazard> {
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
pub(super) fn check_io(site: &Site<'_>) -> Option<Hazard> {
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
pub(super) fn check_printing(site: &Site<'_>) -> Option<Hazard> {
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

/// Rule 16: a `loop` that awaits and has no way out. Its history grows on every turn, and
/// every replay runs all of it again.
pub(super) fn check_unbounded_loop(site: &Site<'_>) -> Option<Hazard> {
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
    use crate::hazards::check;
    use crate::site::Site;
    use syn::parse_quote;

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
