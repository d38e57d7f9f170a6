//! `POST /v1/commands/{verb}`: an operator's command to the run in
//! progress. The body is `{"by": "alice", "reason": "..."}` (both
//! optional: `by` defaults to who the connection says it is). The answer
//! is the engine's: accepted (recorded; it takes effect at the run's next
//! safe point) or refused with the model's reason.

use super::ApiError;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::{Json, Router, routing::post};
use duplex_core::app::{Accepted, App, OperatorRequest, OperatorVerb};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Who the transport says the caller is (the socket's peer user, or the
/// API token's holder); the body may name someone more precise.
#[derive(Debug, Clone)]
pub struct Caller(pub String);

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CommandBody {
    pub by: Option<String>,
    pub reason: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CommandAnswer {
    pub accepted: AcceptedView,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedView {
    pub verb: String,
    pub session: String,
    pub at: String,
    pub pid: u32,
}

/// Longest `by` and `reason` accepted: they go into the journal.
const MAX_FIELD: usize = 1024;

/// Whether a run is about to take the session (its plugins loading): a
/// command then waits for it rather than being refused.
pub type Starting = Arc<dyn Fn() -> bool + Send + Sync>;

/// How long a command waits for a run that is starting.
const WAIT_FOR_START: std::time::Duration = std::time::Duration::from_secs(30);

#[derive(Clone)]
struct Commands {
    app: Arc<App>,
    starting: Starting,
}

pub fn router(app: Arc<App>, starting: Starting) -> Router {
    Router::new()
        .route("/v1/commands/{verb}", post(command))
        .with_state(Commands { app, starting })
}

async fn command(
    State(c): State<Commands>,
    Path(verb): Path<String>,
    caller: Option<axum::Extension<Caller>>,
    body: Result<Json<CommandBody>, JsonRejection>,
) -> Result<Json<CommandAnswer>, ApiError> {
    let verb: OperatorVerb = verb.parse().map_err(ApiError::not_found)?;
    let request = request(verb, caller.map(|c| c.0.0), body)?;
    let started = std::time::Instant::now();
    loop {
        match c.app.deliver(request.clone()).await {
            Ok(accepted) => return Ok(Json(answer(accepted))),
            Err(duplex_core::app::AppError::NoRunInProgress { .. })
                if (c.starting)() && started.elapsed() < WAIT_FOR_START =>
            {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            }
            Err(e) => return Err(ApiError::from_app(&e)),
        }
    }
}

/// The request a body describes, refused before anything reaches the run
/// when it is malformed.
pub fn request(
    verb: OperatorVerb,
    caller: Option<String>,
    body: Result<Json<CommandBody>, JsonRejection>,
) -> Result<OperatorRequest, ApiError> {
    let (by, reason) = operator_of(caller, body)?;
    Ok(OperatorRequest { verb, by, reason })
}

/// Who gives a command and why (an empty reason is none), from its body;
/// refused when the body is malformed. The agent's fleet commands read
/// their bodies the same way.
pub fn operator_of(
    caller: Option<String>,
    body: Result<Json<CommandBody>, JsonRejection>,
) -> Result<(String, Option<String>), ApiError> {
    let body = match body {
        Ok(Json(body)) => body,
        // No body at all is an empty one.
        Err(JsonRejection::MissingJsonContentType(_)) => CommandBody::default(),
        Err(e) => {
            return Err(ApiError::bad_request(format!(
                "the request body is not a command: {}",
                e.body_text()
            )));
        }
    };
    for (name, value) in [("by", &body.by), ("reason", &body.reason)] {
        if let Some(v) = value {
            if v.len() > MAX_FIELD {
                return Err(ApiError::bad_request(format!(
                    "`{name}` is {} bytes long; at most {MAX_FIELD} are accepted",
                    v.len()
                )));
            }
            if v.chars().any(char::is_control) {
                return Err(ApiError::bad_request(format!(
                    "`{name}` holds a control character"
                )));
            }
        }
    }
    let by = body
        .by
        .filter(|b| !b.trim().is_empty())
        .or(caller)
        .ok_or_else(|| ApiError::bad_request("`by` is required: who gives this command"))?;
    Ok((
        by.trim().to_string(),
        body.reason.filter(|r| !r.trim().is_empty()),
    ))
}

pub fn answer(accepted: Accepted) -> CommandAnswer {
    CommandAnswer {
        accepted: AcceptedView {
            verb: accepted.verb.to_string(),
            session: accepted.session,
            at: accepted.at,
            pid: std::process::id(),
        },
    }
}
