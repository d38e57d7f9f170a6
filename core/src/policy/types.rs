//! The policy as Rust types: the single source of the JSON Schema
//! (`schemas/upgrade-policy.schema.json` is generated from these).
//!
//! Doc comments on fields become the schema's descriptions and the policy
//! reference in README.md, so they are written for operators.

use super::values::{ByteSize, HumanDuration, Sha256, Timestamp};
use crate::model::{PartnerState, UpgradeState};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Free-form parameters handed to a plugin, checked against the schema the
/// plugin declares for them.
pub type Params = serde_json::Map<String, serde_json::Value>;

/// An active-upgrade policy: what to install on the Upgrade Side and the
/// rules for getting there unattended or with approvals.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schemars(title = "UpgradePolicy")]
pub struct UpgradePolicy {
    pub api_version: ApiVersion,
    pub kind: Kind,
    pub metadata: Metadata,
    pub spec: Spec,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum ApiVersion {
    #[serde(rename = "duplex.dev/v1alpha1")]
    V1Alpha1,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub enum Kind {
    UpgradePolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Metadata {
    /// Name of the policy: lower-case letters, digits and `-`, at most 63 characters.
    #[schemars(regex(pattern = super::values::NAME_PATTERN))]
    pub name: String,
    /// What this upgrade is for, shown by `plan` and `status`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Spec {
    /// `apply` drives the upgrade; `abort` aborts a session in flight (from
    /// PrepareSplit, Split, PrepareMerge or Merge) and restores the original
    /// configuration.
    #[serde(default)]
    pub action: PolicyAction,
    /// The two-sided system to upgrade.
    pub target: Target,
    /// What to install on the Upgrade Side while it is split off, in order.
    #[schemars(length(min = 1))]
    pub software: Vec<Software>,
    /// Readiness gates run before the split and before the merge.
    #[serde(default)]
    pub gates: Gates,
    /// Checks run after the merge, for a soak time, before Commit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verification: Option<Verification>,
    /// How often a failed request is retried, and how long to wait between tries.
    #[serde(default)]
    pub retries: Retries,
    /// Conditions under which the session stops on its own, each with what to do.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub auto_abort: Vec<AutoAbortRule>,
    /// Where a person must say go. Absent: the upgrade runs unattended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvals: Vec<Approval>,
    /// The maintenance window: no session starts before it opens, and the
    /// `windowClosing` rule acts when it closes before Merge is reached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<MaintenanceWindow>,
    /// The WebAssembly plugins this policy may call, pinned by digest.
    #[schemars(length(min = 1))]
    pub plugins: Vec<PluginRef>,
    /// Public keys whose signatures a plugin may be required to carry
    /// (its `signedBy`), each under a name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trusted_keys: Vec<TrustedKey>,
}

/// A public key the policy trusts to sign plugins.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrustedKey {
    /// How plugins' `signedBy` refer to this key.
    #[schemars(regex(pattern = super::values::NAME_PATTERN))]
    pub name: String,
    /// The minisign ed25519 public key: the base64 line (`RW…`) of its
    /// `.pub` file (`duplex plugin keygen` or `minisign -G` writes one).
    #[schemars(length(min = 1))]
    pub public_key: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum PolicyAction {
    #[default]
    Apply,
    Abort,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    /// The system's name, as shown in logs.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The plugin (from `plugins`) that performs the hardware operations
    /// split, merge, commit, abort and finish and reports the partner side.
    pub plugin: String,
    /// Parameters for the hardware plugin.
    #[serde(default, skip_serializing_if = "Params::is_empty")]
    pub with: Params,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Software {
    #[schemars(length(min = 1))]
    pub name: String,
    #[schemars(length(min = 1))]
    pub version: String,
    /// The artifact: a file, as a path relative to the policy file (or
    /// absolute), or an `http://` / `https://` URL the runner downloads
    /// (resumably) when a session starts. Either way it is staged in the
    /// state dir and verified against `sha256` before any plugin sees it.
    #[schemars(length(min = 1))]
    pub source: String,
    /// SHA-256 of the artifact; it is verified before it is handed over.
    pub sha256: Sha256,
    /// The plugin that installs it; default: the target's plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installer: Option<String>,
    /// Parameters for the installer. When the installer is the target's
    /// plugin, these are laid over the target's `with:`.
    #[serde(default, skip_serializing_if = "Params::is_empty")]
    pub with: Params,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gates {
    /// Must pass before the Upgrade Side is split off.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prepare_split: Vec<Check>,
    /// Must pass before the Upgrade Side takes over production.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub prepare_merge: Vec<Check>,
}

/// A readiness test run through a plugin, polled until it has passed
/// `consecutiveSuccesses` times in a row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Check {
    /// Name of this gate in logs and in `checkFailing` rules.
    #[schemars(length(min = 1))]
    pub name: String,
    /// The plugin (from `plugins`) that provides the check.
    pub plugin: String,
    /// The check's name as the plugin provides it.
    pub check: String,
    /// Parameters for the check.
    #[serde(default, skip_serializing_if = "Params::is_empty")]
    pub with: Params,
    /// How long the check may take to pass before it counts as failed.
    #[serde(default = "defaults::check_timeout")]
    pub timeout: HumanDuration,
    /// Time between two runs of the check.
    #[serde(default = "defaults::check_interval")]
    pub interval: HumanDuration,
    /// Passes in a row needed for the gate to open.
    #[serde(default = "defaults::one")]
    #[schemars(range(min = 1))]
    pub consecutive_successes: u32,
    /// Failures in a row after which the gate fails (and the state is Broken).
    #[serde(default = "defaults::failure_limit")]
    #[schemars(range(min = 1))]
    pub failure_limit: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Verification {
    /// How long the checks must keep passing after the merge.
    pub soak: HumanDuration,
    /// Time between two rounds of checks.
    #[serde(default = "defaults::check_interval")]
    pub interval: HumanDuration,
    #[schemars(length(min = 1))]
    pub checks: Vec<Check>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retries {
    /// Applies to every state without its own entry in `perState`.
    #[serde(default)]
    pub default: RetryPolicy,
    /// Overrides per state; fields left out come from `default`.
    #[serde(default)]
    pub per_state: PerState,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryPolicy {
    /// Retries after the first attempt fails (0: never retry).
    #[serde(default = "defaults::retry_limit")]
    pub limit: u32,
    #[serde(default)]
    pub backoff: Backoff,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            limit: defaults::retry_limit(),
            backoff: Backoff::default(),
        }
    }
}

/// Exponential backoff with jitter: wait `initial`, then `initial × multiplier`,
/// and so on up to `max`, each wait varied by ± `jitter` (a fraction).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backoff {
    #[serde(default = "defaults::backoff_initial")]
    pub initial: HumanDuration,
    #[serde(default = "defaults::backoff_max")]
    pub max: HumanDuration,
    #[serde(default = "defaults::backoff_multiplier")]
    #[schemars(range(min = 1.0, max = 10.0))]
    pub multiplier: f64,
    #[serde(default = "defaults::backoff_jitter")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            initial: defaults::backoff_initial(),
            max: defaults::backoff_max(),
            multiplier: defaults::backoff_multiplier(),
            jitter: defaults::backoff_jitter(),
        }
    }
}

/// Per-state retry overrides, one optional entry per state that runs a request.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PerState {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepare_split: Option<RetryOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split: Option<RetryOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prepare_merge: Option<RetryOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge: Option<RetryOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<RetryOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<RetryOverride>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finish: Option<RetryOverride>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryOverride {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Backoff>,
}

/// What an auto-abort rule does when its condition holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum RuleAction {
    /// Go to Abort: restore the original configuration, then Finish.
    Abort,
    /// Stop and wait, Broken, for a person (`duplex retry` or `duplex abort`).
    Hold,
}

/// A condition that stops the session on its own. `when` names the condition.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "when", rename_all = "camelCase", deny_unknown_fields)]
pub enum AutoAbortRule {
    /// A request failed and its retries are used up.
    #[serde(rename_all = "camelCase")]
    RetriesExhausted {
        action: RuleAction,
        /// Only in these states (default: every state that runs a request).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        states: Vec<UpgradeState>,
    },
    /// A gate or verification check failed this many times in a row.
    #[serde(rename_all = "camelCase")]
    CheckFailing {
        action: RuleAction,
        #[schemars(range(min = 1))]
        consecutive: u32,
        /// Only this check (by its `name`); default: any check.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        check: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        states: Vec<UpgradeState>,
    },
    /// Commit was not reached within this time from the start of the session.
    #[serde(rename_all = "camelCase")]
    Deadline {
        action: RuleAction,
        commit_within: HumanDuration,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        states: Vec<UpgradeState>,
    },
    /// The maintenance window (`spec.window`) closes before Merge is reached.
    #[serde(rename_all = "camelCase")]
    WindowClosing {
        action: RuleAction,
        /// Act this long before the window's end.
        #[serde(default = "defaults::zero")]
        margin: HumanDuration,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        states: Vec<UpgradeState>,
    },
    /// The partner side (the one keeping production) is reported in one of these states.
    #[serde(rename_all = "camelCase")]
    PartnerUnhealthy {
        action: RuleAction,
        #[serde(default = "defaults::unhealthy_partner")]
        partner_states: Vec<PartnerState>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        states: Vec<UpgradeState>,
    },
}

impl AutoAbortRule {
    pub fn action(&self) -> RuleAction {
        match self {
            AutoAbortRule::RetriesExhausted { action, .. }
            | AutoAbortRule::CheckFailing { action, .. }
            | AutoAbortRule::Deadline { action, .. }
            | AutoAbortRule::WindowClosing { action, .. }
            | AutoAbortRule::PartnerUnhealthy { action, .. } => *action,
        }
    }

    /// The states the rule is limited to; empty means every state.
    pub fn states(&self) -> &[UpgradeState] {
        match self {
            AutoAbortRule::RetriesExhausted { states, .. }
            | AutoAbortRule::CheckFailing { states, .. }
            | AutoAbortRule::Deadline { states, .. }
            | AutoAbortRule::WindowClosing { states, .. }
            | AutoAbortRule::PartnerUnhealthy { states, .. } => states,
        }
    }

    /// The condition's name as written in `when`.
    pub fn when(&self) -> &'static str {
        match self {
            AutoAbortRule::RetriesExhausted { .. } => "retriesExhausted",
            AutoAbortRule::CheckFailing { .. } => "checkFailing",
            AutoAbortRule::Deadline { .. } => "deadline",
            AutoAbortRule::WindowClosing { .. } => "windowClosing",
            AutoAbortRule::PartnerUnhealthy { .. } => "partnerUnhealthy",
        }
    }
}

/// A point where the session waits, Ready, until `duplex approve`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Approval {
    pub before: ApprovalPoint,
    /// Who is expected to approve (shown while waiting).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub approvers: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum ApprovalPoint {
    /// After the software is installed in Split, before the merge process
    /// (PrepareMerge, then Merge) starts.
    Merge,
    /// After verification in Merge, before Commit (the point of no return).
    Commit,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MaintenanceWindow {
    /// RFC 3339 time, e.g. `2026-11-28T22:00:00Z`.
    pub start: Timestamp,
    pub end: Timestamp,
}

/// A plugin the policy may call, pinned by its SHA-256.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PluginRef {
    /// How the rest of the policy refers to this plugin.
    #[schemars(regex(pattern = super::values::NAME_PATTERN))]
    pub name: String,
    /// The component: a path to its `.wasm` file, relative to the policy
    /// file (or absolute); or a reference in an OCI registry pinned by its
    /// manifest digest, `oci://REGISTRY[:PORT]/REPOSITORY[:TAG]@sha256:<64
    /// hex>` (`duplex plugin push` prints it; a tag alone is refused). A
    /// registry plugin is pulled once into the plugin cache, verified, and
    /// used from there offline; registries are reached over HTTPS, except
    /// on the loopback (`localhost`, `127.0.0.1`, `::1`: plain HTTP).
    #[schemars(length(min = 1))]
    pub source: String,
    /// SHA-256 of the component, verified on every load. Required for a
    /// file; optional for an `oci://` source, whose manifest digest pins
    /// its component's (when given, it must be that digest: the one
    /// `duplex plugin push` prints).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<Sha256>,
    /// What the plugin may use beyond logging; nothing by default.
    #[serde(default)]
    pub capabilities: Capabilities,
    /// Sandbox limits for each call.
    #[serde(default)]
    pub limits: Limits,
    /// Keys (names in `spec.trustedKeys`) of which one must have signed
    /// the component: a valid minisign signature beside it
    /// (`<source>.minisig`, as `duplex plugin sign` writes), or for an
    /// `oci://` source the one `duplex plugin push` carried in its manifest.
    /// Empty: no
    /// signature is required.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signed_by: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Capabilities {
    /// A persistent key-value store of its own, kept in the state directory.
    #[serde(default)]
    pub storage: bool,
    /// Plugins given the same namespace share one store (a simulator and
    /// its checks, say); default: the plugin's own name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = super::values::NAME_PATTERN))]
    pub storage_namespace: Option<String>,
    /// Environment variables it can read.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
    /// Host directories it can open.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dirs: Vec<DirGrant>,
    /// Programs it may run (the `exec` capability), by absolute path; each
    /// command runs in its own process group with a clean environment.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exec: Vec<ExecGrant>,
    /// Host directories it can read (and, unless `readOnly`, change)
    /// through the `files` interface, each under a name (`cx.fs("releases")`
    /// in the SDK). Paths resolve beneath the directory: no `..`, absolute
    /// path or symbolic link reaches outside.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<FilesGrant>,
    /// Read the policy's software through the `artifacts` interface: the
    /// copy the runner staged after verifying its sha256.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub artifacts: bool,
    /// Origins it may send HTTP requests to, each `scheme://host[:port]`
    /// (`http` or `https`; the port defaults to the scheme's): no path,
    /// no user info, no wildcard. Redirects are followed only within these.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<String>,
}

/// A program a plugin may run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecGrant {
    /// Absolute path of the program (an executable file), exactly as the
    /// plugin names it. No shell is involved unless this is a shell.
    #[schemars(length(min = 1))]
    pub program: String,
    /// Arguments always passed first, before the plugin's own.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<String>,
    /// The command's environment, besides the `ACTIVE_UPGRADE_*` variables
    /// the runner sets (nothing of the runner's own environment is passed:
    /// set `PATH` here if the program needs one).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FilesGrant {
    /// The name the plugin uses for it.
    #[schemars(regex(pattern = super::values::NAME_PATTERN))]
    pub name: String,
    /// Directory on the host, relative to the policy file or absolute.
    pub path: String,
    /// Only reads (the default); `false` lets the plugin write, rename,
    /// link and remove beneath it.
    #[serde(default = "defaults::yes")]
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirGrant {
    /// Directory on the host, relative to the policy file or absolute.
    pub host: String,
    /// Where the plugin sees it.
    pub guest: String,
    #[serde(default = "defaults::yes")]
    pub read_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Limits {
    /// Linear memory a call may use.
    #[serde(default = "defaults::memory")]
    pub memory: ByteSize,
    /// Wall-clock time a single call may take.
    #[serde(default = "defaults::call_timeout")]
    pub timeout: HumanDuration,
    /// Bytes of results and log lines a call may return.
    #[serde(default = "defaults::max_output")]
    pub max_output: ByteSize,
}

impl Limits {
    /// The defaults of `limits`, which the plugin host's own defaults
    /// (`plugins::Limits`) are: one source for both.
    pub const DEFAULT_MEMORY_MIB: u64 = 64;
    pub const DEFAULT_TIMEOUT_SECS: u64 = 10;
    pub const DEFAULT_MAX_OUTPUT_MIB: u64 = 1;
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory: defaults::memory(),
            timeout: defaults::call_timeout(),
            max_output: defaults::max_output(),
        }
    }
}

/// Defaults, one function each because serde's `default = "..."` wants a path.
mod defaults {
    use super::*;

    pub fn one() -> u32 {
        1
    }
    pub fn yes() -> bool {
        true
    }
    pub fn failure_limit() -> u32 {
        3
    }
    pub fn retry_limit() -> u32 {
        3
    }
    pub fn check_timeout() -> HumanDuration {
        HumanDuration::from_secs(300)
    }
    pub fn check_interval() -> HumanDuration {
        HumanDuration::from_secs(5)
    }
    pub fn backoff_initial() -> HumanDuration {
        HumanDuration::from_secs(1)
    }
    pub fn backoff_max() -> HumanDuration {
        HumanDuration::from_secs(60)
    }
    pub fn backoff_multiplier() -> f64 {
        2.0
    }
    pub fn backoff_jitter() -> f64 {
        0.2
    }
    pub fn zero() -> HumanDuration {
        HumanDuration::from_secs(0)
    }
    pub fn unhealthy_partner() -> Vec<PartnerState> {
        vec![PartnerState::Hung, PartnerState::Crashed]
    }
    pub fn memory() -> ByteSize {
        ByteSize::mib(Limits::DEFAULT_MEMORY_MIB)
    }
    pub fn call_timeout() -> HumanDuration {
        HumanDuration::from_secs(Limits::DEFAULT_TIMEOUT_SECS)
    }
    pub fn max_output() -> ByteSize {
        ByteSize::mib(Limits::DEFAULT_MAX_OUTPUT_MIB)
    }
}

impl Retries {
    /// The retry policy in force in a state: its `perState` entry over `default`.
    pub fn for_state(&self, state: UpgradeState) -> RetryPolicy {
        let per = &self.per_state;
        let entry = match state {
            UpgradeState::PrepareSplit => &per.prepare_split,
            UpgradeState::Split => &per.split,
            UpgradeState::PrepareMerge => &per.prepare_merge,
            UpgradeState::Merge => &per.merge,
            UpgradeState::Commit => &per.commit,
            UpgradeState::Abort => &per.abort,
            UpgradeState::Finish => &per.finish,
            UpgradeState::Idle => &None,
        };
        let mut policy = self.default.clone();
        if let Some(o) = entry {
            if let Some(limit) = o.limit {
                policy.limit = limit;
            }
            if let Some(backoff) = &o.backoff {
                policy.backoff = backoff.clone();
            }
        }
        policy
    }
}

impl Spec {
    /// The plugin that installs a software item.
    pub fn installer_of<'a>(&'a self, software: &'a Software) -> &'a str {
        software.installer.as_deref().unwrap_or(&self.target.plugin)
    }

    pub fn requires_approval(&self, point: ApprovalPoint) -> Option<&Approval> {
        self.approvals.iter().find(|a| a.before == point)
    }

    pub fn plugin(&self, name: &str) -> Option<&PluginRef> {
        self.plugins.iter().find(|p| p.name == name)
    }
}
