//! The HTTP API of a running duplex. Every process that runs a session
//! (`duplex apply`, `resume`, … and `duplex agent`) serves the command
//! endpoints on the state dir's control socket, so an operator's `duplex
//! abort` in another shell reaches the run that holds the lock; the agent
//! serves the rest of the API on the same router. Handlers translate HTTP
//! to the core's application layer and its plain data back to JSON; they
//! decide nothing themselves.

pub mod client;
pub mod commands;
pub mod error;
pub mod socket;
pub mod tls;

pub use error::ApiError;
