//! `exec`: programs the policy grants, run by the host for the plugin.
//!
//! Grant: a list of programs by absolute path, each with an optional fixed
//! argument prefix and environment (`capabilities.exec` in the policy).
//! Checked at load and by `duplex validate`: every program absolute, without
//! `.`/`..`, an executable regular file; a plugin that imports
//! `duplex:plugin/exec` without any program granted is refused. Wiring: the
//! `duplex:plugin/exec` interface, always linked; without the grant every
//! function returns "capability `exec` not granted …".
//!
//! A command is run directly (argv, never through a shell unless `/bin/sh`
//! itself is the granted program), in its own process group, with a clean
//! environment (the grant's variables plus `ACTIVE_UPGRADE_SIDE`, `_STATE`,
//! `_REQUEST`, `_SESSION`, `_ATTEMPT` from the call's context), standard
//! input from the command's bytes then closed, standard output and error
//! drained continuously by threads into buffers that keep the first
//! [`MAX_OUTPUT_BYTES`] each and count the rest, so a child printing
//! gigabytes neither blocks nor fills the runner's memory. Children are
//! forked by one long-lived thread with `PR_SET_PDEATHSIG`, so they die with
//! the runner.
//!
//! Per plugin: the children it started, keyed by (request, key), kept across
//! calls: a `run` with a known key waits for that child (within the call's
//! remaining time) instead of starting another; an exit is reported once and
//! forgotten. A child's whole process group is killed (SIGKILL, then reaped)
//! when its timeout passes, on `kill(key)`, when the engine ends the request
//! ([`ExecLoaded::end_all`], through `LoadedPlugin::end_commands`: a request
//! completing or failing, a stop, the way to an abort) and when the plugin is
//! dropped. Every kill is reported with its reason: in the call's log, or to
//! the engine, which journals it. A command whose main process exits while
//! processes it left in its group still hold its output open has that group
//! killed too (a service meant to outlive its command must detach: `setsid`,
//! output redirected, or the service manager).

use super::{Capability, GrantProblem, LoadFailure, Parts, PluginFacts};
use crate::plugins::bindings::duplex::plugin as wit;
use crate::plugins::call::{CallScope, HostState};
use crate::plugins::types::{CallContext, LogLevel, LogSource, Side};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Component, Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant};
use wasmtime::component::{HasData, Linker};

/// Bytes of standard output (and, separately, of standard error) a command's
/// exit reports; the rest is read and dropped (counted).
pub const MAX_OUTPUT_BYTES: usize = 64 << 10;
/// A command's default and longest timeout.
pub const MAX_COMMAND_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// Commands one plugin may have running at once.
pub const MAX_RUNNING_COMMANDS: usize = 32;
/// Lines of each stream an exit writes to the activity log.
const LOG_LINES_PER_STREAM: usize = 20;
/// How long a command's output may stay open after its main process exited
/// before the processes holding it (its group) are killed.
const OUTPUT_GRACE: Duration = Duration::from_millis(200);

/// The `exec` grant: programs a plugin may run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecGrant {
    #[serde(default)]
    pub programs: Vec<ProgramGrant>,
}

/// One granted program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramGrant {
    /// Absolute path, as the plugin must name it.
    pub program: PathBuf,
    /// Arguments always passed first.
    #[serde(default)]
    pub args: Vec<String>,
    /// The command's environment (besides `ACTIVE_UPGRADE_*`).
    #[serde(default)]
    pub env: Vec<(String, String)>,
}

/// A command the host killed, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KilledCommand {
    pub plugin: String,
    pub request: String,
    pub key: String,
    /// The program and its arguments, as run.
    pub command: String,
    pub reason: String,
}

pub(crate) struct Exec;

/// One plugin's grant and the children it started.
pub(crate) struct ExecLoaded {
    plugin: String,
    programs: Vec<ProgramGrant>,
    children: Mutex<BTreeMap<(String, String), Running>>,
}

impl Drop for ExecLoaded {
    fn drop(&mut self) {
        // The last resort: nothing outlives the loaded plugin. The engine
        // ends every request's commands (and journals the kills) before.
        self.end_all("the plugin was unloaded");
    }
}

impl ExecLoaded {
    /// Kills every command still running (its process group) and forgets
    /// every exit not yet reported; returns what was killed.
    pub(crate) fn end_all(&self, reason: &str) -> Vec<KilledCommand> {
        let children =
            std::mem::take(&mut *self.children.lock().unwrap_or_else(|e| e.into_inner()));
        let mut killed = Vec::new();
        for ((request, key), child) in children {
            if child.shared.kill(reason) {
                killed.push(KilledCommand {
                    plugin: self.plugin.clone(),
                    request,
                    key,
                    command: child.shown.clone(),
                    reason: reason.to_string(),
                });
            }
        }
        killed
    }

    fn granted(&self, program: &Path) -> Option<&ProgramGrant> {
        self.programs
            .iter()
            .find(|g| g.program.components().eq(program.components()))
    }

    fn refusal(&self, program: &str, why: &str) -> String {
        let granted: Vec<String> = self
            .programs
            .iter()
            .map(|g| g.program.display().to_string())
            .collect();
        format!(
            "exec of `{program}` refused for plugin `{}`: {why}; the policy grants it: {}",
            self.plugin,
            granted.join(", ")
        )
    }
}

pub(crate) struct ExecView<'a> {
    scope: &'a mut CallScope,
    loaded: &'a Option<Arc<ExecLoaded>>,
}

impl HasData for Exec {
    type Data<'a> = ExecView<'a>;
}

impl Capability for Exec {
    const NAME: &'static str = "exec";
    type Grant = ExecGrant;
    type Loaded = Option<Arc<ExecLoaded>>;
    type Call = Option<Arc<ExecLoaded>>;

    fn link(linker: &mut Linker<HostState>) -> wasmtime::Result<()> {
        fn view(state: &mut HostState) -> ExecView<'_> {
            let (scope, loaded) = Parts::<Exec>::parts(state);
            ExecView { scope, loaded }
        }
        wit::exec::add_to_linker::<HostState, Exec>(linker, view)
    }

    fn check(grant: &ExecGrant, plugin: &PluginFacts<'_>) -> Vec<GrantProblem> {
        let mut problems = Vec::new();
        if grant.programs.is_empty() && plugin.imports("duplex:plugin/exec") {
            problems.push(GrantProblem {
                capability: Self::NAME,
                at: String::new(),
                key: false,
                message: format!(
                    "plugin `{}` imports duplex:plugin/exec (it runs programs) but the policy grants it none: list the programs it may run under `capabilities.exec` (absolute paths)",
                    plugin.name
                ),
            });
        }
        for (i, g) in grant.programs.iter().enumerate() {
            if let Err(message) = check_program(&g.program) {
                problems.push(GrantProblem {
                    capability: Self::NAME,
                    at: format!("/capabilities/exec/{i}/program"),
                    key: false,
                    message,
                });
            }
            for (k, _) in &g.env {
                let bad = if k.is_empty() || k.contains('=') || k.contains('\0') {
                    Some("is not a valid environment variable name")
                } else if k.starts_with("ACTIVE_UPGRADE_") {
                    Some("is set by the runner for every command (ACTIVE_UPGRADE_* are reserved)")
                } else {
                    None
                };
                if let Some(why) = bad {
                    problems.push(GrantProblem {
                        capability: Self::NAME,
                        at: format!("/capabilities/exec/{i}/env/{k}"),
                        key: true,
                        message: format!("`{k}` {why}"),
                    });
                }
            }
        }
        problems
    }

    fn load(grant: &ExecGrant, plugin: &PluginFacts<'_>) -> Result<Self::Loaded, LoadFailure> {
        if grant.programs.is_empty() {
            return Ok(None);
        }
        Ok(Some(Arc::new(ExecLoaded {
            plugin: plugin.name.to_string(),
            programs: grant.programs.clone(),
            children: Mutex::new(BTreeMap::new()),
        })))
    }

    fn start(loaded: Option<&Self::Loaded>, _: &mut CallScope) -> Self::Call {
        loaded.cloned().flatten()
    }
}

/// Why a granted program cannot be run.
fn check_program(program: &Path) -> Result<(), String> {
    let shown = program.display();
    if !program.is_absolute() {
        return Err(format!(
            "`{shown}` is not an absolute path: programs are granted by absolute path"
        ));
    }
    if program
        .components()
        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
    {
        return Err(format!(
            "`{shown}` contains `.` or `..`: grant the program by its plain absolute path"
        ));
    }
    let meta = std::fs::metadata(program).map_err(|e| format!("`{shown}`: {e}"))?;
    if !meta.is_file() {
        return Err(format!("`{shown}` is not a file"));
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(format!("`{shown}` is not executable"));
    }
    Ok(())
}

/// A command the plugin started and the host keeps.
struct Running {
    program: String,
    /// Program and arguments, for messages.
    shown: String,
    shared: Arc<Shared>,
}

/// What the threads watching one child share.
struct Shared {
    pgid: i32,
    started: Instant,
    state: Mutex<ChildState>,
    changed: Condvar,
    exited: tokio::sync::watch::Sender<bool>,
}

#[derive(Default)]
struct ChildState {
    exit: Option<wit::exec::Exited>,
    /// The leader is reaped: its pid (the group id) may be reused, so the
    /// group is never signalled again.
    reaped: bool,
    /// Why the host killed it, if it did.
    killed: Option<String>,
    timed_out: bool,
}

impl Shared {
    /// SIGKILL to the whole group unless the leader is already reaped.
    /// Returns whether it was still running (a kill happened).
    fn kill(&self, reason: &str) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if st.reaped || st.exit.is_some() {
            return false;
        }
        kill_group(self.pgid);
        st.killed.get_or_insert_with(|| reason.to_string());
        true
    }
}

fn kill_group(pgid: i32) {
    if pgid > 1 {
        // SAFETY: kill(2) with a negative pid signals the process group
        // `pgid`, whose leader is our unreaped child (so the id is ours).
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// The first [`MAX_OUTPUT_BYTES`] of a stream, and how much more there was.
#[derive(Default)]
struct Capped {
    kept: Vec<u8>,
    dropped: u64,
}

fn drain(mut from: impl Read + Send + 'static) -> mpsc::Receiver<Capped> {
    let (tx, rx) = mpsc::channel();
    let spawned = std::thread::Builder::new()
        .name("duplex-exec-output".into())
        .spawn(move || {
            let mut out = Capped::default();
            let mut buf = vec![0u8; 16 << 10];
            loop {
                match from.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => {
                        let room = MAX_OUTPUT_BYTES.saturating_sub(out.kept.len()).min(n);
                        out.kept.extend_from_slice(&buf[..room]);
                        out.dropped += (n - room) as u64;
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Err(_) => break,
                }
            }
            let _ = tx.send(out);
        });
    if spawned.is_err() {
        // No thread: the receiver reports an empty stream at once.
    }
    rx
}

/// Forks from one long-lived thread: `PR_SET_PDEATHSIG` fires when the
/// thread that forked the child exits, so it must not be a pool thread.
fn spawn(cmd: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let sender = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        let _ = std::thread::Builder::new()
            .name("duplex-exec-spawner".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(cmd.spawn());
                }
            });
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    sender
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .send((cmd, tx))
        .map_err(|_| std::io::Error::other("the exec spawner thread is gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("the exec spawner thread is gone"))?
}

/// The exit of the group leader, without reaping it (so its pid, the group
/// id, stays ours while the group is looked after).
fn wait_exit_noreap(pid: i32) {
    loop {
        // SAFETY: waitid fills `info`, a plain C struct we own.
        let r = unsafe {
            let mut info: libc::siginfo_t = std::mem::zeroed();
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if r == 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return;
        }
    }
}

fn state_of(ctx: &CallContext) -> [(&'static str, String); 5] {
    [
        (
            "ACTIVE_UPGRADE_SIDE",
            match ctx.side {
                Side::Production => "production",
                Side::Upgrade => "upgrade",
            }
            .to_string(),
        ),
        ("ACTIVE_UPGRADE_STATE", ctx.state.to_string()),
        ("ACTIVE_UPGRADE_REQUEST", ctx.request.clone()),
        ("ACTIVE_UPGRADE_SESSION", ctx.session_id.clone()),
        ("ACTIVE_UPGRADE_ATTEMPT", ctx.attempt.to_string()),
    ]
}

/// Starts a command: the child and the threads that watch it.
fn start(
    grant: &ProgramGrant,
    cmd: &wit::exec::Command,
    ctx: &CallContext,
) -> Result<Running, String> {
    let cwd = cmd.cwd.as_deref().unwrap_or("/");
    if !Path::new(cwd).is_absolute() {
        return Err(format!("the working directory `{cwd}` is not absolute"));
    }
    let timeout = cmd
        .timeout_ms
        .map_or(MAX_COMMAND_TIMEOUT, |ms| Duration::from_millis(ms.into()))
        .min(MAX_COMMAND_TIMEOUT);
    let args: Vec<&str> = grant
        .args
        .iter()
        .chain(&cmd.args)
        .map(String::as_str)
        .collect();
    let mut c = Command::new(&grant.program);
    c.args(&args)
        .env_clear()
        .envs(grant.env.iter().map(|(k, v)| (k, v)))
        .envs(state_of(ctx))
        .current_dir(cwd)
        .process_group(0)
        .stdin(if cmd.stdin.is_empty() {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        let parent = libc::getpid();
        c.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The runner died between the fork and the prctl.
            if libc::getppid() != parent {
                libc::_exit(137);
            }
            Ok(())
        });
    }
    let shown = std::iter::once(grant.program.display().to_string())
        .chain(args.iter().map(|a| shell_word(a)))
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = spawn(c).map_err(|e| format!("cannot start `{shown}`: {e}"))?;
    let pid = child.id() as i32;
    let (exited, _) = tokio::sync::watch::channel(false);
    let shared = Arc::new(Shared {
        pgid: pid,
        started: Instant::now(),
        state: Mutex::new(ChildState::default()),
        changed: Condvar::new(),
        exited,
    });
    if let Some(mut stdin) = child.stdin.take() {
        let bytes = cmd.stdin.clone();
        let _ = std::thread::Builder::new()
            .name("duplex-exec-stdin".into())
            .spawn(move || {
                // A child that does not read it gets EPIPE when it exits.
                let _ = stdin.write_all(&bytes);
            });
    }
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    // The waiter: exit, output, reap, publish.
    let waiter = {
        let shared = shared.clone();
        move || {
            wait_exit_noreap(pid);
            let deadline = Instant::now() + OUTPUT_GRACE;
            let take = |rx: &Option<mpsc::Receiver<Capped>>, block: bool| -> Option<Capped> {
                let rx = rx.as_ref()?;
                if block {
                    rx.recv().ok()
                } else {
                    rx.recv_timeout(deadline.saturating_duration_since(Instant::now()))
                        .ok()
                }
            };
            let mut out = take(&stdout, false);
            let mut err = take(&stderr, false);
            let lingering =
                (stdout.is_some() && out.is_none()) || (stderr.is_some() && err.is_none());
            if lingering {
                shared.kill_lingering();
                if out.is_none() {
                    out = take(&stdout, true);
                }
                if err.is_none() {
                    err = take(&stderr, true);
                }
            }
            let status = child.wait();
            let (out, err) = (out.unwrap_or_default(), err.unwrap_or_default());
            let mut st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            st.reaped = true;
            let (code, signal) = match status {
                Ok(s) => code_and_signal(s),
                Err(_) => (None, None),
            };
            st.exit = Some(wit::exec::Exited {
                code,
                signal,
                stdout: out.kept,
                stderr: err.kept,
                dropped_bytes: out.dropped + err.dropped,
                duration_ms: shared.started.elapsed().as_millis() as u64,
                timed_out: st.timed_out,
            });
            drop(st);
            shared.changed.notify_all();
            shared.exited.send_replace(true);
        }
    };
    let timer = {
        let shared = shared.clone();
        move || {
            let st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            let (mut st, _) = shared
                .changed
                .wait_timeout_while(st, timeout, |s| s.exit.is_none())
                .unwrap_or_else(|e| e.into_inner());
            if st.exit.is_none() && !st.reaped {
                kill_group(shared.pgid);
                st.timed_out = true;
                st.killed.get_or_insert_with(|| {
                    format!("its timeout of {} ms passed", timeout.as_millis())
                });
            }
        }
    };
    let spawned = std::thread::Builder::new()
        .name("duplex-exec-wait".into())
        .spawn(waiter)
        .and_then(|_| {
            std::thread::Builder::new()
                .name("duplex-exec-timer".into())
                .spawn(timer)
        });
    if let Err(e) = spawned {
        kill_group(pid);
        return Err(format!("cannot watch `{shown}`: {e}"));
    }
    Ok(Running {
        program: grant.program.display().to_string(),
        shown,
        shared,
    })
}

impl Shared {
    /// The leader exited but processes of its group still hold its output.
    fn kill_lingering(&self) {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if !st.reaped {
            kill_group(self.pgid);
            st.killed.get_or_insert_with(|| {
                "it exited, but processes it left in its process group kept its output open: the group was killed (detach a service that must outlive its command: setsid, output redirected)".into()
            });
        }
    }
}

fn code_and_signal(s: ExitStatus) -> (Option<i32>, Option<i32>) {
    (s.code(), s.signal())
}

/// An argument as a reader can tell where it starts and ends.
fn shell_word(a: &str) -> String {
    if !a.is_empty()
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

impl ExecView<'_> {
    /// Writes an exit to the call's log: the command, how it ended, and the
    /// last lines of its output.
    fn log_exit(&mut self, shown: &str, exited: &wit::exec::Exited, killed: Option<&str>) {
        let how = match (exited.code, exited.signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(sig)) => format!("ended by signal {sig}"),
            (None, None) => "ended (status unknown)".into(),
        };
        let level = if exited.code == Some(0) {
            LogLevel::Info
        } else {
            LogLevel::Warn
        };
        let mut line = format!("exec `{shown}` {how} after {} ms", exited.duration_ms);
        if let Some(why) = killed {
            line.push_str(&format!(" (killed by the runner: {why})"));
        }
        if exited.dropped_bytes > 0 {
            line.push_str(&format!(
                "; {} bytes of output beyond the first {} KiB of each stream dropped",
                exited.dropped_bytes,
                MAX_OUTPUT_BYTES >> 10
            ));
        }
        self.scope.log.push(level, LogSource::Host, &line);
        for (bytes, source, name) in [
            (&exited.stdout, LogSource::Stdout, "stdout"),
            (&exited.stderr, LogSource::Stderr, "stderr"),
        ] {
            let text = String::from_utf8_lossy(bytes);
            let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
            let skip = lines.len().saturating_sub(LOG_LINES_PER_STREAM);
            if skip > 0 {
                self.scope.log.push(
                    LogLevel::Info,
                    source,
                    &format!("({skip} earlier {name} line(s) not shown)"),
                );
            }
            for l in &lines[skip..] {
                self.scope
                    .log
                    .push(LogLevel::Info, source, &format!("{name}: {l}"));
            }
        }
    }
}

impl wit::exec::Host for ExecView<'_> {
    fn run(
        &mut self,
        cmd: wit::exec::Command,
        wait_ms: u32,
    ) -> wasmtime::Result<Result<wit::exec::Status, String>> {
        self.scope.guard.check()?;
        let Some(loaded) = self.loaded.clone() else {
            return Ok(Err(self.scope.deny(Exec::NAME)));
        };
        let Some(ctx) = self.scope.context.clone() else {
            return Ok(Err(self.scope.deny(Exec::NAME)));
        };
        let id = (ctx.request.clone(), cmd.key.clone());
        let shared = {
            let mut children = loaded.children.lock().unwrap_or_else(|e| e.into_inner());
            match children.get(&id) {
                Some(r) if r.program != cmd.program => {
                    return Ok(Err(format!(
                        "the command `{}` of this request is already running `{}`, not `{}`",
                        cmd.key, r.program, cmd.program
                    )));
                }
                Some(r) => r.shared.clone(),
                None => {
                    let program = Path::new(&cmd.program);
                    let why = if !program.is_absolute() {
                        Some("not an absolute path")
                    } else if program
                        .components()
                        .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
                    {
                        Some("the path contains `.` or `..`")
                    } else if loaded.granted(program).is_none() {
                        Some("not a granted program")
                    } else {
                        None
                    };
                    if let Some(why) = why {
                        let message = loaded.refusal(&cmd.program, why);
                        drop(children);
                        self.scope.log.note(LogLevel::Warn, &message);
                        if !self.scope.denied.contains(&Exec::NAME) {
                            self.scope.denied.push(Exec::NAME);
                        }
                        return Ok(Err(message));
                    }
                    if children.len() >= MAX_RUNNING_COMMANDS {
                        return Ok(Err(format!(
                            "plugin `{}` already has {MAX_RUNNING_COMMANDS} commands running: wait for or kill one first",
                            loaded.plugin
                        )));
                    }
                    let grant = loaded.granted(program).expect("checked");
                    let running = match start(grant, &cmd, &ctx) {
                        Ok(r) => r,
                        Err(e) => return Ok(Err(e)),
                    };
                    self.scope.log.push(
                        LogLevel::Debug,
                        LogSource::Host,
                        &format!("exec `{}` started (key `{}`)", running.shown, cmd.key),
                    );
                    let shared = running.shared.clone();
                    children.insert(id.clone(), running);
                    shared
                }
            }
        };
        // Wait within the call's time, leaving the plugin some to return.
        let remaining = self.scope.guard.remaining();
        let margin = (remaining / 10).clamp(Duration::from_millis(20), Duration::from_secs(1));
        let budget = Duration::from_millis(wait_ms.into()).min(remaining.saturating_sub(margin));
        let mut rx = shared.exited.subscribe();
        self.scope.guard.block_on(async move {
            let _ = tokio::time::timeout(budget, rx.wait_for(|done| *done)).await;
        })?;
        let (exited, killed) = {
            let st = shared.state.lock().unwrap_or_else(|e| e.into_inner());
            (st.exit.clone(), st.killed.clone())
        };
        let Some(exited) = exited else {
            return Ok(Ok(wit::exec::Status::Running(
                shared.started.elapsed().as_millis() as u64,
            )));
        };
        let shown = loaded
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id)
            .map(|r| r.shown)
            .unwrap_or_else(|| cmd.program.clone());
        self.log_exit(&shown, &exited, killed.as_deref());
        Ok(Ok(wit::exec::Status::Exited(exited)))
    }

    fn kill(&mut self, key: String) -> wasmtime::Result<Result<(), String>> {
        self.scope.guard.check()?;
        let Some(loaded) = self.loaded.clone() else {
            return Ok(Err(self.scope.deny(Exec::NAME)));
        };
        let Some(ctx) = self.scope.context.clone() else {
            return Ok(Err(self.scope.deny(Exec::NAME)));
        };
        let removed = loaded
            .children
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(ctx.request.clone(), key.clone()));
        if let Some(r) = removed
            && r.shared.kill("the plugin asked")
        {
            self.scope.log.push(
                LogLevel::Warn,
                LogSource::Host,
                &format!(
                    "exec `{}` (key `{key}`) killed with its process group: the plugin asked",
                    r.shown
                ),
            );
        }
        Ok(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_when_they_need_it() {
        assert_eq!(shell_word("is-active"), "is-active");
        assert_eq!(shell_word("; touch /tmp/x"), "'; touch /tmp/x'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
        assert_eq!(shell_word(""), "''");
    }

    #[test]
    fn granted_programs_are_checked() {
        assert!(check_program(Path::new("bin/sh")).is_err());
        assert!(check_program(Path::new("/usr/bin/../bin/sh")).is_err());
        assert!(check_program(Path::new("/nonexistent/program")).is_err());
        assert!(check_program(Path::new("/tmp")).is_err());
        assert!(check_program(Path::new("/bin/sh")).is_ok());
    }
}
