//! Read-only views of the state dir: `status`, `log`, `history`. They take
//! no lock, so they work while `duplex apply` runs.

use super::{Output, errors, exit, output};
use duplex_core::app::{App, SessionStatus, StatusReport, drift::Drift};
use duplex_core::engine::sink::{clock_time, describe};
use duplex_core::engine::{Event, Session};
use duplex_core::journal::{Record, SessionId, format_utc};
use duplex_core::model::UpgradeState;
use duplex_core::policy::HumanDuration;
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

fn open(output_format: Output, state_dir: Option<PathBuf>) -> Result<App, u8> {
    super::app(state_dir).map_err(|m| errors::fail(output_format, &m))
}

/// `status --output json`, in the shape it has always had.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct StatusJson {
    session: String,
    policy: String,
    policy_file: String,
    policy_digest: String,
    target: String,
    state: UpgradeState,
    status: String,
    reason: Option<String>,
    partner: String,
    request: Option<String>,
    attempt: u32,
    waiting_for: Option<String>,
    held: Option<String>,
    drift: Option<String>,
    next: Vec<String>,
    finished: bool,
    outcome: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    policy_copy_problem: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runner_pid: Option<u32>,
    /// Where the session's policy came from (a source the agent follows).
    #[serde(skip_serializing_if = "Option::is_none")]
    origin: Option<duplex_core::policy::PolicyOrigin>,
    /// The agent that owns the state dir: desired and achieved, drift.
    #[serde(skip_serializing_if = "Option::is_none")]
    agent: Option<serde_json::Value>,
}

/// What the agent running the state dir says of itself, if one does.
fn agent_view(state_dir: &std::path::Path) -> Option<serde_json::Value> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .ok()?;
    let reply = runtime.block_on(async {
        tokio::time::timeout(
            std::time::Duration::from_secs(2),
            crate::api::client::get(state_dir, "/v1/status"),
        )
        .await
    });
    match reply {
        Ok(Ok(crate::api::client::Reply::Answered { status: 200, body })) => {
            let mut v: serde_json::Value = serde_json::from_slice(&body).ok()?;
            Some(v.get_mut("agent")?.take())
        }
        _ => None,
    }
}

fn drift_text(d: &Drift) -> String {
    match d {
        Drift::Changed {
            file,
            recorded,
            current,
            ..
        } => format!(
            "{file} changed since the session started (sha256 {}… → {}…); the session keeps running the policy it started with",
            &recorded[..recorded.len().min(12)],
            &current[..current.len().min(12)]
        ),
        Drift::Gone { file } => format!("{file} is gone; the session keeps its own copy"),
    }
}

fn status_json(s: &SessionStatus, report: &StatusReport) -> StatusJson {
    let c = &s.session.config;
    StatusJson {
        session: s.id.to_string(),
        policy: s.session.policy.clone(),
        policy_file: s.session.policy_file.clone(),
        policy_digest: s.session.policy_digest.clone(),
        target: s.session.target.clone(),
        state: c.state,
        status: c.status().to_string(),
        reason: c.failure().map(|f| f.reason.clone()),
        partner: c.partner.to_string(),
        request: s.request.as_ref().map(|r| r.to_string()),
        attempt: c.attempt,
        waiting_for: s
            .waiting_for
            .as_ref()
            .map(|w| format!("approval before {:?}", w.point)),
        held: s.session.held.clone(),
        drift: s.drift.as_ref().map(drift_text),
        next: s.next.iter().map(|c| c.name().to_string()).collect(),
        finished: s.finished,
        outcome: s.session.ended.map(|o| o.name().to_string()),
        policy_copy_problem: s.policy_copy_problem.clone(),
        runner_pid: report.runner.as_ref().map(|r| r.pid),
        origin: s.session.origin.clone(),
        agent: None,
    }
}

pub fn status(output_format: Output, state_dir: Option<PathBuf>) -> u8 {
    let app = match open(output_format, state_dir) {
        Ok(app) => app,
        Err(code) => return code,
    };
    let report = match app.status() {
        Ok(r) => r,
        Err(e) => return errors::report(output_format, &e),
    };
    if let Some(torn) = report.session.as_ref().and_then(|s| s.torn_tail.as_ref()) {
        output::eline(&format!("warning: {torn}"));
    }
    let Some(s) = &report.session else {
        match output_format {
            Output::Json => output::json_pretty(&serde_json::json!({
                "session": null,
                "state": "Idle",
                "runnerPid": report.runner.as_ref().map(|r| r.pid),
            })),
            Output::Human => match &report.runner {
                Some(r) => output::line(&format!(
                    "Idle: no session yet; a runner (pid {}, since {}) holds {} and is preparing one (plugins compile on first use)",
                    r.pid,
                    format_utc(r.since_ms),
                    report.state_dir.display()
                )),
                None => output::line(&format!(
                    "Idle: no upgrade session has run in {}",
                    report.state_dir.display()
                )),
            },
        }
        return exit::OK;
    };
    let mut j = status_json(s, &report);
    if crate::api::socket::path(&report.state_dir).exists() {
        j.agent = agent_view(&report.state_dir);
    }
    match output_format {
        Output::Json => output::json_pretty(&j),
        Output::Human => {
            output::line(&format!(
                "Session   {} ({})",
                j.session,
                if j.finished {
                    "finished"
                } else {
                    "in progress"
                }
            ));
            output::line(&format!(
                "Policy    {} ({}), sha256 {}",
                j.policy, j.policy_file, j.policy_digest
            ));
            output::line(&format!("Target    {}", j.target));
            output::line(&format!("State     {} ({})", j.state, j.status));
            if let Some(r) = &j.reason {
                output::line(&format!("Broken    {r}"));
            }
            output::line(&format!("Partner   {}", j.partner));
            if let Some(r) = &j.request {
                output::line(&format!("Request   {r} (attempt {})", j.attempt));
            }
            if let Some(w) = &s.waiting_for {
                let who = if w.approvers.is_empty() {
                    String::new()
                } else {
                    format!(" (approvers: {})", w.approvers.join(", "))
                };
                output::line(&format!("Waiting   for approval before {:?}{who}", w.point));
            }
            if let Some(h) = &j.held {
                output::line(&format!("Held      {h}"));
            }
            if let Some(o) = &j.outcome {
                output::line(&format!("Outcome   {o}"));
            }
            if let Some(d) = &j.drift {
                output::line(&format!("Drift     {d}"));
            }
            if let Some(p) = &j.policy_copy_problem
                && !j.finished
            {
                output::line(&format!("Problem   {p}"));
            }
            if let Some(o) = &j.origin {
                output::line(&format!(
                    "Source    {}{}",
                    o.source,
                    o.revision
                        .as_deref()
                        .map(|r| format!(" at revision {r}"))
                        .unwrap_or_default()
                ));
            }
            if let Some(a) = &j.agent {
                let text =
                    |v: &serde_json::Value| match (v["digest"].as_str(), v["revision"].as_str()) {
                        (Some(d), Some(r)) => format!("sha256 {d} at revision {r}"),
                        (Some(d), None) => format!("sha256 {d}"),
                        _ => "none".to_string(),
                    };
                output::line(&format!("Desired   {}", text(&a["desired"])));
                output::line(&format!("Achieved  {}", text(&a["achieved"])));
                if let Some(why) = a["idleBecause"].as_str() {
                    output::line(&format!("Agent     idle: {why}"));
                }
            }
            if let Some(r) = &report.runner {
                output::line(&format!(
                    "Runner    pid {} since {} is driving it",
                    r.pid,
                    format_utc(r.since_ms)
                ));
            }
            if !j.next.is_empty() {
                let verbs: Vec<String> = j.next.iter().map(|v| format!("duplex {v}")).collect();
                output::line(&format!("Next      {}", verbs.join(", ")));
            }
        }
    }
    exit::OK
}

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Keep printing new records until the session finishes, or stops for a
    /// person with no runner driving it.
    #[arg(long)]
    pub follow: bool,
    /// A past session (see `duplex history`); default: the current or last one.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
}

pub fn log(args: &LogArgs, output_format: Output, state_dir: Option<PathBuf>) -> u8 {
    let app = match open(output_format, state_dir) {
        Ok(app) => app,
        Err(code) => return code,
    };
    let id = match args.session.as_deref().map(SessionId::parse).transpose() {
        Ok(id) => id,
        Err(e) => return errors::fail(output_format, &e.to_string()),
    };
    let log = match app.log(id.as_ref()) {
        Ok(l) => l,
        Err(duplex_core::app::AppError::NoSession { state_dir }) => {
            return errors::fail(
                output_format,
                &format!("no session has run in {}", state_dir.display()),
            );
        }
        Err(e) => return errors::report(output_format, &e),
    };
    let mut printer = LogPrinter::new(output_format);
    if !args.follow {
        if let Some(torn) = &log.torn_tail {
            output::eline(&format!("warning: {torn}"));
        }
        // Streamed: the journal was checked whole when the log was opened,
        // and records are read as they are printed.
        for r in log.records {
            match r {
                Ok(r) => printer.print(&r),
                Err(e) => return errors::report(output_format, &e.into()),
            }
            if output::stdout_closed() {
                break;
            }
        }
        return exit::OK;
    }
    let mut follower = match app.follow(&log.info.id) {
        Ok(f) => f,
        Err(e) => return errors::report(output_format, &e),
    };
    let mut idle_polls = 0u32;
    loop {
        // Look before polling: once finished, this poll has the last records.
        let finished = follower.session_finished();
        let runner = app.runner();
        match follower.poll() {
            Ok(records) => {
                if records.is_empty() {
                    idle_polls += 1;
                } else {
                    idle_polls = 0;
                }
                records.iter().for_each(|r| printer.print(r))
            }
            Err(e) => return errors::report(output_format, &e.into()),
        }
        if finished || output::stdout_closed() {
            return exit::OK;
        }
        // Nobody drives the session and nothing new comes: it waits for a
        // person (an approval, a hold) or for a resume. Say so and stop.
        if runner.is_none() && idle_polls >= 2 {
            if output_format == Output::Human {
                let next: Vec<String> = app
                    .status()
                    .ok()
                    .and_then(|s| s.session)
                    .map(|s| s.next)
                    .unwrap_or_default()
                    .iter()
                    .map(|c| format!("`duplex {}`", c.name()))
                    .collect();
                output::line(&format!(
                    "(no runner is driving session {}; it waits for {})",
                    log.info.id,
                    if next.is_empty() {
                        "nothing".to_string()
                    } else {
                        next.join(" or ")
                    }
                ));
            }
            return exit::OK;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Prints records as a tree: a heading per state, its events below it.
struct LogPrinter {
    output: Output,
    state: Option<UpgradeState>,
    session: Option<Session>,
}

impl LogPrinter {
    fn new(output: Output) -> Self {
        LogPrinter {
            output,
            state: None,
            session: None,
        }
    }

    fn print(&mut self, r: &Record<Event>) {
        match &mut self.session {
            None => self.session = Session::fold([(r.seq, r.ts_ms, &r.event)]).ok(),
            Some(s) => {
                let _ = s.apply_at(r.seq, r.ts_ms, &r.event);
            }
        }
        let state = self
            .session
            .as_ref()
            .map(|s| s.config.state)
            .unwrap_or(UpgradeState::Idle);
        if self.output == Output::Json {
            output::json_line(
                &serde_json::json!({ "seq": r.seq, "tsMs": r.ts_ms, "state": state, "event": r.event })
                    .to_string(),
            );
            return;
        }
        if r.seq == 1 {
            output::line("(times are UTC)");
        }
        if self.state != Some(state) {
            output::line(&state.to_string());
            self.state = Some(state);
        }
        output::line(&format!(
            "  ├ {} #{:<4} {}",
            clock_time(r.ts_ms),
            r.seq,
            describe(&r.event)
        ));
        if let Event::PluginCall { logs, .. } = &r.event {
            for line in logs {
                output::line(&format!("  │     plugin log: {line}"));
            }
        }
    }
}

/// `history --output json`, in the shape it has always had.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HistoryRow {
    session: String,
    policy: String,
    target: String,
    started: String,
    duration: String,
    state: UpgradeState,
    outcome: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    aborted_from: Option<UpgradeState>,
}

pub fn history(output_format: Output, state_dir: Option<PathBuf>) -> u8 {
    let app = match open(output_format, state_dir) {
        Ok(app) => app,
        Err(code) => return code,
    };
    let entries = match app.history() {
        Ok(e) => e,
        Err(e) => return errors::report(output_format, &e),
    };
    let rows: Vec<HistoryRow> = entries
        .iter()
        .map(|e| HistoryRow {
            session: e.session.to_string(),
            policy: e.policy.clone().unwrap_or_default(),
            target: e.target.clone().unwrap_or_default(),
            started: e.started_ms.map(format_utc).unwrap_or_default(),
            duration: e
                .duration_ms
                .map(|ms| HumanDuration::from(Duration::from_millis(ms)).to_string())
                .unwrap_or_default(),
            state: e.state.unwrap_or(UpgradeState::Idle),
            outcome: match (&e.problem, e.outcome) {
                (Some(p), _) => p.clone(),
                (None, Some(o)) => o.name().to_string(),
                (None, None) if e.held => "held".into(),
                (None, None) => "in progress".into(),
            },
            aborted_from: e.aborted_from,
        })
        .collect();
    match output_format {
        Output::Json => output::json_pretty(&rows),
        Output::Human => {
            if rows.is_empty() {
                output::line(&format!("no sessions in {}", app.state_dir().display()));
                return exit::OK;
            }
            output::line(&format!(
                "{:<21}  {:<11} {:<13} {:<20} {:>9}  POLICY ON TARGET",
                "SESSION", "OUTCOME", "WHERE", "STARTED (UTC)", "DURATION"
            ));
            for (r, e) in rows.iter().zip(&entries) {
                // Where the session is, or where it was when its outcome was
                // decided.
                let at = match (e.outcome, e.aborted_from, e.state) {
                    (Some(duplex_core::engine::Outcome::Aborted), Some(from), _) => {
                        format!("from {from}")
                    }
                    (Some(duplex_core::engine::Outcome::Committed), _, _) => "Commit".into(),
                    (_, _, Some(state)) => state.to_string(),
                    _ => "-".into(),
                };
                output::line(&format!(
                    "{:<21}  {:<11} {:<13} {:<20} {:>9}  {} on {}",
                    r.session, r.outcome, at, r.started, r.duration, r.policy, r.target
                ));
            }
        }
    }
    exit::OK
}
