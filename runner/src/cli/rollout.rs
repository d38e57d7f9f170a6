//! `duplex rollout validate FILE...` and `duplex rollout plan FILE --hosts
//! INVENTORY`: a fleet rollout document checked, and resolved against the
//! fleet's hosts into the plan every agent will obey.

use super::fleet;
use super::validate::{self, FileReport};
use super::{Output, exit, output};
use duplex_core::rollout::{
    self, CountOrPercent, InventoryHost, LoadedRollout, RolloutLoadError, RolloutPlan,
};
use std::path::{Path, PathBuf};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub verb: Verb,
}

#[derive(Debug, clap::Subcommand)]
pub enum Verb {
    /// Check rollout files and the policy each rolls out (as `duplex validate` does).
    Validate(ValidateArgs),
    /// Resolve a rollout against the fleet's hosts: waves, limits, windows.
    Plan(PlanArgs),
    /// Resolve the rollout against the hosts registered now and store it in the fleet's etcd.
    Apply(fleet::ApplyArgs),
    /// Show the rollout: waves, slots, results, releases.
    Status(fleet::TargetArgs),
    /// No host starts until `duplex rollout resume`; hosts in flight go on.
    Pause(fleet::ReasonArgs),
    /// Clear a pause, or approve the wave that waits for an approval.
    Resume(fleet::TargetArgs),
    /// No host starts any more; sessions in flight are asked to abort.
    Abort(fleet::ReasonArgs),
}

#[derive(Debug, clap::Args)]
pub struct ValidateArgs {
    /// Rollout files to check.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// The rollout file.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
    /// The fleet's hosts: a YAML list of `{name, labels}`.
    #[arg(
        long,
        value_name = "INVENTORY.yaml",
        required_unless_present = "etcd",
        conflicts_with = "etcd"
    )]
    pub hosts: Option<PathBuf>,
    /// Or the hosts registered in the fleet's etcd (comma-separated http://host:port).
    #[arg(long, value_name = "URLS", value_delimiter = ',')]
    pub etcd: Vec<String>,
    /// The prefix of the fleet's keys in etcd.
    #[arg(long, value_name = "PREFIX", default_value = duplex_fleet::DEFAULT_PREFIX)]
    pub etcd_prefix: String,
    /// Compute the windows' next openings as of this time (RFC 3339)
    /// instead of now.
    #[arg(long, value_name = "TIME")]
    pub at: Option<duplex_core::policy::Timestamp>,
}

pub fn run(args: &Args, output_format: Output) -> u8 {
    match &args.verb {
        Verb::Validate(a) => validate(a, output_format),
        Verb::Plan(a) => plan(a, output_format),
        Verb::Apply(a) => fleet::apply(a, output_format),
        Verb::Status(a) => fleet::status(a, output_format),
        Verb::Pause(a) => fleet::control(fleet::Control::Pause, &a.target, Some(&a.reason)),
        Verb::Resume(a) => fleet::control(fleet::Control::Resume, a, None),
        Verb::Abort(a) => fleet::control(fleet::Control::Abort, &a.target, Some(&a.reason)),
    }
}

fn validate(args: &ValidateArgs, output_format: Output) -> u8 {
    let app = super::validation_app();
    let now = super::plan::now();
    let reports: Vec<FileReport> = args
        .files
        .iter()
        .map(|file| {
            let name = file.display().to_string();
            match rollout::load_file(file) {
                Ok(loaded) => {
                    // The policy's checks are `duplex validate`'s.
                    let mut report =
                        validate::check_loaded(&app, &loaded.policy, name.clone(), None);
                    report.errors = loaded.place_policy_diagnostics(report.errors);
                    report.warnings = now.map(|n| loaded.policy_warnings(n)).unwrap_or_default();
                    report.rollout = Some(loaded.rollout.metadata.name.clone());
                    report.summary = vec![format!(
                        "rollout {} of policy {}",
                        loaded.rollout.metadata.name,
                        policy_source(&loaded)
                    )];
                    report
                }
                Err(RolloutLoadError::Invalid(errors)) => FileReport::invalid(name, errors),
                Err(err @ RolloutLoadError::Unreadable { .. }) => {
                    FileReport::unreadable(name, err.to_string())
                }
            }
        })
        .collect();
    validate::print(&reports, output_format)
}

/// `demo (policies/demo.yaml)` or `demo (inline)`.
fn policy_source(loaded: &LoadedRollout) -> String {
    let name = &loaded.policy.policy.metadata.name;
    if loaded.policy_is_inline() {
        format!("{name} (inline)")
    } else {
        format!("{name} ({})", shown(&loaded.policy.file))
    }
}

/// A path relative to the working directory when it is under it.
fn shown(path: &Path) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    std::env::current_dir()
        .ok()
        .and_then(|cwd| absolute.strip_prefix(cwd).ok().map(Path::to_path_buf))
        .unwrap_or(absolute)
        .display()
        .to_string()
}

/// The fleet's hosts, from the source the flags name.
fn inventory(args: &PlanArgs) -> Result<Vec<InventoryHost>, (u8, String)> {
    let Some(path) = &args.hosts else {
        if args.etcd.is_empty() {
            return Err((
                exit::USAGE,
                "give the fleet's hosts with --hosts or --etcd".into(),
            ));
        }
        return fleet::inventory(&fleet::EtcdArgs {
            etcd: args.etcd.clone(),
            etcd_prefix: args.etcd_prefix.clone(),
        })
        .map_err(|e| (exit::INVALID, e));
    };
    let text = std::fs::read_to_string(path)
        .map_err(|e| (exit::USAGE, format!("cannot read {}: {e}", path.display())))?;
    rollout::parse_inventory(&text).map_err(|e| {
        (
            exit::INVALID,
            format!(
                "{}: expected a list of hosts ({{name, labels}}): {e}",
                path.display()
            ),
        )
    })
}

fn plan(args: &PlanArgs, output_format: Output) -> u8 {
    let loaded = match rollout::load_file(&args.file) {
        Ok(loaded) => loaded,
        Err(RolloutLoadError::Invalid(diags)) => {
            for d in diags {
                output::eline(&d.to_string());
            }
            return exit::INVALID;
        }
        Err(err @ RolloutLoadError::Unreadable { .. }) => {
            output::eline(&format!("error: {err}"));
            return exit::USAGE;
        }
    };
    let hosts = match inventory(args) {
        Ok(hosts) => hosts,
        Err((code, message)) => {
            super::errors::fail(output_format, &message);
            return code;
        }
    };
    let plan = match loaded.resolve(&hosts) {
        Ok(plan) => plan,
        Err(errors) => {
            let message: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
            super::errors::fail(
                output_format,
                &format!(
                    "{}: the rollout does not resolve against {}:\n{}",
                    args.file.display(),
                    args.hosts.as_deref().map(shown).unwrap_or_default(),
                    message
                        .iter()
                        .map(|m| format!("  {m}"))
                        .collect::<Vec<_>>()
                        .join("\n")
                ),
            );
            return exit::INVALID;
        }
    };
    match output_format {
        Output::Json => output::json_pretty(&plan),
        Output::Human => {
            let now = args
                .at
                .or_else(super::plan::now)
                .map(|t| t.as_jiff())
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH);
            output::lines(&render(&loaded, &plan, now));
        }
    }
    exit::OK
}

fn hosts_word(n: usize) -> String {
    format!("{n} host{}", if n == 1 { "" } else { "s" })
}

/// How a limit was resolved: `2`, or `2 (25% of 8 hosts)`.
fn resolved(value: u32, written: Option<CountOrPercent>, total: usize, rounding: &str) -> String {
    match written {
        Some(CountOrPercent::Percent(p)) => {
            format!(
                "{value} ({p}% of {}, {rounding}, at least 1)",
                hosts_word(total)
            )
        }
        Some(CountOrPercent::Count(_)) => value.to_string(),
        None => format!("{value} (the default)"),
    }
}

pub fn render(loaded: &LoadedRollout, plan: &RolloutPlan, now: jiff::Timestamp) -> String {
    use std::fmt::Write;
    let spec = &loaded.rollout.spec;
    let total = plan.host_count();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Rollout {} ({}), sha256 {}",
        plan.name,
        loaded.file.display(),
        plan.digest
    );
    let _ = writeln!(
        out,
        "Policy {}, sha256 {}",
        policy_source(loaded),
        plan.policy.digest
    );
    let _ = writeln!(out, "Hosts: {}", total);
    let _ = writeln!(out, "\nWaves:");
    for (i, wave) in plan.waves.iter().enumerate() {
        let _ = writeln!(
            out,
            "  {}. {} ({}): {}",
            i + 1,
            wave.name,
            hosts_word(wave.hosts.len()),
            wave.hosts.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "\nMax unavailable: {}",
        resolved(
            plan.max_unavailable,
            spec.max_unavailable,
            total,
            "rounded down"
        )
    );
    let _ = writeln!(
        out,
        "Error budget: {}: the rollout halts once that many hosts have aborted or are held",
        resolved(plan.error_budget, spec.error_budget, total, "rounded up")
    );
    let between = &plan.between_waves;
    let pause = (!between.pause.is_zero()).then(|| {
        format!(
            "a pause of {}",
            duplex_core::policy::HumanDuration::from(between.pause)
        )
    });
    let approval = between
        .approval
        .then(|| "an operator's approval".to_string());
    let _ = writeln!(
        out,
        "Between waves: {}",
        match (pause, approval) {
            (None, None) => "nothing: a wave starts when the one before it has ended".to_string(),
            (Some(p), None) => p,
            (None, Some(a)) => a,
            (Some(p), Some(a)) => format!("{p}, then {a}"),
        }
    );
    let _ = writeln!(
        out,
        "\nWindows (a host starts its upgrade only inside one):"
    );
    if plan.windows.is_empty() {
        let _ = writeln!(out, "  none: a host may start at any time");
    }
    for w in &plan.windows {
        let next = match w.next_open(now) {
            Some(t) if t == now => "open now".to_string(),
            Some(t) => format!("next opens {} UTC", t.strftime("%Y-%m-%d %H:%M")),
            None => "never opens".to_string(),
        };
        let _ = writeln!(
            out,
            "  {} {} for {} ({}): {next}",
            w.days.join(","),
            w.start,
            duplex_core::policy::HumanDuration::from(w.length),
            w.time_zone
        );
    }
    out
}
