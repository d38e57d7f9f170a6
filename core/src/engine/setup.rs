//! Everything an engine run needs before its first record: the policy's
//! plugins verified and loaded, its artifacts verified, the policy snapshot
//! a session keeps. All of it fails before anything is written, so bad input
//! never leaves a half-started session behind.

use super::EngineError;
use crate::plugins::params::{ParamError, param_errors};
use crate::plugins::{self, HostConfig, LoadedPlugin, PluginHost, PluginSpec};
use crate::policy::schema_check::closest;
use crate::policy::{Diagnostic, Finding, LoadedPolicy, Params};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The policy's plugins by name, loaded and described.
pub type Plugins = BTreeMap<String, LoadedPlugin>;

pub fn storage_dir(state_dir: &Path, namespace: &str) -> PathBuf {
    state_dir.join("storage").join(namespace)
}

/// The host's view of a policy's plugin entry.
pub fn plugin_spec(policy: &LoadedPolicy, state_dir: &Path, name: &str) -> Option<PluginSpec> {
    let p = policy.policy.spec.plugin(name)?;
    let caps = &p.capabilities;
    Some(PluginSpec {
        name: p.name.clone(),
        path: policy.resolve(&p.source),
        sha256: p.sha256.to_string(),
        capabilities: plugins::Capabilities {
            host: (),
            storage: plugins::StorageGrant {
                dir: caps.storage.then(|| {
                    storage_dir(
                        state_dir,
                        caps.storage_namespace.as_deref().unwrap_or(&p.name),
                    )
                }),
            },
            wasi: plugins::WasiGrant {
                env: caps
                    .env
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect(),
                dirs: caps
                    .dirs
                    .iter()
                    .map(|d| plugins::DirGrant {
                        host: policy.resolve(&d.host),
                        guest: d.guest.clone(),
                        read_only: d.read_only,
                    })
                    .collect(),
                clocks: false,
            },
        },
        limits: plugins::Limits {
            memory_bytes: p.limits.memory.bytes(),
            timeout: p.limits.timeout.as_duration(),
            max_output_bytes: p.limits.max_output.bytes(),
            ..plugins::Limits::default()
        },
    })
}

/// What no plugin may be granted: the state dir, the policy's plugin and
/// artifact files (the plugin cache is protected by the host itself).
fn protected_paths(policy: &LoadedPolicy, state_dir: Option<&Path>) -> Vec<plugins::ProtectedPath> {
    let spec = &policy.policy.spec;
    let state = state_dir.map(|dir| plugins::ProtectedPath {
        path: dir.to_path_buf(),
        what: "the state dir".into(),
        readable: false,
    });
    let plugin_files = spec.plugins.iter().map(|p| plugins::ProtectedPath {
        path: policy.resolve(&p.source),
        what: format!("plugin `{}`'s file", p.name),
        readable: true,
    });
    let artifacts = spec.software.iter().map(|s| plugins::ProtectedPath {
        path: policy.resolve(&s.source),
        what: format!("the artifact of `{}`", s.name),
        readable: true,
    });
    state
        .into_iter()
        .chain(plugin_files)
        .chain(artifacts)
        .collect()
}

/// Verify and load every plugin the policy declares, and check that each
/// provides what the policy asks of it, with parameters its schemas accept.
pub fn load_plugins(
    policy: &LoadedPolicy,
    state_dir: &Path,
    cache_dir: Option<&Path>,
) -> Result<Plugins, EngineError> {
    load_checked(policy, Some(state_dir), cache_dir)
        .map_err(|findings| EngineError::Policy(policy.place(findings)))
}

/// For `duplex validate`: the same checks, with no state dir (grants are
/// checked but not set up; `describe` needs none) and every problem placed
/// in the policy file.
pub fn validate_plugins(policy: &LoadedPolicy, cache_dir: Option<&Path>) -> Vec<Diagnostic> {
    match load_checked(policy, None, cache_dir) {
        Ok(_) => Vec::new(),
        Err(findings) => policy.place(findings),
    }
}

fn load_checked(
    policy: &LoadedPolicy,
    state_dir: Option<&Path>,
    cache_dir: Option<&Path>,
) -> Result<Plugins, Vec<Finding>> {
    let host = PluginHost::new(HostConfig {
        cache_dir: cache_dir.map(Path::to_path_buf),
        protected: protected_paths(policy, state_dir),
        max_memory_bytes: (policy.policy.spec.plugins.iter())
            .map(|p| p.limits.memory.bytes())
            .max()
            .unwrap_or(plugins::Limits::DEFAULT_MEMORY_BYTES),
        ..HostConfig::default()
    })
    .map_err(|e| vec![Finding::value("/spec/plugins", e.to_string())])?;
    let mut loaded = Plugins::new();
    let mut findings = Vec::new();
    for (i, p) in policy.policy.spec.plugins.iter().enumerate() {
        let spec = plugin_spec(policy, state_dir.unwrap_or(Path::new(".")), &p.name)
            .expect("the plugin is in the policy");
        // Without a state dir (validate) the grants are checked, not set up.
        let result = match state_dir {
            Some(_) => host.load(&spec),
            None => host.validate(&spec),
        };
        match result {
            Ok(plugin) => {
                loaded.insert(p.name.clone(), plugin);
            }
            Err(plugins::PluginError::Grant { problems, .. }) => {
                findings.extend(problems.into_iter().map(|g| {
                    let at = format!("/spec/plugins/{i}{}", g.at);
                    if g.key {
                        Finding::key(at, g.message)
                    } else {
                        Finding::value(at, g.message)
                    }
                }));
            }
            Err(e) => {
                findings.push(Finding::value(
                    format!("/spec/plugins/{i}/{}", e.policy_field()),
                    e.to_string(),
                ));
            }
        }
    }
    if !findings.is_empty() {
        return Err(findings);
    }
    let findings = provides(policy, &loaded);
    if findings.is_empty() {
        Ok(loaded)
    } else {
        Err(findings)
    }
}

/// Each reference in the policy names something its plugin describes, and
/// each `with:` block passes the schema the plugin declares for it.
fn provides(policy: &LoadedPolicy, plugins: &Plugins) -> Vec<Finding> {
    let spec = &policy.policy.spec;
    let mut out = Vec::new();
    let hw = plugins[&spec.target.plugin].info();
    // Every operation gets the target's with:; report each problem once,
    // naming the operations that refuse it.
    let mut target_errors: Vec<(ParamError, Vec<String>)> = Vec::new();
    for op in plugins::HardwareOp::ALL {
        match hw.operation(op) {
            None => out.push(Finding::value(
                "/spec/target/plugin",
                format!(
                    "plugin `{}` does not provide the hardware operation `{op}`",
                    spec.target.plugin
                ),
            )),
            Some(info) => match param_errors(&info.params_schema, &spec.target.with) {
                Err(e) => out.push(Finding::value(
                    "/spec/target/plugin",
                    format!("operation `{op}` of `{}` {e}", spec.target.plugin),
                )),
                Ok(errors) => {
                    for e in errors {
                        match target_errors.iter_mut().find(|(known, _)| *known == e) {
                            Some((_, ops)) => ops.push(op.to_string()),
                            None => target_errors.push((e, vec![op.to_string()])),
                        }
                    }
                }
            },
        }
    }
    for (e, ops) in &target_errors {
        let what = if ops.len() == plugins::HardwareOp::ALL.len() {
            format!("the hardware operations of `{}`", spec.target.plugin)
        } else {
            format!(
                "operation(s) {} of `{}`",
                ops.join(", "),
                spec.target.plugin
            )
        };
        out.push(param_finding(e, "/spec/target/with", &what));
    }
    for (i, s) in spec.software.iter().enumerate() {
        let installer = spec.installer_of(s);
        match plugins[installer].info().installers.first() {
            None => out.push(Finding::value(
                format!("/spec/software/{i}"),
                format!("plugin `{installer}` provides no installer"),
            )),
            Some(info) => {
                // What the install call gets: the target's with: under the
                // item's. Problems already reported for the target's with:
                // are not repeated here.
                let mut with = if installer == spec.target.plugin {
                    spec.target.with.clone()
                } else {
                    Params::new()
                };
                with.extend(s.with.clone());
                let what = format!("the installer of `{installer}`");
                match param_errors(&info.params_schema, &with) {
                    Err(e) => out.push(Finding::value(
                        format!("/spec/software/{i}"),
                        format!("{what} {e}"),
                    )),
                    Ok(errors) => {
                        for e in errors
                            .into_iter()
                            .filter(|e| !target_errors.iter().any(|(t, _)| t == e))
                        {
                            out.push(param_finding(
                                &e,
                                &format!("/spec/software/{i}/with"),
                                &what,
                            ));
                        }
                    }
                }
            }
        }
    }
    let gates = spec
        .gates
        .prepare_split
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("/spec/gates/prepareSplit/{i}"), c));
    let merge = spec
        .gates
        .prepare_merge
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("/spec/gates/prepareMerge/{i}"), c));
    let verify = spec.verification.iter().flat_map(|v| {
        v.checks
            .iter()
            .enumerate()
            .map(|(i, c)| (format!("/spec/verification/checks/{i}"), c))
    });
    for (pointer, c) in gates.chain(merge).chain(verify) {
        let info = plugins[&c.plugin].info();
        match info.check(&c.check) {
            Some(check) => {
                let what = format!("check `{}` of `{}`", c.check, c.plugin);
                match param_errors(&check.params_schema, &c.with) {
                    Err(e) => out.push(Finding::value(
                        format!("{pointer}/check"),
                        format!("{what} {e}"),
                    )),
                    Ok(errors) => out.extend(
                        errors
                            .into_iter()
                            .map(|e| param_finding(&e, &format!("{pointer}/with"), &what)),
                    ),
                }
            }
            None => {
                let known: Vec<&str> = info.checks.iter().map(|k| k.name.as_str()).collect();
                let mut message = format!("plugin `{}` provides no check `{}`", c.plugin, c.check);
                if let Some(close) = closest(&c.check, &known) {
                    message.push_str(&format!(" (did you mean `{close}`?)"));
                }
                message.push_str(&format!(
                    "; it provides: {}",
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                ));
                out.push(Finding::value(format!("{pointer}/check"), message));
            }
        }
    }
    out
}

/// A parameter problem placed in the policy: under the `with:` block at
/// `with_pointer`, naming `what` refused it.
fn param_finding(e: &ParamError, with_pointer: &str, what: &str) -> Finding {
    let at = format!("{with_pointer}{}", e.at);
    let message = format!("{what}: {}", e.message);
    if e.key {
        Finding::key(at, message)
    } else {
        Finding::value(at, message)
    }
}
