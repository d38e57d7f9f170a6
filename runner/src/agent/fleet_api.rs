//! The fleet in the agent's API, for the web console's fleet page
//! (`/fleet`): only an agent started with `--fleet` serves it (any other
//! answers 404 saying so). Reads: `GET /v1/fleet`, every host and every
//! rollout as `duplex-fleet` reads them from etcd. Writes (the bearer
//! token on TCP, like every write): `POST /v1/fleet/rollouts/{name}/
//! {pause,resume,abort}` and `POST /v1/fleet/hosts/{host}/release`, with
//! `{"by", "reason"}` as the session commands take it.
//!
//! Nothing here decides: the stored state is shown as stored, and what it
//! means (what `resume` would do, why the next host waits, whether the
//! error budget is spent) is asked of `duplex_fleet::decide`; a command is
//! `Fleet::pause`/`resume`/`abort`/`release`, which refuse what the fleet
//! refuses (an empty reason, an unknown rollout).

use super::fleet::FleetLink;
use super::reconcile::Agent;
use crate::api::ApiError;
use crate::api::commands::{Caller, CommandBody, operator_of};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router};
use duplex_fleet::{Decision, Fleet, FleetError, HostResult, RolloutView, decide};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::sync::Arc;

pub fn router(agent: Arc<Agent>) -> Router {
    Router::new()
        .route("/v1/fleet", get(overview))
        .route("/v1/fleet/rollouts/{name}/{verb}", post(rollout_command))
        .route("/v1/fleet/hosts/{host}/release", post(release))
        .with_state(agent)
}

fn link(agent: &Agent) -> Result<&Arc<FleetLink>, ApiError> {
    agent.fleet.as_ref().ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_in_fleet",
            "this agent is not in a fleet: start it with `duplex agent --fleet --etcd URLS` for the fleet page",
        )
    })
}

/// The connection to etcd; 503 naming the endpoints when there is none.
async fn fleet_of(link: &FleetLink) -> Result<&Fleet, ApiError> {
    link.fleet()
        .await
        .map_err(|e| ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "etcd_unreachable", e))
}

/// A fleet error in the API's terms.
fn fleet_error(e: FleetError) -> ApiError {
    let (status, code) = match &e {
        FleetError::Unreachable { .. } | FleetError::Timeout { .. } => {
            (StatusCode::SERVICE_UNAVAILABLE, "etcd_unreachable")
        }
        FleetError::RolloutNotFound(_) => (StatusCode::NOT_FOUND, "no_rollout"),
        FleetError::EmptyReason { .. } => (StatusCode::BAD_REQUEST, "reason_required"),
        FleetError::InvalidName { .. } => (StatusCode::BAD_REQUEST, "bad_request"),
        FleetError::HostNotInRollout { .. }
        | FleetError::NotHolder { .. }
        | FleetError::Conflict { .. }
        | FleetError::Contended { .. } => (StatusCode::CONFLICT, "refused"),
        FleetError::Refused { .. } => (StatusCode::BAD_GATEWAY, "etcd_refused"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    ApiError::new(status, code, e.to_string())
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `GET /v1/fleet`.
async fn overview(State(agent): State<Arc<Agent>>) -> Result<Json<Value>, ApiError> {
    let link = link(&agent)?;
    let fleet = fleet_of(link).await?;
    let (hosts, rollouts) =
        tokio::try_join!(fleet.hosts(), fleet.rollouts()).map_err(fleet_error)?;
    let mut results = BTreeMap::new();
    for view in &rollouts {
        let r = fleet.results(&view.plan.name).await.map_err(fleet_error)?;
        results.insert(view.plan.name.clone(), r);
    }
    let now = now_ms();
    let hosts: Vec<Value> = hosts
        .into_iter()
        .map(|(record, alive)| {
            // As `duplex fleet status` shows it.
            let place = duplex_fleet::HostPlace::of(&record, &rollouts);
            json!({ "record": record, "alive": alive, "slot": place.slot, "waveName": place.wave_name })
        })
        .collect();
    let rollouts: Vec<Value> = rollouts
        .iter()
        .map(|view| rollout_json(view, &results[&view.plan.name], now))
        .collect();
    Ok(Json(json!({
        "host": link.host,
        "prefix": link.prefix(),
        "nowMs": now,
        "hosts": hosts,
        "rollouts": rollouts,
    })))
}

/// One rollout: its plan in summary (the policy's text left out), its
/// state as stored, its results, and what the fleet's decisions say of it.
fn rollout_json(view: &RolloutView, results: &BTreeMap<String, HostResult>, now: u64) -> Value {
    let (plan, state) = (&view.plan, &view.state);
    let waves: Vec<Value> = plan
        .waves
        .iter()
        .enumerate()
        .map(|(i, w)| {
            json!({
                "name": w.name,
                "hosts": w.hosts,
                "total": w.hosts.len(),
                "ended": state.ended_in(i),
                "endedMs": state.wave_ended_ms.get(i).copied().flatten(),
                "approved": state.approved_waves.contains(&i),
            })
        })
        .collect();
    // What `resume` would change now, asked of the fleet's own decision: a
    // pause cleared, and the wave that waits for an approval.
    let resume = decide::resume(plan, state)
        .map(|(_, approve)| json!({ "unpause": state.paused.is_some(), "approve": approve }));
    // Why the next host to start waits, if it does: the first host in the
    // plan's order with no slot and no result, as its own agent asks.
    let window_open = duplex_core::rollout::window_open(&plan.windows, jiff::Timestamp::now());
    let next = plan
        .waves
        .iter()
        .flat_map(|w| w.hosts.iter())
        .find(|h| !state.holders.contains_key(*h) && !results.contains_key(*h))
        .map(
            |host| match decide::may_start(plan, state, host, false, now, window_open) {
                Decision::Wait(why) => json!({ "host": host, "waits": why.to_string() }),
                _ => json!({ "host": host, "waits": null }),
            },
        );
    json!({
        "name": plan.name,
        "revision": view.revision,
        "plan": {
            "digest": plan.digest,
            "policy": { "path": plan.policy.path, "digest": plan.policy.digest },
            "waves": waves,
            "hosts": plan.host_count(),
            "maxUnavailable": plan.max_unavailable,
            "errorBudget": plan.error_budget,
            "betweenWaves": plan.between_waves,
            "windows": plan.windows,
        },
        "state": state,
        "results": results,
        "finished": state.finished(plan),
        "budgetSpent": state.budget_spent(),
        "budgetExhausted": decide::budget_exhausted(plan, state),
        "resume": resume,
        "next": next,
    })
}

/// `POST /v1/fleet/rollouts/{name}/{pause,resume,abort}`.
async fn rollout_command(
    State(agent): State<Arc<Agent>>,
    Path((name, verb)): Path<(String, String)>,
    caller: Option<axum::Extension<Caller>>,
    body: Result<Json<CommandBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let link = link(&agent)?;
    if !matches!(verb.as_str(), "pause" | "resume" | "abort") {
        return Err(ApiError::not_found(format!(
            "`{verb}` is not a rollout command: pause, resume or abort"
        )));
    }
    let (by, reason) = operator_of(caller.map(|c| c.0.0), body)?;
    let reason = reason.unwrap_or_default();
    let fleet = fleet_of(link).await?;
    // An unknown rollout is a 404 whatever the command.
    if fleet.rollout(&name).await.map_err(fleet_error)?.is_none() {
        return Err(fleet_error(FleetError::RolloutNotFound(name)));
    }
    let answer = match verb.as_str() {
        "pause" => {
            let changed = fleet
                .pause(&name, &by, &reason)
                .await
                .map_err(fleet_error)?;
            json!({
                "rollout": name, "verb": verb, "by": by, "changed": changed,
                "message": if changed {
                    format!("Rollout {name} paused by {by}: no host starts until it is resumed; hosts in flight go on.")
                } else {
                    format!("Rollout {name} was paused already.")
                },
            })
        }
        "resume" => {
            let r = fleet.resume(&name, &by).await.map_err(fleet_error)?;
            json!({
                "rollout": name, "verb": verb, "by": by,
                "changed": r.unpaused || r.approved.is_some(),
                "unpaused": r.unpaused, "approved": r.approved,
                "message": match (r.unpaused, r.approved) {
                    (true, Some(w)) => format!("Rollout {name} resumed and wave {w} approved by {by}."),
                    (false, Some(w)) => format!("Rollout {name}: wave {w} approved by {by}."),
                    (true, None) => format!("Rollout {name} resumed by {by}."),
                    (false, None) => format!("Rollout {name}: nothing to resume (not paused, no wave waits for approval)."),
                },
            })
        }
        _ => {
            let changed = fleet
                .abort(&name, &by, &reason)
                .await
                .map_err(fleet_error)?;
            json!({
                "rollout": name, "verb": verb, "by": by, "changed": changed,
                "message": if changed {
                    format!("Rollout {name} aborted by {by}: no host starts any more; sessions in flight are asked to abort.")
                } else {
                    format!("Rollout {name} was aborted already.")
                },
            })
        }
    };
    super::log(&format!(
        "fleet: {verb} rollout {name} by {by}{}",
        if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        }
    ));
    Ok(Json(answer))
}

/// `POST /v1/fleet/hosts/{host}/release`: free the host's slot in every
/// rollout where it holds one (`duplex fleet release`).
async fn release(
    State(agent): State<Arc<Agent>>,
    Path(host): Path<String>,
    caller: Option<axum::Extension<Caller>>,
    body: Result<Json<CommandBody>, JsonRejection>,
) -> Result<Json<Value>, ApiError> {
    let link = link(&agent)?;
    let (by, reason) = operator_of(caller.map(|c| c.0.0), body)?;
    let reason = reason.unwrap_or_default();
    let fleet = fleet_of(link).await?;
    let rollouts = fleet
        .release(&host, &by, &reason)
        .await
        .map_err(fleet_error)?;
    if rollouts.is_empty() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "refused",
            format!("host {host} holds no slot in any rollout"),
        ));
    }
    super::log(&format!(
        "fleet: released {host}'s slot in {} by {by}: {reason}",
        rollouts.join(", ")
    ));
    Ok(Json(json!({
        "host": host,
        "by": by,
        "released": rollouts,
        "message": format!(
            "Released {host}'s slot in {} (by {by}: {reason}); counted against the error budget.",
            rollouts.join(", ")
        ),
    })))
}
