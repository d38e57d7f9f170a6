//! Drawing a [`WatchView`]: the status bar (the three axes, colour-coded),
//! the activity tree beside the selected node's detail, the progress of a
//! long step, and the bottom lines (keys, prompt, the last answer). Every
//! piece of text from a session goes through `output::escape`: plugins'
//! words never reach the terminal as control characters.

use super::model::{Prompt, Row, WatchView};
use crate::cli::output::escape;
use duplex_core::app::activity::{ActivityNode, NodeOutcome};
use duplex_core::app::{OperatorCommand, SessionStatus};
use duplex_core::engine::Outcome;
use duplex_core::engine::sink::clock_time;
use duplex_core::model::{OpStatus, PartnerState, UpgradeState};
use duplex_core::policy::HumanDuration;
use ratatui::Frame;
use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Borders, Clear, List, ListItem, ListState, Paragraph, Wrap};
use std::time::Duration;

pub fn draw(frame: &mut Frame<'_>, view: &WatchView) {
    let [status, body, progress, footer] = Layout::vertical([
        Constraint::Length(6),
        Constraint::Min(5),
        Constraint::Length(u16::from(view.progress.is_some())),
        Constraint::Length(3),
    ])
    .areas(frame.area());
    draw_status(frame, status, view);
    let [tree, detail] =
        Layout::horizontal([Constraint::Percentage(58), Constraint::Percentage(42)]).areas(body);
    draw_tree(frame, tree, view);
    draw_detail(frame, detail, view);
    if let Some(p) = &view.progress {
        frame.render_widget(Paragraph::new(progress_line(p, progress.width)), progress);
    }
    draw_footer(frame, footer, view);
    if let Some(Prompt::Confirm {
        verb,
        reason,
        consequence,
    }) = &view.prompt
    {
        draw_confirmation(frame, &verb.to_string(), reason.as_deref(), consequence);
    }
}

fn bold(text: impl Into<String>) -> Span<'static> {
    Span::styled(text.into(), Style::new().add_modifier(Modifier::BOLD))
}

fn coloured(text: impl Into<String>, colour: Color) -> Span<'static> {
    Span::styled(
        text.into(),
        Style::new().fg(colour).add_modifier(Modifier::BOLD),
    )
}

fn state_colour(state: UpgradeState) -> Color {
    match state {
        UpgradeState::Abort => Color::Red,
        UpgradeState::Commit | UpgradeState::Finish => Color::Green,
        UpgradeState::Idle => Color::Gray,
        _ => Color::Cyan,
    }
}

fn status_colour(status: OpStatus) -> Color {
    match status {
        OpStatus::Ready => Color::Green,
        OpStatus::Busy => Color::Yellow,
        OpStatus::Broken => Color::Red,
    }
}

fn partner_colour(partner: PartnerState) -> Color {
    match partner {
        PartnerState::Up => Color::Green,
        PartnerState::Hung | PartnerState::Crashed => Color::Red,
        PartnerState::Unknown | PartnerState::Off | PartnerState::Booting => Color::Yellow,
    }
}

fn short_digest(digest: &str) -> String {
    format!("{}…", &digest[..digest.len().min(12)])
}

fn draw_status(frame: &mut Frame<'_>, area: Rect, view: &WatchView) {
    let block = Block::new()
        .borders(Borders::ALL)
        .title(format!(" duplex watch: {} ", escape(&view.source)));
    let lines = match (&view.source_error, view.session()) {
        (Some(error), _) => vec![Line::from(coloured(
            format!("cannot read the source: {}", escape(error)),
            Color::Red,
        ))],
        (None, Some(s)) => session_lines(view, s),
        (None, None) if view.snapshot.is_none() => vec![Line::from("reading…")],
        (None, None) => vec![Line::from(
            "No session yet: `duplex apply POLICY` starts one; this view follows it.",
        )],
    };
    frame.render_widget(Paragraph::new(lines).block(block), area);
}

fn session_lines(view: &WatchView, s: &SessionStatus) -> Vec<Line<'static>> {
    let summary = &s.session;
    let c = &summary.config;
    let mut axes = vec![
        Span::raw("State "),
        coloured(c.state.name(), state_colour(c.state)),
        Span::raw("   Status "),
        coloured(c.status().to_string(), status_colour(c.status())),
        Span::raw("   Partner "),
        coloured(c.partner.to_string(), partner_colour(c.partner)),
    ];
    match &s.request {
        Some(request) => axes.push(Span::raw(format!(
            "   Request {} (attempt {})",
            escape(&request.to_string()),
            c.attempt.max(1)
        ))),
        None => axes.push(Span::raw("   No request in hand")),
    }
    let revision = view
        .snapshot
        .as_ref()
        .and_then(|snap| snap.revision.clone())
        .map(|r| format!("   revision {}", escape(&r)))
        .unwrap_or_default();
    let runner = match view
        .snapshot
        .as_ref()
        .and_then(|s| s.status.runner.as_ref())
    {
        Some(r) => format!("   run by pid {}", r.pid),
        None => String::new(),
    };
    let mut situation: Vec<Span<'static>> = Vec::new();
    if let Some(outcome) = summary.ended {
        situation.push(match outcome {
            Outcome::Committed => coloured("COMMITTED and finished", Color::Green),
            Outcome::Aborted => coloured(
                match summary.aborted_from {
                    Some(from) => format!("ABORTED from {from} and finished"),
                    None => "ABORTED and finished".into(),
                },
                Color::Red,
            ),
        });
    } else if let Some(reason) = &summary.held {
        situation.push(coloured(
            format!("HELD: {}", escape(reason)),
            Color::Magenta,
        ));
    } else if let Some(w) = &s.waiting_for {
        let who = if w.approvers.is_empty() {
            String::new()
        } else {
            format!(" (approvers: {})", escape(&w.approvers.join(", ")))
        };
        situation.push(coloured(
            format!("WAITING for approval before {:?}{who}", w.point),
            Color::Magenta,
        ));
    } else if let Some(failure) = c.failure() {
        situation.push(coloured(
            format!("BROKEN: {}", escape(&failure.reason)),
            Color::Red,
        ));
    } else {
        situation.push(Span::raw("Running on its own"));
    }
    let next = view.possible_now();
    if !next.is_empty() {
        situation.push(Span::raw(format!("   possible now: {}", next.join(", "))));
    }
    vec![
        Line::from(vec![
            Span::raw("Session "),
            bold(s.id.to_string()),
            Span::raw(format!(
                "   {} on {}",
                escape(&summary.policy),
                escape(&summary.target)
            )),
        ]),
        Line::from(axes),
        // The file last: an agent's is a long checkout path, and a line
        // too wide for the terminal is cut at its end.
        Line::from(format!(
            "Policy {}   sha256 {}{revision}{runner}   file {}",
            escape(&summary.policy),
            short_digest(&summary.policy_digest),
            escape(&summary.policy_file),
        )),
        Line::from(situation),
    ]
}

fn outcome_mark(outcome: NodeOutcome) -> (&'static str, Color) {
    match outcome {
        NodeOutcome::Running => ("…", Color::Yellow),
        NodeOutcome::Ok => ("✓", Color::Green),
        NodeOutcome::Failed => ("✗", Color::Red),
        NodeOutcome::Person => ("●", Color::Magenta),
        NodeOutcome::Info => ("·", Color::Gray),
    }
}

fn duration_text(ms: u64) -> String {
    HumanDuration::from(Duration::from_millis(ms)).to_string()
}

fn tree_item(row: &Row<'_>) -> ListItem<'static> {
    let node = row.node;
    let fold = match (node.children.is_empty(), row.open) {
        (true, _) => " ",
        (false, true) => "▾",
        (false, false) => "▸",
    };
    let (mark, colour) = outcome_mark(node.outcome);
    let mut spans = vec![
        Span::raw(format!("{}{fold} ", "  ".repeat(row.path.len() - 1))),
        Span::styled(mark, Style::new().fg(colour)),
        Span::raw(" "),
    ];
    let title = escape(&node.title).into_owned();
    spans.push(if node.kind == "state" {
        bold(title)
    } else {
        Span::raw(title)
    });
    if let Some(ms) = node.duration_ms {
        spans.push(Span::styled(
            format!("  {}", duration_text(ms)),
            Style::new().fg(Color::DarkGray),
        ));
    }
    ListItem::new(Line::from(spans))
}

fn draw_tree(frame: &mut Frame<'_>, area: Rect, view: &WatchView) {
    let rows = view.rows();
    let items: Vec<ListItem<'static>> = rows.iter().map(tree_item).collect();
    let mut state = ListState::default().with_selected(view.selected_row(&rows));
    let list = List::new(items)
        .block(Block::new().borders(Borders::ALL).title(" Activity "))
        .highlight_symbol("› ")
        .highlight_style(Style::new().add_modifier(Modifier::REVERSED));
    frame.render_stateful_widget(list, area, &mut state);
}

fn detail_lines(node: &ActivityNode) -> Vec<Line<'static>> {
    let (mark, colour) = outcome_mark(node.outcome);
    let mut lines = vec![
        Line::from(vec![
            Span::styled(mark, Style::new().fg(colour)),
            Span::raw(" "),
            bold(escape(&node.title).into_owned()),
        ]),
        Line::from(format!(
            "{} at {} (record {})",
            node.kind,
            clock_time(node.ts_ms),
            node.seq
        )),
    ];
    if let Some(ms) = node.duration_ms {
        lines.push(Line::from(format!("took {}", duration_text(ms))));
    }
    if let Some(by) = &node.by {
        lines.push(Line::from(format!("by {}", escape(by))));
    }
    if !node.children.is_empty() {
        lines.push(Line::from(format!("{} below", node.children.len())));
    }
    if let Some(event) = &node.detail {
        lines.push(Line::from(""));
        let json = serde_json::to_string_pretty(event).unwrap_or_default();
        lines.extend(json.lines().map(|l| Line::from(escape(l).into_owned())));
    }
    lines
}

fn draw_detail(frame: &mut Frame<'_>, area: Rect, view: &WatchView) {
    let lines = view.selected_node().map(detail_lines).unwrap_or_default();
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .block(Block::new().borders(Borders::ALL).title(" Detail ")),
        area,
    );
}

fn progress_line(p: &duplex_core::engine::sink::ProgressUpdate, width: u16) -> Line<'static> {
    let bar = 30usize;
    let filled = usize::from(p.percent.min(100)) * bar / 100;
    let text = format!(
        " {} [{}{}] {:>3}% {}",
        escape(&p.label),
        "#".repeat(filled),
        "-".repeat(bar - filled),
        p.percent.min(100),
        escape(&p.message)
    );
    Line::from(text.chars().take(usize::from(width)).collect::<String>())
}

/// The keys, those the session does not allow now dimmed.
fn keys_line(view: &WatchView) -> Line<'static> {
    let allowed = |c: OperatorCommand| view.session().is_some_and(|s| s.next.contains(&c));
    let mut spans = vec![Span::raw(" ↑↓ select  ←→/Enter fold ")];
    for (key, command) in [
        ("a", OperatorCommand::Approve),
        ("r", OperatorCommand::Retry),
        ("x", OperatorCommand::Abort),
        ("h", OperatorCommand::Hold),
        ("l", OperatorCommand::Release),
    ] {
        let style = if allowed(command) {
            Style::new().add_modifier(Modifier::BOLD)
        } else {
            Style::new().fg(Color::DarkGray)
        };
        spans.push(Span::styled(format!(" {key} {}", command.name()), style));
    }
    spans.push(Span::raw("   q quit"));
    Line::from(spans)
}

fn draw_footer(frame: &mut Frame<'_>, area: Rect, view: &WatchView) {
    let first = match (&view.prompt, &view.sending, &view.message) {
        (Some(Prompt::Reason { verb, text }), _, _) => Line::from(vec![
            bold(format!(" {verb}: why? ")),
            Span::raw(format!("{}█", escape(text))),
            Span::styled(
                "   (Enter to go on, Esc to cancel)",
                Style::new().fg(Color::DarkGray),
            ),
        ]),
        (_, Some(what), _) => Line::from(coloured(format!(" {}…", escape(what)), Color::Yellow)),
        (_, None, Some(m)) => Line::from(coloured(
            format!(" {}", escape(&m.text)),
            if m.refused { Color::Red } else { Color::Green },
        )),
        _ => Line::from(""),
    };
    frame.render_widget(
        Paragraph::new(vec![first, keys_line(view)]).wrap(Wrap { trim: false }),
        area,
    );
}

fn draw_confirmation(frame: &mut Frame<'_>, verb: &str, reason: Option<&str>, consequence: &str) {
    let area = frame.area();
    let width = area.width.saturating_sub(8).min(80);
    let popup = Rect {
        x: area.x + (area.width - width) / 2,
        y: area.y + area.height / 3,
        width,
        height: 8.min(area.height),
    };
    let mut lines = vec![Line::from(escape(consequence).into_owned())];
    if let Some(reason) = reason {
        lines.push(Line::from(format!("Reason: {}", escape(reason))));
    }
    lines.push(Line::from(""));
    lines.push(Line::from(vec![
        bold(format!("{verb}? ")),
        Span::raw("y: yes, send it   n: no"),
    ]));
    frame.render_widget(Clear, popup);
    frame.render_widget(
        Paragraph::new(lines).wrap(Wrap { trim: false }).block(
            Block::new()
                .borders(Borders::ALL)
                .title(format!(" Confirm: {verb} ")),
        ),
        popup,
    );
}
