//! What can go wrong talking to the fleet's etcd, in words that name it.

use std::time::Duration;

/// An error of the fleet store. Messages name the endpoints, keys,
/// rollouts and hosts involved.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// etcd answered with an error, or could not be reached, until the
    /// operation's timeout ran out.
    #[error("etcd at {endpoints} is unreachable ({op}): {detail}")]
    Unreachable {
        op: String,
        endpoints: String,
        detail: String,
    },
    /// etcd did not answer within the timeout.
    #[error("etcd at {endpoints} did not answer within {after:?} ({op})")]
    Timeout {
        op: String,
        endpoints: String,
        after: Duration,
    },
    /// etcd refused the request (not a matter of reachability).
    #[error("etcd at {endpoints} refused {op}: {detail}")]
    Refused {
        op: String,
        endpoints: String,
        detail: String,
    },
    /// A rollout of that name exists with another document.
    #[error(
        "rollout {rollout} already exists with digest {stored}; this document's digest is {given} (a rollout is never changed: use another name)"
    )]
    Conflict {
        rollout: String,
        stored: String,
        given: String,
    },
    #[error("no rollout named {0}")]
    RolloutNotFound(String),
    #[error("host {host} is not in rollout {rollout}")]
    HostNotInRollout { rollout: String, host: String },
    #[error("host {host} holds no slot in rollout {rollout}")]
    NotHolder { rollout: String, host: String },
    /// A stored value is not what this version of duplex reads.
    #[error("{key} in etcd is unreadable: {source}")]
    Invalid {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    /// A name that cannot be part of a key.
    #[error("{what} name {name:?} is invalid: {why}")]
    InvalidName {
        what: &'static str,
        name: String,
        why: &'static str,
    },
    /// A plan this crate cannot coordinate.
    #[error("rollout {rollout} cannot be stored: {why}")]
    InvalidPlan { rollout: String, why: &'static str },
    /// Operator commands say why.
    #[error("{command} needs a reason")]
    EmptyReason { command: &'static str },
    /// `end` is for sessions; releasing a slot is `release`.
    #[error("a host ends {outcome} only through {instead}")]
    WrongOutcome {
        outcome: crate::Outcome,
        instead: &'static str,
    },
    /// The compare-and-swap kept losing to other writers.
    #[error("{key} changed under every one of {attempts} attempts to update it")]
    Contended { key: String, attempts: u32 },
    /// A past revision of a key is gone (etcd compacted its history).
    #[error("the history of {key} before revision {compacted} was compacted")]
    Compacted { key: String, compacted: i64 },
}
