//! The one error accumulator of the macros, after serde_derive's `Ctxt`: every check
//! records its errors here instead of stopping at the first, and the caller combines
//! them into one `syn::Error` (`syn::Error::combine`), which still expands to one
//! `compile_error!` per error, each on its own span.

/// The errors found so far by the checks of one expansion.
///
/// Read it with [`Errors::check`] or [`Errors::finish`] before dropping it: an
/// accumulator dropped unread would lose errors silently, so in debug builds that panics.
#[derive(Debug)]
pub(crate) struct Errors {
    /// `None` once read, so that `Drop` can tell a forgotten accumulator.
    errors: Option<Vec<syn::Error>>,
}

impl Errors {
    pub(crate) fn new() -> Self {
        Errors {
            errors: Some(Vec::new()),
        }
    }

    /// Records an error.
    pub(crate) fn push(&mut self, error: syn::Error) {
        self.errors
            .as_mut()
            .expect("the errors were already read")
            .push(error);
    }

    /// Records the error of `result`, if any, and returns its value otherwise: a check
    /// whose value later checks need (the parameters, the return type).
    pub(crate) fn take<T>(&mut self, result: syn::Result<T>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.push(error);
                None
            }
        }
    }

    /// Every error recorded, combined into one; `Ok` if there is none.
    pub(crate) fn check(mut self) -> syn::Result<()> {
        let errors = self.errors.take().expect("the errors were already read");
        let mut errors = errors.into_iter();
        let Some(mut all) = errors.next() else {
            return Ok(());
        };
        for error in errors {
            all.combine(error);
        }
        Err(all)
    }

    /// `value` if no error was recorded, else every error combined.
    ///
    /// `value` is what the checks produced: it is `None` only if one of them failed, and
    /// a failed check records its error, so `None` without an error is a bug.
    pub(crate) fn finish<T>(self, value: Option<T>) -> syn::Result<T> {
        self.check()?;
        Ok(value.expect("a check that returns nothing records its error"))
    }
}

impl Drop for Errors {
    fn drop(&mut self) {
        if cfg!(debug_assertions) && self.errors.is_some() && !std::thread::panicking() {
            panic!("the macro dropped its errors without reading them");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proc_macro2::Span;

    fn error(message: &str) -> syn::Error {
        syn::Error::new(Span::call_site(), message)
    }

    #[test]
    fn combines_every_error_in_order() {
        let mut errors = Errors::new();
        errors.push(error("first"));
        assert_eq!(errors.take(Ok::<_, syn::Error>(1)), Some(1));
        assert_eq!(errors.take(Err::<u8, _>(error("second"))), None);
        let messages: Vec<String> = errors
            .check()
            .unwrap_err()
            .into_iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(messages, ["first", "second"]);
    }

    #[test]
    fn finishes_with_the_value_when_nothing_failed() {
        assert_eq!(Errors::new().finish(Some(3)).unwrap(), 3);
        assert!(Errors::new().check().is_ok());
    }

    #[test]
    #[cfg(debug_assertions)]
    #[should_panic(expected = "without reading them")]
    fn panics_if_dropped_unread() {
        let mut errors = Errors::new();
        errors.push(error("lost"));
    }
}
