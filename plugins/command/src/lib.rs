//! `command`: NEC custom actions without writing WebAssembly. Checks,
//! hardware operations, installs and the partner state are commands the
//! policy declares, run through the `exec` capability (the policy must grant
//! each program under `capabilities.exec`).
//!
//! - **Check `run`** (`with: {run: [/usr/bin/systemctl, is-active, acme]}`):
//!   exit 0 passes; `retryLaterExit` (e.g. 21, as Mender's state scripts)
//!   means "not yet": the check does not pass this round and the gate asks
//!   again at its next interval (within its `timeout` and `failureLimit`);
//!   a code in `inconclusiveExit` is inconclusive (the session holds for a
//!   person); any other code fails, with the tail of the command's standard
//!   error (or output) as the reason. A check still running when its call's
//!   time is up has not passed this round; the next round finds it again.
//! - **Operations** (the target's `with:`, one entry per operation:
//!   `split: {run: [...]}`, `merge`, `commit`, `abort`, `finish`): exit 0 is
//!   done, `retryLaterExit` is pending (the command runs again after
//!   `retryAfterMs`), anything else failed, retryable (a Retry runs it
//!   again). A command still running after `waitMs` is pending: it is
//!   polled by the next calls (the runner keeps it), so an operation may
//!   take minutes. An operation without a command is done at once.
//! - **Installer** (`install: {run: [/opt/acme/install, "{name}", "{version}", "{source}"]}`
//!   in the target's or the software item's `with:`): like an operation;
//!   in its arguments `{name}`, `{version}`, `{sha256}`, `{size}` and
//!   `{source}` (the artifact's source as the policy writes it) are replaced
//!   by the artifact's.
//! - **Partner state** (`partner: {run: [...]}`): the command's exit code
//!   looked up in `exitCodes` (`{"0": "up", "3": "booting"}`), else the
//!   first word of its output if it names a state (`off`, `booting`, `up`,
//!   `hung`, `crashed`, `unknown`), else `up` for exit 0 and `unknown` (with
//!   a warning) for anything else. No `partner` command: `unknown`.
//!
//! Every command also sees the runner's `ACTIVE_UPGRADE_SIDE`, `_STATE`,
//! `_REQUEST`, `_SESSION` and `_ATTEMPT` in its environment.

use duplex_plugin_sdk::prelude::*;
use std::collections::BTreeMap;

/// How long a call of an operation, install or partner report waits for
/// its command before answering pending.
const DEFAULT_WAIT_MS: u32 = 1_000;
const DEFAULT_RETRY_AFTER_MS: u32 = 5_000;

/// One command: the program (absolute path, granted under
/// `capabilities.exec`) and its arguments.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct CommandSpec {
    /// The program (absolute path) and its arguments, passed as they are
    /// (no shell: `;`, `$x` or quotes are plain characters).
    #[schemars(length(min = 1))]
    pub run: Vec<String>,
    /// The exit code that means "retry later" (Mender uses 21): a check does
    /// not pass this round, an operation stays pending and runs the command
    /// again after `retryAfterMs`.
    #[serde(default)]
    pub retry_later_exit: Option<i32>,
    /// Wait before running the command again after a "retry later".
    #[serde(default)]
    pub retry_after_ms: Option<u32>,
    /// Working directory (absolute; default `/`).
    #[serde(default)]
    pub cwd: Option<String>,
    /// Kill the command (with its process group) after this long; default
    /// and upper bound: the runner's limit (10 minutes).
    #[serde(default)]
    pub timeout_ms: Option<u32>,
    /// How long one call waits for the command before answering pending
    /// (operations, installs; checks wait as long as their call may).
    #[serde(default)]
    pub wait_ms: Option<u32>,
    /// Text written to the command's standard input.
    #[serde(default)]
    pub stdin: Option<String>,
    /// Checks only: exit codes that make the check inconclusive (the
    /// session holds for a person to decide).
    #[serde(default)]
    pub inconclusive_exit: Vec<i32>,
    /// Partner command only: exit code → partner state (`off`, `booting`,
    /// `up`, `hung`, `crashed`, `unknown`), e.g. `{"0": "up", "3": "booting"}`.
    #[serde(default)]
    pub exit_codes: BTreeMap<String, StateWord>,
}

/// The `run` check's parameters: one command.
pub type RunCheck = CommandSpec;
/// The partner-state command.
pub type PartnerCommand = CommandSpec;

/// A partner state, as a policy writes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum StateWord {
    Unknown,
    Off,
    Booting,
    Up,
    Hung,
    Crashed,
}

impl StateWord {
    fn state(self) -> PartnerState {
        match self {
            StateWord::Unknown => PartnerState::Unknown,
            StateWord::Off => PartnerState::Off,
            StateWord::Booting => PartnerState::Booting,
            StateWord::Up => PartnerState::Up,
            StateWord::Hung => PartnerState::Hung,
            StateWord::Crashed => PartnerState::Crashed,
        }
    }

    fn parse(word: &str) -> Option<StateWord> {
        Some(match word.to_ascii_lowercase().as_str() {
            "unknown" => StateWord::Unknown,
            "off" => StateWord::Off,
            "booting" => StateWord::Booting,
            "up" => StateWord::Up,
            "hung" => StateWord::Hung,
            "crashed" => StateWord::Crashed,
            _ => return None,
        })
    }
}

/// The target's `with:` (every operation, the installer and the partner
/// report get it; a software item's `with:` may override `install`).
#[derive(Debug, Clone, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Commands {
    /// Isolate the Upgrade Side (PrepareSplit → Split).
    #[serde(default)]
    pub split: Option<CommandSpec>,
    /// Hand production to the Upgrade Side.
    #[serde(default)]
    pub merge: Option<CommandSpec>,
    /// Make the upgrade permanent (the point of no return).
    #[serde(default)]
    pub commit: Option<CommandSpec>,
    /// Return to the old software.
    #[serde(default)]
    pub abort: Option<CommandSpec>,
    /// Clean up after Commit or Abort.
    #[serde(default)]
    pub finish: Option<CommandSpec>,
    /// Install an artifact; `{name}`, `{version}`, `{sha256}`, `{size}` and
    /// `{source}` in its arguments are the artifact's.
    #[serde(default)]
    pub install: Option<CommandSpec>,
    /// Report the partner side's state.
    #[serde(default)]
    pub partner: Option<PartnerCommand>,
}

pub struct CommandPlugin;

impl Plugin for CommandPlugin {
    fn manifest() -> Manifest {
        let m = Manifest::new(
            "command",
            env!("CARGO_PKG_VERSION"),
            "NEC custom actions: checks, hardware operations, installs and the partner state as commands the policy declares (granted under capabilities.exec)",
        )
        .check::<RunCheck>(
            "run",
            "Runs a command: exit 0 passes, `retryLaterExit` asks again next round, other codes fail with its output",
        );
        let mut m = m;
        for op in [
            HardwareOp::Split,
            HardwareOp::Merge,
            HardwareOp::Commit,
            HardwareOp::Abort,
            HardwareOp::Finish,
        ] {
            m = m.operation::<Commands>(
                op,
                "Runs the target's command for this operation (exit 0: done; `retryLaterExit`: pending; other: failed, retryable)",
            );
        }
        m.installer::<Commands>(
            "command",
            "Runs the `install` command with the artifact's name, version, sha256, size and source in its arguments",
        )
        .reports_partner()
    }

    fn check(cx: &mut Cx<'_>, name: &str) -> Result<CheckResult, Error> {
        if name != "run" {
            return Err(Error::unknown_check(name));
        }
        let p: RunCheck = cx.params()?;
        let c = &p;
        let status = command(cx, c, "check", &[], u32::MAX)?;
        let shown = c.run.join(" ");
        let Some(exit) = status.exited() else {
            return Ok(CheckResult::fail(format!(
                "`{shown}` is still running (kept: the next round finds it again)"
            )));
        };
        let code = exit.code;
        let r = match code {
            Some(0) => CheckResult::pass(format!("`{shown}`: {}", last_line(exit, "exit code 0"))),
            Some(n) if Some(n) == c.retry_later_exit => CheckResult::fail(format!(
                "`{shown}` says retry later (exit code {n}): not ready yet{}",
                suffix(exit)
            )),
            Some(n) if c.inconclusive_exit.contains(&n) => {
                CheckResult::inconclusive(format!("`{shown}`: {}", exit.describe()))
            }
            _ => CheckResult::fail(format!("`{shown}`: {}", exit.describe())),
        };
        Ok(r.observe("exit", exit.status_text())
            .observe("duration-ms", exit.duration_ms))
    }

    fn operate(cx: &mut Cx<'_>, op: HardwareOp) -> Progress {
        let all: Commands = match cx.params() {
            Ok(p) => p,
            Err(e) => return Progress::failed(e.to_string(), false),
        };
        let spec = match op {
            HardwareOp::Split => all.split,
            HardwareOp::Merge => all.merge,
            HardwareOp::Commit => all.commit,
            HardwareOp::Abort => all.abort,
            HardwareOp::Finish => all.finish,
        };
        let name = duplex_plugin_sdk::op_name(op);
        match spec {
            None => Progress::done(format!("no command declared for `{name}`: nothing to do")),
            Some(spec) => step(cx, &spec, name, &[]),
        }
    }

    fn install(cx: &mut Cx<'_>, artifact: &Artifact) -> Progress {
        let all: Commands = match cx.params() {
            Ok(p) => p,
            Err(e) => return Progress::failed(e.to_string(), false),
        };
        let Some(spec) = all.install else {
            return Progress::failed(
                format!(
                    "no `install` command declared for `{}` (in the target's or the software item's `with:`)",
                    artifact.name
                ),
                false,
            );
        };
        let vars = [
            ("{name}", artifact.name.clone()),
            ("{version}", artifact.version.clone()),
            ("{sha256}", artifact.sha256.clone()),
            ("{size}", artifact.size.to_string()),
            ("{source}", artifact.source.clone()),
        ];
        step(cx, &spec, &format!("install-{}", artifact.name), &vars)
    }

    fn partner(cx: &mut Cx<'_>) -> Result<PartnerState, Error> {
        let all: Commands = cx.params()?;
        let Some(p) = all.partner else {
            return Ok(PartnerState::Unknown);
        };
        let status = command(cx, &p, "partner", &[], DEFAULT_WAIT_MS)?;
        let Some(exit) = status.exited() else {
            cx.debug("the partner command is still running: unknown until it answers");
            return Ok(PartnerState::Unknown);
        };
        Ok(partner_state(cx, &p, exit))
    }
}

/// The partner state a partner command's exit says.
fn partner_state(cx: &mut Cx<'_>, p: &PartnerCommand, exit: &ExecExit) -> PartnerState {
    if let Some(code) = exit.code
        && let Some(word) = p.exit_codes.get(&code.to_string())
    {
        return word.state();
    }
    let out = exit.stdout_str();
    if let Some(word) = out.split_whitespace().next().and_then(StateWord::parse) {
        return word.state();
    }
    if exit.success() {
        return PartnerState::Up;
    }
    cx.warn(format!(
        "the partner command's answer names no state ({}): unknown",
        exit.describe()
    ));
    PartnerState::Unknown
}

/// Starts or polls `spec` under `key`, arguments templated with `vars`.
fn command(
    cx: &mut Cx<'_>,
    spec: &CommandSpec,
    key: &str,
    vars: &[(&str, String)],
    default_wait: u32,
) -> Result<ExecStatus, Error> {
    let (program, args) = spec
        .run
        .split_first()
        .ok_or_else(|| Error::new("`run` is empty: give the program and its arguments"))?;
    let args = args.iter().map(|a| {
        vars.iter()
            .fold(a.clone(), |a, (from, to)| a.replace(from, to))
    });
    let mut e = cx
        .exec(program.clone())
        .args(args)
        .key(key)
        .wait_ms(spec.wait_ms.unwrap_or(default_wait));
    if let Some(dir) = &spec.cwd {
        e = e.cwd(dir.clone());
    }
    if let Some(ms) = spec.timeout_ms {
        e = e.timeout_ms(ms);
    }
    if let Some(text) = &spec.stdin {
        e = e.stdin(text.as_bytes());
    }
    e.run()
}

/// One call of a resumable step (an operation or an install).
fn step(cx: &mut Cx<'_>, spec: &CommandSpec, key: &str, vars: &[(&str, String)]) -> Progress {
    let shown = spec.run.join(" ");
    let status = match command(cx, spec, key, vars, DEFAULT_WAIT_MS) {
        Ok(s) => s,
        // Refused by the runner (not granted, bad path): not worth retrying.
        Err(e) => return Progress::failed(e.to_string(), false),
    };
    match status {
        ExecStatus::Running(ms) => Progress::pending(
            0,
            format!("`{shown}` running for {}s", ms / 1000),
            spec.wait_ms.unwrap_or(DEFAULT_WAIT_MS).min(2_000),
        ),
        ExecStatus::Exited(exit) => match exit.code {
            Some(0) => Progress::done(format!("`{shown}`: {}", last_line(&exit, "exit code 0"))),
            Some(n) if Some(n) == spec.retry_later_exit => Progress::pending(
                0,
                format!(
                    "`{shown}` says retry later (exit code {n}){}",
                    suffix(&exit)
                ),
                spec.retry_after_ms.unwrap_or(DEFAULT_RETRY_AFTER_MS),
            ),
            _ => Progress::failed(format!("`{shown}`: {}", exit.describe()), true),
        },
    }
}

/// The last line of the command's output, or `otherwise`.
fn last_line(exit: &ExecExit, otherwise: &str) -> String {
    let out = exit.stdout_str();
    out.lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .map_or_else(|| otherwise.to_string(), |l| l.trim().to_string())
}

fn suffix(exit: &ExecExit) -> String {
    let tail = exit.tail(3);
    if tail.is_empty() {
        String::new()
    } else {
        format!(": {tail}")
    }
}

duplex_plugin_sdk::export_plugin!(CommandPlugin);

#[cfg(test)]
mod tests {
    use super::*;
    use duplex_plugin_sdk::testing::{FakeExec, TestHost, context};
    use serde_json::json;

    const CTL: &str = "/usr/bin/systemctl";

    fn check(h: &mut TestHost, params: serde_json::Value) -> CheckResult {
        h.check::<CommandPlugin>(&context(UpgradeState::PrepareSplit, params), "run")
            .unwrap()
    }

    #[test]
    fn a_check_passes_on_exit_0_and_fails_with_the_commands_words() {
        let mut h = TestHost::new();
        h.on_exec_seq(
            CTL,
            [
                FakeExec::exit(0, "active\n"),
                FakeExec::exit_err(3, "unit acme.service is inactive\n"),
            ],
        );
        let p = json!({"run": [CTL, "is-active", "acme"]});
        let r = check(&mut h, p.clone());
        assert_eq!(r.verdict, Verdict::Pass, "{}", r.message);
        assert!(r.message.contains("active"));
        let r = check(&mut h, p);
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(r.message.contains("exit code 3"), "{}", r.message);
        assert!(
            r.message.contains("unit acme.service is inactive"),
            "{}",
            r.message
        );
        assert_eq!(h.exec_args(CTL), vec![vec!["is-active", "acme"]; 2]);
        // A check waits as long as its call may.
        assert_eq!(h.exec_calls[0].wait_ms, u32::MAX);
    }

    #[test]
    fn retry_later_is_not_yet_and_inconclusive_codes_hold() {
        let mut h = TestHost::new();
        h.on_exec_seq(CTL, [FakeExec::exit(21, ""), FakeExec::exit(4, "")]);
        let p = json!({"run": [CTL], "retryLaterExit": 21, "inconclusiveExit": [4]});
        let r = check(&mut h, p.clone());
        assert_eq!(r.verdict, Verdict::Fail);
        assert!(r.message.contains("retry later"), "{}", r.message);
        assert_eq!(check(&mut h, p).verdict, Verdict::Inconclusive);
    }

    #[test]
    fn a_check_still_running_has_not_passed_and_is_found_again() {
        let mut h = TestHost::new();
        h.on_exec_seq(CTL, [FakeExec::Running(9000), FakeExec::exit(0, "")]);
        let p = json!({"run": [CTL], "timeoutMs": 60000});
        assert_eq!(check(&mut h, p.clone()).verdict, Verdict::Fail);
        assert_eq!(check(&mut h, p).verdict, Verdict::Pass);
        assert!(h.exec_calls.iter().all(|c| c.key == "check"));
        assert_eq!(h.exec_calls[0].timeout_ms, Some(60000));
    }

    #[test]
    fn operations_run_their_own_command_and_poll_a_long_one() {
        let mut h = TestHost::new();
        h.on_exec_seq(
            "/opt/split",
            [
                FakeExec::Running(1000),
                FakeExec::Running(2000),
                FakeExec::exit(0, "split done\n"),
            ],
        );
        let ctx = context(
            UpgradeState::Split,
            json!({"split": {"run": ["/opt/split", "--fast"]}}),
        );
        let (p, calls) = h.operate_until_settled::<CommandPlugin>(&ctx, HardwareOp::Split, 10);
        assert_eq!(p, Progress::done("`/opt/split --fast`: split done"));
        assert_eq!(calls, 3);
        assert!(h.exec_calls.iter().all(|c| c.key == "split"));
        // No command for finish: nothing to do.
        assert!(
            h.operate::<CommandPlugin>(&ctx, HardwareOp::Finish)
                .is_done()
        );
    }

    #[test]
    fn an_operation_retries_later_and_fails_retryably() {
        let mut h = TestHost::new();
        h.on_exec_seq(
            "/opt/merge",
            [FakeExec::exit(21, ""), FakeExec::exit_err(1, "disk busy\n")],
        );
        let ctx = context(
            UpgradeState::Merge,
            json!({"merge": {"run": ["/opt/merge"], "retryLaterExit": 21, "retryAfterMs": 700}}),
        );
        match h.operate::<CommandPlugin>(&ctx, HardwareOp::Merge) {
            Progress::Pending(p) => assert_eq!(p.retry_after_ms, 700),
            other => panic!("{other:?}"),
        }
        match h.operate::<CommandPlugin>(&ctx, HardwareOp::Merge) {
            Progress::Failed(f) => {
                assert!(f.retryable);
                assert!(f.message.contains("disk busy"), "{}", f.message);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_refused_program_fails_for_good() {
        let mut h = TestHost::new();
        let ctx = context(
            UpgradeState::Split,
            json!({"split": {"run": ["/bin/rm", "-rf", "/"]}}),
        );
        match h.operate::<CommandPlugin>(&ctx, HardwareOp::Split) {
            Progress::Failed(f) => {
                assert!(!f.retryable);
                assert!(f.message.contains("/bin/rm"), "{}", f.message);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn installs_get_the_artifact_in_their_arguments() {
        let mut h = TestHost::new();
        h.on_exec("/opt/install", FakeExec::exit(0, "installed\n"));
        let ctx = context(
            UpgradeState::Split,
            json!({"install": {"run": ["/opt/install", "{name}-{version}", "{source}", "--sha={sha256}"]}}),
        );
        let a = Artifact {
            name: "acme".into(),
            version: "2.4.1".into(),
            sha256: "ab".repeat(32),
            size: 10,
            source: "artifacts/acme.pkg".into(),
        };
        assert!(h.install::<CommandPlugin>(&ctx, &a).is_done());
        assert_eq!(
            h.exec_args("/opt/install")[0],
            vec![
                "acme-2.4.1".to_string(),
                "artifacts/acme.pkg".into(),
                format!("--sha={}", "ab".repeat(32))
            ]
        );
    }

    #[test]
    fn the_partner_state_comes_from_exit_codes_or_words() {
        let mut h = TestHost::new();
        h.on_exec_seq(
            "/opt/partner",
            [
                FakeExec::exit(3, ""),
                FakeExec::exit(1, "Hung since 12:00\n"),
                FakeExec::exit(0, ""),
                FakeExec::exit(9, "??"),
            ],
        );
        let ctx = context(
            UpgradeState::Split,
            json!({"partner": {"run": ["/opt/partner"], "exitCodes": {"3": "booting"}}}),
        );
        let mut ask = || h.partner::<CommandPlugin>(&ctx).unwrap();
        assert_eq!(ask(), PartnerState::Booting);
        assert_eq!(ask(), PartnerState::Hung);
        assert_eq!(ask(), PartnerState::Up);
        assert_eq!(ask(), PartnerState::Unknown);
        let none = context(UpgradeState::Split, json!({}));
        assert_eq!(
            h.partner::<CommandPlugin>(&none).unwrap(),
            PartnerState::Unknown
        );
    }

    #[test]
    fn the_schemas_refuse_unknown_fields() {
        let info = duplex_plugin_sdk::describe::<CommandPlugin>();
        let run = &info.checks[0].params_schema;
        assert!(run.contains("retryLaterExit"), "{run}");
        assert!(run.contains("additionalProperties"), "{run}");
        assert_eq!(info.operations.len(), 5);
        assert!(info.reports_partner);
    }
}
