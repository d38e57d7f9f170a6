//! Fleet rollouts (`kind: Rollout`): one policy rolled out over many hosts
//! in waves, under a limit of hosts out of service at once and an error
//! budget. This module is the document and its resolution into a
//! [`RolloutPlan`]; coordinating the hosts is the `duplex-fleet` crate's.

mod plan;

pub use plan::{BetweenWaves, PlannedPolicy, PlannedWave, RecurringWindow, RolloutPlan};
