//! `duplex watch`: the terminal console. It shows what the web console
//! shows, live: the three axes of the session (upgrade state, operational
//! status, partner), the request in hand, the policy, what the session
//! waits for, and its activity as a tree; and it gives operators' commands
//! after a confirmation that says what they will do.
//!
//! `model` is the view's state and what keys do to it, `render` draws it,
//! `source` reads a state dir or an agent, `terminal` takes the terminal
//! and gives it back on every way out. This file is the loop that ties
//! them: keys, the source's news, signals and a tick.

mod model;
mod render;
mod source;
mod terminal;
#[cfg(test)]
mod tests;

use crate::cli::{Output, errors, exit, output};
use duplex_core::app::{App, OperatorRequest, OperatorVerb};
use duplex_core::cancel::Cancel;
use duplex_core::engine::sink::{EventSink, Notice, ProgressUpdate, Recorded};
use model::{Intent, Message, WatchView};
use ratatui::crossterm::event::{self as term_event, KeyEventKind};
use source::{AgentSource, Live, LocalSource};
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc::{UnboundedSender, unbounded_channel};

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Watch an agent through its API (e.g. http://127.0.0.1:7780) instead of a state dir.
    #[arg(long, value_name = "URL")]
    pub agent: Option<String>,
    /// The agent's token file: commands need it (reads do not).
    #[arg(long, value_name = "PATH", requires = "agent")]
    pub token_file: Option<PathBuf>,
}

/// How often the state dir is read again (its journal followed) and the
/// agent asked again when its stream is quiet.
const LOCAL_TICK: Duration = Duration::from_millis(250);
const AGENT_TICK: Duration = Duration::from_secs(2);

enum Source {
    // Boxed: a journal follower is large, and there is one source.
    Local(Box<LocalSource>),
    Agent(AgentSource),
}

/// What wakes the loop.
enum Input {
    Key(term_event::KeyEvent),
    Resize,
    /// The session moved on (a record, a notice): read again.
    Changed,
    Progress(ProgressUpdate),
    /// A command's answer.
    Answer(Message),
    /// Nobody ran the session: this console runs it for the command.
    RunStarted(OperatorVerb),
    /// The run this console started for a command has stopped.
    RunStopped(Message),
    Quit,
    /// SIGTERM, SIGHUP or SIGINT.
    Signalled,
}

pub fn run(args: Args, state_dir: Option<PathBuf>) -> u8 {
    let source = match (&args.agent, state_dir) {
        (Some(_), Some(_)) => {
            output::eline(
                "error: --agent and --state-dir name two sources for `duplex watch`; give one",
            );
            return exit::USAGE;
        }
        (Some(url), None) => {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                output::eline(&format!(
                    "error: --agent `{url}` is not an http:// or https:// URL"
                ));
                return exit::USAGE;
            }
            let token = match &args.token_file {
                Some(path) => match std::fs::read_to_string(path) {
                    Ok(t) => t.trim().to_string(),
                    Err(e) => {
                        output::eline(&format!(
                            "error: cannot read the token file {}: {e}",
                            path.display()
                        ));
                        return exit::USAGE;
                    }
                },
                None => String::new(),
            };
            Source::Agent(AgentSource::new(url, token))
        }
        (None, state_dir) => match crate::cli::app(state_dir) {
            Ok(app) => Source::Local(Box::new(LocalSource::new(Arc::new(app)))),
            Err(message) => return errors::fail(Output::Human, &message),
        },
    };
    if !std::io::stdout().is_terminal() {
        output::eline(
            "error: `duplex watch` needs a terminal; `duplex status` and `duplex log --follow` work without one",
        );
        return exit::USAGE;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return errors::fail(Output::Human, &format!("cannot start the runtime: {e}")),
    };
    let label = match &source {
        Source::Local(s) => format!("state dir {}", s.app.state_dir().display()),
        Source::Agent(a) => format!("agent {}", a.base),
    };
    let mut screen = match terminal::enter() {
        Ok(screen) => screen,
        Err(e) => {
            return errors::fail(Output::Human, &format!("cannot take the terminal: {e}"));
        }
    };
    let ended = runtime.block_on(watch(&mut screen, source, WatchView::new(label)));
    drop(screen);
    let code = match ended {
        Ok(ended) => {
            if let Some((run, cancel)) = ended.own_run {
                // A run this console started for a command: stop it at its
                // next safe point, as a SIGINT would stop `duplex approve`.
                output::eline(
                    "the run this console started is stopping at its next safe point; `duplex resume` carries it on",
                );
                cancel.cancel("the console was closed");
                let _ = runtime.block_on(run);
            }
            if ended.signalled {
                exit::INTERRUPTED
            } else {
                exit::OK
            }
        }
        Err(e) => errors::fail(Output::Human, &e),
    };
    runtime.shutdown_background();
    code
}

/// A run started here and how to stop it.
type OwnRun = (tokio::task::JoinHandle<()>, Cancel);

async fn watch(
    screen: &mut terminal::Screen,
    mut source: Source,
    mut view: WatchView,
) -> Result<Ended, String> {
    let (tx, mut rx) = unbounded_channel::<Input>();
    read_keys(tx.clone());
    watch_signals(tx.clone());
    if let Source::Agent(agent) = &source {
        let agent = agent.clone();
        let tx = tx.clone();
        std::thread::spawn(move || {
            agent.stream(|live| {
                tx.send(match live {
                    Live::Changed => Input::Changed,
                    Live::Progress(p) => Input::Progress(p),
                })
                .is_ok()
            })
        });
    }
    let mut tick = tokio::time::interval(match source {
        Source::Local(_) => LOCAL_TICK,
        Source::Agent(_) => AGENT_TICK,
    });
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The command in progress for a state dir, and whether it became a
    // run of this process.
    let mut command: Option<OwnRun> = None;
    let mut running_here = false;
    let mut signalled = false;
    loop {
        screen
            .terminal
            .draw(|frame| render::draw(frame, &view))
            .map_err(|e| format!("cannot draw: {e}"))?;
        let input = tokio::select! {
            input = rx.recv() => input,
            _ = tick.tick() => Some(Input::Changed),
        };
        match input {
            None | Some(Input::Quit) => break,
            Some(Input::Signalled) => {
                signalled = true;
                break;
            }
            Some(Input::Resize) => {}
            Some(Input::Changed) => refresh(&mut source, &mut view).await,
            Some(Input::Progress(p)) => view.progress = Some(p),
            Some(Input::Answer(m)) => {
                view.sending = None;
                view.message = Some(m);
                refresh(&mut source, &mut view).await;
            }
            Some(Input::RunStarted(verb)) => {
                view.sending = Some(format!(
                    "{verb}: nobody ran the session, so this console runs it until it stops (q stops it at a safe point)"
                ));
                running_here = true;
            }
            Some(Input::RunStopped(m)) => {
                view.sending = None;
                view.message = Some(m);
                running_here = false;
                refresh(&mut source, &mut view).await;
            }
            Some(Input::Key(key)) => match view.key(key) {
                Intent::Nothing => {}
                Intent::Quit => break,
                Intent::Send { verb, reason } => {
                    view.sending = Some(format!("sending {verb}"));
                    command = send(&source, verb, reason, tx.clone());
                }
            },
        }
    }
    let own_run = match command {
        Some(run) if running_here => Some(run),
        Some((task, _)) => {
            task.abort();
            None
        }
        None => None,
    };
    Ok(Ended { own_run, signalled })
}

/// How the console ended.
struct Ended {
    /// A run this console started that is still going.
    own_run: Option<OwnRun>,
    /// Stopped by a signal rather than a key.
    signalled: bool,
}

async fn refresh(source: &mut Source, view: &mut WatchView) {
    let read = match source {
        Source::Local(local) => local.read(),
        Source::Agent(agent) => {
            let agent = agent.clone();
            tokio::task::spawn_blocking(move || agent.read())
                .await
                .unwrap_or_else(|e| Err(e.to_string()))
        }
    };
    match read {
        Ok(snapshot) => view.update(snapshot),
        Err(e) => view.source_error = Some(e),
    }
}

/// Keys from the terminal, on a thread of their own (reading blocks).
fn read_keys(tx: UnboundedSender<Input>) {
    std::thread::spawn(move || {
        loop {
            let input = match term_event::read() {
                Ok(term_event::Event::Key(k)) if k.kind != KeyEventKind::Release => Input::Key(k),
                Ok(term_event::Event::Resize(..)) => Input::Resize,
                Ok(_) => continue,
                Err(_) => Input::Quit,
            };
            if tx.send(input).is_err() {
                return;
            }
        }
    });
}

/// SIGTERM, SIGHUP and SIGINT end the loop as `q` does, so the terminal
/// is given back (raw mode turns Ctrl-C into a key; a SIGINT comes from
/// `kill`).
fn watch_signals(tx: UnboundedSender<Input>) {
    use tokio::signal::unix::{SignalKind, signal};
    for kind in [
        SignalKind::terminate(),
        SignalKind::hangup(),
        SignalKind::interrupt(),
    ] {
        let Ok(mut signals) = signal(kind) else {
            continue;
        };
        let tx = tx.clone();
        tokio::spawn(async move {
            if signals.recv().await.is_some() {
                let _ = tx.send(Input::Signalled);
            }
        });
    }
}

/// Give a command: to the agent, or as the CLI's verbs do for a state dir
/// (the run in progress through the control socket, else this process
/// takes the lock and runs the session on until it stops: returned, so
/// quitting can stop it).
fn send(
    source: &Source,
    verb: OperatorVerb,
    reason: Option<String>,
    tx: UnboundedSender<Input>,
) -> Option<OwnRun> {
    let by = crate::cli::operator::current().0;
    match source {
        Source::Agent(agent) => {
            let agent = agent.clone();
            tokio::task::spawn_blocking(move || {
                let answer = agent.send(verb, &by, reason.as_deref());
                let _ = tx.send(Input::Answer(answer_message(answer)));
            });
            None
        }
        Source::Local(local) => {
            let request = OperatorRequest { verb, by, reason };
            let app = local.app.clone();
            // The runner is asked first; only with nobody running does a
            // run start here.
            let cancel = Cancel::new();
            let run_cancel = cancel.clone();
            let handle = tokio::spawn(async move {
                match crate::cli::run::send_to_runner(&app, &request).await {
                    Ok(Some(accepted)) => {
                        let _ = tx.send(Input::Answer(answer_message(Ok(accepted.message))));
                    }
                    Err(refused) => {
                        let _ = tx.send(Input::Answer(answer_message(Err(refused))));
                    }
                    Ok(None) => {
                        let _ = tx.send(Input::RunStarted(request.verb));
                        own_run(app, request, run_cancel, tx).await
                    }
                }
            });
            Some((handle, cancel))
        }
    }
}

/// Run the session on for a command nobody running it could take, the
/// way `duplex approve` does, its events shown by this console.
async fn own_run(
    app: Arc<App>,
    request: OperatorRequest,
    cancel: Cancel,
    tx: UnboundedSender<Input>,
) {
    let sink = Box::new(ConsoleSink(tx.clone()));
    let warn_tx = tx.clone();
    let result = crate::cli::run::run_job(
        &app,
        crate::cli::run::Job::Operate(request),
        sink,
        cancel,
        move |w| {
            let _ = warn_tx.send(Input::Answer(Message {
                text: w,
                refused: true,
            }));
        },
    )
    .await;
    let message = match result {
        Ok(report) => {
            let operator = crate::cli::operator::current();
            let (_, _, text) = crate::cli::run::stop_message(&app, &report, &operator);
            Message {
                text,
                refused: false,
            }
        }
        Err(e) => Message {
            text: errors::message(&e),
            refused: true,
        },
    };
    let _ = tx.send(Input::RunStopped(message));
}

fn answer_message(answer: Result<String, String>) -> Message {
    match answer {
        Ok(text) => Message {
            text,
            refused: false,
        },
        Err(text) => Message {
            text: format!("refused: {text}"),
            refused: true,
        },
    }
}

/// The events of a run this console started: records wake the loop (the
/// journal, followed, is what it shows), progress is drawn.
struct ConsoleSink(UnboundedSender<Input>);

impl EventSink for ConsoleSink {
    fn record(&mut self, _: &Recorded<'_>) {
        let _ = self.0.send(Input::Changed);
    }
    fn progress(&mut self, p: &ProgressUpdate) {
        let _ = self.0.send(Input::Progress(p.clone()));
    }
    fn notice(&mut self, _: &Notice) {}
}
