//! The server-rendered pages: the instance list, the instance page and its actions, the
//! entities, the schedules. Every interpolation goes through maud, which escapes it: a payload holding
//! `<script>` shows as text.

pub(crate) mod actions;
pub(crate) mod entities;
pub(crate) mod instance;
pub(crate) mod layout;
pub(crate) mod list;
pub(crate) mod schedules;
