//! The places in a body the rules of `hazards.rs` look at, and what a rule reports.

/// A place in a body that a rule looks at, with the tokens an error is spanned on.
pub(crate) enum Site<'a> {
    /// Any path: an expression, a type, a pattern, a `use` leaf, or a path in the tokens
    /// of a macro.
    Path(&'a PathSite),
    /// `receiver.name(args)`.
    Method(&'a MethodSite),
    /// `name!(...)`.
    Macro(&'a MacroSite),
    /// A string literal in a macro's arguments, which may be a format string.
    FormatString(&'a str),
    /// A `static` item declared in the body.
    Static(&'a syn::ItemStatic),
    /// `expr as Type`.
    Cast(&'a syn::ExprCast),
    /// `loop { ... }`.
    Loop(&'a syn::ExprLoop),
}

/// A path as written and as resolved through the body's `use` aliases.
#[derive(Debug)]
pub(crate) struct PathSite {
    /// The segments as written, without generic arguments.
    pub(crate) written: Vec<String>,
    /// The segments with a leading alias replaced by the path it imports.
    pub(crate) resolved: Vec<String>,
    /// The alias the first segment is, for messages: (`Clock`, `std::time::SystemTime`).
    pub(crate) alias: Option<(String, String)>,
    /// Whether the path is the function of a call, `path(...)`.
    pub(crate) called: bool,
}

/// A method call.
#[derive(Debug)]
pub(crate) struct MethodSite {
    pub(crate) name: String,
    pub(crate) args: usize,
    /// Whether an argument names an atomic memory ordering (`Ordering::SeqCst`, ...).
    pub(crate) atomic_ordering: bool,
}

/// A macro invocation.
#[derive(Debug)]
pub(crate) struct MacroSite {
    /// The path as written, for messages: `tokio::select`.
    pub(crate) written: String,
    /// The resolved segments.
    pub(crate) resolved: Vec<String>,
    /// Whether the arguments start with `biased;` (for `select!`).
    pub(crate) biased: bool,
}

/// What a rule found: the hazard, why it breaks replay, and what to write instead.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Hazard {
    /// The DETERMINISM.md rule number.
    pub(crate) rule: u8,
    /// The hazard as written, without backticks: `SystemTime::now()`.
    pub(crate) what: String,
    /// What an alias in `what` stands for: " (`Clock` is `std::time::SystemTime`)".
    pub(crate) note: String,
    pub(crate) why: &'static str,
    pub(crate) fix: &'static str,
}

impl Hazard {
    /// The message, naming the orchestrator or helper it was found in:
    /// "`SystemTime::now()` is not replay-safe in orchestrator `checkout`: ...; use ...".
    pub(crate) fn message(&self, subject: &str) -> String {
        format!(
            "`{}`{} is not replay-safe in {subject}: {}; {}",
            self.what, self.note, self.why, self.fix
        )
    }
}

impl PathSite {
    pub(crate) fn root(&self) -> &str {
        self.resolved.first().map_or("", String::as_str)
    }

    pub(crate) fn last_in(&self, names: &[&str]) -> bool {
        self.resolved
            .last()
            .is_some_and(|last| names.contains(&last.as_str()))
    }

    pub(crate) fn penultimate_in(&self, names: &[&str]) -> bool {
        let n = self.resolved.len();
        n >= 2 && names.contains(&self.resolved[n - 2].as_str())
    }

    /// The last two segments are one of `types` then one of `items`.
    pub(crate) fn last2_in(&self, types: &[&str], items: &[&str]) -> bool {
        self.penultimate_in(types) && self.last_in(items)
    }

    /// Some segment is one of `first`, and the next one of `second`.
    pub(crate) fn pair(&self, first: &[&str], second: &[&str]) -> bool {
        self.resolved
            .windows(2)
            .any(|w| first.contains(&w[0].as_str()) && second.contains(&w[1].as_str()))
    }

    pub(crate) fn has(&self, name: &str) -> bool {
        self.resolved.iter().any(|s| s == name)
    }

    /// The path as the user wrote it, with `()` if it is called.
    pub(crate) fn what(&self) -> String {
        let mut what = self.written.join("::");
        if self.called {
            what.push_str("()");
        }
        what
    }

    pub(crate) fn hazard(&self, rule: u8, why: &'static str, fix: &'static str) -> Option<Hazard> {
        Some(Hazard {
            rule,
            what: self.what(),
            note: self
                .alias
                .as_ref()
                .map(|(alias, target)| format!(" (`{alias}` is `{target}`)"))
                .unwrap_or_default(),
            why,
            fix,
        })
    }
}

impl MacroSite {
    pub(crate) fn last(&self) -> &str {
        self.resolved.last().map_or("", String::as_str)
    }

    pub(crate) fn hazard(&self, rule: u8, why: &'static str, fix: &'static str) -> Option<Hazard> {
        Some(Hazard {
            rule,
            what: format!("{}!", self.written),
            note: String::new(),
            why,
            fix,
        })
    }
}
