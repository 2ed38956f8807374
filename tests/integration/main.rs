//! Integration tests, built as one binary.

mod common;
mod crash;
mod restart;
mod runtime;
mod ui;
