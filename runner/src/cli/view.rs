//! The live views of a run: plain lines (on a terminal, long steps as
//! progress bars drawn by indicatif) or one JSON object per recorded event.
//! Lines are written through `output`, so a closed pipe ends the output and
//! never the run.

use super::output;
use duplex_core::engine::Event;
use duplex_core::engine::sink::{
    EventSink, Notice, ProgressUpdate, Recorded, clock_time, describe, is_pending_poll, newsworthy,
};
use duplex_core::model::Command;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;

/// Plain lines on stdout; on a terminal, a long step's progress is a bar
/// (its pending polls are not printed as lines: the bar says them).
pub struct HumanView {
    bars: Option<Bars>,
}

/// The progress bars on screen, one per step (by its label), above which
/// lines are printed.
struct Bars {
    multi: MultiProgress,
    shown: Vec<(String, ProgressBar)>,
}

impl Bars {
    fn new() -> Bars {
        Bars {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stdout()),
            shown: Vec::new(),
        }
    }

    fn style() -> ProgressStyle {
        ProgressStyle::with_template("          {prefix:<20} [{bar:30}] {pos:>3}% {msg}")
            .expect("the template is valid")
            .progress_chars("#>-")
    }

    fn update(&mut self, p: &ProgressUpdate) {
        let bar = match self.shown.iter().find(|(label, _)| *label == p.label) {
            Some((_, bar)) => bar.clone(),
            None => {
                let bar = self
                    .multi
                    .add(ProgressBar::new(100).with_style(Self::style()));
                bar.set_prefix(output::escape(&p.label).into_owned());
                self.shown.push((p.label.clone(), bar.clone()));
                bar
            }
        };
        bar.set_position(u64::from(p.percent.min(100)));
        // Plugins' words: escaped like every human line.
        bar.set_message(output::escape(&p.message).into_owned());
    }

    /// A step's bar goes once the step is over: its final call was
    /// recorded, or its request ended.
    fn end(&mut self, event: &Event) {
        let ended = |label: &str| match event {
            Event::PluginCall { request, .. } => {
                !is_pending_poll(event) && request.to_string() == label
            }
            Event::Model { command } => !matches!(command, Command::ObservePartner { .. }),
            Event::SessionEnded { .. } | Event::Held { .. } | Event::Interrupted { .. } => true,
            _ => false,
        };
        self.shown.retain(|(label, bar)| {
            let done = ended(label);
            if done {
                bar.finish_and_clear();
            }
            !done
        });
    }

    /// Print a line above the bars.
    fn line(&self, print: impl FnOnce()) {
        self.multi.suspend(print);
    }
}

impl HumanView {
    pub fn new() -> Self {
        HumanView {
            bars: std::io::stdout().is_terminal().then(Bars::new),
        }
    }

    /// Print above the bars, if there are any.
    fn print(&self, print: impl FnOnce()) {
        match &self.bars {
            Some(bars) => bars.line(print),
            None => print(),
        }
    }
}

impl EventSink for HumanView {
    fn record(&mut self, r: &Recorded<'_>) {
        if let Some(bars) = &mut self.bars {
            bars.end(r.event);
        }
        if !newsworthy(r.event) || (self.bars.is_some() && is_pending_poll(r.event)) {
            return;
        }
        let c = &r.session.config;
        let line = format!(
            "{}  {:<12} {:<6}  {}",
            clock_time(r.ts_ms),
            c.state.to_string(),
            c.status().to_string(),
            describe(r.event)
        );
        self.print(|| output::line(&line));
    }

    fn progress(&mut self, p: &ProgressUpdate) {
        // Without a terminal the recorded poll already said it.
        if let Some(bars) = &mut self.bars {
            bars.update(p);
        }
    }

    fn notice(&mut self, notice: &Notice) {
        self.print(|| show_notice(notice));
    }
}

fn show_notice(notice: &Notice) {
    match notice {
        Notice::Opened {
            session,
            resumed,
            policy,
            target,
            at,
        } => output::line(&format!(
            "{} session {session} of policy {policy} on {target} ({at}); times are UTC",
            if *resumed { "Resuming" } else { "Started" }
        )),
        other => render_notice(other),
    }
}

/// One JSON object per recorded event on stdout (`--output json`).
pub struct JsonView;

impl EventSink for JsonView {
    fn record(&mut self, r: &Recorded<'_>) {
        let line = serde_json::json!({
            "seq": r.seq,
            "tsMs": r.ts_ms,
            "state": r.session.config.state,
            "status": r.session.config.status(),
            "event": r.event,
        });
        output::json_line(&line.to_string());
    }

    fn progress(&mut self, _: &ProgressUpdate) {}

    fn notice(&mut self, notice: &Notice) {
        if !matches!(notice, Notice::Opened { .. }) {
            render_notice(notice);
        }
    }
}

/// Notices that go to stderr in either view.
fn render_notice(notice: &Notice) {
    match notice {
        Notice::TornTailCut(torn) => output::eline(&format!("warning: {torn}")),
        Notice::Compiling { plugin } => output::eline(&format!(
            "compiling plugin `{plugin}` (first use with this cache; later runs load it in milliseconds)…"
        )),
        Notice::Stopping { why } => output::eline(&format!(
            "{why}: stopping at the next safe point; the session is kept for `duplex resume` (send it again to stop at once)"
        )),
        Notice::Waiting { what } => output::eline(&format!("{what}…")),
        Notice::Opened { .. } => {}
    }
}
