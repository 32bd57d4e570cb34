//! Bounds on client connections, shared by the `interlink` API server and the
//! plugin kit, so a client cannot hold the server's sockets or file
//! descriptors without sending a request:
//!
//! - **request head**: a new connection must deliver a complete request head
//!   within [`ConnectionLimits::header_read_timeout`] (a connection that sends
//!   nothing at all is closed then too; hyper-util's auto builder would wait
//!   for its first bytes forever). On a kept-alive connection the same bound
//!   runs from the first byte of the next request.
//! - **request body**: the whole body must arrive within
//!   [`ConnectionLimits::body_read_timeout`] of the request head; a handler
//!   reading it then gets a [`BodyReadTimeout`] error (answered 408, and the
//!   connection is closed).
//! - **keep-alive**: a connection with no request in flight is closed after
//!   [`ConnectionLimits::idle_timeout`].
//! - **count**: at most [`ConnectionLimits::max_connections`] connections are
//!   open. At the bound the connection that has been idle longest (one that
//!   never sent a request first) is closed to make room; when every connection
//!   is busy, new ones wait in the kernel's accept queue.
//!
//! Responses are never bounded: a log stream that follows a container stays
//! open as long as the client reads it.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderValue, Request, StatusCode, header};
use bytes::Bytes;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tower::ServiceExt;

/// The bounds on connections (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct ConnectionLimits {
    /// Time for a request head to arrive: from the connection's start, or from
    /// the first byte of a later request on the same connection.
    pub header_read_timeout: Duration,
    /// Time for a whole request body to arrive, from its request head.
    pub body_read_timeout: Duration,
    /// Time a connection may stay open with no request in flight.
    pub idle_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

/// Default of [`ConnectionLimits::header_read_timeout`].
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default of [`ConnectionLimits::body_read_timeout`].
pub const DEFAULT_BODY_READ_TIMEOUT: Duration = Duration::from_secs(60);
/// Default of [`ConnectionLimits::idle_timeout`].
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            body_read_timeout: DEFAULT_BODY_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: default_max_connections(),
        }
    }
}

/// Half the process's file descriptor limit (soft `RLIMIT_NOFILE`), between
/// 16 and 65536: the other half stays for the plugin connections, files and
/// child processes the requests need.
pub fn default_max_connections() -> usize {
    let mut rl = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct it is given.
    let soft = if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut rl) } == 0 {
        rl.rlim_cur
    } else {
        1024
    };
    let soft = usize::try_from(soft).unwrap_or(usize::MAX);
    (soft / 2).clamp(16, 65536)
}

/// A request body that did not arrive within its bound.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received within {0:?}")]
pub struct BodyReadTimeout(pub Duration);

/// The [`BodyReadTimeout`] somewhere in `e`'s chain of sources, if any.
pub fn body_read_timeout<'a>(
    e: &'a (dyn std::error::Error + 'static),
) -> Option<&'a BodyReadTimeout> {
    let mut cur: Option<&'a (dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(t) = err.downcast_ref::<BodyReadTimeout>() {
            return Some(t);
        }
        cur = err.source();
    }
    None
}

/// Why the server closed a connection itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Closed {
    NoRequestHead,
    Idle,
    Evicted,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Closed::NoRequestHead => "no complete request head in time",
            Closed::Idle => "idle for too long",
            Closed::Evicted => "closed to make room at the connection limit",
        })
    }
}

/// What one connection is doing, shared by its task, its I/O and its requests.
struct Conn {
    /// Requests whose response has not been sent completely.
    active: AtomicUsize,
    /// Requests received so far.
    served: AtomicU64,
    /// Asked to close (at the connection limit) if still idle.
    evict: AtomicBool,
    /// The client speaks HTTP/2 (its frames between requests are not request heads).
    h2: AtomicBool,
    /// Did the first bytes arrive yet?
    started: AtomicBool,
    times: Mutex<Times>,
    /// Wakes the watchdog when any of the above changes.
    wake: Notify,
}

struct Times {
    /// When the last request ended (or the connection opened).
    idle_since: Instant,
    /// First byte of a request head not yet complete.
    head_started: Option<Instant>,
}

impl Conn {
    fn new() -> Conn {
        Conn {
            active: AtomicUsize::new(0),
            served: AtomicU64::new(0),
            evict: AtomicBool::new(false),
            h2: AtomicBool::new(false),
            started: AtomicBool::new(false),
            times: Mutex::new(Times {
                idle_since: Instant::now(),
                head_started: None,
            }),
            wake: Notify::new(),
        }
    }

    fn times(&self) -> std::sync::MutexGuard<'_, Times> {
        self.times.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn idle(&self) -> bool {
        self.active.load(Ordering::Acquire) == 0
    }

    fn on_bytes(&self, bytes: &[u8]) {
        if !self.started.swap(true, Ordering::AcqRel) && bytes.starts_with(b"PRI ") {
            self.h2.store(true, Ordering::Release);
        }
        if self.h2.load(Ordering::Acquire) || !self.idle() {
            return;
        }
        let mut t = self.times();
        if t.head_started.is_none() {
            t.head_started = Some(Instant::now());
            drop(t);
            self.wake.notify_one();
        }
    }

    fn request_started(&self) {
        self.active.fetch_add(1, Ordering::AcqRel);
        self.served.fetch_add(1, Ordering::AcqRel);
        self.times().head_started = None;
        self.wake.notify_one();
    }

    fn request_ended(&self) {
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            let mut t = self.times();
            t.idle_since = Instant::now();
            t.head_started = None;
            drop(t);
            self.wake.notify_one();
        }
    }

    /// When an idle connection is to be closed, and why.
    fn deadline(&self, limits: &ConnectionLimits) -> (Instant, Closed) {
        let t = self.times();
        let mut due = if self.served.load(Ordering::Acquire) == 0 {
            (
                t.idle_since + limits.header_read_timeout,
                Closed::NoRequestHead,
            )
        } else {
            (t.idle_since + limits.idle_timeout, Closed::Idle)
        };
        if let Some(h) = t.head_started {
            let head_due = h + limits.header_read_timeout;
            if head_due < due.0 {
                due = (head_due, Closed::NoRequestHead);
            }
        }
        due
    }

    /// Resolves when the connection is to be closed: idle past its bound, or
    /// evicted while idle.
    async fn watchdog(&self, limits: &ConnectionLimits) -> Closed {
        loop {
            let woken = self.wake.notified();
            if !self.idle() {
                // a request in flight is never cut here (its body has its own bound)
                self.evict.store(false, Ordering::Release);
                woken.await;
                continue;
            }
            if self.evict.load(Ordering::Acquire) {
                return Closed::Evicted;
            }
            let (due, why) = self.deadline(limits);
            if Instant::now() >= due {
                return why;
            }
            tokio::select! {
                _ = woken => {}
                _ = tokio::time::sleep_until(due.into()) => {}
            }
        }
    }
}

/// The client's I/O, noting when bytes arrive.
struct Watched<I> {
    io: I,
    conn: Arc<Conn>,
}

impl<I: AsyncRead + Unpin> AsyncRead for Watched<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = r
            && buf.filled().len() > before
        {
            self.conn.on_bytes(&buf.filled()[before..]);
        }
        r
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for Watched<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// A request body that must be complete by a deadline.
struct DeadlineBody {
    inner: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
    limit: Duration,
}

impl http_body::Body for DeadlineBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(f) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(f.map(|r| r.map_err(Into::into)));
        }
        if self.sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Some(Err(Box::new(BodyReadTimeout(self.limit)))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A response body that marks its request finished when sent (or dropped).
struct Tracked {
    inner: Body,
    _done: RequestGuard,
}

impl http_body::Body for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

struct RequestGuard(Arc<Conn>);

impl RequestGuard {
    fn new(conn: Arc<Conn>) -> RequestGuard {
        conn.request_started();
        RequestGuard(conn)
    }
}

impl Drop for RequestGuard {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

/// Room for one connection under [`ConnectionLimits::max_connections`].
pub struct Slot(#[allow(dead_code)] OwnedSemaphorePermit);

struct Inner {
    limits: ConnectionLimits,
    slots: Arc<Semaphore>,
    open: Mutex<HashMap<u64, Arc<Conn>>>,
    next_id: AtomicU64,
    shutdown: flag::Flag,
    closed: Notify,
    last_full_warning: Mutex<Option<Instant>>,
}

/// Small one-shot flag with waiters (a cancellation token without the dependency).
mod flag {
    use std::sync::atomic::{AtomicBool, Ordering};
    use tokio::sync::Notify;

    #[derive(Default)]
    pub struct Flag {
        set: AtomicBool,
        notify: Notify,
    }

    impl Flag {
        pub fn set(&self) {
            self.set.store(true, Ordering::Release);
            self.notify.notify_waiters();
        }
        pub async fn wait(&self) {
            let n = self.notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.set.load(Ordering::Acquire) {
                return;
            }
            n.await;
        }
    }
}

/// The open connections of one server, under [`ConnectionLimits`].
#[derive(Clone)]
pub struct Connections {
    inner: Arc<Inner>,
}

impl Connections {
    pub fn new(limits: ConnectionLimits) -> Connections {
        let max = limits.max_connections.max(1);
        Connections {
            inner: Arc::new(Inner {
                limits,
                slots: Arc::new(Semaphore::new(max)),
                open: Mutex::new(HashMap::new()),
                next_id: AtomicU64::new(0),
                shutdown: Default::default(),
                closed: Notify::new(),
                last_full_warning: Mutex::new(None),
            }),
        }
    }

    pub fn limits(&self) -> &ConnectionLimits {
        &self.inner.limits
    }

    /// Connections being served now.
    pub fn open(&self) -> usize {
        self.open_map().len()
    }

    fn open_map(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<Conn>>> {
        self.inner.open.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Room for the next connection: at once below the limit; at the limit,
    /// after closing idle connections (never-used ones first, see
    /// [`Connections::make_room`]), or, when all are busy, once one ends. Accept only after this resolves,
    /// so waiting clients stay in the kernel's queue and use no descriptor here.
    pub async fn slot(&self) -> Slot {
        loop {
            if let Ok(p) = self.inner.slots.clone().try_acquire_owned() {
                return Slot(p);
            }
            self.make_room();
            tokio::select! {
                p = self.inner.slots.clone().acquire_owned() => {
                    if let Ok(p) = p {
                        return Slot(p);
                    }
                }
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
        }
    }

    /// Close idle connections to make room: up to 1/16 of the limit of those
    /// that never sent a request (oldest first), else the one kept alive the
    /// longest. Connections with a request in flight are never chosen.
    fn make_room(&self) {
        let batch = (self.inner.limits.max_connections / 16).max(1);
        let victims: Vec<Arc<Conn>> = {
            let open = self.open_map();
            let mut idle: Vec<(bool, Instant, Arc<Conn>)> = open
                .values()
                .filter(|c| c.idle() && !c.evict.load(Ordering::Acquire))
                .map(|c| {
                    let used = c.served.load(Ordering::Acquire) > 0;
                    (used, c.times().idle_since, c.clone())
                })
                .collect();
            idle.sort_by_key(|(used, since, _)| (*used, *since));
            let unused = idle.iter().take_while(|(used, _, _)| !used).count();
            let n = if unused > 0 { unused.min(batch) } else { 1 };
            idle.into_iter().take(n).map(|(_, _, c)| c).collect()
        };
        let now = Instant::now();
        {
            let mut last = self
                .inner
                .last_full_warning
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_none_or(|t| now.duration_since(t) > Duration::from_secs(10)) {
                *last = Some(now);
                tracing::warn!(
                    max = self.inner.limits.max_connections,
                    "connection limit reached; closing idle connections to make room"
                );
            }
        }
        for c in victims {
            c.evict.store(true, Ordering::Release);
            c.wake.notify_one();
        }
    }

    /// Serve `app` on the connection `io` (HTTP/1.1 or HTTP/2) in a task of its
    /// own, under the limits, holding `slot` until it closes.
    pub fn serve<I>(&self, slot: Slot, io: I, app: Router)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let me = self.clone();
        tokio::spawn(async move {
            let id = me.inner.next_id.fetch_add(1, Ordering::Relaxed);
            let conn = Arc::new(Conn::new());
            me.open_map().insert(id, conn.clone());
            let ended = me.run(io, app, &conn).await;
            tracing::debug!("connection ended: {ended}");
            me.open_map().remove(&id);
            drop(slot);
            me.inner.closed.notify_waiters();
        });
    }

    async fn run<I>(&self, io: I, app: Router, conn: &Arc<Conn>) -> String
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let limits = &self.inner.limits;
        let body_limit = limits.body_read_timeout;
        let c = conn.clone();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let guard = RequestGuard::new(c.clone());
            let app = app.clone();
            async move {
                let req = req.map(|inner| {
                    Body::new(DeadlineBody {
                        inner,
                        sleep: Box::pin(tokio::time::sleep(body_limit)),
                        limit: body_limit,
                    })
                });
                let Ok(mut resp) = app.oneshot(req).await;
                if resp.status() == StatusCode::REQUEST_TIMEOUT {
                    // the rest of a late body would be read as the next request
                    resp.headers_mut()
                        .insert(header::CONNECTION, HeaderValue::from_static("close"));
                }
                Ok::<_, Infallible>(resp.map(|inner| Tracked {
                    inner,
                    _done: guard,
                }))
            }
        });
        let mut builder = auto::Builder::new(TokioExecutor::new());
        builder.http1().timer(TokioTimer::new()).keep_alive(true);
        // one HTTP/2 connection may carry as many requests at once as the
        // server takes connections (a client with one connection for its
        // every log follow)
        builder
            .http2()
            .timer(TokioTimer::new())
            .max_concurrent_streams(
                u32::try_from(limits.max_connections.max(1024)).unwrap_or(u32::MAX),
            );
        let io = Watched {
            io,
            conn: conn.clone(),
        };
        let served = builder.serve_connection_with_upgrades(TokioIo::new(io), svc);
        tokio::pin!(served);
        let mut draining = false;
        loop {
            tokio::select! {
                r = served.as_mut() => {
                    return match r {
                        Ok(()) => "closed".into(),
                        Err(e) => e.to_string(),
                    };
                }
                why = conn.watchdog(limits) => return why.to_string(),
                _ = self.inner.shutdown.wait(), if !draining => {
                    draining = true;
                    served.as_mut().graceful_shutdown();
                }
            }
        }
    }

    /// Ask every connection to finish its requests and close (idle ones close
    /// at once).
    pub fn shutdown(&self) {
        self.inner.shutdown.set();
    }

    /// Resolves when no connection is open.
    pub async fn drained(&self) {
        loop {
            let n = self.inner.closed.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.open() == 0 {
                return;
            }
            n.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_deadlines() {
        let limits = ConnectionLimits {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(90),
            max_connections: 4,
        };
        let c = Conn::new();
        let opened = c.times().idle_since;
        assert_eq!(
            c.deadline(&limits),
            (opened + Duration::from_secs(10), Closed::NoRequestHead)
        );
        c.request_started();
        c.request_ended();
        let (due, why) = c.deadline(&limits);
        assert_eq!(why, Closed::Idle);
        assert!(due >= opened + Duration::from_secs(90));
        // the next request's first bytes start the head bound
        c.on_bytes(b"GET / HT");
        assert_eq!(c.deadline(&limits).1, Closed::NoRequestHead);
        // an HTTP/2 client's frames between requests are not request heads
        let h2 = Conn::new();
        h2.on_bytes(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
        h2.request_started();
        h2.request_ended();
        h2.on_bytes(b"\0\0\0\x04\x01\0\0\0\0");
        assert_eq!(h2.deadline(&limits).1, Closed::Idle);
    }

    #[test]
    fn body_timeout_found_in_a_chain() {
        let e = axum::Error::new(BodyReadTimeout(Duration::from_secs(2)));
        assert_eq!(body_read_timeout(&e).unwrap().0, Duration::from_secs(2));
        let other = axum::Error::new(io::Error::other("x"));
        assert!(body_read_timeout(&other).is_none());
    }

    #[test]
    fn default_max_is_a_fraction_of_the_fd_limit() {
        let m = default_max_connections();
        assert!((16..=65536).contains(&m), "{m}");
    }
}
