//! `duplex validate FILE...`; its checks of a loaded policy and its report
//! are also what `duplex rollout validate` runs on a rollout's policy.

use super::{Output, exit};
use duplex_core::policy::{self, Diagnostic, LoadError, LoadedPolicy, Timestamp, Warning};
use serde::Serialize;
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Policy files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Serialize)]
pub(super) struct FileReport {
    pub file: String,
    pub valid: bool,
    /// The rollout's name (`duplex rollout validate`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<Diagnostic>,
    /// What does not make the file invalid but deserves attention.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Warning>,
    /// What each plugin is granted (when the file parsed).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub plugins: Vec<super::grants::PluginGrants>,
    /// Set when the file could not be read at all.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unreadable: Option<String>,
    /// Lines shown under `FILE: valid` (human output only).
    #[serde(skip)]
    pub summary: Vec<String>,
}

impl FileReport {
    /// A file that did not pass the loading checks.
    pub fn invalid(file: String, errors: Vec<Diagnostic>) -> FileReport {
        FileReport {
            file,
            valid: false,
            rollout: None,
            policy: None,
            errors,
            warnings: Vec::new(),
            plugins: Vec::new(),
            unreadable: None,
            summary: Vec::new(),
        }
    }

    /// A file that could not be read.
    pub fn unreadable(file: String, why: String) -> FileReport {
        FileReport {
            unreadable: Some(why),
            ..FileReport::invalid(file, Vec::new())
        }
    }

    /// The exit code this report alone calls for.
    pub fn code(&self) -> u8 {
        if self.unreadable.is_some() {
            exit::USAGE
        } else if self.valid {
            exit::OK
        } else {
            exit::INVALID
        }
    }
}

/// The checks after loading, as `apply` will make them before it starts:
/// the plugins, pinned by digest, must provide what the policy asks of them
/// with parameters their schemas accept; the artifacts must be there and
/// match their digests. `file` names the report.
pub(super) fn check_loaded(
    app: &duplex_core::app::App,
    loaded: &LoadedPolicy,
    file: String,
    now: Option<Timestamp>,
) -> FileReport {
    let errors = app.validate(loaded);
    FileReport {
        file,
        valid: errors.is_empty(),
        rollout: None,
        policy: Some(loaded.policy.metadata.name.clone()),
        errors,
        warnings: now.map(|now| loaded.warnings(now)).unwrap_or_default(),
        plugins: super::grants::of(loaded),
        unreadable: None,
        summary: Vec::new(),
    }
}

pub fn run(args: &Args, output: Output) -> u8 {
    let app = super::validation_app();
    let now = super::plan::now();
    let reports: Vec<FileReport> = args
        .files
        .iter()
        .map(|file| {
            let name = file.display().to_string();
            match policy::load_file(file) {
                Ok(loaded) => check_loaded(&app, &loaded, name, now),
                Err(LoadError::Invalid(errors)) => FileReport::invalid(name, errors),
                Err(err @ LoadError::Unreadable { .. }) => {
                    FileReport::unreadable(name, err.to_string())
                }
            }
        })
        .collect();
    print(&reports, output)
}

/// Print the reports as `validate` does; returns the exit code (an
/// unreadable file wins over an invalid one).
pub(super) fn print(reports: &[FileReport], output: Output) -> u8 {
    let code = reports
        .iter()
        .map(FileReport::code)
        .fold(exit::OK, |code, c| {
            if c == exit::USAGE || code == exit::USAGE {
                exit::USAGE
            } else {
                code.max(c)
            }
        });
    match output {
        Output::Json => super::output::json_pretty(&serde_json::json!({
            "valid": code == exit::OK,
            "files": reports,
        })),
        Output::Human => {
            for r in reports {
                if let Some(why) = &r.unreadable {
                    super::output::eline(&format!("error: {why}"));
                } else if r.valid {
                    super::output::line(&format!("{}: valid", r.file));
                    for l in &r.summary {
                        super::output::line(&format!("  {l}"));
                    }
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
