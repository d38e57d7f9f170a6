//! What stands between the agent and starting a session when its host is
//! one of many: a slot of the fleet's semaphore, taken before a session
//! leaves Idle and given back only once it has ended (FleetLock semantics).
//! The slot is remembered in the agent's record (`record::HeldSlot`), so it
//! is kept across restarts, and a slot whose session ended is given back
//! even if the agent died before it could say so.
//!
//! A fleet that cannot be reached means *wait*: a host that cannot ask for
//! a slot never starts. It never touches a session already running, which
//! goes on to its end on its own journal; giving the slot back is retried
//! until the fleet answers.

use super::fleet::FleetLink;
use super::fleetlock::{Answer, FleetLock};
use super::record::HeldSlot;
use std::sync::Arc;
use std::time::Duration;

/// How soon to ask again after a wait or a failure to give a slot back.
pub const RETRY: Duration = Duration::from_secs(2);

#[derive(Clone)]
pub enum Gate {
    /// A host on its own: nothing to ask.
    Open,
    /// A FleetLock server (coreos/airlock's protocol) is the semaphore.
    FleetLock(Arc<FleetLock>),
    /// The fleet's etcd: the slot of the rollout that has a part for this
    /// host, under its waves, pauses, windows and error budget.
    Fleet(Arc<FleetLink>),
}

/// The answer to "may a session start now?".
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Permit {
    /// Start; the slot is the rollout's (the fleet) or the server's.
    Go { rollout: Option<String> },
    /// Not now, and why (the agent's `idleBecause`).
    Wait(String),
}

impl Gate {
    pub fn is_open(&self) -> bool {
        matches!(self, Gate::Open)
    }

    /// Where slots come from, as recorded with a held slot.
    pub fn describe(&self) -> String {
        match self {
            Gate::Open => String::new(),
            Gate::FleetLock(f) => format!("fleetlock {}", f.base()),
            Gate::Fleet(f) => format!("fleet {}", f.prefix()),
        }
    }

    /// Ask for a slot (or keep the one held: FleetLock locks are recursive).
    pub async fn ask(&self) -> Permit {
        match self {
            Gate::Open => Permit::Go { rollout: None },
            Gate::FleetLock(f) => {
                let f = f.clone();
                match blocking(move || f.pre_reboot()).await {
                    Ok(Answer::Ok) => Permit::Go { rollout: None },
                    Ok(Answer::Refused(why)) => {
                        Permit::Wait(format!("no fleet slot: the FleetLock server says {why}"))
                    }
                    Err(e) => Permit::Wait(format!("no fleet slot: {e}")),
                }
            }
            Gate::Fleet(f) => match f.ask().await {
                Ok(rollout) => Permit::Go { rollout },
                Err(why) => Permit::Wait(format!("no fleet slot: {why}")),
            },
        }
    }

    /// Give a held slot back.
    pub async fn give_back(&self, slot: &HeldSlot) -> Result<(), String> {
        match self {
            Gate::Open => Ok(()),
            Gate::FleetLock(f) => {
                let f = f.clone();
                match blocking(move || f.steady_state()).await? {
                    Answer::Ok => Ok(()),
                    Answer::Refused(why) => Err(format!("the FleetLock server says {why}")),
                }
            }
            Gate::Fleet(f) => match &slot.rollout {
                Some(rollout) => {
                    f.end(rollout, slot.ended.as_deref(), slot.session.as_deref())
                        .await
                }
                None => Ok(()),
            },
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, String> + Send + 'static,
) -> Result<T, String> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| format!("the request's task failed: {e}"))?
}
