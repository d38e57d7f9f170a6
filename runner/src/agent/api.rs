//! The agent's HTTP API, on the state dir's control socket (same user
//! only) and, with `--listen`, on TCP where every write needs the bearer
//! token. Reads: status (with desired and achieved), sessions, a session's
//! log and its activity tree, the plan of the desired policy, the live stream (server-sent
//! events), `/metrics`, and the web console at `/` (`console.rs`). Writes:
//! the operator's commands, a fetch now. In a fleet (`--fleet`), the
//! fleet's hosts and rollouts and the operator's commands on them
//! (`fleet_api.rs`).

use super::metrics::CONTENT_TYPE;
use super::reconcile::Agent;
use crate::api::ApiError;
use crate::api::commands::Caller;
use axum::extract::{Path, Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use duplex_core::journal::SessionId;
use std::sync::Arc;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::BroadcastStream;

pub fn router(agent: Arc<Agent>) -> Router {
    let starting = {
        let agent = agent.clone();
        Arc::new(move || {
            agent
                .view
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .running
                .is_some()
        })
    };
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/sessions", get(sessions))
        .route("/v1/sessions/{id}/log", get(session_log))
        .route("/v1/sessions/{id}/activity", get(session_activity))
        .route("/v1/plan", get(plan))
        .route("/v1/events", get(live))
        .route("/v1/source/fetch", post(fetch))
        .route("/metrics", get(metrics))
        .with_state(agent.clone())
        .merge(crate::api::commands::router(agent.app.clone(), starting))
        .merge(super::fleet_api::router(agent.clone()))
        .merge(super::console::router())
        .fallback(|| async { ApiError::not_found("no such endpoint; see README's API section") })
}

/// For TCP: every write needs `Authorization: Bearer <token>`, compared in
/// constant time.
pub fn with_token(router: Router, token: Arc<String>) -> Router {
    router.layer(middleware::from_fn(move |req: Request, next: Next| {
        let token = token.clone();
        async move { require_token(token, req, next).await }
    }))
}

async fn require_token(token: Arc<String>, mut req: Request, next: Next) -> Response {
    if req.method() == Method::GET || req.method() == Method::HEAD {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !constant_time_eq(given.as_bytes(), token.as_bytes()) {
        return ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "writes need `Authorization: Bearer <token>` (the agent's token file)",
        )
        .into_response();
    }
    req.extensions_mut().insert(Caller("api token".into()));
    next.run(req).await
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn status(State(agent): State<Arc<Agent>>) -> Result<Json<serde_json::Value>, ApiError> {
    let report = agent.app.status().map_err(|e| ApiError::from_app(&e))?;
    let view = agent.view.lock().unwrap_or_else(|e| e.into_inner()).clone();
    // In a fleet: this host's name (the console links to the fleet page).
    let fleet = agent
        .fleet
        .as_ref()
        .map(|l| serde_json::json!({ "host": l.host, "prefix": l.prefix() }));
    Ok(Json(serde_json::json!({
        "agent": view,
        "status": report,
        "fleet": fleet,
    })))
}

async fn sessions(State(agent): State<Arc<Agent>>) -> Result<Json<serde_json::Value>, ApiError> {
    let history = agent.app.history().map_err(|e| ApiError::from_app(&e))?;
    Ok(Json(serde_json::json!({ "sessions": history })))
}

fn session_id(id: &str) -> Result<SessionId, ApiError> {
    id.parse()
        .map_err(|e| ApiError::bad_request(format!("`{id}` is not a session id: {e}")))
}

fn session_error(id: &SessionId, e: duplex_core::app::AppError) -> ApiError {
    match e {
        duplex_core::app::AppError::Journal(_) | duplex_core::app::AppError::NoSession { .. } => {
            ApiError::not_found(format!("no session {id}"))
        }
        other => ApiError::from_app(&other),
    }
}

/// The session's activity as a tree (`duplex_core::app::activity`): what
/// the consoles show.
async fn session_activity(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = session_id(&id)?;
    let (id, tree) = agent
        .app
        .activity(Some(&id))
        .map_err(|e| session_error(&id, e))?;
    Ok(Json(serde_json::json!({ "session": id, "activity": tree })))
}

async fn session_log(
    State(agent): State<Arc<Agent>>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id = session_id(&id)?;
    let log = agent
        .app
        .log(Some(&id))
        .map_err(|e| session_error(&id, e))?;
    let mut records = Vec::new();
    for r in log.records {
        let r = r.map_err(|e| ApiError::from_app(&e.into()))?;
        records.push(serde_json::json!({
            "seq": r.seq,
            "tsMs": r.ts_ms,
            "text": duplex_core::engine::sink::describe(&r.event),
            "event": r.event,
        }));
    }
    Ok(Json(
        serde_json::json!({ "session": id, "records": records }),
    ))
}

async fn plan(State(agent): State<Arc<Agent>>) -> Result<Json<serde_json::Value>, ApiError> {
    let desired = agent
        .view
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .desired
        .clone();
    let Some(desired) = desired else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "no_policy",
            "the policy source has not been fetched yet",
        ));
    };
    let loaded = desired
        .load()
        .map_err(|e| ApiError::new(StatusCode::CONFLICT, "policy_invalid", e.to_string()))?;
    Ok(Json(serde_json::json!({
        "digest": desired.digest,
        "revision": desired.revision,
        "plan": duplex_core::plan::Plan::of(&loaded),
    })))
}

async fn live(
    State(agent): State<Arc<Agent>>,
) -> Sse<impl tokio_stream::Stream<Item = Result<SseEvent, std::convert::Infallible>>> {
    let stream = BroadcastStream::new(agent.live.subscribe()).filter_map(|item| {
        item.ok()
            .map(|value| Ok(SseEvent::default().data(value.to_string())))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}

async fn fetch(State(agent): State<Arc<Agent>>) -> Json<serde_json::Value> {
    agent.fetch_now.notify_one();
    Json(serde_json::json!({ "fetching": true }))
}

async fn metrics(State(agent): State<Arc<Agent>>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        agent.metrics.encode(),
    )
        .into_response()
}
