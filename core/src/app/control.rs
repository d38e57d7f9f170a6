//! Operators' commands to a run in progress. While [`App`](super::App)
//! runs a session, the run's inbox is open here and [`App::deliver`] hands
//! it commands; the engine answers each at its next safe point (it checks
//! and records it exactly as a command taking the lock would). When no run
//! is in progress, a front end gives the command with
//! [`App::operate`](super::App::operate) instead.

use super::{App, AppError};
use crate::engine::operator::{Accepted, CommandSender, Envelope, OperatorRequest};
use std::sync::Mutex;
use tokio::sync::oneshot;

/// The sending end of the run in progress, if any.
#[derive(Default)]
pub(super) struct Control {
    sender: Mutex<Option<CommandSender>>,
}

/// Closes the run's inbox when the run ends, however it ends.
pub(super) struct OpenInbox<'a>(&'a Control);

impl Control {
    pub(super) fn open(&self, sender: CommandSender) -> OpenInbox<'_> {
        *self.sender.lock().unwrap_or_else(|e| e.into_inner()) = Some(sender);
        OpenInbox(self)
    }

    fn sender(&self) -> Option<CommandSender> {
        self.sender
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn running(&self) -> bool {
        self.sender().is_some()
    }
}

impl Drop for OpenInbox<'_> {
    fn drop(&mut self) {
        *self.0.sender.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

impl App {
    /// Give a command to the run in progress and wait for its answer: the
    /// command is recorded when accepted, refused with the model's reason
    /// otherwise. [`AppError::NoRunInProgress`] when no run holds the
    /// session here (or it ended before reading the command): nothing was
    /// written, and [`App::operate`](super::App::operate) is the way.
    pub async fn deliver(&self, request: OperatorRequest) -> Result<Accepted, AppError> {
        let no_run = || AppError::NoRunInProgress {
            state_dir: self.state_dir().to_path_buf(),
        };
        let sender = self.control.sender().ok_or_else(no_run)?;
        let (reply, answer) = oneshot::channel();
        sender
            .send(Envelope { request, reply })
            .await
            .map_err(|_| no_run())?;
        answer
            .await
            .map_err(|_| no_run())?
            .map_err(AppError::Refused)
    }

    /// Whether a run of this App holds the session now.
    pub fn run_in_progress(&self) -> bool {
        self.control.running()
    }
}
