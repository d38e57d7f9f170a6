//! `duplex agent`: one long-running process per state dir. It reconciles a
//! policy source (a directory or a git repository) by digest through the
//! core's application layer, serves the HTTP API, exposes Prometheus
//! metrics and delivers events as webhooks. Like the rest of the front end
//! it renders the core's plain data; it never re-implements the model.

// The pieces land one by one before the loop that wires them together.
#![allow(dead_code)]

pub mod outbox;
pub mod webhooks;
pub mod source;
pub mod metrics;
