//! `GET /admin/backup`: a consistent online backup of the whole store,
//! streamed as it is read (`engage_store::backup` says what the file holds
//! and what it guarantees). The snapshot is taken when the request is
//! answered: that moment is the recovery point.

use axum::body::Body;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::auth::AdminAuth;
use crate::{ApiError, AppState};

pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(backup))
}

/// Bytes handed to the connection at a time.
const CHUNK: usize = 256 << 10;

/// Buffers the backup and hands it to the response body a chunk at a time;
/// the bounded channel makes a slow client slow the reading down instead
/// of filling memory, and a client that leaves ends it (a write fails).
struct Chunks {
    tx: tokio::sync::mpsc::Sender<Result<Vec<u8>, std::io::Error>>,
    buf: Vec<u8>,
}

impl std::io::Write for Chunks {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(b.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the client left"))
    }
}

#[utoipa::path(
    get,
    path = "/admin/backup",
    operation_id = "backup",
    tag = "operations",
    summary = "A consistent online backup",
    description = "Every table of the store from one read snapshot, streamed (`engage backup` writes it to a file and checks it; `engage restore` brings it back). The snapshot's moment is the recovery point. Format: host/store/src/backup.rs.",
    security(("adminToken" = [])),
    responses(
        (status = 200, description = "The backup", body = Vec<u8>, content_type = "application/vnd.engage.backup"),
    ),
)]
async fn backup(_: AdminAuth, State(s): State<AppState>) -> Result<Response, ApiError> {
    let snap = s.store.read()?;
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let store = s.store.clone();
    tokio::task::spawn_blocking(move || {
        let mut out = Chunks {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        match engage_store::backup::write(&store, &snap, &mut out) {
            Ok(report) => tracing::info!(
                entries = report.entries,
                bytes = report.bytes,
                tables = report.tables.len(),
                "backup streamed"
            ),
            Err(e) => {
                tracing::warn!(error = %e, "backup stopped");
                // Abort the body: the client sees an incomplete answer
                // (and a file without its trailer is refused on restore).
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.engage.backup"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"engage.backup\"",
            ),
        ],
        Body::from_stream(body),
    )
        .into_response())
}
