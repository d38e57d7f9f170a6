//! The CLI's side of the control socket: one HTTP request to the process
//! that runs the state dir's session, if one listens.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use std::path::Path;
use tokio::net::UnixStream;

/// What came back.
pub enum Reply {
    /// Nobody serves the socket: no process runs the session.
    NobodyListening,
    Answered {
        status: u16,
        body: Vec<u8>,
    },
}

/// `POST path` with a JSON body to the control socket of `state_dir`.
pub async fn post(state_dir: &Path, path: &str, body: &serde_json::Value) -> Result<Reply, String> {
    request(state_dir, hyper::Method::POST, path, Some(body)).await
}

/// `GET path` from the control socket of `state_dir`.
pub async fn get(state_dir: &Path, path: &str) -> Result<Reply, String> {
    request(state_dir, hyper::Method::GET, path, None).await
}

async fn request(
    state_dir: &Path,
    method: hyper::Method,
    path: &str,
    body: Option<&serde_json::Value>,
) -> Result<Reply, String> {
    let socket = super::socket::path(state_dir);
    let stream = match UnixStream::connect(&socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(Reply::NobodyListening);
        }
        Err(e) => return Err(format!("cannot connect to {}: {e}", socket.display())),
    };
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let request = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header(hyper::header::HOST, "localhost")
        .header(hyper::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(
            body.map(|b| b.to_string()).unwrap_or_default(),
        )))
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{}: {e}", socket.display()))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("{}: {e}", socket.display()))?
        .to_bytes()
        .to_vec();
    Ok(Reply::Answered { status, body })
}
