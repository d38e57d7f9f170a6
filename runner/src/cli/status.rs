//! Read-only views of the state dir: `status`, `log`, `history`. They take
//! no lock, so they work while `duplex apply` runs.

use super::{Output, exit, fail};
use duplex_core::engine::open::snapshot;
use duplex_core::engine::view::{clock_time, describe};
use duplex_core::engine::{Decision, Event, Session, decide, now_ms};
use duplex_core::journal::{Record, SessionId, SessionInfo, StateDir, format_utc};
use duplex_core::model::{CommandKind, UpgradeState};
use duplex_core::policy::{HumanDuration, Sha256};
use serde::Serialize;
use std::path::PathBuf;
use std::time::Duration;

fn open(state_dir: Option<PathBuf>) -> Result<StateDir, String> {
    let path = super::dirs::state_dir(state_dir).map_err(|e| e.to_string())?;
    StateDir::read_only(&path).map_err(|e| e.to_string())
}

/// The state dir (read-only) and its sessions, oldest first.
fn open_sessions(state_dir: Option<PathBuf>) -> Result<(StateDir, Vec<SessionInfo>), String> {
    let dir = open(state_dir)?;
    let sessions = dir.sessions().map_err(|e| e.to_string())?;
    Ok((dir, sessions))
}

fn read(dir: &StateDir, info: &SessionInfo) -> Result<(Vec<Record<Event>>, Session), String> {
    let report = dir
        .read_session::<Event>(&info.id)
        .map_err(|e| e.to_string())?;
    if let Some(torn) = &report.torn_tail {
        eprintln!("warning: {torn}");
    }
    let session = Session::fold(report.records.iter().map(|r| (r.seq, r.ts_ms, &r.event)))
        .map_err(|e| format!("session {}: {e}", info.id))?;
    Ok((report.records, session))
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Status {
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
}

pub fn status(output: Output, state_dir: Option<PathBuf>) -> u8 {
    let (dir, sessions) = match open_sessions(state_dir) {
        Ok(opened) => opened,
        Err(e) => return fail(output, &e),
    };
    let Some(info) = sessions
        .iter()
        .rev()
        .find(|s| !s.is_finished())
        .or(sessions.last())
    else {
        match output {
            Output::Json => {
                super::print_json(&serde_json::json!({ "session": null, "state": "Idle" }))
            }
            Output::Human => println!(
                "Idle: no upgrade session has run in {}",
                dir.path().display()
            ),
        }
        return exit::OK;
    };
    let (records, session) = match read(&dir, info) {
        Ok(r) => r,
        Err(e) => return fail(output, &e),
    };
    let c = &session.config;
    let current_digest = std::fs::read(&session.policy_file)
        .ok()
        .map(|b| Sha256::of(&b).to_string());
    let drift = match current_digest {
        Some(d) if d != session.policy_digest => Some(format!(
            "{} changed since the session started (sha256 {}… → {}…); the session keeps running the policy it started with",
            session.policy_file,
            &session.policy_digest[..12],
            &d[..12]
        )),
        None if !info.is_finished() => Some(format!(
            "{} is gone; the session keeps its own copy",
            session.policy_file
        )),
        _ => None,
    };
    let waiting = snapshot(info, &session)
        .ok()
        .map(|p| decide(&session, &p.policy.spec, now_ms(), 0.5))
        .and_then(|d| match d {
            Decision::WaitForApproval(point) => Some(format!("approval before {point:?}")),
            _ => None,
        });
    let mut next = Vec::new();
    if session.ended.is_none() {
        if waiting.is_some() {
            next.push("approve".to_string());
        }
        if c.allows(CommandKind::Retry) {
            next.push("retry".into());
        }
        if c.allows(CommandKind::Abort) {
            next.push("abort".into());
        }
        next.push("resume".into());
    }
    // The piece of work in hand: the last one the current request called a
    // plugin for (partner reports run alongside every request).
    let request = records.iter().rev().find_map(|r| match &r.event {
        Event::PluginCall { request, .. }
            if request != "partner" && c.status() != duplex_core::model::OpStatus::Ready =>
        {
            Some(request.clone())
        }
        _ => None,
    });
    let s = Status {
        session: info.id.to_string(),
        policy: session.policy.clone(),
        policy_file: session.policy_file.clone(),
        policy_digest: session.policy_digest.clone(),
        target: session.target.clone(),
        state: c.state,
        status: c.status().to_string(),
        reason: c.failure.clone(),
        partner: c.partner.to_string(),
        request,
        attempt: c.attempt,
        waiting_for: waiting,
        held: session.held.clone(),
        drift,
        next,
        finished: info.is_finished(),
        outcome: session.ended.map(|o| format!("{o:?}").to_lowercase()),
    };
    match output {
        Output::Json => super::print_json(&s),
        Output::Human => {
            println!(
                "Session   {} ({})",
                s.session,
                if s.finished {
                    "finished"
                } else {
                    "in progress"
                }
            );
            println!(
                "Policy    {} ({}), sha256 {}",
                s.policy, s.policy_file, s.policy_digest
            );
            println!("Target    {}", s.target);
            println!("State     {} ({})", s.state, s.status);
            if let Some(r) = &s.reason {
                println!("Broken    {r}");
            }
            println!("Partner   {}", s.partner);
            if let Some(r) = &s.request {
                println!("Request   {r} (attempt {})", s.attempt);
            }
            if let Some(w) = &s.waiting_for {
                println!("Waiting   for {w}");
            }
            if let Some(h) = &s.held {
                println!("Held      {h}");
            }
            if let Some(o) = &s.outcome {
                println!("Outcome   {o}");
            }
            if let Some(d) = &s.drift {
                println!("Drift     {d}");
            }
            if !s.next.is_empty() {
                let verbs: Vec<String> = s.next.iter().map(|v| format!("duplex {v}")).collect();
                println!("Next      {}", verbs.join(", "));
            }
        }
    }
    exit::OK
}

#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// Keep printing new records until the session finishes.
    #[arg(long)]
    pub follow: bool,
    /// A past session (see `duplex history`); default: the current or last one.
    #[arg(long, value_name = "ID")]
    pub session: Option<String>,
}

pub fn log(args: &LogArgs, output: Output, state_dir: Option<PathBuf>) -> u8 {
    let dir = match open(state_dir) {
        Ok(d) => d,
        Err(e) => return fail(output, &e),
    };
    let info = match &args.session {
        Some(id) => SessionId::parse(id)
            .and_then(|id| dir.session(&id))
            .map(Some),
        None => dir.sessions().map(|s| s.last().cloned()),
    };
    let info = match info {
        Ok(Some(i)) => i,
        Ok(None) => {
            return fail(
                output,
                &format!("no session has run in {}", dir.path().display()),
            );
        }
        Err(e) => return fail(output, &e.to_string()),
    };
    let mut printer = LogPrinter::new(output);
    if args.follow {
        let mut follower = match dir.follow::<Event>(&info.id) {
            Ok(f) => f,
            Err(e) => return fail(output, &e.to_string()),
        };
        loop {
            match follower.poll() {
                Ok(records) => records.iter().for_each(|r| printer.print(r)),
                Err(e) => return fail(output, &e.to_string()),
            }
            if follower.session_finished() {
                return exit::OK;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    match read(&dir, &info) {
        Ok((records, _)) => records.iter().for_each(|r| printer.print(r)),
        Err(e) => return fail(output, &e),
    }
    exit::OK
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
                let _ = s.apply(&r.event);
            }
        }
        let state = self
            .session
            .as_ref()
            .map(|s| s.config.state)
            .unwrap_or(UpgradeState::Idle);
        if self.output == Output::Json {
            println!(
                "{}",
                serde_json::json!({ "seq": r.seq, "tsMs": r.ts_ms, "state": state, "event": r.event })
            );
            return;
        }
        if self.state != Some(state) {
            println!("{state}");
            self.state = Some(state);
        }
        println!(
            "  ├ {} #{:<4} {}",
            clock_time(r.ts_ms),
            r.seq,
            describe(&r.event)
        );
        if let Event::PluginCall { logs, .. } = &r.event {
            for line in logs {
                println!("  │     plugin log: {line}");
            }
        }
    }
}

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
}

pub fn history(output: Output, state_dir: Option<PathBuf>) -> u8 {
    let (dir, sessions) = match open_sessions(state_dir) {
        Ok(opened) => opened,
        Err(e) => return fail(output, &e),
    };
    let mut rows = Vec::new();
    for info in &sessions {
        let row = match read(&dir, info) {
            Ok((_, s)) => HistoryRow {
                session: info.id.to_string(),
                policy: s.policy.clone(),
                target: s.target.clone(),
                started: format_utc(s.started_ms),
                duration: HumanDuration::from(Duration::from_millis(
                    s.last_ms.saturating_sub(s.started_ms),
                ))
                .to_string(),
                state: s.config.state,
                outcome: match s.ended {
                    Some(o) => format!("{o:?}").to_lowercase(),
                    None if s.held.is_some() => "held".into(),
                    None => "in progress".into(),
                },
            },
            Err(e) => HistoryRow {
                session: info.id.to_string(),
                policy: String::new(),
                target: String::new(),
                started: String::new(),
                duration: String::new(),
                state: UpgradeState::Idle,
                outcome: format!("unreadable: {e}"),
            },
        };
        rows.push(row);
    }
    match output {
        Output::Json => super::print_json(&rows),
        Output::Human => {
            if rows.is_empty() {
                println!("no sessions in {}", dir.path().display());
            }
            for r in &rows {
                println!(
                    "{}  {:<11} {:<13} {:>8}  {} on {}",
                    r.session,
                    r.outcome,
                    r.state.to_string(),
                    r.duration,
                    r.policy,
                    r.target
                );
            }
        }
    }
    exit::OK
}
