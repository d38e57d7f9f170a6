//! Everything an engine run needs before its first record: the policy's
//! plugins verified and loaded, its artifacts verified, the policy snapshot
//! a session keeps. All of it fails before anything is written, so bad input
//! never leaves a half-started session behind.

use super::EngineError;
use crate::plugins::{self, HostConfig, LoadedPlugin, PluginHost, PluginSpec};
use crate::policy::{LoadedPolicy, Sha256, Software};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The policy's plugins by name, loaded and described.
pub type Plugins = BTreeMap<String, LoadedPlugin>;

/// Overrides where compiled plugins are cached (default: inside the state
/// dir). Several state dirs may share one cache: entries are keyed by digest
/// and engine, and written atomically.
pub const CACHE_DIR_ENV: &str = "DUPLEX_CACHE_DIR";

/// Where compiled plugins are cached.
pub fn cache_dir(state_dir: &Path) -> PathBuf {
    match std::env::var_os(CACHE_DIR_ENV) {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => state_dir.join("cache").join("plugins"),
    }
}

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
            storage_dir: caps.storage.then(|| {
                storage_dir(
                    state_dir,
                    caps.storage_namespace.as_deref().unwrap_or(&p.name),
                )
            }),
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
        limits: plugins::Limits {
            memory_bytes: p.limits.memory.bytes(),
            timeout: p.limits.timeout.as_duration(),
            max_output_bytes: p.limits.max_output.bytes(),
            ..plugins::Limits::default()
        },
    })
}

/// Verify and load every plugin the policy declares, and check that each
/// provides what the policy asks of it.
pub fn load_plugins(policy: &LoadedPolicy, state_dir: &Path) -> Result<Plugins, EngineError> {
    let host = PluginHost::new(HostConfig {
        cache_dir: Some(cache_dir(state_dir)),
        ..HostConfig::default()
    })
    .map_err(EngineError::Plugin)?;
    let mut loaded = Plugins::new();
    for p in &policy.policy.spec.plugins {
        let spec = plugin_spec(policy, state_dir, &p.name).expect("the plugin is in the policy");
        let plugin = host.load(&spec).map_err(EngineError::Plugin)?;
        loaded.insert(p.name.clone(), plugin);
    }
    check_provides(policy, &loaded)?;
    Ok(loaded)
}

/// Each reference in the policy names something its plugin describes.
fn check_provides(policy: &LoadedPolicy, plugins: &Plugins) -> Result<(), EngineError> {
    let spec = &policy.policy.spec;
    let mut problems = Vec::new();
    let hw = &plugins[&spec.target.plugin];
    for op in plugins::HardwareOp::ALL {
        if hw.info().operation(op).is_none() {
            problems.push(format!(
                "target plugin `{}` does not provide the hardware operation `{op}`",
                spec.target.plugin
            ));
        }
    }
    for s in &spec.software {
        let installer = spec.installer_of(s);
        if plugins[installer].info().installers.is_empty() {
            problems.push(format!(
                "plugin `{installer}` (installer of `{}`) provides no installer",
                s.name
            ));
        }
    }
    let checks = spec
        .gates
        .prepare_split
        .iter()
        .chain(&spec.gates.prepare_merge)
        .chain(spec.verification.iter().flat_map(|v| &v.checks));
    for c in checks {
        let info = plugins[&c.plugin].info();
        if info.check(&c.check).is_none() {
            let known: Vec<&str> = info.checks.iter().map(|k| k.name.as_str()).collect();
            problems.push(format!(
                "check `{}`: plugin `{}` provides no check `{}` (it provides: {})",
                c.name,
                c.plugin,
                c.check,
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                }
            ));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EngineError::Policy(problems))
    }
}

/// Read an artifact and check it against its pinned digest.
pub fn verify_artifact(
    policy: &LoadedPolicy,
    software: &Software,
) -> Result<plugins::Artifact, String> {
    let path = policy.resolve(&software.source);
    let mut file = std::fs::File::open(&path).map_err(|e| {
        format!(
            "artifact `{}` ({}): cannot read it: {e}",
            software.name,
            path.display()
        )
    })?;
    let mut bytes = Vec::new();
    file.read_to_end(&mut bytes).map_err(|e| {
        format!(
            "artifact `{}` ({}): cannot read it: {e}",
            software.name,
            path.display()
        )
    })?;
    let actual = Sha256::of(&bytes);
    if actual != software.sha256 {
        return Err(format!(
            "artifact `{}` ({}) does not match its pinned digest: the policy pins sha256 {}, the file has sha256 {actual}",
            software.name,
            path.display(),
            software.sha256
        ));
    }
    Ok(plugins::Artifact {
        name: software.name.clone(),
        version: software.version.clone(),
        sha256: software.sha256.to_string(),
        size: bytes.len() as u64,
        source: software.source.clone(),
    })
}

/// Check every artifact before the session starts.
pub fn verify_artifacts(policy: &LoadedPolicy) -> Result<(), EngineError> {
    let problems: Vec<String> = policy
        .policy
        .spec
        .software
        .iter()
        .filter_map(|s| verify_artifact(policy, s).err())
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(EngineError::Policy(problems))
    }
}
