//! `duplex validate FILE...`

use super::{Output, exit};
use duplex_core::policy::{self, Diagnostic, LoadError, Warning};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Serialize)]
struct FileReport {
    file: String,
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<Diagnostic>,
    /// What does not make the file invalid but deserves attention.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<Warning>,
    /// What each plugin is granted (when the file parsed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    plugins: Vec<super::grants::PluginGrants>,
    /// Set when the file could not be read at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    unreadable: Option<String>,
}

pub fn run(args: &Args, output: Output) -> u8 {
    let app = super::validation_app();
    let mut code = exit::OK;
    let mut reports = Vec::new();
    let now = super::plan::now();
    for file in &args.files {
        let name = file.display().to_string();
        let report = match policy::load_file(file) {
            Ok(loaded) => {
                // The plugins, pinned by digest, must provide what the policy
                // asks of them with parameters their schemas accept; the
                // artifacts must be there and match their digests, as
                // `apply` will check before it starts.
                let errors = app.validate(&loaded);
                if !errors.is_empty() {
                    code = code.max(exit::INVALID);
                }
                FileReport {
                    file: name,
                    valid: errors.is_empty(),
                    policy: Some(loaded.policy.metadata.name.clone()),
                    errors,
                    warnings: now.map(|now| loaded.warnings(now)).unwrap_or_default(),
                    plugins: super::grants::of(&loaded),
                    unreadable: None,
                }
            }
            Err(LoadError::Invalid(errors)) => {
                code = code.max(exit::INVALID);
                FileReport {
                    file: name,
                    valid: false,
                    policy: None,
                    errors,
                    warnings: Vec::new(),
                    plugins: Vec::new(),
                    unreadable: None,
                }
            }
            Err(err @ LoadError::Unreadable { .. }) => {
                code = exit::USAGE;
                FileReport {
                    file: name,
                    valid: false,
                    policy: None,
                    errors: Vec::new(),
                    warnings: Vec::new(),
                    plugins: Vec::new(),
                    unreadable: Some(err.to_string()),
                }
            }
        };
        reports.push(report);
    }
    match output {
        Output::Json => super::output::json_pretty(&serde_json::json!({
            "valid": code == exit::OK,
            "files": reports,
        })),
        Output::Human => {
            for r in &reports {
                if let Some(why) = &r.unreadable {
                    super::output::eline(&format!("error: {why}"));
                } else if r.valid {
                    super::output::line(&format!("{}: valid", r.file));
                    for l in super::grants::lines(&r.plugins, "  ") {
                        super::output::line(&l);
                    }
                } else {
                    for e in &r.errors {
                        super::output::eline(&format!("{e}"));
                    }
                }
                for w in &r.warnings {
                    super::output::eline(&w.to_string());
                }
            }
        }
    }
    code
}
