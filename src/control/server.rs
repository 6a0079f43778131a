//! The control port's HTTP server, with a limit on everything a client could make it spend.
//!
//! hyper (HTTP/1.1 only, the server half) on a current-thread tokio runtime that lives in
//! the one thread serving the port: the parser, the header limits, the keep-alive and the
//! header read timeout are hyper's, widely deployed (the Prometheus exporters of the Rust
//! world run on it); one runtime thread is all a port answering a few requests a second
//! needs, and it keeps the data path's threads free of it. Each connection is a task, so a
//! client that stops reading holds up its own connection only.
//!
//! The limits, and what happens at each:
//! - at most [`MAX_CONNECTIONS`] connections: a new one closes the one that has been idle
//!   longest, so that a crowd of idle connections cannot lock `wanlb status` out (and wanlb
//!   never holds more than a few dozen descriptors for the port);
//! - [`HEADER_TIMEOUT`] to send a request's head, from the connection's start or the end of
//!   the previous answer (an idle keep-alive connection is closed after it);
//! - [`WRITE_TIMEOUT`] for an answer to make progress, for a client that does not read;
//! - a head of at most [`MAX_HEAD`] bytes in at most [`MAX_HEADERS`] lines (hyper answers
//!   431 beyond);
//! - a body announced above [`MAX_BODY`] bytes is answered 413 and never read (no route
//!   takes a body); smaller ones are ignored;
//! - when wanlb stops, the runtime is dropped with every connection in it: whatever clients
//!   do, the port is gone within [`STOP_CHECK`].
//!
//! The gateway's reports are borrowed, not owned: each request goes over a channel to the
//! loop that owns the listener, which answers it with [`super::http::respond`].

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::Full;
use hyper::body::{Body, Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, http::request::Parts};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot};
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Sleep;

use super::Gateway;
use super::access::Access;
use super::http::{Ends, respond};

/// Connections open at once; the next one closes the idlest.
pub const MAX_CONNECTIONS: usize = 64;
/// How long a client has to send a request's head.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an answer may wait for the client to read it.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// A request's head (request line and headers), in bytes.
pub const MAX_HEAD: usize = 16 * 1024;
/// Header lines of a request.
pub const MAX_HEADERS: usize = 64;
/// The largest request body ignored rather than refused.
pub const MAX_BODY: u64 = 4096;
/// How often the server looks whether wanlb is stopping.
pub const STOP_CHECK: Duration = Duration::from_millis(100);

/// The control port's listening socket, bound before the serving thread starts (so that an
/// address in use is reported at start).
pub struct Server {
    listener: std::net::TcpListener,
}

impl Server {
    pub fn bind(addr: SocketAddr) -> io::Result<Server> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        Ok(Server { listener })
    }

    /// The address it listens on (the port chosen, if 0 was asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }
}

/// The body a request announced, as far as answering it goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RequestBody {
    /// None, or one of at most [`MAX_BODY`] bytes, ignored.
    Ignored,
    /// More than [`MAX_BODY`] bytes, or of a length not announced: never read.
    TooLarge,
}

/// What the server counts, for `/metrics`.
#[derive(Debug, Default)]
pub struct Counters {
    pub connections: AtomicU64,
    pub closed_idlest: AtomicU64,
    pub closed_timeout: AtomicU64,
    pub refused_host: AtomicU64,
    pub refused_origin: AtomicU64,
    pub refused_token: AtomicU64,
    pub refused_body: AtomicU64,
}

/// [`Counters`] at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ControlCounts {
    /// Connections accepted so far.
    pub connections: u64,
    /// Connections closed by the server, by reason (`idlest`, `timeout`).
    pub closed: Vec<(&'static str, u64)>,
    /// Requests refused, by reason (`host`, `origin`, `token`, `body`).
    pub refused: Vec<(&'static str, u64)>,
}

impl Counters {
    pub fn counts(&self) -> ControlCounts {
        let n = |c: &AtomicU64| c.load(Ordering::Relaxed);
        ControlCounts {
            connections: n(&self.connections),
            closed: vec![
                ("idlest", n(&self.closed_idlest)),
                ("timeout", n(&self.closed_timeout)),
            ],
            refused: vec![
                ("host", n(&self.refused_host)),
                ("origin", n(&self.refused_origin)),
                ("token", n(&self.refused_token)),
                ("body", n(&self.refused_body)),
            ],
        }
    }
}

fn count(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

/// A request on its way to the loop that answers it.
struct Call {
    head: Parts,
    body: RequestBody,
    /// Where the request arrived (the gateway's own address) and where it came from.
    ends: Ends,
    answer: oneshot::Sender<Response<Full<Bytes>>>,
}

/// Serves `gateway` on `server` for whoever `access` lets in, until `stop` is set.
pub fn serve(
    server: Server,
    access: &Access,
    gateway: &impl Gateway,
    stop: &AtomicBool,
) -> io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    // dropping the runtime at the end drops every connection still open, whatever its
    // client does
    runtime.block_on(run(server, access, gateway, stop))
}

async fn run(
    server: Server,
    access: &Access,
    gateway: &impl Gateway,
    stop: &AtomicBool,
) -> io::Result<()> {
    let listener = TcpListener::from_std(server.listener)?;
    let counters = Arc::new(Counters::default());
    let (calls_to, mut calls) = mpsc::channel::<Call>(MAX_CONNECTIONS);
    let mut open = Connections::default();
    let mut check_stop = tokio::time::interval(STOP_CHECK);
    while !stop.load(Ordering::Relaxed) {
        // Requests waiting for an answer come before new connections, and each connection
        // accepted lets the open ones read before the next: otherwise a client that opens
        // connections faster than they are served makes every other one the idlest, and
        // closed, before its request is even read.
        tokio::select! {
            biased;
            Some(call) = calls.recv() => {
                let answer = respond(&call.head, call.body, call.ends, access, gateway, &counters);
                // the client may be gone, and its connection with it
                let _ = call.answer.send(answer);
            }
            Some(done) = open.tasks.join_next_with_id() => {
                let id = match done {
                    Ok((id, ())) => id,
                    Err(e) => e.id(),
                };
                open.by_task.remove(&id);
            }
            _ = check_stop.tick() => {}
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    count(&counters.connections);
                    if open.len() >= MAX_CONNECTIONS && open.close_idlest() {
                        count(&counters.closed_idlest);
                    }
                    open.start(stream, &calls_to, &counters);
                    tokio::task::yield_now().await;
                }
                Err(e) => {
                    // out of descriptors, say: the backlog waits until one is free
                    tracing::debug!(error = %e, "the control port cannot accept a connection now");
                    tokio::time::sleep(STOP_CHECK).await;
                }
            },
        }
    }
    Ok(())
}

/// The connections open, each a task with what it last did.
#[derive(Default)]
struct Connections {
    tasks: JoinSet<()>,
    by_task: HashMap<tokio::task::Id, (AbortHandle, Arc<Activity>)>,
    /// Where the connections' clocks start.
    epoch: Option<Instant>,
}

impl Connections {
    fn len(&self) -> usize {
        self.by_task.len()
    }

    fn start(&mut self, stream: TcpStream, calls: &mpsc::Sender<Call>, counters: &Arc<Counters>) {
        let epoch = *self.epoch.get_or_insert_with(Instant::now);
        let activity = Arc::new(Activity::new(epoch));
        let handle = self.tasks.spawn(connection(
            stream,
            activity.clone(),
            calls.clone(),
            counters.clone(),
        ));
        self.by_task.insert(handle.id(), (handle, activity));
    }

    /// Closes the connection that has been idle longest; false if there is none.
    fn close_idlest(&mut self) -> bool {
        let idlest = self
            .by_task
            .iter()
            .min_by_key(|(_, (_, a))| a.last.load(Ordering::Relaxed))
            .map(|(id, _)| *id);
        let Some((handle, _)) = idlest.and_then(|id| self.by_task.remove(&id)) else {
            return false;
        };
        handle.abort();
        true
    }
}

/// When a connection last moved a byte, and whether it ended for a client that stopped
/// reading.
struct Activity {
    epoch: Instant,
    /// Microseconds since `epoch` (finer than the accepts of a flood follow each other).
    last: AtomicU64,
    write_timed_out: AtomicBool,
}

impl Activity {
    fn new(epoch: Instant) -> Activity {
        let a = Activity {
            epoch,
            last: AtomicU64::new(0),
            write_timed_out: AtomicBool::new(false),
        };
        a.touch();
        a
    }

    fn touch(&self) {
        let us = self.epoch.elapsed().as_micros() as u64;
        self.last.store(us, Ordering::Relaxed);
    }
}

/// Serves one connection: hyper parses, each request goes to the loop, its answer back.
async fn connection(
    stream: TcpStream,
    activity: Arc<Activity>,
    calls: mpsc::Sender<Call>,
    counters: Arc<Counters>,
) {
    let (Ok(local), Ok(client)) = (stream.local_addr(), stream.peer_addr()) else {
        return;
    };
    let ends = Ends { local, client };
    let io = TokioIo::new(Timed {
        stream,
        activity: activity.clone(),
        stalled: None,
    });
    let service = service_fn(move |request: Request<Incoming>| {
        let calls = calls.clone();
        async move {
            let (head, body) = request.into_parts();
            let body = match body.size_hint().exact() {
                _ if body.is_end_stream() => RequestBody::Ignored,
                Some(n) if n <= MAX_BODY => RequestBody::Ignored,
                _ => RequestBody::TooLarge,
            };
            let (answer, answered) = oneshot::channel();
            let call = Call {
                head,
                body,
                ends,
                answer,
            };
            let stopping = || io::Error::other("wanlb is stopping");
            calls.send(call).await.map_err(|_| stopping())?;
            answered.await.map_err(|_| stopping())
        }
    });
    let served = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .max_buf_size(MAX_HEAD)
        .max_headers(MAX_HEADERS)
        .serve_connection(io, service)
        .await;
    if let Err(e) = served {
        if e.is_timeout() || activity.write_timed_out.load(Ordering::Relaxed) {
            count(&counters.closed_timeout);
        }
        tracing::debug!(error = %e, "a control port connection ended");
    }
}

/// A connection's stream that notes when it last moved a byte, and fails a write that has
/// waited [`WRITE_TIMEOUT`] for the client to read.
struct Timed {
    stream: TcpStream,
    activity: Arc<Activity>,
    /// Since when a write has been waiting.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl Timed {
    fn write_with<T>(
        &mut self,
        cx: &mut Context<'_>,
        write: impl FnOnce(Pin<&mut TcpStream>, &mut Context<'_>) -> Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        let result = write(Pin::new(&mut self.stream), cx);
        if result.is_pending() {
            let stalled = self
                .stalled
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(WRITE_TIMEOUT)));
            if stalled.as_mut().poll(cx).is_ready() {
                self.activity.write_timed_out.store(true, Ordering::Relaxed);
                return Poll::Ready(Err(io::ErrorKind::TimedOut.into()));
            }
            return Poll::Pending;
        }
        self.stalled = None;
        if matches!(result, Poll::Ready(Ok(_))) {
            self.activity.touch();
        }
        result
    }
}

impl AsyncRead for Timed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.stream).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl AsyncWrite for Timed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_with(cx, |s, cx| s.poll_write(cx, buf))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.write_with(cx, |s, cx| s.poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write_with(cx, |s, cx| s.poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.write_with(cx, |s, cx| s.poll_shutdown(cx))
    }
}
