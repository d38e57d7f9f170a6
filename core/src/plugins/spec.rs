//! What the engine tells the host about a plugin (mapped from the policy) and
//! how the host itself is configured.

pub use super::capabilities::Capabilities;
use crate::policy;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;
use std::time::Duration;

/// One plugin to load, as the policy declares it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginSpec {
    /// The name the policy refers to the plugin by (used in messages and in
    /// the refusal of ungranted capabilities).
    pub name: String,
    /// The component file.
    pub path: PathBuf,
    /// The sha256 the policy pins, as the policy writes it (64 lower-case
    /// hex digits, [`crate::policy::Sha256`]); checked before anything is
    /// loaded.
    pub sha256: String,
    #[serde(default)]
    pub capabilities: Capabilities,
    #[serde(default)]
    pub limits: Limits,
    /// Whether the plugin's parameter schemas are read from its
    /// description (to check `with:` blocks) or ignored.
    #[serde(default)]
    pub param_schemas: ParamSchemas,
}

/// What a load does with the parameter schemas a plugin describes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParamSchemas {
    /// Parsed and bounded (size, depth, expansion), for checking a policy's
    /// `with:` blocks: a new session, `validate`, `plugin inspect`.
    #[default]
    Checked,
    /// Not parsed at all: a session in flight (resume, retry, abort) checked
    /// its parameters when it started and never depends on them again.
    Ignored,
}

/// Sandbox limits applied to every call of a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Limits {
    /// Linear memory a call may use (all memories together); growing past it traps.
    pub memory_bytes: u64,
    /// Wall-clock deadline of one call, including time in host calls.
    #[serde(with = "super::types::millis")]
    pub timeout: Duration,
    /// Size of a call's returned data: its strings, plus
    /// [`ENTRY_OVERHEAD_BYTES`](super::ENTRY_OVERHEAD_BYTES) per list entry.
    pub max_output_bytes: u64,
    /// Bytes of log lines a call keeps (its own, its stdout and stderr
    /// lines), each counting its text plus
    /// [`ENTRY_OVERHEAD_BYTES`](super::ENTRY_OVERHEAD_BYTES), at most
    /// [`MAX_LOG_LINES`](super::MAX_LOG_LINES) of them; WASI stdout and
    /// stderr each keep at most this many bytes of raw output. The rest is
    /// dropped and the drop reported once in the logs.
    pub max_log_bytes: u64,
}

/// The defaults a policy's `limits` has (one source: the policy's types).
impl Limits {
    pub const DEFAULT_MEMORY_BYTES: u64 = policy::Limits::DEFAULT_MEMORY_MIB << 20;
    pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(policy::Limits::DEFAULT_TIMEOUT_SECS);
    pub const DEFAULT_MAX_OUTPUT_BYTES: u64 = policy::Limits::DEFAULT_MAX_OUTPUT_MIB << 20;
    pub const DEFAULT_MAX_LOG_BYTES: u64 = 64 << 10;
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory_bytes: Self::DEFAULT_MEMORY_BYTES,
            timeout: Self::DEFAULT_TIMEOUT,
            max_output_bytes: Self::DEFAULT_MAX_OUTPUT_BYTES,
            max_log_bytes: Self::DEFAULT_MAX_LOG_BYTES,
        }
    }
}

/// Configuration of a [`super::PluginHost`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostConfig {
    /// Where precompiled components are cached (created if missing; must be
    /// writable only by the runner). `None`: compile on every load.
    pub cache_dir: Option<PathBuf>,
    /// Granularity of the per-call deadline (the epoch ticker's period).
    pub epoch_tick: Duration,
    /// Use wasmtime's pooling instance allocator: per-call instantiation is
    /// about 25% faster (benches/RESULTS.md); it reserves address space up front
    /// (about 8 GiB per concurrent instance) and falls back to the on-demand
    /// allocator if that is refused.
    pub pooling: bool,
    /// Plugin calls that may run at the same time with pooling (more fail
    /// with a host error until one finishes).
    pub pool_size: u32,
    /// The largest `limits.memory_bytes` of the plugins this host will load:
    /// each memory reserves that much address space (rounded up to a power
    /// of two), not 4 GiB, and a plugin with a larger limit is refused.
    pub max_memory_bytes: u64,
    /// How the pooling allocator resets a slot between calls (for the
    /// benchmarks that chose the default; see [`PoolTuning`]).
    pub pool_tuning: PoolTuning,
    /// How many loaded components the host keeps in memory, by digest, so
    /// that loading the same plugin again (the next session of an agent)
    /// skips reading, checking, mapping and linking its cache entry; the
    /// least recently used is dropped beyond this. `0`: none kept. The
    /// plugin file is verified against its pin on every load all the same.
    pub loaded_components: usize,
}

/// How the pooling allocator gives a call's memories and tables back.
/// Every call still gets zeroed memory and fresh tables: this only chooses
/// between zeroing dirty pages in place (`memset`, the pages stay resident)
/// and returning them to the kernel (`madvise`, the next call faults them
/// in again).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolTuning {
    /// Bytes of each linear memory (and table) reset in place; `None`: the
    /// measured rule, the plugins' memory limit at most
    /// [`KEEP_RESIDENT_BYTES`](super::KEEP_RESIDENT_BYTES) (tables: whole).
    pub keep_resident: Option<u64>,
    /// Decommits batched together (`0` or `1`: none; measured slower with
    /// keep-resident, see benches/RESULTS.md).
    pub decommit_batch_size: usize,
    /// Find the pages a call dirtied with the kernel's `PAGEMAP_SCAN`
    /// (Linux 6.7; wasmtime falls back when it is missing) and reset only
    /// those; without it the whole resident part is `memset` every call.
    pub pagemap_scan: bool,
}

impl Default for PoolTuning {
    fn default() -> Self {
        PoolTuning {
            keep_resident: None,
            decommit_batch_size: 1,
            pagemap_scan: true,
        }
    }
}

impl Default for HostConfig {
    fn default() -> Self {
        HostConfig {
            cache_dir: None,
            epoch_tick: Duration::from_millis(10),
            pooling: true,
            pool_size: 64,
            max_memory_bytes: Limits::DEFAULT_MEMORY_BYTES,
            pool_tuning: PoolTuning::default(),
            loaded_components: 16,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_defaults_are_the_policy_defaults() {
        let from_policy = policy::Limits::default();
        let host = Limits::default();
        assert_eq!(host.timeout, from_policy.timeout.as_duration());
        assert_eq!(host.memory_bytes, from_policy.memory.bytes());
        assert_eq!(host.max_output_bytes, from_policy.max_output.bytes());
    }
}
