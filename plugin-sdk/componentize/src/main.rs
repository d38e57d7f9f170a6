//! `duplex-componentize CORE.wasm OUT.wasm`: turns a core module built with the
//! Duplex plugin SDK (wit-bindgen embeds the world's type information in a
//! custom section) into a component, validating the result. Used by
//! `scripts/build-plugins.sh` instead of installing `wasm-tools`.

use anyhow::{Context, Result, bail};
use std::path::PathBuf;

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("duplex-componentize: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let args: Vec<PathBuf> = std::env::args_os().skip(1).map(PathBuf::from).collect();
    let [input, output] = args.as_slice() else {
        bail!("usage: duplex-componentize CORE.wasm OUT.wasm");
    };
    let module = std::fs::read(input).with_context(|| format!("reading {}", input.display()))?;
    let component = wit_component::ComponentEncoder::default()
        .validate(true)
        .module(&module)
        .with_context(|| {
            format!(
                "{} is not a core module with component type information",
                input.display()
            )
        })?
        .encode()
        .context("encoding the component")?;
    std::fs::write(output, component).with_context(|| format!("writing {}", output.display()))?;
    Ok(())
}
