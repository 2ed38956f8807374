//! The admin API: read instances as JSON-ready views, and steer them, for the `durable`
//! CLI (feature `cli`) and the dashboard (feature `dashboard`).
//!
//! [`view`] holds the shapes both print and serve.

pub mod view;
