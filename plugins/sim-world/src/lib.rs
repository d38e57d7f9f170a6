//! The world of the simulated fault-tolerant server: what `sim-duplex` changes
//! and `sim-checks` inspects.
//!
//! It lives in the `storage` capability under the key [`WORLD_KEY`]. For both
//! plugins to see the same machine, the policy grants them the same storage
//! namespace (the runner gives both the same storage directory). A missing key
//! is a fresh machine: duplexed, both sides up, disks mirrored, `app` 1.0.0
//! running, 50 GiB free.

use duplex_plugin_sdk::{Cx, Error, PartnerState};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The storage key of the world.
pub const WORLD_KEY: &str = "sim-duplex.world";

/// How the two halves are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// Both sides in lockstep, disks mirrored (the normal state).
    Duplexed,
    /// The Upgrade Side is isolated; production runs on the Production Side.
    Split,
    /// Applications restarted on the Upgrade Side; not yet committed.
    Merged,
}

/// The partner side's health (stored form of [`PartnerState`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Health {
    Off,
    Booting,
    Up,
    Hung,
    Crashed,
}

impl From<Health> for PartnerState {
    fn from(h: Health) -> PartnerState {
        match h {
            Health::Off => PartnerState::Off,
            Health::Booting => PartnerState::Booting,
            Health::Up => PartnerState::Up,
            Health::Hung => PartnerState::Hung,
            Health::Crashed => PartnerState::Crashed,
        }
    }
}

/// One half of the machine.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideState {
    /// Installed software: name → version.
    pub software: BTreeMap<String, String>,
    /// Applications running on this side.
    pub running: Vec<String>,
}

/// An operation in progress: how many calls it has had out of how many it takes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Running {
    pub what: String,
    pub session: String,
    pub calls: u32,
    pub total: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct World {
    pub mode: Mode,
    pub production: SideState,
    pub upgrade: SideState,
    pub disks_mirrored: bool,
    /// The side applications run on: `production` or `upgrade`.
    pub active: String,
    pub partner: Health,
    pub free_bytes: u64,
    /// Operations/installs in progress, by key (e.g. `op/split`, `install/app`).
    pub running: BTreeMap<String, Running>,
    /// Fault-injection counters (key → times already applied).
    pub faults: BTreeMap<String, u32>,
    /// The last events, newest last (at most 32).
    pub history: Vec<String>,
}

impl Default for World {
    fn default() -> World {
        let side = SideState {
            software: BTreeMap::from([("app".to_string(), "1.0.0".to_string())]),
            running: vec!["app".to_string()],
        };
        World {
            mode: Mode::Duplexed,
            production: side.clone(),
            upgrade: SideState {
                running: Vec::new(),
                ..side
            },
            disks_mirrored: true,
            active: "production".into(),
            partner: Health::Up,
            free_bytes: 50 << 30,
            running: BTreeMap::new(),
            faults: BTreeMap::new(),
            history: Vec::new(),
        }
    }
}

impl World {
    /// Reads the world from storage (a fresh machine if absent).
    pub fn load(cx: &mut Cx<'_>) -> Result<World, Error> {
        Ok(cx.storage().get_json(WORLD_KEY)?.unwrap_or_default())
    }

    /// Writes the world to storage (durable when the call returns).
    pub fn save(&self, cx: &mut Cx<'_>) -> Result<(), Error> {
        cx.storage().set_json(WORLD_KEY, self)
    }

    /// The side applications run on.
    pub fn active_side(&self) -> &SideState {
        if self.active == "upgrade" {
            &self.upgrade
        } else {
            &self.production
        }
    }

    pub fn note(&mut self, event: impl Into<String>) {
        self.history.push(event.into());
        if self.history.len() > 32 {
            self.history.remove(0);
        }
    }

    /// Counts one application of fault `key`; true while it has been applied
    /// fewer than `times` times.
    pub fn take_fault(&mut self, key: &str, times: u32) -> bool {
        let n = self.faults.entry(key.to_string()).or_insert(0);
        if *n < times {
            *n += 1;
            true
        } else {
            false
        }
    }
}
