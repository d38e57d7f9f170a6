//! The engine: reconcile a policy through the state model, durably.
//!
//! `session` is what the journal stores and the fold over it; `decide` is
//! the pure choice of the next step.

pub mod decide;
pub mod session;

pub use decide::{Decision, Fired, decide};
pub use session::{Event, FoldError, Outcome, Session};
