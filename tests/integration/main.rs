//! Integration tests, built as one binary.

mod common;
mod crash;
mod management;
mod patterns;
mod restart;
mod runtime;
mod ui;
mod versioning;
