//! The fleet's verbs, against its etcd (through `duplex-fleet`, the only
//! crate that knows etcd): `rollout apply|status|pause|resume|abort` and
//! `fleet status|release`. Every etcd call is bounded by a timeout: an
//! unreachable etcd is an error naming the endpoints, never a hang.

use super::output::{self, escape};
use super::{Output, exit};
use duplex_core::rollout::{InventoryHost, RolloutPlan};
use duplex_fleet::{Created, Fleet, FleetConfig, HostPlace, HostResult, Outcome, RolloutView};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the fleet's etcd is.
#[derive(Debug, Clone, clap::Args)]
pub struct EtcdArgs {
    /// The fleet's etcd members (comma-separated http://host:port).
    #[arg(
        long,
        value_name = "URLS",
        env = "DUPLEX_ETCD",
        value_delimiter = ',',
        required = true
    )]
    pub etcd: Vec<String>,
    /// The prefix of the fleet's keys in etcd.
    #[arg(long, value_name = "PREFIX", default_value = duplex_fleet::DEFAULT_PREFIX)]
    pub etcd_prefix: String,
}

/// `duplex fleet ...`
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: FleetCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum FleetCommand {
    /// Every host the fleet knows: alive, state, status, partner, rollout, wave, slot, last event.
    Status(EtcdArgs),
    /// Free a host's slot in every rollout where it holds one (its upgrade's end is unknown).
    Release(ReleaseArgs),
}

#[derive(Debug, clap::Args)]
pub struct ReleaseArgs {
    /// The host whose slot to free.
    pub host: String,
    /// Why (recorded with the release, and counted against the error budget).
    #[arg(long, required = true)]
    pub reason: String,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

/// A rollout named on the command line: its file, or its name.
#[derive(Debug, clap::Args)]
pub struct TargetArgs {
    /// The rollout file (its `metadata.name` is used), or the rollout's name.
    #[arg(value_name = "FILE|NAME")]
    pub rollout: String,
    #[command(flatten)]
    pub etcd: EtcdArgs,
}

#[derive(Debug, clap::Args)]
pub struct ReasonArgs {
    #[command(flatten)]
    pub target: TargetArgs,
    /// Why (recorded).
    #[arg(long, required = true)]
    pub reason: String,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// The rollout file.
    pub file: PathBuf,
    #[command(flatten)]
    pub etcd: EtcdArgs,
    /// Follow the rollout until every host has ended (or it halts or is
    /// aborted), printing each change; exit 0 only when every host committed.
    #[arg(long)]
    pub wait: bool,
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime starts")
}

/// `--etcd` names members by URL: why one is not.
fn not_urls(etcd: &EtcdArgs) -> Option<String> {
    etcd.etcd
        .iter()
        .find(|e| !(e.starts_with("http://") || e.starts_with("https://")))
        .map(|bad| format!("--etcd {bad}: not an etcd member's URL (http://host:port)"))
}

/// Anything but URLs in `--etcd` is a usage error.
fn check_urls(etcd: &EtcdArgs) -> Result<(), u8> {
    match not_urls(etcd) {
        Some(why) => Err(fail(&why, exit::USAGE)),
        None => Ok(()),
    }
}

async fn connect(etcd: &EtcdArgs) -> Result<Fleet, String> {
    Fleet::connect(FleetConfig {
        prefix: etcd.etcd_prefix.clone(),
        ..FleetConfig::new(etcd.etcd.clone())
    })
    .await
    .map_err(|e| e.to_string())
}

fn fail(message: &str, code: u8) -> u8 {
    output::eline(&format!("error: {}", escape(message)));
    code
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The rollout's name: `metadata.name` of the file, or the argument.
fn rollout_name(arg: &str) -> Result<String, String> {
    let path = Path::new(arg);
    if path.is_file() {
        return duplex_core::rollout::load_file(path)
            .map(|l| l.rollout.metadata.name.clone())
            .map_err(|e| e.to_string());
    }
    Ok(arg.to_string())
}

/// The hosts registered in the fleet (alive or not), for resolving a rollout.
pub fn inventory(etcd: &EtcdArgs) -> Result<Vec<InventoryHost>, String> {
    if let Some(why) = not_urls(etcd) {
        return Err(why);
    }
    runtime().block_on(async {
        let fleet = connect(etcd).await?;
        inventory_of(&fleet).await
    })
}

async fn inventory_of(fleet: &Fleet) -> Result<Vec<InventoryHost>, String> {
    Ok(fleet
        .hosts()
        .await
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|(h, _)| InventoryHost {
            name: h.name,
            labels: h.labels,
        })
        .collect())
}

/// `duplex rollout apply FILE`: resolve the rollout against the hosts
/// registered now and store it; every agent of the fleet then follows it.
pub fn apply(args: &ApplyArgs, format: Output) -> u8 {
    if let Err(code) = check_urls(&args.etcd) {
        return code;
    }
    let loaded = match duplex_core::rollout::load_file(&args.file) {
        Ok(l) => l,
        Err(e @ duplex_core::rollout::RolloutLoadError::Unreadable { .. }) => {
            return fail(&e.to_string(), exit::USAGE);
        }
        Err(duplex_core::rollout::RolloutLoadError::Invalid(diags)) => {
            for d in diags {
                output::eline(&escape(&d.to_string()));
            }
            return exit::INVALID;
        }
    };
    runtime().block_on(async {
        let fleet = match connect(&args.etcd).await {
            Ok(f) => f,
            Err(e) => return fail(&e, exit::INVALID),
        };
        let inventory = match inventory_of(&fleet).await {
            Ok(i) => i,
            Err(e) => return fail(&e, exit::INVALID),
        };
        let plan = match loaded.resolve(&inventory) {
            Ok(p) => p,
            Err(errors) => {
                for e in errors {
                    output::eline(&format!(
                        "error: {}: {}",
                        args.file.display(),
                        escape(&e.to_string())
                    ));
                }
                return exit::INVALID;
            }
        };
        let created = match fleet.create_rollout(&plan).await {
            Ok(c) => c,
            Err(e) => return fail(&e.to_string(), exit::INVALID),
        };
        if format == Output::Json {
            output::json_pretty(&serde_json::json!({
                "rollout": plan.name,
                "created": created == Created::New,
                "plan": plan,
            }));
        } else {
            output::line(&format!(
                "Rollout {} {}: {} hosts in {} waves ({}), at most {} out of service at once, halt after {} aborted or held.",
                plan.name,
                if created == Created::New {
                    "applied"
                } else {
                    "unchanged (already applied)"
                },
                plan.host_count(),
                plan.waves.len(),
                plan.waves
                    .iter()
                    .map(|w| format!("{} {}", w.name, w.hosts.len()))
                    .collect::<Vec<_>>()
                    .join(", "),
                plan.max_unavailable,
                plan.error_budget
            ));
        }
        if !args.wait {
            return exit::OK;
        }
        follow(&fleet, &plan, format).await
    })
}

/// Print each host's change until the rollout is over; its exit code.
async fn follow(fleet: &Fleet, plan: &RolloutPlan, format: Output) -> u8 {
    let mut seen_holders: BTreeMap<String, ()> = BTreeMap::new();
    let mut seen_results: BTreeMap<String, HostResult> = BTreeMap::new();
    let mut most = 0usize;
    loop {
        let view = fleet.rollout(&plan.name).await;
        let results = fleet.results(&plan.name).await;
        let (Ok(Some(view)), Ok(results)) = (view, results) else {
            tokio::time::sleep(Duration::from_secs(1)).await;
            continue;
        };
        most = most.max(view.state.holders.len());
        for (host, holder) in &view.state.holders {
            if seen_holders.insert(host.clone(), ()).is_none() && format == Output::Human {
                output::line(&format!(
                    "{host}: took a slot (wave {}, {} of {} out of service)",
                    plan.waves[holder.wave].name,
                    view.state.holders.len(),
                    plan.max_unavailable
                ));
            }
        }
        for (host, result) in &results {
            if !seen_results.contains_key(host) {
                if format == Output::Human {
                    output::line(&format!("{host}: {}", result.outcome));
                }
                seen_results.insert(host.clone(), result.clone());
            }
        }
        let over = view.state.finished(&view.plan)
            || ((view.state.aborted.is_some() || view.state.halted.is_some())
                && view.state.holders.is_empty());
        if over {
            let committed = results
                .values()
                .filter(|r| r.outcome == Outcome::Committed)
                .count();
            if format == Output::Json {
                output::json_pretty(&serde_json::json!({
                    "rollout": plan.name,
                    "hosts": plan.host_count(),
                    "committed": committed,
                    "results": results,
                    "mostOutOfService": most,
                    "halted": view.state.halted,
                    "aborted": view.state.aborted,
                }));
            } else {
                output::line(&format!(
                    "Rollout {}: {committed} of {} hosts committed; at most {most} out of service at once (limit {}).",
                    plan.name,
                    plan.host_count(),
                    plan.max_unavailable
                ));
                if let Some(why) = &view.state.halted {
                    output::line(&format!("Halted: {why}"));
                }
                if let Some(m) = &view.state.aborted {
                    output::line(&format!("Aborted by {}: {}", m.by, m.reason));
                }
            }
            return if committed == plan.host_count() {
                exit::OK
            } else {
                exit::ABORTED
            };
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `duplex rollout status FILE|NAME`.
pub fn status(args: &TargetArgs, format: Output) -> u8 {
    if let Err(code) = check_urls(&args.etcd) {
        return code;
    }
    let name = match rollout_name(&args.rollout) {
        Ok(n) => n,
        Err(e) => return fail(&e, exit::INVALID),
    };
    runtime().block_on(async {
        let fleet = match connect(&args.etcd).await {
            Ok(f) => f,
            Err(e) => return fail(&e, exit::INVALID),
        };
        let view = match fleet.rollout(&name).await {
            Ok(Some(v)) => v,
            Ok(None) => {
                return fail(
                    &format!("no rollout named `{name}` in the fleet"),
                    exit::INVALID,
                );
            }
            Err(e) => return fail(&e.to_string(), exit::INVALID),
        };
        let results = match fleet.results(&name).await {
            Ok(r) => r,
            Err(e) => return fail(&e.to_string(), exit::INVALID),
        };
        if format == Output::Json {
            output::json_pretty(&serde_json::json!({
                "plan": view.plan,
                "state": view.state,
                "revision": view.revision,
                "results": results,
            }));
        } else {
            output::lines(&render_status(&view, &results, now_ms()));
        }
        exit::OK
    })
}

fn render_status(view: &RolloutView, results: &BTreeMap<String, HostResult>, now: u64) -> String {
    let (plan, state) = (&view.plan, &view.state);
    let mut out = String::new();
    let count = |o: Outcome| results.values().filter(|r| r.outcome == o).count();
    let phase = if let Some(m) = &state.aborted {
        format!("aborted by {}: {}", m.by, m.reason)
    } else if let Some(why) = &state.halted {
        format!("halted: {why}")
    } else if state.finished(plan) {
        "completed".into()
    } else if let Some(m) = &state.paused {
        format!("paused by {}: {}", m.by, m.reason)
    } else {
        "in progress".into()
    };
    out.push_str(&format!(
        "Rollout    {} ({})\nPolicy     {} (sha256 {})\nHosts      {}: {} committed, {} aborted, {} released, {} not started\nLimit      {} of {} out of service now; halt after {} (spent {})\n",
        plan.name,
        phase,
        plan.policy.path,
        &plan.policy.digest[..12.min(plan.policy.digest.len())],
        plan.host_count(),
        count(Outcome::Committed),
        count(Outcome::Aborted),
        count(Outcome::Released),
        count(Outcome::NotStarted),
        state.holders.len(),
        plan.max_unavailable,
        plan.error_budget,
        state.budget_spent(),
    ));
    for (i, wave) in plan.waves.iter().enumerate() {
        let approval = if i > 0 && plan.between_waves.approval {
            let by = state.approvals.iter().find(|a| a.wave == i);
            match (state.approved_waves.contains(&i), by) {
                (true, Some(a)) => format!(", approved by {}", a.by),
                (true, None) => ", approved".to_string(),
                (false, _) => ", needs approval (duplex rollout resume)".to_string(),
            }
        } else {
            String::new()
        };
        out.push_str(&format!(
            "Wave {}     {}: {} of {} ended{approval}\n",
            i + 1,
            wave.name,
            state.ended_in(i),
            wave.hosts.len()
        ));
    }
    for (host, h) in &state.holders {
        out.push_str(&format!(
            "Slot       {host} (wave {}) for {}s{}{}\n",
            plan.waves[h.wave].name,
            now.saturating_sub(h.since_ms) / 1000,
            h.session
                .as_ref()
                .map(|s| format!(", session {s}"))
                .unwrap_or_default(),
            h.held
                .as_ref()
                .map(|r| format!(", held: {r}"))
                .unwrap_or_default(),
        ));
    }
    for r in &state.releases {
        out.push_str(&format!(
            "Released   {} by {}: {}\n",
            r.host, r.by, r.reason
        ));
    }
    out
}

/// `duplex rollout pause|resume|abort`.
pub enum Control {
    Pause,
    Resume,
    Abort,
}

pub fn control(what: Control, target: &TargetArgs, reason: Option<&str>) -> u8 {
    if let Err(code) = check_urls(&target.etcd) {
        return code;
    }
    let name = match rollout_name(&target.rollout) {
        Ok(n) => n,
        Err(e) => return fail(&e, exit::INVALID),
    };
    let by = super::operator::current().0;
    runtime().block_on(async {
        let fleet = match connect(&target.etcd).await {
            Ok(f) => f,
            Err(e) => return fail(&e, exit::INVALID),
        };
        let said = match what {
            Control::Pause => fleet
                .pause(&name, &by, reason.unwrap_or_default())
                .await
                .map(|changed| {
                    if changed {
                        format!("Rollout {name} paused: no host starts until `duplex rollout resume`; hosts in flight go on.")
                    } else {
                        format!("Rollout {name} was paused already.")
                    }
                }),
            Control::Resume => fleet.resume(&name, &by).await.map(|r| {
                match (r.unpaused, r.approved) {
                    (_, Some(w)) => format!("Rollout {name}: wave {} approved by {by}.", w + 1),
                    (true, None) => format!("Rollout {name} resumed."),
                    (false, None) => format!("Rollout {name}: nothing to resume (not paused, no wave waits for approval)."),
                }
            }),
            Control::Abort => fleet
                .abort(&name, &by, reason.unwrap_or_default())
                .await
                .map(|changed| {
                    if changed {
                        format!("Rollout {name} aborted: no host starts any more; sessions in flight are asked to abort.")
                    } else {
                        format!("Rollout {name} was aborted already.")
                    }
                }),
        };
        match said {
            Ok(text) => {
                output::line(&text);
                exit::OK
            }
            Err(e) => fail(&e.to_string(), exit::INVALID),
        }
    })
}

/// `duplex fleet ...`
pub fn run(args: &Args, format: Output) -> u8 {
    match &args.command {
        FleetCommand::Status(etcd) => fleet_status(etcd, format),
        FleetCommand::Release(a) => release(a),
    }
}

fn fleet_status(etcd: &EtcdArgs, format: Output) -> u8 {
    if let Err(code) = check_urls(etcd) {
        return code;
    }
    runtime().block_on(async {
        let fleet = match connect(etcd).await {
            Ok(f) => f,
            Err(e) => return fail(&e, exit::INVALID),
        };
        let (hosts, rollouts) = match (fleet.hosts().await, fleet.rollouts().await) {
            (Ok(h), Ok(r)) => (h, r),
            (Err(e), _) | (_, Err(e)) => return fail(&e.to_string(), exit::INVALID),
        };
        if format == Output::Json {
            let rows: Vec<_> = hosts
                .iter()
                .map(|(h, alive)| {
                    serde_json::json!({
                        "host": h,
                        "alive": alive,
                        "slot": HostPlace::of(h, &rollouts).slot,
                    })
                })
                .collect();
            output::json_pretty(&serde_json::json!({ "hosts": rows }));
            return exit::OK;
        }
        let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        let mut text = format!(
            "{:<16} {:<6} {:<13} {:<7} {:<12} {:<20} {:<12} {:<20} {}\n",
            "HOST", "ALIVE", "STATE", "STATUS", "PARTNER", "ROLLOUT", "WAVE", "SLOT", "LAST EVENT"
        );
        for (h, alive) in &hosts {
            let place = HostPlace::of(h, &rollouts);
            text.push_str(&format!(
                "{:<16} {:<6} {:<13} {:<7} {:<12} {:<20} {:<12} {:<20} {}\n",
                h.name,
                if *alive { "yes" } else { "no" },
                dash(&h.state),
                dash(&h.status),
                dash(&h.partner),
                dash(&h.rollout),
                dash(&place.wave_name),
                dash(&place.slot),
                dash(&h.last_event),
            ));
        }
        for line in text.lines() {
            output::line(&escape(line));
        }
        exit::OK
    })
}

fn release(args: &ReleaseArgs) -> u8 {
    if let Err(code) = check_urls(&args.etcd) {
        return code;
    }
    let by = super::operator::current().0;
    runtime().block_on(async {
        let fleet = match connect(&args.etcd).await {
            Ok(f) => f,
            Err(e) => return fail(&e, exit::INVALID),
        };
        match fleet.release(&args.host, &by, &args.reason).await {
            Ok(rollouts) if rollouts.is_empty() => fail(
                &format!("host {} holds no slot in any rollout", args.host),
                exit::INVALID,
            ),
            Ok(rollouts) => {
                output::line(&format!(
                    "Released {}'s slot in {} (by {by}: {}); counted against the error budget.",
                    args.host,
                    rollouts.join(", "),
                    args.reason
                ));
                exit::OK
            }
            Err(e) => fail(&e.to_string(), exit::INVALID),
        }
    })
}
