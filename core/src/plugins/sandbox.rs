//! The sandbox every call runs in: the engine's configuration and the
//! per-call resource limiter.

use super::spec::HostConfig;
use wasmtime::{Config, ResourceLimiter, Result};

/// Most elements a plugin's tables may hold (each, at instantiation and by
/// `table.grow`): wasmtime's pooling default, which the on-demand allocator
/// is held to as well, so a plugin behaves the same under both. (A
/// componentize-py plugin's largest table has 5,676.)
pub const MAX_TABLE_ELEMENTS: usize = 20_000;
/// Most core instances, tables and memories one call's instance may create.
pub const MAX_INSTANCES: usize = 64;
pub const MAX_TABLES: usize = 64;
pub const MAX_MEMORIES: usize = 16;

/// What each linear memory reserves of the address space: the largest
/// memory limit of the plugins the host runs, rounded up to a power of two
/// (so hosts of similar policies share their compiled code), at most the
/// whole 32-bit space. wasmtime's default is 4 GiB per memory (plus guard
/// pages), which a 4 GiB address-space limit (`ulimit -v`) cannot give even
/// once. Below 4 GiB compiled code checks bounds explicitly (cheap for
/// plugins that mostly wait on the host).
pub(crate) fn memory_reservation(max_memory_bytes: u64) -> u64 {
    max_memory_bytes
        .max(64 << 20)
        .checked_next_power_of_two()
        .unwrap_or(1 << 32)
        .min(1 << 32)
}

/// Guard pages after (and before) each memory.
const GUARD_BYTES: u64 = 32 << 20;

/// Address space one call reserves for a memory, for messages.
pub(crate) fn reserved_per_memory(max_memory_bytes: u64) -> u64 {
    memory_reservation(max_memory_bytes) + 2 * GUARD_BYTES
}

/// Most bytes of a linear memory the pooling allocator resets in place
/// between calls (see [`keep_resident`]); measured, benches/RESULTS.md.
pub const KEEP_RESIDENT_BYTES: u64 = 4 << 20;

/// Bytes of each pooled linear memory zeroed in place when a call ends
/// instead of being handed back to the kernel: the plugins' memory limit
/// (no call can dirty more), at most [`KEEP_RESIDENT_BYTES`]. Only pages
/// the call dirtied are touched (wasmtime finds them with the kernel's
/// `PAGEMAP_SCAN`, enabled here), so a plugin pays for what it used, up
/// to that many bytes of them reset by `memset`, the rest by `madvise`.
/// Either way the next call sees zeroed memory (its data segments
/// restored): no state survives a call.
pub(crate) fn keep_resident(max_memory_bytes: u64) -> u64 {
    max_memory_bytes.min(KEEP_RESIDENT_BYTES)
}

/// Bytes of a table at its limit: a table is always reset in place
/// entirely (160 KiB at most; pointers, one per element).
const TABLE_KEEP_RESIDENT_BYTES: usize = MAX_TABLE_ELEMENTS * std::mem::size_of::<usize>();

pub(crate) fn engine_config(config: &HostConfig, pooling: bool) -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true);
    // The host uses no component-model async; with it on every call is slower.
    c.concurrency_support(false);
    c.epoch_interruption(true);
    c.max_wasm_stack(512 << 10);
    let reservation = memory_reservation(config.max_memory_bytes);
    c.memory_reservation(reservation)
        .memory_reservation_for_growth(reservation)
        .memory_guard_size(GUARD_BYTES);
    if pooling {
        let n = config.pool_size.max(1);
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(n)
            .total_core_instances(n * 16)
            .total_memories(n * 2)
            .total_tables(n * 16)
            .total_stacks(n)
            // The same limits as the store's limiter (which also caps each
            // call's memory at its plugin's limit): a slot per memory of the
            // reservation's size.
            .max_memory_size(reservation as usize)
            .max_memories_per_module(MAX_MEMORIES as u32)
            .max_tables_per_module(MAX_TABLES as u32)
            .table_elements(MAX_TABLE_ELEMENTS);
        let tuning = config.pool_tuning;
        let resident = tuning
            .keep_resident
            .unwrap_or_else(|| keep_resident(config.max_memory_bytes));
        pool.linear_memory_keep_resident(resident as usize)
            .table_keep_resident(match tuning.keep_resident {
                Some(n) => (n as usize).min(TABLE_KEEP_RESIDENT_BYTES),
                None => TABLE_KEEP_RESIDENT_BYTES,
            })
            .decommit_batch_size(tuning.decommit_batch_size.max(1))
            .pagemap_scan(if tuning.pagemap_scan {
                wasmtime::Enabled::Auto
            } else {
                wasmtime::Enabled::No
            });
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
