//! The Duplex core: everything an active upgrade needs except a front end.
//!
//! Dependencies point one way: `model` (pure) ← `policy` ← `work` / `plan`
//! / `journal` / `plugins` ← `engine` ← `app`. The core renders nothing,
//! handles no process signals and reads no environment (`core/clippy.toml`
//! refuses the names); front ends (the `duplex` binary, later the agent)
//! call [`app`] and render the plain data it returns. See ARCHITECTURE.md.

pub mod app;
pub mod artifact;
pub mod cancel;
pub mod clock;
pub mod engine;
pub mod files;
pub mod journal;
pub mod model;
pub mod plan;
pub mod plugins;
pub mod policy;
pub mod rollout;
pub mod work;
