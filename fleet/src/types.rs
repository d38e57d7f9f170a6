//! The values stored in etcd (as JSON) and what the pure decision returns.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use duplex_core::rollout::RolloutPlan;

/// A host's registration (`<p>/hosts/<host>`, under a lease; its last copy
/// also at `<p>/hosts-seen/<host>`, without one).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostRecord {
    pub name: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// The duplex version the agent runs.
    pub version: String,
    /// The state of its session (the model's state name), if any.
    #[serde(default)]
    pub state: Option<String>,
    /// The session's status (running, waiting, held, ...).
    #[serde(default)]
    pub status: Option<String>,
    /// The partner's state as last seen.
    #[serde(default)]
    pub partner: Option<String>,
    /// The digest of the policy this host last achieved (committed).
    #[serde(default)]
    pub achieved: Option<String>,
    /// The rollout the host is taking part in.
    #[serde(default)]
    pub rollout: Option<String>,
    /// Its wave in that rollout.
    #[serde(default)]
    pub wave: Option<usize>,
    /// The name of the last event of its session.
    #[serde(default)]
    pub last_event: Option<String>,
    /// When the agent wrote this record (ms since the Unix epoch).
    pub updated_ms: u64,
}

/// A host holding one of the rollout's slots (out of service, upgrading).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Holder {
    /// When it took the slot (ms since the Unix epoch).
    pub since_ms: u64,
    /// Its wave (index into the plan's waves).
    pub wave: usize,
    /// The session it runs, once it has one.
    #[serde(default)]
    pub session: Option<String>,
    /// Why its session is held (waiting for an operator), if it is: a held
    /// host counts against the error budget while it is held.
    #[serde(default)]
    pub held: Option<String>,
}

/// Who did something to the rollout, why and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Mark {
    pub by: String,
    pub reason: String,
    pub at_ms: u64,
}

/// An operator approved a wave (`resume`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Approval {
    /// The wave (index into the plan's waves).
    pub wave: usize,
    pub by: String,
    pub at_ms: u64,
}

/// An operator released a host's slot: its upgrade's end is unknown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Release {
    pub host: String,
    pub by: String,
    pub reason: String,
    pub at_ms: u64,
    /// The slot as it was when it was released.
    pub was_holder: Holder,
}

/// The rollout's semaphore and progress (`<p>/rollouts/<name>/state`), one
/// document changed only by compare-and-swap on its `mod_revision`. Its size
/// is O(max_unavailable + waves + releases), never O(hosts): which hosts
/// ended is in the result keys, only their count per wave is here.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RolloutState {
    /// The hosts holding a slot, at most `max_unavailable`.
    #[serde(default)]
    pub holders: BTreeMap<String, Holder>,
    /// For each wave, how many of its hosts have ended (any outcome).
    #[serde(default)]
    pub ended_by_wave: Vec<u32>,
    /// Hosts that ended `Aborted`.
    #[serde(default)]
    pub aborted_count: u32,
    /// For each wave, when its last host ended.
    #[serde(default)]
    pub wave_ended_ms: Vec<Option<u64>>,
    /// Waves (after the first) an operator approved.
    #[serde(default)]
    pub approved_waves: BTreeSet<usize>,
    /// Who approved each of them, and when (in order).
    #[serde(default)]
    pub approvals: Vec<Approval>,
    /// Paused by an operator: no host starts until `resume`.
    #[serde(default)]
    pub paused: Option<Mark>,
    /// Aborted by an operator: no host starts any more (final).
    #[serde(default)]
    pub aborted: Option<Mark>,
    /// Halted by the error budget (why): no host starts any more (final).
    #[serde(default)]
    pub halted: Option<String>,
    /// Every slot an operator released, in order.
    #[serde(default)]
    pub releases: Vec<Release>,
}

impl RolloutState {
    /// The state a rollout starts in: nothing held, nothing ended.
    pub fn new(plan: &RolloutPlan) -> Self {
        RolloutState {
            ended_by_wave: vec![0; plan.waves.len()],
            wave_ended_ms: vec![None; plan.waves.len()],
            ..RolloutState::default()
        }
    }

    /// Hosts ended in `wave` so far.
    pub fn ended_in(&self, wave: usize) -> u32 {
        self.ended_by_wave.get(wave).copied().unwrap_or(0)
    }

    /// Whether every host of `wave` has ended.
    pub fn wave_ended(&self, plan: &RolloutPlan, wave: usize) -> bool {
        plan.waves
            .get(wave)
            .is_none_or(|w| self.ended_in(wave) as usize >= w.hosts.len())
    }

    /// Whether every host of the rollout has ended.
    pub fn finished(&self, plan: &RolloutPlan) -> bool {
        (0..plan.waves.len()).all(|w| self.wave_ended(plan, w))
    }

    /// How much of the error budget is spent: hosts that aborted, hosts an
    /// operator released (nobody knows how their upgrade ended) and hosts
    /// whose session is held right now.
    pub fn budget_spent(&self) -> u32 {
        self.aborted_count
            + self.releases.len() as u32
            + self.holders.values().filter(|h| h.held.is_some()).count() as u32
    }
}

/// How a host's part in a rollout ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Its session committed the rollout's policy.
    Committed,
    /// Its session aborted (counts against the error budget).
    Aborted,
    /// An operator released its slot (counts against the error budget).
    Released,
    /// It ended without starting a session (for instance: the policy is
    /// invalid on this host); it holds no slot and does not count against
    /// the error budget.
    NotStarted,
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Outcome::Committed => "committed",
            Outcome::Aborted => "aborted",
            Outcome::Released => "released",
            Outcome::NotStarted => "not started",
        })
    }
}

/// A host's end in a rollout (`<p>/rollouts/<name>/results/<host>`),
/// written once, in the same transaction as the state change that ends it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HostResult {
    pub outcome: Outcome,
    #[serde(default)]
    pub session: Option<String>,
    pub wave: usize,
    pub at_ms: u64,
    /// Who released it (`Released` only).
    #[serde(default)]
    pub by: Option<String>,
    /// Why it was released (`Released` only).
    #[serde(default)]
    pub reason: Option<String>,
}

/// Whether a host may start its upgrade now ([`crate::decide::may_start`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Take a slot and start (`Fleet::try_start` has taken it).
    Start,
    /// The host already holds a slot: go on with its session.
    AlreadyHolds,
    /// The host has a result: its part in the rollout is over.
    Ended,
    /// The host is in none of the rollout's waves.
    NotInRollout,
    /// Not now.
    Wait(WaitReason),
}

/// Why a host may not start now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WaitReason {
    /// An operator aborted the rollout (final).
    Aborted(Mark),
    /// The error budget is spent (why).
    Halted(String),
    /// An operator paused the rollout.
    Paused(Mark),
    /// An earlier wave has hosts that have not ended.
    EarlierWave {
        wave: usize,
        name: String,
        ended: u32,
        of: u32,
    },
    /// The pause between waves runs until then (ms since the Unix epoch).
    BetweenWaves { until_ms: u64 },
    /// An operator must approve this wave (`resume`).
    Approval { wave: usize, name: String },
    /// No maintenance window is open.
    OutsideWindow,
    /// Every slot is held.
    NoFreeSlot { holders: Vec<String>, max: u32 },
}

impl fmt::Display for WaitReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WaitReason::Aborted(m) => {
                write!(f, "the rollout was aborted by {}: {}", m.by, m.reason)
            }
            WaitReason::Halted(why) => write!(f, "the rollout is halted: {why}"),
            WaitReason::Paused(m) => write!(f, "the rollout is paused by {}: {}", m.by, m.reason),
            WaitReason::EarlierWave {
                wave,
                name,
                ended,
                of,
            } => write!(
                f,
                "wave {} ({name}) has not ended: {ended} of {of} hosts ended",
                wave + 1
            ),
            WaitReason::BetweenWaves { until_ms } => {
                match jiff::Timestamp::from_millisecond(*until_ms as i64) {
                    Ok(t) => write!(
                        f,
                        "pausing between waves until {}",
                        t.round(jiff::Unit::Second).unwrap_or(t)
                    ),
                    Err(_) => write!(f, "pausing between waves until {until_ms} ms"),
                }
            }
            WaitReason::Approval { wave, name } => {
                write!(
                    f,
                    "wave {} ({name}) waits for an operator's approval (duplex rollout resume)",
                    wave + 1
                )
            }
            WaitReason::OutsideWindow => f.write_str("no maintenance window is open"),
            WaitReason::NoFreeSlot { holders, max } => {
                let shown: Vec<&str> = holders.iter().take(5).map(String::as_str).collect();
                let more = holders.len().saturating_sub(shown.len());
                write!(f, "all {max} slots are held (by {}", shown.join(", "))?;
                if more > 0 {
                    write!(f, " and {more} more")?;
                }
                f.write_str(")")
            }
        }
    }
}
