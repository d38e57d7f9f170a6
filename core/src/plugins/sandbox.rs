//! The sandbox every call runs in: the engine's configuration and the
//! per-call resource limiter.

use super::spec::HostConfig;
use wasmtime::{Config, ResourceLimiter, Result};

/// Most elements a plugin's tables may hold (each, at instantiation and by
/// `table.grow`).
pub const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Most core instances, tables and memories one call's instance may create.
pub const MAX_INSTANCES: usize = 64;
pub const MAX_TABLES: usize = 64;
pub const MAX_MEMORIES: usize = 16;

pub(crate) fn engine_config(config: &HostConfig, pooling: bool) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    // The host uses no component-model async; with it on every call is slower.
    c.concurrency_support(false);
    c.epoch_interruption(true);
    c.max_wasm_stack(512 << 10);
    if pooling {
        let n = config.pool_size.max(1);
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n * 16)
            .total_memories(n * 2)
            .total_tables(n * 16)
            .total_stacks(n)
            // Per-call memory caps are enforced by the store's limiter; this is
            // only the pool's slot size (the whole 32-bit space).
            .max_memory_size(1 << 32);
        c.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
    }
    c
}

/// Memory and table limiter over all of one call's instance.
pub(crate) struct Limiter {
    pub limit: u64,
    pub used: u64,
    /// Set when a grow was refused: the total that was asked for.
    pub exceeded: Option<u64>,
    /// Set when a table grow was refused: the elements asked for.
    pub table_exceeded: Option<u64>,
}

impl Limiter {
    pub fn new(limit: u64) -> Limiter {
        Limiter {
            limit,
            used: 0,
            exceeded: None,
            table_exceeded: None,
        }
    }
}

impl ResourceLimiter for Limiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> Result<bool> {
        let delta = desired.saturating_sub(current) as u64;
        let total = self.used.saturating_add(delta);
        if total > self.limit {
            self.exceeded = Some(total);
            // An error (not `Ok(false)`) traps instead of letting `memory.grow`
            // return -1, so an allocator cannot carry on in a degraded state.
            wasmtime::bail!(
                "memory limit of {} bytes exceeded (asked for {total})",
                self.limit
            );
        }
        self.used = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _max: Option<usize>,
    ) -> Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            self.table_exceeded = Some(desired as u64);
            wasmtime::bail!("table limit of {MAX_TABLE_ELEMENTS} elements exceeded");
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_INSTANCES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }
}
