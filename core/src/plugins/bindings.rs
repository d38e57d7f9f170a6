//! The one `bindgen!` of the host, over `plugin-sdk/wit` (the whole contract),
//! and the conversions between its generated types and the plain types of
//! [`super::types`].

use super::output::ENTRY_OVERHEAD_BYTES;
use super::types as t;
use crate::model::UpgradeState;

wasmtime::component::bindgen!({
    path: "../plugin-sdk/wit",
    world: "duplex:plugin/plugin",
    // Every import may trap: that is how a host call past the deadline ends.
    imports: { default: trappable },
    // A plugin's description is cached next to its compiled code (cache.rs).
    additional_derives: [serde::Serialize, serde::Deserialize],
});

pub(crate) use self::duplex::plugin::types as w;

use wasmtime::component::{
    ComponentExportIndex, ComponentNamedList, Instance, InstancePre, Lift, Lower,
};
use wasmtime::{AsContextMut, Result};

/// A linked plugin and the index of each function the world exports.
///
/// The generated `PluginPre::instantiate` type-checks all five exports on
/// every instantiation; a call needs one. The component is checked against
/// the whole world once, at load (the generated `PluginIndices::new`, so a
/// component that does not fit says so in the generated words), and each
/// call looks up and type-checks only the function it calls.
pub(crate) struct Linked<T: 'static> {
    pub pre: InstancePre<T>,
    pub describe: ComponentExportIndex,
    pub check: ComponentExportIndex,
    pub operate: ComponentExportIndex,
    pub install: ComponentExportIndex,
    pub partner: ComponentExportIndex,
}

// Not derived: that would ask `T: Clone`, which an `InstancePre` does not need.
impl<T: 'static> Clone for Linked<T> {
    fn clone(&self) -> Self {
        Linked {
            pre: self.pre.clone(),
            describe: self.describe,
            check: self.check,
            operate: self.operate,
            install: self.install,
            partner: self.partner,
        }
    }
}

impl<T: 'static> Linked<T> {
    pub fn new(pre: InstancePre<T>) -> Result<Linked<T>> {
        PluginIndices::new(&pre)?;
        let index = |name: &str| {
            pre.component()
                .get_export_index(None, name)
                .ok_or_else(|| wasmtime::format_err!("no export `{name}` found"))
        };
        Ok(Linked {
            describe: index("describe")?,
            check: index("check")?,
            operate: index("operate")?,
            install: index("install")?,
            partner: index("partner")?,
            pre,
        })
    }
}

/// Calls the export `func` of `instance` with `params`, type-checking that
/// one function against the signature the world gives it.
pub(crate) fn call<P, R>(
    instance: &Instance,
    mut store: impl AsContextMut,
    func: &ComponentExportIndex,
    params: P,
) -> Result<R>
where
    P: ComponentNamedList + Lower,
    (R,): ComponentNamedList + Lift,
{
    let f = instance.get_typed_func::<P, (R,)>(&mut store, func)?;
    let (r,) = f.call(&mut store, params)?;
    Ok(r)
}

pub(crate) fn context(c: &t::CallContext) -> w::CallContext {
    w::CallContext {
        session_id: c.session_id.clone(),
        state: match c.state {
            UpgradeState::Idle => w::UpgradeState::Idle,
            UpgradeState::PrepareSplit => w::UpgradeState::PrepareSplit,
            UpgradeState::Split => w::UpgradeState::Split,
            UpgradeState::PrepareMerge => w::UpgradeState::PrepareMerge,
            UpgradeState::Merge => w::UpgradeState::Merge,
            UpgradeState::Commit => w::UpgradeState::Commit,
            UpgradeState::Abort => w::UpgradeState::Abort,
            UpgradeState::Finish => w::UpgradeState::Finish,
        },
        request: c.request.clone(),
        attempt: c.attempt,
        side: match c.side {
            t::Side::Production => w::Side::Production,
            t::Side::Upgrade => w::Side::Upgrade,
        },
        params: c.params.to_string(),
    }
}

pub(crate) fn op_to_wit(op: t::HardwareOp) -> w::HardwareOp {
    match op {
        t::HardwareOp::Split => w::HardwareOp::Split,
        t::HardwareOp::Merge => w::HardwareOp::Merge,
        t::HardwareOp::Commit => w::HardwareOp::Commit,
        t::HardwareOp::Abort => w::HardwareOp::Abort,
        t::HardwareOp::Finish => w::HardwareOp::Finish,
    }
}

pub(crate) fn op_from_wit(op: w::HardwareOp) -> t::HardwareOp {
    match op {
        w::HardwareOp::Split => t::HardwareOp::Split,
        w::HardwareOp::Merge => t::HardwareOp::Merge,
        w::HardwareOp::Commit => t::HardwareOp::Commit,
        w::HardwareOp::Abort => t::HardwareOp::Abort,
        w::HardwareOp::Finish => t::HardwareOp::Finish,
    }
}

pub(crate) fn artifact(a: &t::Artifact) -> w::Artifact {
    w::Artifact {
        name: a.name.clone(),
        version: a.version.clone(),
        sha256: a.sha256.clone(),
        size: a.size,
        source: a.source.clone(),
    }
}

pub(crate) fn partner(p: w::PartnerState) -> t::PartnerState {
    match p {
        w::PartnerState::Unknown => t::PartnerState::Unknown,
        w::PartnerState::Off => t::PartnerState::Off,
        w::PartnerState::Booting => t::PartnerState::Booting,
        w::PartnerState::Up => t::PartnerState::Up,
        w::PartnerState::Hung => t::PartnerState::Hung,
        w::PartnerState::Crashed => t::PartnerState::Crashed,
    }
}

pub(crate) fn log_level(l: w::LogLevel) -> t::LogLevel {
    match l {
        w::LogLevel::Trace => t::LogLevel::Trace,
        w::LogLevel::Debug => t::LogLevel::Debug,
        w::LogLevel::Info => t::LogLevel::Info,
        w::LogLevel::Warn => t::LogLevel::Warn,
        w::LogLevel::Error => t::LogLevel::Error,
    }
}

/// Bytes of returned data, for the output cap: the text of every string
/// plus [`ENTRY_OVERHEAD_BYTES`] for every list entry.
pub(crate) trait OutputSize {
    fn output_size(&self) -> u64;

    /// Drops the entries over their channel's caps (a check's observations);
    /// a note saying what was dropped.
    fn cap_entries(&mut self) -> Option<String> {
        None
    }
}

fn len(s: &str) -> u64 {
    s.len() as u64
}

impl OutputSize for w::PluginInfo {
    fn output_size(&self) -> u64 {
        len(&self.name)
            + len(&self.version)
            + len(&self.description)
            + self
                .checks
                .iter()
                .map(|c| {
                    ENTRY_OVERHEAD_BYTES
                        + len(&c.name)
                        + len(&c.description)
                        + len(&c.params_schema)
                })
                .sum::<u64>()
            + self
                .operations
                .iter()
                .map(|o| ENTRY_OVERHEAD_BYTES + len(&o.description) + len(&o.params_schema))
                .sum::<u64>()
            + self
                .installers
                .iter()
                .map(|i| {
                    ENTRY_OVERHEAD_BYTES
                        + len(&i.name)
                        + len(&i.description)
                        + len(&i.params_schema)
                })
                .sum::<u64>()
    }
}

impl OutputSize for w::CheckResult {
    fn output_size(&self) -> u64 {
        len(&self.message)
            + self
                .observations
                .iter()
                .map(|(k, v)| ENTRY_OVERHEAD_BYTES + len(k) + len(v))
                .sum::<u64>()
    }

    fn cap_entries(&mut self) -> Option<String> {
        super::output::cap_observations(&mut self.observations)
    }
}

impl OutputSize for w::Progress {
    fn output_size(&self) -> u64 {
        match self {
            w::Progress::Done(m) => len(m),
            w::Progress::Pending(p) => len(&p.message),
            w::Progress::Failed(f) => len(&f.message),
        }
    }
}

impl OutputSize for w::PartnerState {
    fn output_size(&self) -> u64 {
        1
    }
}

impl OutputSize for String {
    fn output_size(&self) -> u64 {
        len(self)
    }
}

impl<T: OutputSize, E: OutputSize> OutputSize for Result<T, E> {
    fn output_size(&self) -> u64 {
        match self {
            Ok(t) => t.output_size(),
            Err(e) => e.output_size(),
        }
    }

    fn cap_entries(&mut self) -> Option<String> {
        match self {
            Ok(t) => t.cap_entries(),
            Err(e) => e.cap_entries(),
        }
    }
}

/// Converts and validates a plugin's description. With `schemas` set to
/// [`ParamSchemas::Ignored`] the parameter schemas are not even parsed (each
/// becomes `true`): a session in flight never checks parameters again.
pub(crate) fn plugin_info(
    i: w::PluginInfo,
    schemas: super::ParamSchemas,
) -> Result<t::PluginInfo, String> {
    let schema = |what: &str, s: &str| -> Result<serde_json::Value, String> {
        if schemas == super::ParamSchemas::Ignored {
            return Ok(serde_json::Value::Bool(true));
        }
        if s.len() > super::schema_limits::MAX_SCHEMA_BYTES {
            // Not even parsed.
            return Err(format!(
                "{what}: {}",
                super::schema_limits::check(s.len(), &serde_json::Value::Null).unwrap_err()
            ));
        }
        let v: serde_json::Value = serde_json::from_str(if s.trim().is_empty() { "{}" } else { s })
            .map_err(|e| format!("{what}: params-schema is not JSON: {e}"))?;
        if !(v.is_object() || v.is_boolean()) {
            return Err(format!(
                "{what}: params-schema is not a JSON Schema (an object or a boolean)"
            ));
        }
        super::schema_limits::check(s.len(), &v).map_err(|e| format!("{what}: {e}"))?;
        Ok(v)
    };
    fn name_ok(what: &str, n: &str) -> Result<(), String> {
        if n.is_empty() || n.len() > 128 || n.chars().any(|c| c.is_control() || c.is_whitespace()) {
            return Err(format!(
                "{what} name `{}` is empty, too long or has spaces/control characters",
                n.escape_debug()
            ));
        }
        Ok(())
    }
    name_ok("plugin", &i.name)?;
    if i.version.trim().is_empty() {
        return Err("the plugin's version is empty".into());
    }
    let mut checks = Vec::new();
    for c in i.checks {
        name_ok("check", &c.name)?;
        if checks.iter().any(|x: &t::CheckInfo| x.name == c.name) {
            return Err(format!("check `{}` is described twice", c.name));
        }
        let params_schema = schema(&format!("check `{}`", c.name), &c.params_schema)?;
        checks.push(t::CheckInfo {
            name: c.name,
            description: c.description,
            params_schema,
        });
    }
    let mut operations = Vec::new();
    for o in i.operations {
        let op = op_from_wit(o.op);
        if operations.iter().any(|x: &t::OperationInfo| x.op == op) {
            return Err(format!("operation `{op}` is described twice"));
        }
        let params_schema = schema(&format!("operation `{op}`"), &o.params_schema)?;
        operations.push(t::OperationInfo {
            op,
            description: o.description,
            params_schema,
        });
    }
    let mut installers = Vec::new();
    for n in i.installers {
        name_ok("installer", &n.name)?;
        if installers
            .iter()
            .any(|x: &t::InstallerInfo| x.name == n.name)
        {
            return Err(format!("installer `{}` is described twice", n.name));
        }
        let params_schema = schema(&format!("installer `{}`", n.name), &n.params_schema)?;
        installers.push(t::InstallerInfo {
            name: n.name,
            description: n.description,
            params_schema,
        });
    }
    Ok(t::PluginInfo {
        name: i.name,
        version: i.version,
        description: i.description,
        checks,
        operations,
        installers,
        reports_partner: i.reports_partner,
    })
}

pub(crate) fn check_result(c: w::CheckResult) -> t::CheckResult {
    t::CheckResult {
        verdict: match c.verdict {
            w::Verdict::Pass => t::Verdict::Pass,
            w::Verdict::Fail => t::Verdict::Fail,
            w::Verdict::Inconclusive => t::Verdict::Inconclusive,
        },
        message: c.message,
        observations: c.observations,
    }
}

pub(crate) fn progress(p: w::Progress) -> Result<t::Progress, String> {
    Ok(match p {
        w::Progress::Done(message) => t::Progress::Done { message },
        w::Progress::Pending(p) => {
            if p.percent > 100 {
                return Err(format!("pending progress of {}%", p.percent));
            }
            t::Progress::Pending {
                percent: p.percent,
                message: p.message,
                retry_after: std::time::Duration::from_millis(u64::from(p.retry_after_ms)),
            }
        }
        w::Progress::Failed(f) => t::Progress::Failed {
            message: f.message,
            retryable: f.retryable,
        },
    })
}
