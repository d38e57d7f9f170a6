//! What the console shows and what a key does to it: the latest status and
//! activity tree from the source, which nodes are open, which is selected,
//! the prompt in progress and the last answer. No terminal here: `render`
//! draws this, `mod.rs` feeds it keys and the source's updates.

use duplex_core::app::activity::{ActivityNode, ActivityTree};
use duplex_core::app::{OperatorCommand, OperatorVerb, SessionStatus, StatusReport};
use duplex_core::engine::sink::ProgressUpdate;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use std::collections::HashSet;

/// Where a node is in the tree: its index at each depth.
pub type NodePath = Vec<usize>;

/// What the source last said.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub status: StatusReport,
    /// The revision of the policy the session runs (a git commit), when
    /// known: from the session's origin, or the agent's desired policy.
    pub revision: Option<String>,
    pub tree: ActivityTree,
}

/// An operator's command being asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Prompt {
    /// `hold` needs a reason: typed here.
    Reason { verb: OperatorVerb, text: String },
    /// `y` sends, `n`/Esc does not; `consequence` is what the core says the
    /// command would do.
    Confirm {
        verb: OperatorVerb,
        reason: Option<String>,
        consequence: String,
    },
}

/// A line the console keeps at the bottom until the next one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub text: String,
    pub refused: bool,
}

/// What the loop must do after a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Intent {
    Nothing,
    Quit,
    Send {
        verb: OperatorVerb,
        reason: Option<String>,
    },
}

/// One row of the tree as shown.
pub struct Row<'a> {
    pub path: NodePath,
    pub node: &'a ActivityNode,
    pub open: bool,
}

pub struct WatchView {
    /// Where the data comes from (`state dir …`, `agent …`).
    pub source: String,
    pub snapshot: Option<Snapshot>,
    /// Why the source could not be read last time.
    pub source_error: Option<String>,
    pub progress: Option<ProgressUpdate>,
    /// Nodes opened or closed by hand, against the default (states open,
    /// everything below them closed).
    toggled: HashSet<NodePath>,
    /// The selected node; `None` follows the newest row.
    selected: Option<NodePath>,
    pub prompt: Option<Prompt>,
    pub message: Option<Message>,
    /// A command is on its way (or a run started for it is going on).
    pub sending: Option<String>,
}

impl WatchView {
    pub fn new(source: String) -> WatchView {
        WatchView {
            source,
            snapshot: None,
            source_error: None,
            progress: None,
            toggled: HashSet::new(),
            selected: None,
            prompt: None,
            message: None,
            sending: None,
        }
    }

    pub fn session(&self) -> Option<&SessionStatus> {
        self.snapshot.as_ref()?.status.session.as_ref()
    }

    /// The commands this console can give now (a resume is not one: it
    /// runs a session, which the console leaves to `duplex resume`).
    pub fn possible_now(&self) -> Vec<&'static str> {
        self.session()
            .map(|s| {
                s.next
                    .iter()
                    .filter(|c| **c != OperatorCommand::Resume)
                    .map(|c| c.name())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Take the source's latest; a new session starts with a fresh tree
    /// view.
    pub fn update(&mut self, snapshot: Snapshot) {
        let id = |s: &Snapshot| s.status.session.as_ref().map(|s| s.id.clone());
        if self.snapshot.as_ref().map(id) != Some(id(&snapshot)) {
            self.toggled.clear();
            self.selected = None;
            self.progress = None;
        }
        // A progress bar belongs to the request in hand: gone with it.
        if snapshot
            .status
            .session
            .as_ref()
            .is_none_or(|s| s.request.is_none())
        {
            self.progress = None;
        }
        self.snapshot = Some(snapshot);
        self.source_error = None;
    }

    fn is_open(&self, path: &NodePath, node: &ActivityNode) -> bool {
        let default = path.len() == 1 && node.kind == "state";
        default != self.toggled.contains(path)
    }

    /// The rows shown: every node whose parents are all open.
    pub fn rows(&self) -> Vec<Row<'_>> {
        let mut rows = Vec::new();
        if let Some(s) = &self.snapshot {
            self.walk(&s.tree.nodes, &mut Vec::new(), &mut rows);
        }
        rows
    }

    fn walk<'a>(&self, nodes: &'a [ActivityNode], path: &mut NodePath, rows: &mut Vec<Row<'a>>) {
        for (i, node) in nodes.iter().enumerate() {
            path.push(i);
            let open = self.is_open(path, node);
            rows.push(Row {
                path: path.clone(),
                node,
                open,
            });
            if open {
                self.walk(&node.children, path, rows);
            }
            path.pop();
        }
    }

    /// The index of the selected row among `rows`.
    pub fn selected_row(&self, rows: &[Row<'_>]) -> Option<usize> {
        if rows.is_empty() {
            return None;
        }
        match &self.selected {
            None => Some(rows.len() - 1),
            // A node hidden under a closed parent: its nearest shown parent.
            Some(path) => (0..=path.len()).rev().find_map(|depth| {
                rows.iter()
                    .position(|r| r.path.as_slice() == &path[..depth])
            }),
        }
    }

    pub fn selected_node(&self) -> Option<&ActivityNode> {
        let rows = self.rows();
        let i = self.selected_row(&rows)?;
        Some(rows[i].node)
    }

    /// Select row `i` of `rows`; the last row selected follows the tree as
    /// it grows.
    fn selection_at(rows: &[Row<'_>], i: usize) -> Option<NodePath> {
        (i + 1 < rows.len()).then(|| rows[i].path.clone())
    }

    fn move_by(&mut self, delta: isize) {
        let rows = self.rows();
        let Some(current) = self.selected_row(&rows) else {
            return;
        };
        let i = current.saturating_add_signed(delta).min(rows.len() - 1);
        self.selected = Self::selection_at(&rows, i);
    }

    fn set_open(&mut self, open: bool) {
        let rows = self.rows();
        let Some(i) = self.selected_row(&rows) else {
            return;
        };
        let row = &rows[i];
        if row.node.children.is_empty() {
            // Left on a leaf goes to its parent.
            if !open && row.path.len() > 1 {
                let parent = row.path[..row.path.len() - 1].to_vec();
                self.selected = Some(parent);
            }
            return;
        }
        if row.open != open {
            let path = row.path.clone();
            let was_last = i + 1 == rows.len();
            if !self.toggled.remove(&path) {
                self.toggled.insert(path.clone());
            }
            // Keep the node selected, not whatever row becomes the last.
            if was_last || self.selected.is_none() {
                let rows = self.rows();
                if let Some(j) = rows.iter().position(|r| r.path == path) {
                    self.selected = Self::selection_at(&rows, j);
                }
            }
        } else if !open && row.path.len() > 1 {
            self.selected = Some(row.path[..row.path.len() - 1].to_vec());
        }
    }

    fn toggle(&mut self) {
        let open = {
            let rows = self.rows();
            self.selected_row(&rows).is_some_and(|i| rows[i].open)
        };
        self.set_open(!open);
    }

    /// What a key does.
    pub fn key(&mut self, key: KeyEvent) -> Intent {
        if key.modifiers.contains(KeyModifiers::CONTROL) && key.code == KeyCode::Char('c') {
            return Intent::Quit;
        }
        if let Some(prompt) = self.prompt.take() {
            return self.prompt_key(prompt, key);
        }
        match key.code {
            KeyCode::Char('q') | KeyCode::Esc => return Intent::Quit,
            KeyCode::Up | KeyCode::Char('k') => self.move_by(-1),
            KeyCode::Down | KeyCode::Char('j') => self.move_by(1),
            KeyCode::PageUp => self.move_by(-10),
            KeyCode::PageDown => self.move_by(10),
            KeyCode::Home => self.move_by(isize::MIN / 2),
            KeyCode::End => self.selected = None,
            KeyCode::Left => self.set_open(false),
            KeyCode::Right => self.set_open(true),
            KeyCode::Enter | KeyCode::Char(' ') => self.toggle(),
            KeyCode::Char(c) => {
                if let Some(verb) = verb_of_key(c) {
                    self.ask(verb);
                }
            }
            _ => {}
        }
        Intent::Nothing
    }

    /// A command key: refused here when the session does not allow it now,
    /// else the reason (for a hold) or the confirmation.
    fn ask(&mut self, verb: OperatorVerb) {
        if let Some(what) = &self.sending {
            self.message = Some(Message {
                text: format!("wait: {what}"),
                refused: true,
            });
            return;
        }
        let command = OperatorCommand::of(verb);
        let Some(session) = self.session() else {
            self.message = Some(Message {
                text: format!("{verb}: there is no session"),
                refused: true,
            });
            return;
        };
        if !session.next.contains(&command) {
            let next = self.possible_now();
            let allowed = if next.is_empty() {
                "nothing can be done now".to_string()
            } else {
                format!("possible now: {}", next.join(", "))
            };
            self.message = Some(Message {
                text: format!(
                    "{verb} is not possible now (the session is in {}); {allowed}",
                    session.session.config.state
                ),
                refused: true,
            });
            return;
        }
        self.prompt = Some(if verb == OperatorVerb::Hold {
            Prompt::Reason {
                verb,
                text: String::new(),
            }
        } else {
            self.confirmation(verb, None)
        });
    }

    fn confirmation(&self, verb: OperatorVerb, reason: Option<String>) -> Prompt {
        let command = OperatorCommand::of(verb);
        let consequence = self
            .session()
            .and_then(|s| s.consequences.iter().find(|c| c.command == command))
            .map(|c| c.text.clone())
            .unwrap_or_default();
        Prompt::Confirm {
            verb,
            reason,
            consequence,
        }
    }

    fn prompt_key(&mut self, prompt: Prompt, key: KeyEvent) -> Intent {
        match prompt {
            Prompt::Reason { verb, mut text } => match key.code {
                KeyCode::Esc => {}
                KeyCode::Enter if !text.trim().is_empty() => {
                    self.prompt = Some(self.confirmation(verb, Some(text.trim().to_string())));
                }
                KeyCode::Backspace => {
                    text.pop();
                    self.prompt = Some(Prompt::Reason { verb, text });
                }
                KeyCode::Char(c) if !c.is_control() && text.len() < 512 => {
                    text.push(c);
                    self.prompt = Some(Prompt::Reason { verb, text });
                }
                _ => self.prompt = Some(Prompt::Reason { verb, text }),
            },
            Prompt::Confirm { verb, reason, .. }
                if matches!(key.code, KeyCode::Char('y') | KeyCode::Char('Y')) =>
            {
                return Intent::Send { verb, reason };
            }
            Prompt::Confirm { .. }
                if matches!(
                    key.code,
                    KeyCode::Char('n') | KeyCode::Char('N') | KeyCode::Esc
                ) => {}
            confirm @ Prompt::Confirm { .. } => self.prompt = Some(confirm),
        }
        Intent::Nothing
    }
}

/// The command keys: `a`pprove, `r`etry, `x` abort, `h`old, re`l`ease.
pub fn verb_of_key(c: char) -> Option<OperatorVerb> {
    Some(match c {
        'a' => OperatorVerb::Approve,
        'r' => OperatorVerb::Retry,
        'x' => OperatorVerb::Abort,
        'h' => OperatorVerb::Hold,
        'l' => OperatorVerb::Release,
        _ => return None,
    })
}
