//! The decision function driven through whole sessions with scripted
//! request outcomes: every policy rule, no plugins, no sleeps.

use super::*;
use crate::engine::event::{Event, JOURNAL_FORMAT};
use crate::model::{Disposition, PartnerState, UpgradeState::*};
use crate::plugins::Verdict;
use crate::policy::{self, UpgradePolicy};

const E: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn policy(extra: &str) -> UpgradePolicy {
    let text = format!(
        "apiVersion: duplex.dev/v1alpha1\nkind: UpgradePolicy\nmetadata: {{name: t}}\nspec:\n  target: {{name: x, plugin: hw}}\n  software: [{{name: a, version: '1', source: a, sha256: {E}}}]\n  plugins: [{{name: hw, source: hw.wasm, sha256: {E}}}]\n{extra}"
    );
    policy::parse(&text, "t.yaml").unwrap_or_else(|d| panic!("{d:?}"))
}

/// What a simulated request does in a state, attempt by attempt.
type Script = dyn Fn(UpgradeState, u32) -> Result<(), (String, bool)>;

struct Run {
    session: Session,
    decisions: Vec<Decision>,
    visited: Vec<UpgradeState>,
    now: u64,
}

impl Run {
    fn new() -> Run {
        let start = Event::SessionStarted {
            policy: "t".into(),
            policy_file: "t.yaml".into(),
            policy_digest: E.into(),
            target: "x".into(),
            format: JOURNAL_FORMAT,
            hardware: None,
            origin: None,
        };
        Run {
            session: Session::fold([(1, 0, &start)]).unwrap(),
            decisions: Vec::new(),
            visited: vec![Idle],
            now: 0,
        }
    }

    /// Record model commands, one after another.
    fn commands(&mut self, commands: &[Command]) {
        for command in commands {
            self.record(Event::Model {
                command: command.clone(),
            });
        }
    }

    fn record(&mut self, e: Event) {
        self.session.apply(&e).unwrap();
        if self.visited.last() != Some(&self.session.config.state) {
            self.visited.push(self.session.config.state);
        }
    }

    /// Drive until the session stops (end, approval, hold).
    fn at(&self) -> Now {
        Now {
            wall_ms: self.now,
            session_age_ms: self.now,
        }
    }

    fn drive(&mut self, spec: &crate::policy::Spec, script: &Script) -> Decision {
        for _ in 0..500 {
            let d = decide(&self.session, spec, self.at(), 0.5);
            self.decisions.push(d.clone());
            match d {
                Decision::Apply(cmd) => self.record(Event::Model { command: cmd }),
                Decision::RunRequest => {
                    let c = &self.session.config;
                    match script(c.state, c.attempt) {
                        Ok(()) => self.record(Event::Model {
                            command: Command::Complete,
                        }),
                        Err((reason, retryable)) => self.record(Event::Model {
                            command: Command::Fail {
                                reason,
                                disposition: if retryable {
                                    Disposition::Retryable
                                } else {
                                    Disposition::Final
                                },
                            },
                        }),
                    }
                    self.now += 1000;
                }
                Decision::RetryAfter { delay, .. } => {
                    self.now += delay.as_millis() as u64;
                    self.record(Event::Model {
                        command: Command::Retry,
                    });
                }
                Decision::Fire(f) => match f.action {
                    RuleAction::Abort => self.record(Event::Model {
                        command: Command::Abort,
                    }),
                    RuleAction::Hold => self.record(Event::Held { reason: f.reason }),
                },
                Decision::WaitForApproval(_) | Decision::Hold(_) | Decision::End(_) => return d,
            }
        }
        panic!(
            "no stop after 500 decisions: {:?}",
            &self.decisions[self.decisions.len() - 5..]
        );
    }

    fn states(&self) -> Vec<UpgradeState> {
        self.visited.clone()
    }
}

fn ok(_: UpgradeState, _: u32) -> Result<(), (String, bool)> {
    Ok(())
}

#[test]
fn an_unattended_policy_goes_all_the_way_round() {
    let p = policy("");
    let mut run = Run::new();
    assert_eq!(run.drive(&p.spec, &ok), Decision::End(Outcome::Committed));
    assert_eq!(
        run.states(),
        [
            Idle,
            PrepareSplit,
            Split,
            PrepareMerge,
            Merge,
            Commit,
            Finish,
            Idle
        ]
    );
}

#[test]
fn approvals_stop_the_session_until_given() {
    let p = policy("  approvals: [{before: Merge}, {before: Commit}]\n");
    let mut run = Run::new();
    assert_eq!(
        run.drive(&p.spec, &ok),
        Decision::WaitForApproval(ApprovalPoint::Merge)
    );
    assert_eq!(
        (run.session.config.state, run.session.config.phase()),
        (Split, Phase::Done)
    );
    // Asking again without approval changes nothing.
    assert_eq!(
        run.drive(&p.spec, &ok),
        Decision::WaitForApproval(ApprovalPoint::Merge)
    );
    run.record(Event::Approved {
        before: ApprovalPoint::Merge,
        by: "ops".into(),
    });
    assert_eq!(
        run.drive(&p.spec, &ok),
        Decision::WaitForApproval(ApprovalPoint::Commit)
    );
    assert_eq!(run.session.config.state, Merge);
    run.record(Event::Approved {
        before: ApprovalPoint::Commit,
        by: "ops".into(),
    });
    assert_eq!(run.drive(&p.spec, &ok), Decision::End(Outcome::Committed));
}

#[test]
fn a_transient_failure_is_retried_with_backoff() {
    let p =
        policy("  retries: {default: {limit: 3, backoff: {initial: 1s, max: 3s, jitter: 0}}}\n");
    let mut run = Run::new();
    let flaky = |s: UpgradeState, attempt: u32| {
        if s == Split && attempt < 3 {
            Err(("split: partner busy".to_string(), true))
        } else {
            Ok(())
        }
    };
    assert_eq!(
        run.drive(&p.spec, &flaky),
        Decision::End(Outcome::Committed)
    );
    let waits: Vec<_> = run
        .decisions
        .iter()
        .filter_map(|d| match d {
            Decision::RetryAfter { delay, attempt } => Some((delay.as_millis(), *attempt)),
            _ => None,
        })
        .collect();
    assert_eq!(waits, [(1000, 2), (2000, 3)]);
}

#[test]
fn exhausted_retries_abort_or_hold_as_the_rules_say() {
    let failing = |s: UpgradeState, _| {
        if s == PrepareMerge {
            Err(("gate closed".to_string(), true))
        } else {
            Ok(())
        }
    };
    let p = policy(
        "  retries: {default: {limit: 1, backoff: {initial: 1s}}}\n  autoAbort: [{when: retriesExhausted, action: abort}]\n",
    );
    let mut run = Run::new();
    assert_eq!(
        run.drive(&p.spec, &failing),
        Decision::End(Outcome::Aborted)
    );
    assert_eq!(
        run.states(),
        [Idle, PrepareSplit, Split, PrepareMerge, Abort, Finish, Idle]
    );

    let p = policy(
        "  retries: {default: {limit: 1, backoff: {initial: 1s}}}\n  autoAbort: [{when: retriesExhausted, action: hold}]\n",
    );
    let mut run = Run::new();
    match run.drive(&p.spec, &failing) {
        Decision::Hold(why) => assert!(
            why.starts_with(
                "PrepareMerge failed 2 time(s), its retries (1) are used up: gate closed"
            ),
            "{why}"
        ),
        d => panic!("{d:?}"),
    }
    assert_eq!(run.session.config.phase(), Phase::Failed);

    // No rule at all: hold, saying so (front ends add what a person can do).
    let p = policy("  retries: {default: {limit: 0}}\n");
    let mut run = Run::new();
    match run.drive(&p.spec, &failing) {
        Decision::Hold(why) => assert!(why.ends_with("; no auto-abort rule applies"), "{why}"),
        d => panic!("{d:?}"),
    }
}

#[test]
fn a_non_retryable_failure_skips_the_retries() {
    let p = policy(
        "  retries: {default: {limit: 5}}\n  autoAbort: [{when: retriesExhausted, action: abort}]\n",
    );
    let mut run = Run::new();
    let broken = |s: UpgradeState, _| {
        if s == Split {
            Err(("bad media".to_string(), false))
        } else {
            Ok(())
        }
    };
    assert_eq!(run.drive(&p.spec, &broken), Decision::End(Outcome::Aborted));
    assert!(
        !run.decisions
            .iter()
            .any(|d| matches!(d, Decision::RetryAfter { .. }))
    );
}

#[test]
fn an_abort_rule_after_commit_holds_instead() {
    let p = policy(
        "  retries: {default: {limit: 0}}\n  autoAbort: [{when: retriesExhausted, action: abort}]\n",
    );
    let mut run = Run::new();
    let failing = |s: UpgradeState, _| {
        if s == Commit {
            Err(("resync stalled".to_string(), true))
        } else {
            Ok(())
        }
    };
    match run.drive(&p.spec, &failing) {
        Decision::Hold(why) => assert!(
            why.contains("abort is impossible in Commit, holding for a person"),
            "{why}"
        ),
        d => panic!("{d:?}"),
    }
}

#[test]
fn a_deadline_aborts_before_commit() {
    let p = policy(
        "  retries: {default: {limit: 100, backoff: {initial: 1m, max: 1m, jitter: 0}}}\n  autoAbort: [{when: deadline, commitWithin: 10m, action: abort}]\n",
    );
    let mut run = Run::new();
    let stuck = |s: UpgradeState, _| {
        if s == Merge {
            Err(("apps not up".to_string(), true))
        } else {
            Ok(())
        }
    };
    assert_eq!(run.drive(&p.spec, &stuck), Decision::End(Outcome::Aborted));
    assert!(
        run.decisions
            .iter()
            .any(|d| matches!(d, Decision::Fire(f) if f.rule == "deadline"))
    );
}

#[test]
fn a_crashed_partner_aborts() {
    let p = policy("  autoAbort: [{when: partnerUnhealthy, action: abort}]\n");
    let mut run = Run::new();
    let script = |_, _| Ok(());
    // Run into Split, then the partner crashes.
    run.commands(&[
        Command::Start,
        Command::Begin,
        Command::Complete,
        Command::Advance,
    ]);
    run.record(Event::Model {
        command: Command::ObservePartner {
            partner: PartnerState::Crashed,
        },
    });
    assert_eq!(run.drive(&p.spec, &script), Decision::End(Outcome::Aborted));
    assert!(
        matches!(&run.decisions[0], Decision::Fire(f) if f.reason == "the partner side is Crashed")
    );
}

#[test]
fn a_declared_abort_aborts_a_session_in_flight() {
    let mut p = policy("");
    let mut run = Run::new();
    run.commands(&[
        Command::Start,
        Command::Begin,
        Command::Complete,
        Command::Advance,
    ]);
    p.spec.action = PolicyAction::Abort;
    assert_eq!(run.drive(&p.spec, &ok), Decision::End(Outcome::Aborted));
    assert_eq!(run.decisions[0], Decision::Apply(Command::Abort));
}

#[test]
fn checks_failing_in_a_row_fire_their_rule() {
    let p = policy(
        "  gates:\n    prepareMerge: [{name: svc, plugin: hw, check: svc, failureLimit: 9}]\n  autoAbort: [{when: checkFailing, check: svc, consecutive: 3, action: abort}]\n",
    );
    let mut run = Run::new();
    run.commands(&[Command::Start, Command::Begin]);
    for n in 1..=3 {
        run.record(Event::CheckRan {
            check: "svc".into(),
            verdict: Verdict::Fail,
            message: "down".into(),
            consecutive_failures: n,
        });
    }
    // Mid-request the decision is to keep running (the engine asks
    // `condition_rules` after each check and fails the request itself).
    let now = Now {
        wall_ms: 0,
        session_age_ms: 0,
    };
    assert_eq!(
        decide(&run.session, &p.spec, now, 0.5),
        Decision::RunRequest
    );
    assert_eq!(
        super::condition_rules(&run.session, &p.spec, now)
            .unwrap()
            .reason,
        "check `svc` failed 3 time(s) in a row"
    );
}

#[test]
fn backoff_grows_caps_and_jitters() {
    let b = crate::policy::Backoff {
        initial: "1s".parse().unwrap(),
        max: "5s".parse().unwrap(),
        multiplier: 2.0,
        jitter: 0.2,
    };
    let ms = |attempt, sample| backoff_delay(&b, attempt, sample).as_millis();
    assert_eq!(
        [ms(1, 0.5), ms(2, 0.5), ms(3, 0.5), ms(4, 0.5)],
        [1000, 2000, 4000, 5000]
    );
    assert_eq!(ms(1, 0.0), 800);
    assert_eq!(ms(1, 1.0), 1200);
}

#[test]
fn a_failure_that_needs_a_person_holds_without_retries_or_rules() {
    let p = policy(
        "  retries: {default: {limit: 5}}\n  autoAbort: [{when: retriesExhausted, action: abort}]\n",
    );
    let mut run = Run::new();
    run.commands(&[
        Command::Start,
        Command::Begin,
        Command::Fail {
            reason: "the state dir's disk is full".into(),
            disposition: Disposition::Hold,
        },
    ]);
    assert_eq!(
        run.drive(&p.spec, &ok),
        Decision::Hold("the state dir's disk is full".into())
    );
}

#[test]
fn the_deadline_counts_the_session_age_and_the_window_the_wall_clock() {
    let p = policy(
        "  window: {start: '1970-01-01T00:00:00Z', end: '1970-01-01T01:00:00Z'}\n  autoAbort: [{when: deadline, commitWithin: 10m, action: abort}, {when: windowClosing, action: abort}]\n",
    );
    let mut run = Run::new();
    run.commands(&[Command::Start]);
    // The wall clock jumps five hours ahead, five minutes into the session:
    // the deadline (a duration) does not fire, the window (a time) does.
    let stepped = Now {
        wall_ms: 5 * 3_600_000 + 300_000,
        session_age_ms: 300_000,
    };
    let fired = super::condition_rules(&run.session, &p.spec, stepped).unwrap();
    assert_eq!(fired.rule, "windowClosing");
    let in_window = Now {
        wall_ms: 300_000,
        session_age_ms: 11 * 60_000,
    };
    let fired = super::condition_rules(&run.session, &p.spec, in_window).unwrap();
    assert_eq!(fired.rule, "deadline");
}
