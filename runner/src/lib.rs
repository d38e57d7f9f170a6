//! Duplex: a policy-driven runner for active upgrades of two-sided systems.
//!
//! Dependencies point one way: `model` (pure) ← `policy` ← `cli`.
//! See ARCHITECTURE.md at the repository root.

pub mod cli;
pub mod engine;
pub mod journal;
pub mod model;
pub mod plan;
pub mod plugins;
pub mod policy;
