//! The plugins an engine run calls: verified against their pinned digests,
//! loaded into the shared plugin host, and — for a new session — checked
//! against what the policy asks of them, before anything is written, so bad
//! input never leaves a half-started session behind.

use crate::plugins::params::{ParamError, param_errors};
use crate::plugins::{self, LoadedPlugin, PluginError, PluginHost, PluginSpec};
use crate::policy::schema_check::did_you_mean;
use crate::policy::{Finding, LoadedPolicy, Params, PluginRef, Software};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The policy's plugins by name, loaded and described.
pub type Plugins = BTreeMap<String, LoadedPlugin>;

pub fn storage_dir(state_dir: &Path, namespace: &str) -> PathBuf {
    state_dir.join("storage").join(namespace)
}

/// The host's view of a policy's plugin entry: its component at
/// `component`, its grants (storage under the state dir; none without a
/// state dir, as for `validate`) and its limits. Paths in the grant resolve
/// with `resolve`, against the policy's folder. An `artifacts` grant names
/// the staged copy of each of `software` under the state dir.
pub fn plugin_spec(
    p: &PluginRef,
    component: PathBuf,
    state_dir: Option<&Path>,
    software: &[Software],
    resolve: impl Fn(&str) -> PathBuf,
) -> PluginSpec {
    let caps = &p.capabilities;
    let capabilities = plugins::Capabilities {
        host: (),
        storage: plugins::StorageGrant {
            // Without a state dir (validate) the grant is checked, never set up.
            dir: caps.storage.then(|| {
                storage_dir(
                    state_dir.unwrap_or(Path::new(".")),
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
                    host: resolve(&d.host),
                    guest: d.guest.clone(),
                    read_only: d.read_only,
                })
                .collect(),
            clocks: false,
        },
        exec: plugins::ExecGrant {
            programs: caps
                .exec
                .iter()
                .map(|e| plugins::ProgramGrant {
                    program: PathBuf::from(&e.program),
                    args: e.args.clone(),
                    env: e.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
                })
                .collect(),
        },
        files: plugins::FilesGrant {
            roots: caps
                .files
                .iter()
                .map(|f| plugins::FileRoot {
                    name: f.name.clone(),
                    path: resolve(&f.path),
                    read_only: f.read_only,
                })
                .collect(),
        },
        artifacts: plugins::ArtifactsGrant {
            granted: caps.artifacts,
            staged: match state_dir {
                Some(state) if caps.artifacts => software
                    .iter()
                    .map(|s| plugins::StagedArtifact {
                        name: s.name.clone(),
                        sha256: s.sha256.to_string(),
                        path: crate::artifact::staged_path(state, &s.sha256),
                    })
                    .collect(),
                _ => Vec::new(),
            },
        },
        http: plugins::HttpGrant {
            origins: caps.http.clone(),
        },
    };
    PluginSpec {
        name: p.name.clone(),
        path: component,
        // A file's pin; an `oci://` source's is its manifest's layer
        // digest, set where the source is resolved (`component_source`).
        sha256: p
            .sha256
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        capabilities,
        limits: plugins::Limits {
            memory_bytes: p.limits.memory.bytes(),
            timeout: p.limits.timeout.as_duration(),
            max_output_bytes: p.limits.max_output.bytes(),
            ..plugins::Limits::default()
        },
        param_schemas: plugins::ParamSchemas::Checked,
    }
}

/// What no plugin may be granted: the state dir, the policy's plugin and
/// artifact files (the plugin cache is protected by the host itself).
pub fn protected_paths(
    policy: &LoadedPolicy,
    state_dir: Option<&Path>,
) -> Vec<plugins::ProtectedPath> {
    let spec = &policy.policy.spec;
    let state = state_dir.map(|dir| plugins::ProtectedPath {
        path: dir.to_path_buf(),
        what: "the state dir".into(),
        readable: false,
    });
    // A plugin pulled from a registry is in the plugin cache, which is
    // always protected.
    let plugin_files = spec
        .plugins
        .iter()
        .filter(|p| !duplex_oci::is_oci(&p.source))
        .map(|p| plugins::ProtectedPath {
            path: policy.resolve(&p.source),
            what: format!("plugin `{}`'s file", p.name),
            readable: true,
        });
    let artifacts = spec
        .software
        .iter()
        .filter(|s| !crate::artifact::is_url(&s.source))
        .map(|s| plugins::ProtectedPath {
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

/// Where a plugin entry's component is, once its source is resolved: the
/// policy's file, or the verified copy of an `oci://` source in the plugin
/// cache (pulled if it was not there).
#[derive(Debug, Clone)]
pub struct ComponentSource {
    pub path: PathBuf,
    /// The component's sha256 the policy pins, directly (`sha256`) or
    /// through an `oci://` source's manifest.
    pub sha256: String,
    /// What the registry's manifest said, for an `oci://` source.
    pub oci: Option<duplex_oci::Pulled>,
}

/// Plugin entry `p`'s file, when its source is not `oci://`: the path
/// relative to the policy and the `sha256` it pins.
pub fn file_source(policy: &LoadedPolicy, p: &PluginRef) -> ComponentSource {
    ComponentSource {
        path: policy.resolve(&p.source),
        sha256: p
            .sha256
            .as_ref()
            .map(ToString::to_string)
            .unwrap_or_default(),
        oci: None,
    }
}

/// Resolves plugin entry `p`'s source: a file of the policy, or an `oci://`
/// reference pulled into (or found in) the host's cache, whose component
/// must be the one `sha256` pins.
pub fn component_source(
    host: &PluginHost,
    policy: &LoadedPolicy,
    p: &PluginRef,
) -> Result<ComponentSource, PluginError> {
    if !duplex_oci::is_oci(&p.source) {
        return Ok(file_source(policy, p));
    }
    let pulled = host.pull_oci(&p.name, &p.source)?;
    if let Some(pinned) = &p.sha256
        && pulled.sha256 != pinned.as_str()
    {
        return Err(PluginError::OciDigest {
            name: p.name.clone(),
            reference: p.source.clone(),
            expected: pinned.to_string(),
            actual: pulled.sha256,
        });
    }
    Ok(ComponentSource {
        path: pulled.path.clone(),
        sha256: pulled.sha256.clone(),
        oci: Some(pulled),
    })
}

/// The largest memory limit among a policy's plugins: what the plugin host
/// must reserve per memory to run them.
pub fn max_memory_bytes<'p>(plugins: impl IntoIterator<Item = &'p PluginRef>) -> u64 {
    plugins
        .into_iter()
        .map(|p| p.limits.memory.bytes())
        .max()
        .unwrap_or(plugins::Limits::DEFAULT_MEMORY_BYTES)
}

/// Verify and load every plugin a policy declares, from the policy's own
/// sources, and check that each provides what the policy asks of it with
/// parameters its schemas accept. `state_dir: None` (for `validate`) checks
/// every grant but sets none up: `describe` needs none. Every problem is a
/// finding placed in the policy.
pub fn load_for_policy(
    host: &PluginHost,
    policy: &LoadedPolicy,
    state_dir: Option<&Path>,
    mut on_compile: impl FnMut(&str),
) -> Result<Plugins, Vec<Finding>> {
    let protected = protected_paths(policy, state_dir);
    let mut loaded = Plugins::new();
    let mut findings = Vec::new();
    for (i, p) in policy.policy.spec.plugins.iter().enumerate() {
        let source = match component_source(host, policy, p) {
            Ok(source) => source,
            Err(e) => {
                findings.push(Finding::value(
                    format!("/spec/plugins/{i}/{}", e.policy_field()),
                    e.to_string(),
                ));
                continue;
            }
        };
        let spec = PluginSpec {
            sha256: source.sha256,
            ..plugin_spec(
                p,
                source.path,
                state_dir,
                &policy.policy.spec.software,
                |path| policy.resolve(path),
            )
        };
        if !host.is_cached(&spec.sha256) {
            on_compile(&p.name);
        }
        let result = match state_dir {
            Some(_) => host.load_guarded(&spec, &protected),
            None => host.validate(&spec, &protected),
        };
        match result {
            Ok(plugin) => {
                loaded.insert(p.name.clone(), plugin);
            }
            Err(PluginError::Grant { problems, .. }) => {
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

/// Load the plugins of a session in flight as it pinned them: each from the
/// copy kept in the session dir (`plugins/<sha256>.wasm`), or from the
/// policy's source when there is no copy (sessions of journal format 1),
/// always verified against the pinned digest. What they provide was checked
/// when the session started and is not checked again: a resume, a retry or
/// an abort never depends on a plugin's schemas.
pub fn load_pinned<'p>(
    host: &PluginHost,
    plugins: impl IntoIterator<Item = &'p PluginRef>,
    software: &[Software],
    session_dir: &Path,
    state_dir: &Path,
    resolve: impl Fn(&str) -> PathBuf,
    mut on_compile: impl FnMut(&str),
) -> Result<Plugins, PluginError> {
    let state = [plugins::ProtectedPath {
        path: state_dir.to_path_buf(),
        what: "the state dir".into(),
        readable: false,
    }];
    let mut loaded = Plugins::new();
    let oci_pins = read_oci_pins(session_dir);
    for p in plugins {
        // An `oci://` source without `sha256` is pinned by the component
        // digest the session recorded when it started (else by the
        // manifest, from the cache or the registry).
        let (sha256, pulled) = match (&p.sha256, oci_pins.get(&p.name)) {
            (Some(pin), _) => (pin.to_string(), None),
            (None, Some(pin)) => (pin.clone(), None),
            (None, None) if duplex_oci::is_oci(&p.source) => {
                let pulled = host.pull_oci(&p.name, &p.source)?;
                (pulled.sha256.clone(), Some(pulled.path))
            }
            (None, None) => (String::new(), None),
        };
        let copy = pinned_copy(session_dir, &sha256);
        let component = if copy.is_file() {
            copy
        } else if let Some(path) = pulled {
            path
        } else if duplex_oci::is_oci(&p.source) {
            host.pull_oci(&p.name, &p.source)?.path
        } else {
            resolve(&p.source)
        };
        let spec = PluginSpec {
            param_schemas: plugins::ParamSchemas::Ignored,
            sha256,
            ..plugin_spec(p, component, Some(state_dir), software, &resolve)
        };
        if !host.is_cached(&spec.sha256) {
            on_compile(&p.name);
        }
        loaded.insert(p.name.clone(), host.load_guarded(&spec, &state)?);
    }
    Ok(loaded)
}

/// Where a session records the component digest of each plugin from an
/// `oci://` source (`{"name": "<sha256>"}`): what a policy without
/// `sha256` for it pinned when the session started.
pub const OCI_PINS: &str = "plugins/oci-pins.json";

fn read_oci_pins(session_dir: &Path) -> BTreeMap<String, String> {
    crate::files::read_regular(&session_dir.join(OCI_PINS), "a pin record", 1 << 20)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

/// Where a session keeps its copy of a plugin component.
pub fn pinned_copy(session_dir: &Path, sha256: &str) -> PathBuf {
    session_dir.join("plugins").join(format!("{sha256}.wasm"))
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
                message.push_str(&did_you_mean(&c.check, &known));
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
