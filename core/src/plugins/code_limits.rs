//! Static limits checked with wasmparser before a component is compiled.
//!
//! Cranelift's time is not linear in the size of a function: its register
//! allocator works on every value live across every control-flow merge, so
//! a function with many locals live through many branches costs about the
//! product (a 462 KiB plugin with one function of 40,000 live locals
//! compiled for minutes inside `duplex validate`). Compilation cannot be
//! interrupted, so what it is given is bounded instead, by one pass over the
//! component that reads section headers and each function's locals
//! declaration, not its code.
//!
//! The limits come from `cargo bench -p duplex-core --bench compile_limits`
//! (figures in benches/RESULTS.md, 2 shared cores): the worst single
//! function inside them compiled in under 2 s there, and a component at the
//! module-wide limits costs what a legitimate plugin of that size costs.
//! Real plugins are far below the per-function limits: the first-party
//! plugins' largest function is 6.5 KB with 22 locals; a componentize-py
//! plugin (CPython inside, 18 MB) has 13,371 functions, 6.5 MB of code, a
//! largest function of 427 KB, at most 271 locals, and a largest
//! locals × bytes of 3.5 M (sum 70 M).
//!
//! The same pass counts what instantiating the component will create (its
//! memories, its tables' initial sizes), so a plugin over the sandbox's
//! limits is refused at load naming the limit, not at every call as a host
//! error.

use super::sandbox::{MAX_MEMORIES, MAX_TABLE_ELEMENTS};
use wasmparser::{Encoding, Parser, Payload};

/// Changes whenever the limits do: part of the cache key, so an entry
/// compiled under other limits is not taken.
pub(crate) const LIMITS_VERSION: u32 = 2;

/// Largest function body, in bytes of code.
pub const MAX_FUNCTION_BODY_BYTES: u64 = 1 << 20;
/// Most locals one function may declare.
pub const MAX_LOCALS_PER_FUNCTION: u64 = 4096;
/// Largest locals × body bytes of one function: what makes a function's
/// compile time grow faster than its size.
pub const MAX_LOCALS_TIMES_BYTES: u64 = 64 << 20;
/// Largest sum of locals × body bytes over all functions.
pub const MAX_TOTAL_LOCALS_TIMES_BYTES: u64 = 512 << 20;
/// Most functions, all core modules of the component together.
pub const MAX_FUNCTIONS: u64 = 50_000;
/// Most code, all function bodies together.
pub const MAX_CODE_BYTES: u64 = 16 << 20;

/// What the pass found over a limit, as a sentence naming it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum OverLimit {
    /// Compiling it could take minutes.
    #[error("{0}")]
    Compile(String),
    /// Instantiating it would break the sandbox's limits.
    #[error("{0}")]
    Sandbox(String),
}

/// Checks the limits. A component wasmparser cannot read is left to
/// wasmtime, whose error says what is wrong with it.
pub(crate) fn check(bytes: &[u8]) -> Result<(), OverLimit> {
    let mut modules: u64 = 0;
    let mut in_module: u64 = 0;
    let mut functions: u64 = 0;
    let mut code: u64 = 0;
    let mut total_product: u64 = 0;
    let mut memories: u64 = 0;
    for payload in Parser::new(0).parse_all(bytes) {
        let Ok(payload) = payload else { return Ok(()) };
        match payload {
            Payload::Version {
                encoding: Encoding::Module,
                ..
            } => {
                modules += 1;
                in_module = 0;
            }
            Payload::MemorySection(reader) => {
                memories += u64::from(reader.count());
            }
            Payload::TableSection(reader) => {
                for table in reader.into_iter().flatten() {
                    if table.ty.initial > MAX_TABLE_ELEMENTS as u64 {
                        return Err(OverLimit::Sandbox(format!(
                            "core module {} has a table of {} elements, more than the limit of {MAX_TABLE_ELEMENTS}",
                            modules.max(1) - 1,
                            table.ty.initial
                        )));
                    }
                }
            }
            Payload::CodeSectionEntry(body) => {
                let at = format!("core module {}, function {in_module}", modules.max(1) - 1);
                functions += 1;
                in_module += 1;
                let size = body.range().len() as u64;
                code += size;
                if size > MAX_FUNCTION_BODY_BYTES {
                    return Err(OverLimit::Compile(format!(
                        "{at} has {size} bytes of code, more than the limit of {MAX_FUNCTION_BODY_BYTES} per function"
                    )));
                }
                let Ok(groups) = body.get_locals_reader() else {
                    return Ok(());
                };
                let mut locals: u64 = 0;
                for group in groups {
                    let Ok((count, _)) = group else { return Ok(()) };
                    locals += u64::from(count);
                }
                if locals > MAX_LOCALS_PER_FUNCTION {
                    return Err(OverLimit::Compile(format!(
                        "{at} declares {locals} locals, more than the limit of {MAX_LOCALS_PER_FUNCTION} per function"
                    )));
                }
                let product = locals * size;
                if product > MAX_LOCALS_TIMES_BYTES {
                    return Err(OverLimit::Compile(format!(
                        "{at} has {locals} locals over {size} bytes of code ({product} locals × bytes), more than the limit of {MAX_LOCALS_TIMES_BYTES}: compile time grows with their product"
                    )));
                }
                total_product += product;
            }
            _ => {}
        }
    }
    if memories > MAX_MEMORIES as u64 {
        return Err(OverLimit::Sandbox(format!(
            "it defines {memories} memories, more than the limit of {MAX_MEMORIES}"
        )));
    }
    if functions > MAX_FUNCTIONS {
        return Err(OverLimit::Compile(format!(
            "it has {functions} functions, more than the limit of {MAX_FUNCTIONS}"
        )));
    }
    if code > MAX_CODE_BYTES {
        return Err(OverLimit::Compile(format!(
            "it has {code} bytes of code, more than the limit of {MAX_CODE_BYTES}"
        )));
    }
    if total_product > MAX_TOTAL_LOCALS_TIMES_BYTES {
        return Err(OverLimit::Compile(format!(
            "its functions total {total_product} locals × bytes of code, more than the limit of {MAX_TOTAL_LOCALS_TIMES_BYTES}: compile time grows with that product"
        )));
    }
    Ok(())
}
