//! `duplex lock POLICY [--update]`: write the policy's lock file
//! (`POLICY.lock`) recording what it resolves to: each plugin's and
//! artifact's digest and each plugin's signature status.

use super::{Output, errors, exit, output};
use duplex_core::app::lock::{LockRefused, Locked};
use duplex_core::policy::{self, LoadError};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The policy file; its lock file is written beside it as FILE.lock.
    #[arg(value_name = "POLICY")]
    pub file: PathBuf,
    /// Replace a lock file that disagrees with the policy (or is malformed).
    #[arg(long)]
    pub update: bool,
}

pub fn run(args: &Args, format: Output) -> u8 {
    let loaded = match policy::load_file(&args.file) {
        Ok(loaded) => loaded,
        Err(err) => return errors::report_load(&err),
    };
    let (path, what) = match super::validation_app().lock(&loaded, args.update) {
        Ok(Locked::Written(path)) => (path, "written"),
        Ok(Locked::Updated(path)) => (path, "updated"),
        Ok(Locked::UpToDate(path)) => (path, "up to date"),
        Err(LockRefused::Findings(findings)) => {
            return errors::report_load(&LoadError::Invalid(loaded.place(findings)));
        }
        Err(LockRefused::Unusable(why)) => {
            output::eline(&format!("error: {why}"));
            return exit::INVALID;
        }
        Err(LockRefused::Write(why)) => {
            output::eline(&format!("error: {why}"));
            return exit::USAGE;
        }
    };
    match format {
        Output::Json => output::json_pretty(&serde_json::json!({
            "lockFile": path.display().to_string(),
            "result": what,
        })),
        Output::Human => output::line(&format!("{}: {what}", path.display())),
    }
    exit::OK
}
