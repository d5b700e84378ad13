//! The admin HTTP server: `/healthz`, `/readyz`, `/metrics` and the JSON API under
//! `/v1` that `sluice ctl` drives (modules, candidates, promote, rollback, pause,
//! resume, checkpoint, topic creation).
//!
//! Invariants:
//! - it listens on loopback unless configured otherwise, and a non-loopback address is
//!   refused at config time unless a bearer token is set;
//! - with a token set, every endpoint but `/healthz` and `/readyz` requires
//!   `Authorization: Bearer <token>`, compared in constant time (over SHA-256 digests,
//!   so neither content nor length leaks through timing);
//! - an unauthenticated request gets 401 and a malformed one 400, each with a JSON body
//!   saying what is wrong, and neither reaches the pipeline;
//! - requests that change state only send a [`CommandKind`] to the pipeline, which
//!   applies it between source items;
//! - no client can hold the server: request headers must arrive within
//!   [`HEADER_TIMEOUT`] (one request per connection, no keep-alive),
//!   a whole request within `admin.request_timeout_secs` (else 408, connection
//!   closed), at most [`MAX_CONNECTIONS`] connections are open (more are closed at
//!   once), and at most [`MAX_UPLOADS`] module uploads are read at a time (more get
//!   429 before their body is read), so memory for uploads stays under
//!   `MAX_UPLOADS` × 64 MiB whatever the callers do;
//! - an answer given before the body was read reaches the client: connections close
//!   by sending FIN and dropping what the client still sends, for a bounded time.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use tokio_util::sync::CancellationToken;

use crate::control::{CommandError, CommandKind, Control};
use crate::router::{CandidateState, ModuleStatus};
use crate::secret::Secret;

/// Largest request body (a module upload).
const MAX_BODY: usize = 64 << 20;

/// How long a client may take to send a request's headers.
pub const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Open connections at most; `/healthz` probes, scrapes and `sluice ctl` need few.
pub const MAX_CONNECTIONS: usize = 128;

/// Module uploads read at the same time at most.
pub const MAX_UPLOADS: usize = 2;

/// Admin server settings.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Listen address.
    pub listen: SocketAddr,
    /// Bearer token, when required.
    pub token: Option<Secret>,
    /// Partitions of topics created through the API when the request names none.
    pub topic_partitions: i32,
    /// Replication factor of topics created through the API.
    pub topic_replication: i32,
    /// `router.modules_dir`: the only place a `{"path": ...}` candidate may come from.
    pub modules_dir: Option<std::path::PathBuf>,
    /// How long one request may take, body included.
    pub request_timeout: std::time::Duration,
}

#[derive(Clone)]
struct AppState {
    control: Arc<Control>,
    token_digest: Option<[u8; 32]>,
    modules_dir: Option<Arc<std::path::Path>>,
    /// One permit per upload being read ([`MAX_UPLOADS`]).
    uploads: Arc<tokio::sync::Semaphore>,
}

/// A JSON error response.
struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (self.0, axum::Json(json!({ "error": self.1 }))).into_response();
        if self.0 == StatusCode::UNAUTHORIZED {
            r.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"sluice\""),
            );
        }
        r
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        let code = match &e {
            CommandError::NotFound(_) => StatusCode::NOT_FOUND,
            CommandError::Conflict(_) => StatusCode::CONFLICT,
            CommandError::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            CommandError::Failed(_) => StatusCode::INTERNAL_SERVER_ERROR,
        };
        ApiError(code, e.to_string())
    }
}

/// Proof that the request carried the token (or that none is required).
struct Authorized;

impl FromRequestParts<AppState> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, ApiError> {
        let Some(want) = &st.token_digest else {
            return Ok(Authorized);
        };
        let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
            return Err(ApiError(
                StatusCode::UNAUTHORIZED,
                "missing `Authorization: Bearer <token>` header".into(),
            ));
        };
        let given = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(|| {
                ApiError(
                    StatusCode::UNAUTHORIZED,
                    "the Authorization header is not `Bearer <token>`".into(),
                )
            })?;
        let digest: [u8; 32] = Sha256::digest(given.trim().as_bytes()).into();
        if bool::from(digest.ct_eq(want)) {
            Ok(Authorized)
        } else {
            Err(ApiError(StatusCode::UNAUTHORIZED, "wrong token".into()))
        }
    }
}

fn candidate_json(c: &CandidateState) -> Value {
    match c {
        CandidateState::None => json!({ "state": "none" }),
        CandidateState::Canary { version } => json!({ "state": "canary", "version": version }),
        CandidateState::Ready {
            version,
            canary_rows,
        } => json!({ "state": "ready", "version": version, "canary_rows": canary_rows }),
        CandidateState::Promoted { version, at_ms } => {
            json!({ "state": "promoted", "version": version, "at_ms": at_ms })
        }
        CandidateState::Rejected { version, reason } => {
            json!({ "state": "rejected", "version": version, "reason": reason })
        }
    }
}

/// A module status as the API shows it.
pub fn module_json(m: &ModuleStatus) -> Value {
    let c = &m.counters;
    let failures: serde_json::Map<String, Value> = c
        .failures
        .iter()
        .map(|(k, n)| ((*k).to_string(), json!(n)))
        .collect();
    json!({
        "name": m.name,
        "version": m.version,
        "previous": m.previous,
        "candidate": candidate_json(&m.candidate),
        "counters": {
            "events": c.events,
            "routed": c.routed,
            "dropped": c.dropped,
            "skipped": c.skipped,
            "dead_lettered": c.dead_lettered,
            "failures": failures,
        },
        "failed": m.failed,
        "quarantined": m.quarantine.as_ref().map(|q| json!({
            "since_ms": q.since_ms,
            "probe_at_ms": q.probe_at_ms,
            "reason": q.reason,
            "trips": q.trips,
        })),
    })
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(st): State<AppState>) -> Response {
    let why = st.control.not_ready();
    if why.is_empty() {
        (StatusCode::OK, axum::Json(json!({ "ready": true }))).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(json!({ "ready": false, "reasons": why })),
        )
            .into_response()
    }
}

async fn metrics(_: Authorized, State(st): State<AppState>) -> Response {
    let m = crate::metrics::global();
    if let Some(s) = st.control.state() {
        m.in_flight.set(s.messages.0 as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        m.encode(),
    )
        .into_response()
}

async fn list_modules(_: Authorized, State(st): State<AppState>) -> axum::Json<Value> {
    let mods: Vec<Value> = st.control.modules().iter().map(module_json).collect();
    axum::Json(json!({ "modules": mods }))
}

fn find_module(st: &AppState, name: &str) -> Result<ModuleStatus, ApiError> {
    st.control
        .modules()
        .into_iter()
        .find(|m| m.name == name)
        .ok_or_else(|| {
            ApiError(
                StatusCode::NOT_FOUND,
                format!("no module named `{name}` is running"),
            )
        })
}

async fn get_module(
    _: Authorized,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    Ok(axum::Json(module_json(&find_module(&st, &name)?)))
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        ApiError(
            StatusCode::BAD_REQUEST,
            format!("the body is not valid JSON: {e}"),
        )
    })
}

/// `POST /v1/modules/{name}/candidate`: the body is the component (any content type
/// but JSON), or JSON `{"path": "/file/on/the/agent/host.wasm"}`.
async fn load_candidate(
    _: Authorized,
    State(st): State<AppState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    find_module(&st, &name)?;
    // The permit is taken before a byte of the body is read and held until the
    // pipeline has the candidate: uploads beyond MAX_UPLOADS cost nothing.
    let _permit = st.uploads.clone().try_acquire_owned().map_err(|_| {
        ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!("{MAX_UPLOADS} module uploads are already being read; try again when one has finished"),
        )
    })?;
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|e| {
        use std::error::Error as _;
        let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(&e);
        let mut too_large = false;
        while let Some(c) = cause {
            too_large |= c.is::<http_body_util::LengthLimitError>();
            cause = c.source();
        }
        if too_large {
            ApiError(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is over {} MiB", MAX_BODY >> 20),
            )
        } else {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!(
                    "reading the body: {}",
                    e.source().map_or(e.to_string(), |s| s.to_string())
                ),
            )
        }
    })?;
    let bytes = if is_json(&headers) {
        let v = parse_json(&body)?;
        let path = v.get("path").and_then(Value::as_str).ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "expected {\"path\": \"...\"} or the component bytes as the body".into(),
            )
        })?;
        let (dir, path) = (st.modules_dir.clone(), path.to_string());
        tokio::task::spawn_blocking(move || read_candidate_file(dir.as_deref(), &path))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))??
    } else {
        body.to_vec()
    };
    if bytes.is_empty() {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "empty body: send the component bytes, or JSON {\"path\": \"...\"}".into(),
        ));
    }
    if !bytes.starts_with(b"\0asm") {
        return Err(ApiError(
            StatusCode::BAD_REQUEST,
            "the body is not a WebAssembly file (no `\\0asm` magic)".into(),
        ));
    }
    let v = st
        .control
        .ask(CommandKind::Load {
            module: name,
            bytes,
        })
        .await?;
    Ok((StatusCode::ACCEPTED, axum::Json(v)))
}

/// Reads a `{"path": ...}` candidate: only a regular file inside `router.modules_dir`
/// (after resolving links and `..`), at most [`MAX_BODY`] bytes. Opened without
/// blocking and checked before reading, so a FIFO, a device such as `/dev/zero` or a
/// file outside the directory costs nothing and gets an error naming the path.
fn read_candidate_file(dir: Option<&std::path::Path>, path: &str) -> Result<Vec<u8>, ApiError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let bad = |msg: String| ApiError(StatusCode::BAD_REQUEST, msg);
    let Some(dir) = dir else {
        return Err(bad(format!(
            "cannot load `{path}`: candidates by path need router.modules_dir (only files \
             inside it are read); send the component bytes as the body instead"
        )));
    };
    let dir = dir
        .canonicalize()
        .map_err(|e| bad(format!("router.modules_dir `{}`: {e}", dir.display())))?;
    let given = std::path::Path::new(path);
    let full = if given.is_absolute() {
        given.to_path_buf()
    } else {
        dir.join(given)
    };
    let real = full
        .canonicalize()
        .map_err(|e| bad(format!("cannot read module file `{path}`: {e}")))?;
    if !real.starts_with(&dir) {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            format!(
                "module file `{path}` is outside router.modules_dir (`{}`); only files inside it are read",
                dir.display()
            ),
        ));
    }
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(O_NONBLOCK)
        .open(&real)
        .map_err(|e| bad(format!("cannot read module file `{path}`: {e}")))?;
    let meta = f
        .metadata()
        .map_err(|e| bad(format!("cannot read module file `{path}`: {e}")))?;
    if !meta.is_file() {
        return Err(bad(format!("module file `{path}` is not a regular file")));
    }
    if meta.len() > MAX_BODY as u64 {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "module file `{path}` is {} bytes, over the {MAX_BODY}-byte limit",
                meta.len()
            ),
        ));
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    f.take(MAX_BODY as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| bad(format!("cannot read module file `{path}`: {e}")))?;
    if bytes.len() > MAX_BODY {
        return Err(ApiError(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("module file `{path}` grew over the {MAX_BODY}-byte limit while read"),
        ));
    }
    Ok(bytes)
}

/// `O_NONBLOCK` on Linux (x86-64 and aarch64): opening a FIFO must not wait for a writer.
const O_NONBLOCK: i32 = 0o4000;

async fn promote(
    _: Authorized,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    find_module(&st, &name)?;
    Ok(axum::Json(
        st.control
            .ask(CommandKind::Promote { module: name })
            .await?,
    ))
}

async fn rollback(
    _: Authorized,
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<axum::Json<Value>, ApiError> {
    find_module(&st, &name)?;
    Ok(axum::Json(
        st.control
            .ask(CommandKind::Rollback { module: name })
            .await?,
    ))
}

async fn pause(_: Authorized, State(st): State<AppState>) -> axum::Json<Value> {
    st.control.set_paused(true);
    tracing::info!(message = "Paused by the admin API: reading from the source stops.");
    axum::Json(json!({ "paused": true }))
}

async fn resume(_: Authorized, State(st): State<AppState>) -> axum::Json<Value> {
    st.control.set_paused(false);
    tracing::info!(message = "Resumed by the admin API.");
    axum::Json(json!({ "paused": false }))
}

/// The pipeline's last reported state (an error only if its lock was poisoned).
fn run_state(st: &AppState) -> Result<crate::control::RunState, ApiError> {
    st.control.state().ok_or_else(|| {
        ApiError(
            StatusCode::INTERNAL_SERVER_ERROR,
            "state unavailable".into(),
        )
    })
}

async fn checkpoint(
    _: Authorized,
    State(st): State<AppState>,
) -> Result<axum::Json<Value>, ApiError> {
    let s = run_state(&st)?;
    Ok(axum::Json(json!({
        "checkpoint": s.checkpoint.as_ref().map(crate::checkpoint::to_json),
        "read": s.read.as_ref().map(crate::checkpoint::to_json),
        "checkpoint_age_ms": s.advanced_at.elapsed().as_millis() as u64,
        "behind": s.behind,
        "in_flight": s.messages.0,
        "acknowledged": s.messages.1,
        "paused": st.control.paused(),
    })))
}

/// The publisher's own report (the Canal server: destinations, clients, cursors).
async fn publisher(
    _: Authorized,
    State(st): State<AppState>,
) -> Result<axum::Json<Value>, ApiError> {
    let s = run_state(&st)?;
    Ok(axum::Json(json!({ "publisher": s.publisher })))
}

async fn create_topic(
    _: Authorized,
    State(st): State<AppState>,
    body: Bytes,
) -> Result<(StatusCode, axum::Json<Value>), ApiError> {
    let v = parse_json(&body)?;
    let name = v
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                "expected {\"name\": \"topic\", \"partitions\": N}".into(),
            )
        })?
        .to_string();
    let partitions = match v.get("partitions") {
        None | Some(Value::Null) => None,
        Some(p) => Some(
            p.as_i64()
                .and_then(|n| i32::try_from(n).ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    ApiError(
                        StatusCode::BAD_REQUEST,
                        "`partitions` must be a positive integer".into(),
                    )
                })?,
        ),
    };
    let r = st
        .control
        .ask(CommandKind::CreateTopic { name, partitions })
        .await?;
    Ok((StatusCode::CREATED, axum::Json(r)))
}

/// Every error answer is JSON `{"error": "..."}`: axum's own rejections (wrong method,
/// body over the limit, bad path) are plain text, and clients parse one shape.
async fn json_errors(res: Response) -> Response {
    let status = res.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return res;
    }
    let is_json = res
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return res;
    }
    let (parts, body) = res.into_parts();
    let bytes = axum::body::to_bytes(body, 64 * 1024)
        .await
        .unwrap_or_default();
    let text = String::from_utf8_lossy(&bytes).trim().to_string();
    let message = if text.is_empty() {
        status.canonical_reason().unwrap_or("error").to_string()
    } else {
        text
    };
    let mut out = (status, axum::Json(json!({ "error": message }))).into_response();
    // Keep what the error's headers say (`Allow` on a 405, `WWW-Authenticate` on a 401).
    for (k, v) in &parts.headers {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out
}

async fn not_found() -> ApiError {
    ApiError(StatusCode::NOT_FOUND, "no such endpoint".into())
}

/// The router (exposed for tests that drive it without a socket).
pub fn app(control: Arc<Control>, token: Option<&Secret>) -> Router {
    app_in(control, token, None)
}

/// The router, with `router.modules_dir` as the only source of path candidates.
pub fn app_in(
    control: Arc<Control>,
    token: Option<&Secret>,
    modules_dir: Option<&std::path::Path>,
) -> Router {
    let st = AppState {
        control,
        token_digest: token.map(|t| Sha256::digest(t.expose().trim().as_bytes()).into()),
        modules_dir: modules_dir.map(Arc::from),
        uploads: Arc::new(tokio::sync::Semaphore::new(MAX_UPLOADS)),
    };
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/v1/modules", get(list_modules))
        .route("/v1/modules/{name}", get(get_module))
        .route("/v1/modules/{name}/candidate", post(load_candidate))
        .route("/v1/modules/{name}/promote", post(promote))
        .route("/v1/modules/{name}/rollback", post(rollback))
        .route("/v1/pause", post(pause))
        .route("/v1/resume", post(resume))
        .route("/v1/checkpoint", get(checkpoint))
        .route("/v1/publisher", get(publisher))
        .route("/v1/topics", post(create_topic))
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(MAX_BODY))
        .layer(axum::middleware::map_response(json_errors))
        .with_state(st)
}

/// Answers 408 to a request that is not done within `limit`, body included; its
/// connection is then closed, so a half-sent body is not read on.
async fn request_deadline(
    limit: std::time::Duration,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => {
            let mut r = ApiError(
                StatusCode::REQUEST_TIMEOUT,
                format!(
                    "the request was not done within {} s (admin.request_timeout_secs)",
                    limit.as_secs()
                ),
            )
            .into_response();
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
            r
        }
    }
}

/// A running admin server.
pub struct Served {
    /// The address it listens on (the real port when the config said 0).
    pub addr: SocketAddr,
    /// Ends after `cancel`, once open connections finished (at most a few seconds).
    pub handle: tokio::task::JoinHandle<()>,
}

/// Binds the admin address (so a taken port fails startup) and serves until `cancel`.
pub async fn serve(
    cfg: &AdminConfig,
    control: Arc<Control>,
    cancel: CancellationToken,
) -> anyhow::Result<Served> {
    use anyhow::Context as _;
    let listener = tokio::net::TcpListener::bind(cfg.listen)
        .await
        .with_context(|| format!("admin.listen: cannot listen on {}", cfg.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(
        message = "Admin API listening.",
        address = %local,
        token_required = cfg.token.is_some(),
    );
    let limit = cfg.request_timeout;
    let app = app_in(control, cfg.token.as_ref(), cfg.modules_dir.as_deref()).layer(
        axum::middleware::from_fn(move |req, next| request_deadline(limit, req, next)),
    );
    let handle = tokio::spawn(accept_loop(listener, app, cancel));
    Ok(Served {
        addr: local,
        handle,
    })
}

/// Accepts connections until `cancel`, each served on a task of its own with
/// [`HEADER_TIMEOUT`], at most [`MAX_CONNECTIONS`] at once.
async fn accept_loop(listener: tokio::net::TcpListener, app: Router, cancel: CancellationToken) {
    let open = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    let mut refused_logged = false;
    loop {
        let accepted = tokio::select! {
            _ = cancel.cancelled() => break,
            r = listener.accept() => r,
        };
        let stream = match accepted {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Out of file descriptors and the like: wait instead of spinning.
                tracing::warn!(message = "Admin API cannot accept a connection.", error = %e);
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            if !refused_logged {
                tracing::warn!(
                    message = "Admin API connection limit reached; closing new connections until some end.",
                    limit = MAX_CONNECTIONS,
                );
                refused_logged = true;
            }
            drop(stream);
            continue;
        };
        refused_logged = false;
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let mut builder = hyper::server::conn::http1::Builder::new();
            // One request per connection: an admin API needs no keep-alive, and an idle
            // pooled connection the header timeout closed would fail a client's next
            // request instead of costing it a new connection.
            builder
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT)
                .keep_alive(false);
            let mut conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
            let mut served = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx));
            let done = tokio::select! {
                r = &mut served => r.is_ok(),
                _ = cancel.cancelled() => false,
            };
            if !done {
                // Cancelled (or the client broke the connection): finish what is in
                // flight, briefly, then close.
                std::pin::Pin::new(&mut conn).graceful_shutdown();
                let _ = tokio::time::timeout(
                    std::time::Duration::from_secs(5),
                    std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)),
                )
                .await;
            }
            linger(conn.into_parts().io.into_inner()).await;
        });
    }
}

/// How long a closing connection keeps reading what its client still sends, at most,
/// and the longest pause in it.
const LINGER: std::time::Duration = std::time::Duration::from_secs(10);
const LINGER_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

/// Closes a served connection the way HTTP/1.1 asks (RFC 9112 §9.6): send FIN, then
/// read and drop what the client is still sending before closing. A request answered
/// before its body was read (unknown module: 404; too many uploads: 429) would
/// otherwise be closed with unread bytes, the kernel would answer them with a reset,
/// and a client still writing its body would see "broken pipe" instead of the answer.
/// Bounded in time ([`LINGER`], [`LINGER_IDLE`]) and memory (one small buffer).
async fn linger(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream.shutdown().await.is_err() {
        return;
    }
    let mut buf = [0u8; 16 << 10];
    let _ = tokio::time::timeout(LINGER, async {
        loop {
            match tokio::time::timeout(LINGER_IDLE, stream.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => break,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status_of(r: Result<Vec<u8>, ApiError>) -> (u16, String) {
        match r {
            Ok(b) => (200, String::from_utf8_lossy(&b).into_owned()),
            Err(ApiError(s, m)) => (s.as_u16(), m),
        }
    }

    #[test]
    fn path_candidates_come_only_from_regular_files_inside_the_modules_dir() {
        let root = std::env::temp_dir().join(format!("sluice-admin-path-{}", std::process::id()));
        let dir = root.join("modules");
        std::fs::create_dir_all(&dir).expect("dir");
        std::fs::write(dir.join("ok.wasm"), b"\0asm-ok").expect("file");
        std::fs::write(root.join("secret.txt"), b"outside").expect("file");
        std::os::unix::fs::symlink(root.join("secret.txt"), dir.join("link.wasm")).expect("link");
        let fifo = dir.join("fifo.wasm");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo runs");
        assert!(made.success());
        let read = |p: &str| status_of(read_candidate_file(Some(&dir), p));

        assert_eq!(read("ok.wasm"), (200, "\0asm-ok".into()));
        let abs = dir.join("ok.wasm").display().to_string();
        assert_eq!(read(&abs).0, 200);
        for outside in ["/dev/zero", "/etc/passwd", "../secret.txt", "link.wasm"] {
            let (s, m) = read(outside);
            assert_eq!(s, 403, "{outside}: {m}");
            assert!(
                m.contains(outside) && m.contains("outside router.modules_dir"),
                "{m}"
            );
        }
        // A FIFO with no writer: refused at once, not waited on.
        let t = std::time::Instant::now();
        let (s, m) = read("fifo.wasm");
        assert_eq!(s, 400, "{m}");
        assert!(m.contains("not a regular file"), "{m}");
        assert!(t.elapsed() < std::time::Duration::from_secs(2));
        let (s, m) = read("missing.wasm");
        assert_eq!(s, 400);
        assert!(m.contains("missing.wasm"), "{m}");
        // No modules_dir: no path candidates at all.
        let (s, m) = status_of(read_candidate_file(None, &abs));
        assert_eq!(s, 400);
        assert!(m.contains("router.modules_dir"), "{m}");
        std::fs::remove_dir_all(&root).ok();
    }

    /// An admin server on a free loopback port, no token, with `request_timeout`.
    fn loopback(request_timeout: std::time::Duration) -> AdminConfig {
        AdminConfig {
            listen: "127.0.0.1:0".parse().expect("addr"),
            token: None,
            topic_partitions: 1,
            topic_replication: 1,
            modules_dir: None,
            request_timeout,
        }
    }

    /// A raw client: connects, writes `head`, and returns the stream.
    async fn send(addr: SocketAddr, head: &str) -> tokio::net::TcpStream {
        use tokio::io::AsyncWriteExt;
        let mut c = tokio::net::TcpStream::connect(addr).await.expect("connect");
        c.write_all(head.as_bytes()).await.expect("write");
        c
    }

    /// Reads until the server closes (or `within` passes): what it answered.
    async fn answer(c: &mut tokio::net::TcpStream, within: std::time::Duration) -> Option<String> {
        use tokio::io::AsyncReadExt;
        let mut buf = Vec::new();
        match tokio::time::timeout(within, c.read_to_end(&mut buf)).await {
            Ok(_) => Some(String::from_utf8_lossy(&buf).into_owned()),
            Err(_) => None,
        }
    }

    fn upload_head(len: usize) -> String {
        format!(
            "POST /v1/modules/m/candidate HTTP/1.1\r\nHost: x\r\nContent-Type: application/wasm\r\nConnection: close\r\nContent-Length: {len}\r\n\r\n"
        )
    }

    /// A request answered before its body is read (an upload to a module that does not
    /// exist) still reaches a client that goes on writing the whole body first, as
    /// most clients do: the server reads and drops the rest before closing instead of
    /// resetting the connection under the client ("broken pipe").
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_early_answer_reaches_a_client_still_sending_its_body() {
        use std::time::Duration;
        let control = Arc::new(Control::new(Duration::from_secs(60)));
        control.set_status(Some(Arc::new(std::sync::Mutex::new(Vec::new()))));
        let cfg = loopback(Duration::from_secs(30));
        let cancel = CancellationToken::new();
        let served = serve(&cfg, control, cancel.clone()).await.expect("serve");
        for _ in 0..5 {
            let body = vec![0u8; 8 << 20];
            let mut c = send(served.addr, &upload_head(body.len())).await;
            tokio::io::AsyncWriteExt::write_all(&mut c, &body)
                .await
                .expect("the whole body is taken, not reset");
            let a = answer(&mut c, Duration::from_secs(5)).await;
            let a = a.expect("answered and closed");
            assert!(a.starts_with("HTTP/1.1 404"), "{a}");
            assert!(a.contains("\"error\""), "{a}");
        }
        cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), served.handle).await;
    }

    /// Slow clients and upload floods: a client that never finishes its headers is cut
    /// off after HEADER_TIMEOUT; uploads past MAX_UPLOADS get 429 before their body is
    /// read; an upload that stalls gets 408 at the request deadline and frees its
    /// place; and all along `/healthz` answers at once.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn slow_clients_and_upload_floods_cannot_hold_the_server() {
        use std::time::{Duration, Instant};
        let control = Arc::new(Control::new(Duration::from_secs(60)));
        let board: crate::router::StatusBoard =
            Arc::new(std::sync::Mutex::new(vec![ModuleStatus {
                name: "m".into(),
                version: "v".into(),
                previous: None,
                candidate: CandidateState::None,
                counters: Default::default(),
                quarantine: None,
                failed: None,
            }]));
        control.set_status(Some(board));
        let cfg = loopback(Duration::from_secs(3));
        let cancel = CancellationToken::new();
        let served = serve(&cfg, control, cancel.clone()).await.expect("serve");
        let addr = served.addr;
        let healthz = async || {
            let t = Instant::now();
            let mut c = send(
                addr,
                "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            )
            .await;
            let a = answer(&mut c, Duration::from_secs(2))
                .await
                .unwrap_or_default();
            assert!(a.starts_with("HTTP/1.1 200"), "healthz: {a}");
            t.elapsed()
        };

        // Twenty clients that send half a request line and stop.
        let mut slow = Vec::new();
        for _ in 0..20 {
            slow.push(send(addr, "GET /heal").await);
        }
        // Two uploads announcing 60 MB and sending 1 kB: they hold both upload places.
        let mut stalled = Vec::new();
        for _ in 0..MAX_UPLOADS {
            let mut c = send(addr, &upload_head(60 << 20)).await;
            tokio::io::AsyncWriteExt::write_all(&mut c, &[0u8; 1024])
                .await
                .expect("body");
            stalled.push(c);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(healthz().await < Duration::from_millis(500));
        // A third upload is refused before its body is read.
        let mut third = send(addr, &upload_head(60 << 20)).await;
        let a = answer(&mut third, Duration::from_secs(2)).await;
        let a = a.expect("the third upload is answered at once");
        assert!(a.starts_with("HTTP/1.1 429"), "{a}");
        assert!(a.contains("\"error\""), "JSON error: {a}");

        // The stalled uploads hit the 3 s request deadline: 408, connection closed.
        for mut c in stalled {
            let a = answer(&mut c, Duration::from_secs(6)).await;
            let a = a.expect("a stalled upload is cut off at the deadline");
            assert!(a.starts_with("HTTP/1.1 408"), "{a}");
        }
        // Their places are free again: the next upload is read (and refused for what
        // it is, not for being one too many).
        let mut next = send(addr, &upload_head(4)).await;
        tokio::io::AsyncWriteExt::write_all(&mut next, b"nope")
            .await
            .expect("body");
        let a = answer(&mut next, Duration::from_secs(3))
            .await
            .unwrap_or_default();
        assert!(
            a.starts_with("HTTP/1.1 400") && a.contains("WebAssembly"),
            "{a}"
        );

        // The half-request clients are closed by the header timeout.
        let t = Instant::now();
        for c in slow.iter_mut() {
            let a = answer(c, HEADER_TIMEOUT + Duration::from_secs(3)).await;
            assert!(
                a.is_some(),
                "a client that never finished its headers is still connected after {:?}",
                t.elapsed()
            );
        }
        assert!(healthz().await < Duration::from_millis(500));
        cancel.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(10), served.handle).await;
    }
}
