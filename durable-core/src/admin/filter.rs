//! What the admin API's listings take: [`ListFilter`] (instances; also the query string
//! of `GET /api/instances` and the body of `POST /api/purge`) and [`EntityFilter`]
//! (entities), with the parsing of their status names and page cursors.

use durable_store::{InstanceCursor, InstanceFilter, StatusKind};
use serde::{Deserialize, Serialize};

use crate::error::Error;

/// The page size of a listing that names none.
pub const DEFAULT_PAGE_SIZE: usize = 50;

/// Which orchestration instances [`Admin::list`](super::Admin::list) and
/// [`Admin::purge_where`](super::Admin::purge_where) take: all by default,
/// [`DEFAULT_PAGE_SIZE`] a page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ListFilter {
    /// Only instances of this status name (`pending`, `running`, `completed`, `failed`,
    /// `stalled`, `terminated`, `suspended`, `dead-lettered`).
    pub status: Option<String>,
    /// Only instances of the orchestrator of this registered name.
    pub orchestrator: Option<String>,
    /// Only instances created at or after this time, ms since the Unix epoch.
    pub created_from_ms: Option<u64>,
    /// Only instances created before this time, ms since the Unix epoch.
    pub created_before_ms: Option<u64>,
    /// At most this many a page (default [`DEFAULT_PAGE_SIZE`]; 0 counts as 1).
    pub page_size: Option<usize>,
    /// Start after this cursor: the [`next`](super::view::InstanceList::next) of the
    /// previous page.
    pub after: Option<String>,
}

impl ListFilter {
    /// The status asked for, parsed.
    ///
    /// # Errors
    ///
    /// [`Error::InvalidArgument`] if it names no status.
    pub fn status_kind(&self) -> Result<Option<StatusKind>, Error> {
        let Some(name) = &self.status else {
            return Ok(None);
        };
        let name = name.trim();
        (StatusKind::ALL.into_iter())
            .find(|kind| kind.as_str().eq_ignore_ascii_case(name))
            .map(Some)
            .ok_or_else(|| Error::InvalidArgument {
                argument: "status",
                value: name.to_string(),
                hint: format!(
                    "expected one of {}",
                    (StatusKind::ALL.iter().map(|k| k.as_str()))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// The page size, defaulted and at least 1.
    pub(crate) fn size(&self) -> usize {
        self.page_size.unwrap_or(DEFAULT_PAGE_SIZE).max(1)
    }

    /// The filter as the store takes it.
    pub(crate) fn store_filter(&self) -> Result<InstanceFilter, Error> {
        Ok(InstanceFilter {
            statuses: self.status_kind()?.into_iter().collect(),
            orchestrator: self.orchestrator.clone(),
            created_from_ms: self.created_from_ms,
            created_before_ms: self.created_before_ms,
            finished_before_ms: None,
        })
    }

    /// The cursor to start after, parsed.
    pub(crate) fn cursor(&self) -> Result<Option<InstanceCursor>, Error> {
        self.after.as_deref().map(parse_cursor).transpose()
    }
}

/// A page cursor as text: `CREATED_MS:ID`.
pub(crate) fn format_cursor(cursor: &InstanceCursor) -> String {
    format!("{}:{}", cursor.created_ms, cursor.id)
}

/// Reads a cursor [`format_cursor`] wrote.
fn parse_cursor(text: &str) -> Result<InstanceCursor, Error> {
    let invalid = || Error::InvalidArgument {
        argument: "after",
        value: text.to_string(),
        hint: "pass the `next` of the previous page".to_string(),
    };
    let (created_ms, id) = text.split_once(':').ok_or_else(invalid)?;
    Ok(InstanceCursor {
        created_ms: created_ms.parse().map_err(|_| invalid())?,
        id: id.to_string(),
    })
}

/// Which entities [`Admin::entities`](super::Admin::entities) lists: all by default,
/// [`DEFAULT_PAGE_SIZE`] a page.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct EntityFilter {
    /// Only entities of this type name (`Account`).
    pub name: Option<String>,
    /// Only entities whose key starts with this (with `name` only).
    pub key_prefix: Option<String>,
    /// At most this many a page (default [`DEFAULT_PAGE_SIZE`]; 0 counts as 1).
    pub page_size: Option<usize>,
    /// Start after this cursor: the [`next`](super::view::EntityList::next) of the
    /// previous page.
    pub after: Option<String>,
}

impl EntityFilter {
    /// The page size, defaulted and at least 1.
    pub(crate) fn size(&self) -> usize {
        self.page_size.unwrap_or(DEFAULT_PAGE_SIZE).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_cursors_parse() {
        let filter = ListFilter {
            status: Some("Failed".into()),
            after: Some("12:a:b".into()),
            ..ListFilter::default()
        };
        assert_eq!(filter.status_kind().unwrap(), Some(StatusKind::Failed));
        let cursor = filter.cursor().unwrap().unwrap();
        assert_eq!((cursor.created_ms, cursor.id.as_str()), (12, "a:b"));
        assert_eq!(format_cursor(&cursor), "12:a:b");
        let parked = ListFilter {
            status: Some("dead-lettered".into()),
            ..ListFilter::default()
        };
        assert_eq!(
            parked.status_kind().unwrap(),
            Some(StatusKind::DeadLettered)
        );
        let bad = ListFilter {
            status: Some("done".into()),
            ..ListFilter::default()
        };
        assert!(matches!(
            bad.status_kind(),
            Err(Error::InvalidArgument {
                argument: "status",
                ..
            })
        ));
        let bad = ListFilter {
            after: Some("x".into()),
            ..ListFilter::default()
        };
        assert!(matches!(
            bad.cursor(),
            Err(Error::InvalidArgument {
                argument: "after",
                ..
            })
        ));
    }
}
