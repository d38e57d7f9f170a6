//! Fleet rollouts coordinated through etcd. This crate alone knows etcd:
//! the agent and the CLI call [`Fleet`] and the pure [`decide`] functions.
//!
//! There is no coordinator: every agent decides for itself whether its host
//! may start ([`decide::may_start`]) and takes a slot with an etcd
//! transaction that compares the state's `mod_revision`, so two agents
//! deciding on the same state cannot both win (FleetLock/airlock semantics:
//! a counting semaphore whose slots are owned by host; a dead holder keeps
//! its slot until it ends or an operator releases it).
//!
//! # Keys
//!
//! Under a configurable prefix `<p>` (default `/duplex`); values are JSON
//! (camelCase fields).
//!
//! | key | value | written |
//! |---|---|---|
//! | `<p>/hosts/<host>` | [`HostRecord`] | by the host's agent, under a lease kept alive ([`Registration`]); gone when the lease expires |
//! | `<p>/hosts-seen/<host>` | [`HostRecord`] | in the same transaction as each put of `hosts/<host>`, without a lease: the last record of a host, alive or not, for `fleet status`; removed only by [`Fleet::forget_host`] |
//! | `<p>/rollouts/<name>/plan` | [`RolloutPlan`] | once, by [`Fleet::create_rollout`], in a transaction that requires it absent; never changed |
//! | `<p>/rollouts/<name>/state` | [`RolloutState`] | created with the plan; then only by compare-and-swap on its `mod_revision` |
//! | `<p>/rollouts/<name>/results/<host>` | [`HostResult`] | once per host, in the same transaction as the state change that ends it, which also requires it absent |
//!
//! # Invariants
//!
//! - **At most `max_unavailable` holders**, at every revision of the state
//!   key: a slot is only taken by a transaction comparing the state's
//!   `mod_revision` with the one the decision read.
//! - **A host holds at most one slot and ends once**: taking a slot and
//!   ending both require the host's result key absent; the result is
//!   written with the state change that removes the holder, so
//!   `ended_by_wave` counts exactly the result keys of each wave.
//! - **Waves in order**: a host of wave `w` starts only when every host of
//!   every earlier wave has a result; `wave_ended_ms[w]` is stamped by the
//!   change that ends the wave's last host; wave `w > 0` waits for
//!   `approved_waves ∋ w` (plans with approvals) and for
//!   `wave_ended_ms[w-1] + pause`.
//! - **Error budget**: no host starts once aborted + released + held hosts
//!   reach `error_budget`; `halted` is set (for good) when aborted +
//!   released reach it. A released host counts: nobody knows how its
//!   upgrade ended.
//! - **Aborted and halted are final**; paused is cleared by `resume`,
//!   which also approves the wave in progress when it waits for approval.
//! - **The state stays small**: O(max_unavailable + waves + releases),
//!   never O(hosts); which hosts ended is in the result keys.
//! - **Its history is the audit trail**: every version of the state key is
//!   readable ([`Fleet::state_history`]) until etcd compacts it.
//! - **Every etcd call is bounded** by [`FleetConfig::timeout`]: a
//!   partition returns [`FleetError::Unreachable`] or
//!   [`FleetError::Timeout`], never hangs.
//!
//! [`RolloutPlan`]: duplex_core::rollout::RolloutPlan

pub mod decide;
mod error;
pub mod local_cluster;
mod registration;
mod store;
mod types;
mod watch;

pub use error::FleetError;
pub use registration::Registration;
pub use store::{
    Created, DEFAULT_PREFIX, Fleet, FleetConfig, HostPlace, Requests, Resumed, RolloutView,
};
pub use types::{
    Approval, Decision, Holder, HostRecord, HostResult, Mark, Outcome, Release, RolloutState,
    WaitReason,
};
pub use watch::{Changes, RolloutWatch, Seen};
