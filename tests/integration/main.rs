//! Integration tests, built as one binary.

mod attempts;
mod bad_input;
mod checkpoints;
mod common;
mod crash;
mod faults;
mod fuzz;
mod incarnation;
mod management;
mod manual_clock;
mod patterns;
mod payload_codec;
mod payload_limits;
mod postgres;
mod postgres_handoffs;
mod postgres_outage;
mod postgres_workers;
mod registration;
mod restart;
mod review;
mod review_findings;
mod runtime;
mod ui;
mod versioning;
mod worker_races;
mod workers;
