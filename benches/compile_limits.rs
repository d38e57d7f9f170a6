//! How long the worst functions inside (and outside) the compile limits
//! take to compile: core/src/plugins/code_limits.rs chose its limits from
//! these figures (benches/RESULTS.md).
//!
//! Each case is one generated core module: the cost is cranelift's.
//! - `merges-L-locals M`: L locals, all live through M if/else merges in a
//!   loop: compile time grows with locals × code, much faster than either
//!   (what made a 462 KiB plugin compile for minutes);
//! - `at-limit K`: 4096 >> K locals with as many merges as fit the limit on
//!   locals × bytes of one function (the worst shapes inside the limits);
//! - `live-locals N`, `live-loop N`, `live-stack N`: N values live at once
//!   in straight-line code, across a loop, on the operand stack;
//! - `many N`: a chain of N small functions (the per-function cost).
//!
//! `--survey FILE...` prints what the limits measure for real components
//! (and their compile time).
//!
//! `cargo bench -p duplex-core --bench compile_limits [-- FILTER | --survey FILE...]`

// A benchmark is a front end of its own: it prints its figures.
#![allow(clippy::print_stdout)]

use std::fmt::Write;
use std::time::{Duration, Instant};
use wasmtime::{Config, Engine, Module};

fn live_locals(n: usize) -> String {
    let mut w = String::from("(module (func (export \"f\") (param i32) (result i32)\n");
    let _ = writeln!(w, "(local {})", "i32 ".repeat(n));
    for i in 1..=n {
        let _ = writeln!(w, "(local.set {i} (i32.add (local.get 0) (i32.const {i})))");
    }
    w.push_str("(local.get 1)\n");
    for i in 2..=n {
        let _ = writeln!(w, "(i32.add (local.get {i}))");
    }
    w.push_str("))");
    w
}

fn live_stack(n: usize) -> String {
    let mut w = String::from("(module (func (export \"f\") (param i32) (result i32)\n");
    for i in 0..n {
        let _ = writeln!(w, "(i32.add (local.get 0) (i32.const {i}))");
    }
    for _ in 1..n {
        w.push_str("i32.add\n");
    }
    w.push_str("))");
    w
}

fn live_loop(n: usize) -> String {
    // Every local is live across the loop's back edge and through an
    // if/else inside it: a block parameter per local per merge point.
    let mut w = String::from("(module (func (export \"f\") (param i32) (result i32)\n");
    let _ = writeln!(w, "(local {})", "i32 ".repeat(n));
    for i in 1..=n {
        let _ = writeln!(w, "(local.set {i} (i32.add (local.get 0) (i32.const {i})))");
    }
    w.push_str("(loop $l\n(if (local.get 0) (then\n");
    for i in 1..=n {
        let _ = writeln!(w, "(local.set {i} (i32.add (local.get {i}) (local.get 0)))");
    }
    w.push_str(") (else\n");
    for i in (1..=n).step_by(2) {
        let _ = writeln!(w, "(local.set {i} (i32.sub (local.get {i}) (i32.const 1)))");
    }
    w.push_str(
        "))\n(local.set 0 (i32.sub (local.get 0) (i32.const 1)))\n(br_if $l (local.get 0)))\n",
    );
    w.push_str("(local.get 1)\n");
    for i in 2..=n {
        let _ = writeln!(w, "(i32.add (local.get {i}))");
    }
    w.push_str("))");
    w
}

/// `locals` locals, all live through `m` if/else merges inside a loop.
fn merges(locals: usize, m: usize) -> String {
    let n = locals;
    let mut w = String::from("(module (func (export \"f\") (param i32) (result i32)\n");
    let _ = writeln!(w, "(local {})", "i32 ".repeat(n));
    for i in 1..=n {
        let _ = writeln!(w, "(local.set {i} (i32.add (local.get 0) (i32.const {i})))");
    }
    w.push_str("(loop $l\n");
    for k in 0..m {
        let _ = writeln!(
            w,
            "(if (i32.and (local.get 0) (i32.const {})) (then",
            1 << (k % 30)
        );
        for i in (1..=n).skip(k % 3).step_by(3) {
            let _ = writeln!(w, "(local.set {i} (i32.add (local.get {i}) (local.get 0)))");
        }
        w.push_str("))\n");
    }
    w.push_str("(local.set 0 (i32.sub (local.get 0) (i32.const 1)))\n(br_if $l (local.get 0)))\n");
    w.push_str("(local.get 1)\n");
    for i in 2..=n {
        let _ = writeln!(w, "(i32.add (local.get {i}))");
    }
    w.push_str("))");
    w
}

fn merges_4096(m: usize) -> String {
    merges(4096, m)
}

fn merges_2048(m: usize) -> String {
    merges(2048, m)
}

fn merges_1024(m: usize) -> String {
    merges(1024, m)
}

/// Case `k`: 4096 >> k locals through as many merges as fit the
/// locals × body limit (the worst shapes measured, at the limits).
fn at_limit(k: usize) -> String {
    let locals = 4096 >> k;
    // Body bytes: about 26 per local, plus 13 per local touched in a merge
    // (a third of them per merge).
    let budget = ((64usize << 20) / locals).min(1 << 20);
    let per_merge = (locals / 3) * 13 + 20;
    let merges_fit = budget.saturating_sub(locals * 26) / per_merge;
    merges(locals, merges_fit.max(1))
}

fn merges_512(m: usize) -> String {
    merges(512, m)
}

fn merges_256(m: usize) -> String {
    merges(256, m)
}

fn many(n: usize) -> String {
    // A chain of small functions, one exported.
    let mut w = String::from("(module\n");
    for i in 0..n {
        let next = if i + 1 < n {
            format!("(call {} (local.get 0))", i + 1)
        } else {
            "(local.get 0)".to_string()
        };
        let export = if i == 0 { "(export \"f\")" } else { "" };
        let _ = writeln!(
            w,
            "(func {export} (param i32) (result i32) (i32.add {next} (i32.const {i})))"
        );
    }
    w.push(')');
    w
}

fn time(engine: &Engine, wasm: &[u8]) -> Duration {
    let t = Instant::now();
    Module::new(engine, wasm).unwrap();
    t.elapsed()
}

/// Largest function, most locals, functions, code bytes and compile time of
/// real components (`-- --survey FILE...`).
fn survey(files: &[String]) {
    use wasmparser::{Parser, Payload};
    let mut config = Config::new();
    config.epoch_interruption(true).wasm_component_model(true);
    let engine = Engine::new(&config).unwrap();
    for file in files {
        let bytes = std::fs::read(file).unwrap();
        let (mut functions, mut code, mut largest, mut locals) = (0u64, 0u64, 0u64, 0u64);
        let (mut max_product, mut sum_product) = (0u64, 0u64);
        let (mut memories, mut tables, mut largest_table) = (0u64, 0u64, 0u64);
        for payload in Parser::new(0).parse_all(&bytes) {
            if let Ok(Payload::MemorySection(r)) = &payload {
                memories += u64::from(r.count());
            }
            if let Ok(Payload::TableSection(r)) = &payload {
                for t in r.clone() {
                    tables += 1;
                    largest_table = largest_table.max(t.unwrap().ty.initial);
                }
            }
            if let Ok(Payload::CodeSectionEntry(body)) = payload {
                functions += 1;
                let size = body.range().len() as u64;
                code += size;
                largest = largest.max(size);
                let declared: u64 = body
                    .get_locals_reader()
                    .unwrap()
                    .into_iter()
                    .map(|l| u64::from(l.unwrap().0))
                    .sum();
                locals = locals.max(declared);
                max_product = max_product.max(declared * size);
                sum_product += declared * size;
            }
        }
        let t = Instant::now();
        wasmtime::component::Component::new(&engine, &bytes).unwrap();
        println!(
            "{file}: {} bytes, {functions} functions, {code} bytes of code, largest function {largest} bytes, most locals {locals}, locals × bytes: largest {max_product}, sum {sum_product}; {memories} memories, {tables} tables (largest {largest_table} elements); compile {:.2} s",
            bytes.len(),
            t.elapsed().as_secs_f64()
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(at) = args.iter().position(|a| a == "--survey") {
        let files: Vec<String> = args[at + 1..]
            .iter()
            .filter(|a| !a.starts_with("--"))
            .cloned()
            .collect();
        survey(&files);
        return;
    }
    let filter = args
        .iter()
        .find(|a| !a.starts_with('-'))
        .cloned()
        .unwrap_or_default();
    let mut config = Config::new();
    config.epoch_interruption(true);
    let engine = Engine::new(&config).unwrap();
    type Case = (&'static str, fn(usize) -> String, &'static [usize]);
    let cases: [Case; 10] = [
        ("at-limit", at_limit, &[0, 1, 2, 3, 4, 5, 6]),
        ("merges-512-locals", merges_512, &[100, 200, 400]),
        ("merges-256-locals", merges_256, &[200, 400, 800]),
        ("merges-4096-locals", merges_4096, &[1, 4, 16]),
        ("merges-2048-locals", merges_2048, &[4, 8, 16]),
        ("merges-1024-locals", merges_1024, &[4, 16, 22, 64]),
        ("live-locals", live_locals, &[1000, 2000, 4000, 8000, 16000]),
        ("live-loop", live_loop, &[1000, 2000, 4000, 8000]),
        ("live-stack", live_stack, &[1000, 2000, 4000, 8000, 16000]),
        ("many", many, &[10_000, 50_000]),
    ];
    for (name, make, sizes) in cases {
        if !name.contains(&filter) {
            continue;
        }
        for &n in sizes {
            let wasm = wat::parse_str(make(n)).unwrap();
            let d = time(&engine, &wasm);
            println!(
                "{name:12} n={n:6}  {:8} bytes of wasm  compile {:8.3} s",
                wasm.len(),
                d.as_secs_f64()
            );
        }
    }
}
