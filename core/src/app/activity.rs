//! A session's activity as a tree, for the consoles (web and terminal): one
//! node per state the session entered, under it one node per attempt of the
//! state's request with its plugin calls and checks (plugin log lines below
//! a call), and beside them what happened in that state outside a request
//! (approvals and who gave them, operators' commands, retries scheduled,
//! auto-abort rules that fired, holds, drift, resumes).
//!
//! Built from the journal's records by the fold the engine uses, record by
//! record ([`ActivityTree::push`]), so a front end following a live session
//! grows the same tree a finished session reads whole. Plain data: front
//! ends render it, none of them rebuilds it.

use crate::engine::sink::describe;
use crate::engine::{Event, FoldError, Session};
use crate::model::{Command, UpgradeState};
use serde::{Deserialize, Serialize};

/// How a node ended, for colour and icons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum NodeOutcome {
    /// Still going (a request attempt running, a state being worked in).
    Running,
    Ok,
    Failed,
    /// Something a person did or must do (approvals, holds, commands).
    Person,
    /// A note: nothing succeeded or failed.
    Info,
}

/// One node of the tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityNode {
    /// The journal record that opened the node.
    pub seq: u64,
    pub ts_ms: u64,
    /// What kind of node: `state`, `attempt`, `pluginCall`, `check`,
    /// `log`, or the record's event name (`approved`, `asked`, …).
    pub kind: String,
    /// One line, as the activity log prints it.
    pub title: String,
    pub outcome: NodeOutcome,
    /// How long it took, once known.
    pub duration_ms: Option<u64>,
    /// Who did it, for what a person did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
    /// The record itself, for the detail pane (absent on `log` lines).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<Event>,
    pub children: Vec<ActivityNode>,
}

impl ActivityNode {
    fn new(seq: u64, ts_ms: u64, kind: &str, title: String, outcome: NodeOutcome) -> Self {
        ActivityNode {
            seq,
            ts_ms,
            kind: kind.to_string(),
            title,
            outcome,
            duration_ms: None,
            by: None,
            detail: None,
            children: Vec::new(),
        }
    }
}

/// A session's activity tree, grown one record at a time.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ActivityTree {
    /// The first record (session started), then one node per state entered,
    /// in order; a state entered twice (never, in this model) would get two.
    pub nodes: Vec<ActivityNode>,
    /// The records taken in so far.
    pub records: u64,
    #[serde(skip)]
    session: Option<Session>,
}

impl ActivityTree {
    pub fn new() -> ActivityTree {
        ActivityTree::default()
    }

    /// The session as the records so far leave it.
    pub fn session(&self) -> Option<&Session> {
        self.session.as_ref()
    }

    /// Take in the next record. A record the fold refuses is an error and
    /// changes nothing.
    pub fn push(&mut self, seq: u64, ts_ms: u64, event: &Event) -> Result<(), FoldError> {
        let before = self.session.as_ref().map(|s| s.config.state);
        match &mut self.session {
            None => self.session = Some(Session::start(event, ts_ms)?),
            Some(s) => s.apply_at(seq, ts_ms, event)?,
        }
        self.records += 1;
        let after = self
            .session
            .as_ref()
            .map(|s| s.config.state)
            .unwrap_or(UpgradeState::Idle);
        self.place(seq, ts_ms, event, before, after);
        Ok(())
    }

    fn place(
        &mut self,
        seq: u64,
        ts: u64,
        event: &Event,
        before: Option<UpgradeState>,
        after: UpgradeState,
    ) {
        let mut node = ActivityNode::new(seq, ts, event.name(), describe(event), NodeOutcome::Info);
        node.detail = Some(event.clone());
        match event {
            Event::SessionStarted { .. } => {
                self.nodes.push(node);
                return;
            }
            Event::Model { command } => match command {
                // A retry runs the request again at once: a new attempt.
                Command::Begin | Command::Retry => {
                    let attempt = self
                        .session
                        .as_ref()
                        .map(|s| s.config.attempt)
                        .unwrap_or(1)
                        .max(1);
                    node.kind = "attempt".into();
                    node.title = format!("request, attempt {attempt}");
                    node.outcome = NodeOutcome::Running;
                    self.current_state().children.push(node);
                    return;
                }
                Command::Complete | Command::Fail { .. } => {
                    let failed = matches!(command, Command::Fail { .. });
                    let title = node.title.clone();
                    if let Some(attempt) = self.open_attempt() {
                        attempt.outcome = if failed {
                            NodeOutcome::Failed
                        } else {
                            NodeOutcome::Ok
                        };
                        attempt.duration_ms = Some(ts.saturating_sub(attempt.ts_ms));
                        if failed {
                            attempt.title = format!("{}: {title}", attempt.title);
                        }
                        attempt.children.push(node);
                        return;
                    }
                }
                Command::Start | Command::Advance | Command::Abort | Command::Finish => {
                    self.close_state(ts, before, after, command);
                    if after != UpgradeState::Idle || before == Some(UpgradeState::Idle) {
                        let mut state = ActivityNode::new(
                            seq,
                            ts,
                            "state",
                            after.name().to_string(),
                            NodeOutcome::Running,
                        );
                        state.detail = Some(event.clone());
                        self.nodes.push(state);
                    }
                    return;
                }
                Command::ObservePartner { .. } => {}
            },
            Event::PluginCall {
                ok,
                duration_ms,
                logs,
                ..
            } => {
                node.outcome = if *ok {
                    NodeOutcome::Ok
                } else {
                    NodeOutcome::Failed
                };
                node.duration_ms = Some(*duration_ms);
                node.children = logs
                    .iter()
                    .map(|l| ActivityNode::new(seq, ts, "log", l.clone(), NodeOutcome::Info))
                    .collect();
                self.in_attempt(node);
                return;
            }
            Event::CheckRan { verdict, .. } => {
                // A node kind of its own, as `attempt` and `state` are.
                node.kind = "check".into();
                node.outcome = match verdict {
                    crate::plugins::Verdict::Pass => NodeOutcome::Ok,
                    crate::plugins::Verdict::Fail => NodeOutcome::Failed,
                    _ => NodeOutcome::Info,
                };
                self.in_attempt(node);
                return;
            }
            Event::CommandKilled { .. } => {
                node.outcome = NodeOutcome::Failed;
                self.in_attempt(node);
                return;
            }
            Event::Approved { by, .. } | Event::AbortRequested { by } | Event::Released { by } => {
                node.outcome = NodeOutcome::Person;
                node.by = Some(by.clone());
            }
            Event::Asked { by, .. } => {
                node.outcome = NodeOutcome::Person;
                node.by = Some(by.clone());
            }
            Event::Held { .. } => node.outcome = NodeOutcome::Person,
            Event::AutoAbort { .. } | Event::Drift { .. } => node.outcome = NodeOutcome::Failed,
            Event::SessionEnded { outcome } => {
                self.close_state(ts, before, after, &Command::Finish);
                node.outcome = match outcome {
                    crate::engine::Outcome::Committed => NodeOutcome::Ok,
                    crate::engine::Outcome::Aborted => NodeOutcome::Failed,
                };
                self.nodes.push(node);
                return;
            }
            Event::RetryScheduled { .. }
            | Event::NotRetryable
            | Event::Resumed { .. }
            | Event::Interrupted { .. } => {}
        }
        self.current_state().children.push(node);
    }

    /// The node of the state the session is in (the session-started node
    /// before any state was entered).
    fn current_state(&mut self) -> &mut ActivityNode {
        if self.nodes.is_empty() {
            self.nodes.push(ActivityNode::new(
                0,
                0,
                "state",
                "Idle".into(),
                NodeOutcome::Info,
            ));
        }
        self.nodes.last_mut().expect("one node at least")
    }

    /// The attempt still running in the current state, if any.
    fn open_attempt(&mut self) -> Option<&mut ActivityNode> {
        self.current_state()
            .children
            .iter_mut()
            .rev()
            .find(|n| n.kind == "attempt")
            .filter(|n| n.outcome == NodeOutcome::Running)
    }

    fn in_attempt(&mut self, node: ActivityNode) {
        match self.open_attempt() {
            Some(attempt) => attempt.children.push(node),
            None => self.current_state().children.push(node),
        }
    }

    /// The session left the current state: it is done (or was aborted
    /// from), and an attempt still open ends with it.
    fn close_state(
        &mut self,
        ts: u64,
        before: Option<UpgradeState>,
        after: UpgradeState,
        command: &Command,
    ) {
        let Some(state) = self.nodes.last_mut().filter(|n| n.kind == "state") else {
            return;
        };
        if state.outcome != NodeOutcome::Running || before == Some(after) {
            return;
        }
        state.duration_ms = Some(ts.saturating_sub(state.ts_ms));
        state.outcome = match command {
            Command::Abort => NodeOutcome::Failed,
            _ => NodeOutcome::Ok,
        };
        if let Some(attempt) = state
            .children
            .iter_mut()
            .rev()
            .find(|n| n.kind == "attempt" && n.outcome == NodeOutcome::Running)
        {
            attempt.outcome = NodeOutcome::Info;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{Outcome, RequestId};
    use crate::model::Disposition;
    use crate::plugins::Verdict;
    use crate::policy::ApprovalPoint;

    fn started() -> Event {
        Event::SessionStarted {
            policy: "demo".into(),
            policy_file: "demo.yaml".into(),
            policy_digest: "0".repeat(64),
            target: "demo".into(),
            format: crate::engine::JOURNAL_FORMAT,
            hardware: None,
            origin: None,
        }
    }

    fn model(command: Command) -> Event {
        Event::Model { command }
    }

    fn call(ok: bool, logs: &[&str]) -> Event {
        Event::PluginCall {
            request: RequestId::Partner,
            plugin: "sim-duplex".into(),
            ok,
            outcome: if ok { "done" } else { "link down" }.into(),
            duration_ms: 7,
            logs: logs.iter().map(|l| l.to_string()).collect(),
            repeats: 0,
        }
    }

    fn tree(events: &[Event]) -> ActivityTree {
        let mut tree = ActivityTree::new();
        for (i, e) in events.iter().enumerate() {
            let seq = i as u64 + 1;
            tree.push(seq, 1_000 * seq, e).unwrap();
        }
        tree
    }

    /// `kind title [outcome]` per node, children indented.
    fn outline(nodes: &[ActivityNode], depth: usize, out: &mut Vec<String>) {
        for n in nodes {
            out.push(format!(
                "{}{} {} [{:?}]",
                "  ".repeat(depth),
                n.kind,
                n.title,
                n.outcome
            ));
            outline(&n.children, depth + 1, out);
        }
    }

    fn lines(tree: &ActivityTree) -> Vec<String> {
        let mut out = Vec::new();
        outline(&tree.nodes, 0, &mut out);
        out
    }

    #[test]
    fn states_hold_their_attempts_and_calls_and_what_people_did() {
        let t = tree(&[
            started(),
            model(Command::Start),
            model(Command::Begin),
            call(true, &["gate ok"]),
            Event::CheckRan {
                check: "duplexed".into(),
                verdict: Verdict::Pass,
                message: "both sides in step".into(),
                consecutive_failures: 0,
            },
            model(Command::Complete),
            Event::Approved {
                before: ApprovalPoint::Merge,
                by: "alice".into(),
            },
            model(Command::Advance),
            model(Command::Begin),
            call(false, &[]),
            model(Command::Fail {
                reason: "link down".into(),
                disposition: Disposition::Retryable,
            }),
            Event::RetryScheduled {
                attempt: 2,
                delay_ms: 10,
            },
            model(Command::Retry),
            call(true, &[]),
            model(Command::Complete),
        ]);
        assert_eq!(
            lines(&t),
            [
                "sessionStarted session started: policy demo (demo.yaml) on demo [Info]",
                "state PrepareSplit [Ok]",
                "  attempt request, attempt 1 [Ok]",
                "    pluginCall sim-duplex partner [partner]: done (7 ms) [Ok]",
                "      log gate ok [Info]",
                "    check check `duplexed`: pass: both sides in step [Ok]",
                "    model request done: Ready [Info]",
                "  approved approved before Merge by alice [Person]",
                "state Split [Running]",
                "  attempt request, attempt 1: request failed: Broken: link down [Failed]",
                "    pluginCall sim-duplex partner [partner]: link down (7 ms) [Failed]",
                "    model request failed: Broken: link down [Info]",
                "  retryScheduled retry (attempt 2) in 10ms [Info]",
                "  attempt request, attempt 2 [Ok]",
                "    pluginCall sim-duplex partner [partner]: done (7 ms) [Ok]",
                "    model request done: Ready [Info]",
            ]
        );
        let approved = &t.nodes[1].children[1];
        assert_eq!(approved.by.as_deref(), Some("alice"));
        // Durations: the state took from its entry to the advance; the
        // attempt from begin to complete.
        assert_eq!(t.nodes[1].duration_ms, Some(6_000));
        assert_eq!(t.nodes[1].children[0].duration_ms, Some(3_000));
        assert_eq!(t.records, 15);
    }

    #[test]
    fn an_aborted_session_ends_its_state_failed_and_shows_the_abort_path() {
        let t = tree(&[
            started(),
            model(Command::Start),
            model(Command::Begin),
            model(Command::Complete),
            Event::Asked {
                verb: crate::engine::operator::OperatorVerb::Abort,
                by: "bob".into(),
                reason: Some("window closing".into()),
            },
            model(Command::Abort),
            model(Command::Begin),
            model(Command::Complete),
            model(Command::Finish),
            Event::SessionEnded {
                outcome: Outcome::Aborted,
            },
        ]);
        let states: Vec<(&str, NodeOutcome)> = t
            .nodes
            .iter()
            .map(|n| (n.title.as_str(), n.outcome))
            .collect();
        assert_eq!(states[1], ("PrepareSplit", NodeOutcome::Failed));
        assert_eq!(states[2], ("Abort", NodeOutcome::Ok));
        assert_eq!(t.nodes[1].children[1].by.as_deref(), Some("bob"));
        assert_eq!(t.nodes.last().unwrap().kind, "sessionEnded");
        assert_eq!(t.nodes.last().unwrap().outcome, NodeOutcome::Failed);
    }

    #[test]
    fn a_record_the_model_refuses_is_an_error_and_changes_nothing() {
        let mut t = tree(&[started(), model(Command::Start)]);
        let before = lines(&t);
        assert!(t.push(3, 3_000, &model(Command::Complete)).is_err());
        assert_eq!(lines(&t), before);
        assert_eq!(t.records, 2);
    }
}
