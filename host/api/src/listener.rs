//! Accepting HTTP connections with bounds a hostile client cannot stretch:
//! a cap on open connections (within the process's file-descriptor limit),
//! a deadline for every request head (which also closes idle keep-alive
//! connections), a deadline for every request body, and a write stall
//! limit for clients that stop reading their answer.
//!
//! `axum::serve` has none of these (its hyper connection has no timer), so
//! this module runs hyper's HTTP/1 connection itself around the same router.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio::time::{Instant, Sleep};
use tower_service::Service;

/// Bounds on HTTP connections, so a slow or idle client cannot hold the
/// server's connections or descriptors.
use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// A connection must deliver a complete request head within this time
    /// of opening, or of its previous answer (so it also closes idle
    /// keep-alive connections).
    pub header_timeout_ms: u64,
    /// A request's body must arrive whole within this time of its head.
    pub body_timeout_ms: u64,
    /// A client that stops reading its answer for this long is dropped.
    pub write_timeout_ms: u64,
    /// The most connections open at once (lowered to what the process's
    /// open-files limit allows); further clients wait to be accepted.
    pub max_connections: usize,
    /// On SIGTERM, keep serving this long with `/ready` answering 503, so
    /// a load balancer stops sending new requests before the server stops
    /// accepting them (set it a little above the balancer's probe period
    /// times its failure threshold). 0: stop accepting at once.
    pub drain_ms: u64,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout_ms: 15_000,
            body_timeout_ms: 60_000,
            write_timeout_ms: 30_000,
            max_connections: 10_000,
            drain_ms: 0,
        }
    }
}

/// File descriptors kept free for storage, plugins' compiled files and
/// outgoing provider connections when sizing the connection cap.
const RESERVED_FDS: u64 = 256;

/// How long a graceful stop waits for requests in flight.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// The most connections this process may hold open: the configured cap,
/// lowered to what the file-descriptor limit leaves (after raising the soft
/// limit to the hard one, as servers do).
pub fn connection_cap(config: &HttpConfig) -> usize {
    let fds = raise_fd_limit();
    let room = fds.saturating_sub(RESERVED_FDS).max(16);
    let cap = (config.max_connections as u64).min(room).max(1) as usize;
    if cap < config.max_connections {
        tracing::warn!(
            configured = config.max_connections,
            cap,
            fd_limit = fds,
            "the open-files limit lowers the connection cap; raise `ulimit -n` to allow more"
        );
    }
    cap
}

#[cfg(unix)]
fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    #[allow(unsafe_code)]
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim.rlim_cur = lim.rlim_max;
            }
        }
    }
    lim.rlim_cur
}

#[cfg(not(unix))]
fn raise_fd_limit() -> u64 {
    u64::MAX
}

/// Serve `app` on `listener` until `stop` resolves, then stop accepting,
/// let requests in flight finish (up to [`DRAIN_LIMIT`]) and return.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    config: HttpConfig,
    stop: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let cap = connection_cap(&config);
    let slots = Arc::new(Semaphore::new(cap));
    let (closing_tx, closing_rx) = watch::channel(false);
    let config = Arc::new(config);
    tokio::pin!(stop);
    loop {
        // At the cap, stop accepting: new clients wait in the kernel's
        // backlog until a connection ends (the timeouts below make sure
        // one does), instead of the process running out of descriptors.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = &mut stop => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = &mut stop => break,
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let config = config.clone();
        let mut closing = closing_rx.clone();
        tokio::spawn(async move {
            let _permit = permit;
            let io = TokioIo::new(Stalling::new(
                stream,
                Duration::from_millis(config.write_timeout_ms),
            ));
            let body_limit = Duration::from_millis(config.body_timeout_ms);
            let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(ConnectInfo(peer));
                req.extensions_mut().insert(BodyDeadline(body_limit));
                app.clone().call(req)
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_millis(config.header_timeout_ms))
                .max_buf_size(64 << 10)
                .max_headers(100);
            let conn = builder.serve_connection(io, service);
            tokio::pin!(conn);
            let closed = tokio::select! {
                r = conn.as_mut() => Some(r),
                _ = closing.wait_for(|c| *c) => None,
            };
            let r = match closed {
                Some(r) => r,
                None => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            log_conn_end(r, peer);
        });
    }
    drop(listener);
    let _ = closing_tx.send(true);
    // Every connection holds a slot: all slots back means all are done.
    let drained = tokio::time::timeout(DRAIN_LIMIT, slots.acquire_many(cap as u32)).await;
    if drained.is_err() {
        tracing::warn!("requests still in flight after the drain limit; stopping anyway");
    }
    Ok(())
}

fn log_conn_end(r: Result<(), hyper::Error>, peer: SocketAddr) {
    if let Err(e) = r {
        if e.is_timeout() {
            tracing::debug!(%peer, "connection closed: timed out");
        } else {
            tracing::debug!(%peer, error = %e, "connection ended with an error");
        }
    }
}

/// How long the request's body may take to arrive, set per connection.
#[derive(Clone, Copy, Debug)]
pub struct BodyDeadline(pub Duration);

/// Middleware: a request's body must arrive within the connection's
/// [`BodyDeadline`]; a client trickling it is cut off and the handler sees
/// a body error (answered as a bad request in its API's format).
pub async fn body_deadline(req: Request, next: axum::middleware::Next) -> axum::response::Response {
    let Some(BodyDeadline(limit)) = req.extensions().get::<BodyDeadline>().copied() else {
        return next.run(req).await;
    };
    let has_body = !http_body::Body::is_end_stream(req.body());
    let finished = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = finished.clone();
    let req = req.map(|body| {
        axum::body::Body::new(TimedBody {
            inner: body,
            deadline: Box::pin(tokio::time::sleep(limit)),
            finished: seen,
        })
    });
    let mut response = next.run(req).await;
    // Answered before its body was read (refused at once: bad credentials,
    // too large): the connection closes after the answer, so say so, or a
    // client reuses it for its next request and loses that one.
    if has_body && !finished.load(std::sync::atomic::Ordering::Relaxed) {
        response.headers_mut().insert(
            axum::http::header::CONNECTION,
            axum::http::HeaderValue::from_static("close"),
        );
    }
    response
}

/// A body that fails once its deadline passes.
struct TimedBody {
    inner: axum::body::Body,
    deadline: Pin<Box<Sleep>>,
    /// Set once the body was read to its end.
    finished: Arc<std::sync::atomic::AtomicBool>,
}

impl http_body::Body for TimedBody {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            if frame.is_none() || self.inner.is_end_stream() {
                self.finished
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            return Poll::Ready(frame);
        }
        ready!(self.deadline.as_mut().poll(cx));
        Poll::Ready(Some(Err(axum::Error::new(std::io::Error::new(
            std::io::ErrorKind::TimedOut,
            "the request body did not arrive in time",
        )))))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A connection whose writes fail when the peer stops reading for longer
/// than `limit` (a full socket buffer that never drains).
struct Stalling {
    inner: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl Stalling {
    fn new(inner: TcpStream, limit: Duration) -> Stalling {
        Stalling {
            inner,
            limit,
            stalled: None,
        }
    }

    /// On a pending write, start (or check) the stall clock.
    fn pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<usize>> {
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                "the client stopped reading its answer",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Stalling {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stalling {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write(cx, buf) {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.pending(cx),
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        match Pin::new(&mut self.inner).poll_write_vectored(cx, bufs) {
            Poll::Ready(r) => {
                self.stalled = None;
                Poll::Ready(r)
            }
            Poll::Pending => self.pending(cx),
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
