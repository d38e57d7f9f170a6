//! The per-call store data: limits, collected logs, the capabilities the plugin
//! was granted, and the host side of the `host` and `storage` imports.

use super::bindings::{self, duplex::plugin as wit};
use super::spec::{Capabilities, Limits};
use super::storage::FileStore;
use super::types::{LogLevel, LogLine, LogSource, ProgressReport};
use std::time::{Duration, Instant};
use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Result};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{
    FsPerms, HostMonotonicClock, HostWallClock, WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView,
};

/// Longest single log line kept (longer lines are cut).
pub const MAX_LINE_BYTES: usize = 4096;

pub(crate) struct HostState {
    pub plugin: std::sync::Arc<str>,
    pub deadline: Instant,
    pub storage: Option<FileStore>,
    pub limiter: Limiter,
    pub log: LogSink,
    pub progress: Option<ProgressReport>,
    /// Capabilities the plugin asked for without having them.
    pub denied: Vec<&'static str>,
    /// A host call found the deadline passed (and trapped).
    pub host_deadline_hit: bool,
    /// Built up front for components that import WASI, on first use otherwise.
    pub wasi: Option<Wasi>,
    pub table: ResourceTable,
    limits: Limits,
}

/// WASI preview 2 state: exactly the granted capabilities, frozen clocks
/// unless granted, no network, stdout/stderr captured into the call's log.
pub(crate) struct Wasi {
    pub ctx: WasiCtx,
    pub stdout: MemoryOutputPipe,
    pub stderr: MemoryOutputPipe,
}

impl Wasi {
    pub fn new(caps: &Capabilities, limits: &Limits) -> Result<Wasi> {
        let cap = usize::try_from(limits.max_log_bytes).unwrap_or(usize::MAX);
        let stdout = MemoryOutputPipe::new(cap);
        let stderr = MemoryOutputPipe::new(cap);
        let mut b = WasiCtxBuilder::new();
        b.stdout(stdout.clone())
            .stderr(stderr.clone())
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false);
        if !caps.clocks {
            b.wall_clock(FrozenClock).monotonic_clock(FrozenClock);
        }
        for (k, v) in &caps.env {
            b.env(k, v);
        }
        for d in &caps.dirs {
            let perms = if d.read_only {
                FsPerms::ReadOnly
            } else {
                FsPerms::ReadWrite
            };
            b.preopened_dir(&d.host, &d.guest, perms)?;
        }
        Ok(Wasi {
            ctx: b.build(),
            stdout,
            stderr,
        })
    }
}

/// Memory limiter over all memories of one call's instance.
pub(crate) struct Limiter {
    pub limit: u64,
    pub used: u64,
    /// Set when a grow was refused: the total that was asked for.
    pub exceeded: Option<u64>,
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
        const MAX_TABLE_ELEMENTS: usize = 100_000;
        if desired > MAX_TABLE_ELEMENTS {
            wasmtime::bail!("table limit of {MAX_TABLE_ELEMENTS} elements exceeded");
        }
        Ok(true)
    }

    fn instances(&self) -> usize {
        64
    }

    fn tables(&self) -> usize {
        64
    }

    fn memories(&self) -> usize {
        16
    }
}

/// Log lines of one call, capped in total bytes.
pub(crate) struct LogSink {
    pub lines: Vec<LogLine>,
    pub bytes: u64,
    pub limit: u64,
    pub dropped_lines: u64,
    pub dropped_bytes: u64,
}

impl LogSink {
    pub fn new(limit: u64) -> LogSink {
        LogSink {
            lines: Vec::new(),
            bytes: 0,
            limit,
            dropped_lines: 0,
            dropped_bytes: 0,
        }
    }

    pub fn push(&mut self, level: LogLevel, source: LogSource, message: &str) {
        let mut message = message;
        if message.len() > MAX_LINE_BYTES {
            let mut end = MAX_LINE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message = &message[..end];
        }
        let n = message.len() as u64;
        if self.bytes + n > self.limit {
            self.dropped_lines += 1;
            self.dropped_bytes += n;
            return;
        }
        self.bytes += n;
        self.lines.push(LogLine {
            level,
            source,
            message: message.to_owned(),
        });
    }

    /// The lines, with a note about what was dropped.
    pub fn finish(mut self) -> Vec<LogLine> {
        if self.dropped_lines > 0 {
            self.lines.push(LogLine {
                level: LogLevel::Warn,
                source: LogSource::Host,
                message: format!(
                    "{} log line(s) ({} bytes) dropped: over the limit of {} bytes per call",
                    self.dropped_lines, self.dropped_bytes, self.limit
                ),
            });
        }
        self.lines
    }
}

impl HostState {
    pub fn new(
        plugin: std::sync::Arc<str>,
        limits: &Limits,
        storage: Option<FileStore>,
        wasi: Option<Wasi>,
    ) -> HostState {
        HostState {
            plugin,
            deadline: Instant::now() + limits.timeout,
            storage,
            limiter: Limiter {
                limit: limits.memory_bytes,
                used: 0,
                exceeded: None,
            },
            log: LogSink::new(limits.max_log_bytes),
            progress: None,
            denied: Vec::new(),
            host_deadline_hit: false,
            wasi,
            table: ResourceTable::new(),
            limits: *limits,
        }
    }

    /// Traps a host call made after the call's deadline (epoch interruption
    /// only fires in wasm code).
    fn check_deadline(&mut self) -> Result<()> {
        if Instant::now() >= self.deadline {
            self.host_deadline_hit = true;
            wasmtime::bail!("deadline exceeded during a host call");
        }
        Ok(())
    }

    fn store(&mut self) -> Result<&FileStore, String> {
        if self.storage.is_none() {
            if !self.denied.contains(&"storage") {
                self.denied.push("storage");
                let msg = format!(
                    "refused capability `storage`: not granted to plugin `{}` by the policy",
                    self.plugin
                );
                self.log.push(LogLevel::Warn, LogSource::Host, &msg);
            }
            return Err(format!(
                "capability `storage` not granted to plugin `{}` by the policy",
                self.plugin
            ));
        }
        Ok(self.storage.as_ref().expect("checked above"))
    }
}

impl wit::types::Host for HostState {}

impl wit::host::Host for HostState {
    fn log(&mut self, level: wit::types::LogLevel, message: String) -> Result<()> {
        self.check_deadline()?;
        self.log
            .push(bindings::log_level(level), LogSource::Plugin, &message);
        Ok(())
    }

    fn progress(&mut self, percent: u8, message: String) -> Result<()> {
        self.check_deadline()?;
        let mut message = message;
        if message.len() > MAX_LINE_BYTES {
            let mut end = MAX_LINE_BYTES;
            while !message.is_char_boundary(end) {
                end -= 1;
            }
            message.truncate(end);
        }
        self.progress = Some(ProgressReport {
            percent: percent.min(100),
            message,
        });
        Ok(())
    }
}

impl wit::storage::Host for HostState {
    fn get(&mut self, key: String) -> Result<Result<Option<Vec<u8>>, String>> {
        self.check_deadline()?;
        Ok(self.store().and_then(|s| s.get(&key)))
    }

    fn set(&mut self, key: String, value: Vec<u8>) -> Result<Result<(), String>> {
        self.check_deadline()?;
        Ok(self.store().and_then(|s| s.set(&key, &value)))
    }

    fn delete(&mut self, key: String) -> Result<Result<(), String>> {
        self.check_deadline()?;
        Ok(self.store().and_then(|s| s.delete(&key)))
    }

    fn list_keys(&mut self) -> Result<Result<Vec<String>, String>> {
        self.check_deadline()?;
        Ok(self.store().and_then(|s| s.list_keys()))
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        if self.wasi.is_none() {
            // Only reached if a component without WASI imports gets here
            // anyway: nothing granted.
            let none = Capabilities::default();
            self.wasi = Some(Wasi::new(&none, &self.limits).expect("no preopens to fail"));
        }
        WasiCtxView {
            ctx: &mut self.wasi.as_mut().expect("set above").ctx,
            table: &mut self.table,
        }
    }
}

/// The clock a plugin sees unless the policy grants real clocks: always 0.
pub(crate) struct FrozenClock;

impl HostWallClock for FrozenClock {
    fn resolution(&self) -> Duration {
        Duration::from_secs(1)
    }

    fn now(&self) -> Duration {
        Duration::ZERO
    }
}

impl HostMonotonicClock for FrozenClock {
    fn resolution(&self) -> u64 {
        1_000_000_000
    }

    fn now(&self) -> u64 {
        0
    }
}
