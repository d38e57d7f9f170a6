//! The web console: static files compiled into the binary and served at
//! `/` (the console: `index.html`, `console.js`) and `/fleet` (the fleet
//! page of an agent in a fleet: `fleet.html`, `fleet.js`), with what they
//! share (`shared.js`, `console.css`). The pages hold no copy of the state
//! model nor of the fleet's decisions: they show what the API says
//! (`/v1/status`'s next commands and their consequences, `/v1/plan`'s path,
//! `/v1/sessions/{id}/activity`'s tree, `/v1/fleet`) and send the
//! operator's commands to `/v1/commands/{verb}` and `/v1/fleet/...` with
//! the token the operator gives them.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// One embedded file and how it is served.
struct Asset {
    body: &'static str,
    content_type: &'static str,
}

const INDEX: Asset = Asset {
    body: include_str!("console/index.html"),
    content_type: "text/html; charset=utf-8",
};
const CSS: Asset = Asset {
    body: include_str!("console/console.css"),
    content_type: "text/css; charset=utf-8",
};
const JS: Asset = Asset {
    body: include_str!("console/console.js"),
    content_type: "text/javascript; charset=utf-8",
};
const SHARED_JS: Asset = Asset {
    body: include_str!("console/shared.js"),
    content_type: "text/javascript; charset=utf-8",
};
const FLEET: Asset = Asset {
    body: include_str!("console/fleet.html"),
    content_type: "text/html; charset=utf-8",
};
const FLEET_JS: Asset = Asset {
    body: include_str!("console/fleet.js"),
    content_type: "text/javascript; charset=utf-8",
};

/// Same-origin only: the page handles the API token, so nothing from
/// elsewhere may run in it or receive from it.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; \
    style-src 'self'; img-src 'self' data:; connect-src 'self'; \
    base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

/// The ETag of all the files together: a new binary with other assets
/// is a new tag, so a browser revalidates (`no-cache`) and gets 304 until then.
static ETAG: LazyLock<HeaderValue> = LazyLock::new(|| {
    let mut hash = Sha256::new();
    for asset in [&INDEX, &CSS, &JS, &SHARED_JS, &FLEET, &FLEET_JS] {
        hash.update(asset.body.as_bytes());
    }
    let hex: String = hash.finalize()[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    HeaderValue::from_str(&format!("\"{hex}\"")).expect("hex is a valid header value")
});

pub fn router() -> Router {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route(
            "/console.css",
            get(|h: HeaderMap| async move { serve(&CSS, &h) }),
        )
        .route(
            "/console.js",
            get(|h: HeaderMap| async move { serve(&JS, &h) }),
        )
        .route(
            "/shared.js",
            get(|h: HeaderMap| async move { serve(&SHARED_JS, &h) }),
        )
        .route(
            "/fleet",
            get(|h: HeaderMap| async move { serve(&FLEET, &h) }),
        )
        .route(
            "/fleet.js",
            get(|h: HeaderMap| async move { serve(&FLEET_JS, &h) }),
        )
}

fn serve(asset: &Asset, request: &HeaderMap) -> Response {
    let etag = ETAG.clone();
    let headers = [
        (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
        (header::ETAG, etag.clone()),
        (
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        ),
        (
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CONTENT_SECURITY_POLICY),
        ),
        (
            header::REFERRER_POLICY,
            HeaderValue::from_static("no-referrer"),
        ),
    ];
    let fresh = request
        .get(header::IF_NONE_MATCH)
        .is_some_and(|given| given.as_bytes() == etag.as_bytes());
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (
        headers,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(asset.content_type),
        )],
        asset.body,
    )
        .into_response()
}
