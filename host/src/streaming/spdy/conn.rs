//! The server side of a SPDY/3.1 connection, as Kubernetes clients use it
//! (moby/spdystream): the client opens every stream (SYN_STREAM, odd ids), the
//! server accepts it with an empty SYN_REPLY; each side half-closes with FIN;
//! RST_STREAM cancels a stream; PINGs from the client are echoed; GOAWAY ends
//! the connection. Like spdystream there is no flow control (WINDOW_UPDATE and
//! SETTINGS are read and ignored): a stream whose reader is slow holds the
//! connection's reader, which bounds what is buffered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

use super::frame::{FLAG_FIN, Frame, HeaderCodec, Headers, RST_CANCEL, RST_PROTOCOL_ERROR};

/// Largest data frame this side sends.
const MAX_SEND_CHUNK: usize = 32 * 1024;
/// Data chunks buffered per stream before the connection's reader waits.
const STREAM_BUFFER: usize = 16;
/// How long a closing connection waits for the client to hang up.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// A stream the client opened.
pub struct Stream {
    pub id: u32,
    pub headers: Headers,
    /// Data from the client; ends at its FIN, a reset or the connection's end.
    pub rx: mpsc::Receiver<Bytes>,
    pub tx: StreamWriter,
}

impl Stream {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::frame::header(&self.headers, name)
    }
}

/// The sending half of a stream; cheap to clone.
#[derive(Clone)]
pub struct StreamWriter {
    id: u32,
    shared: Arc<Shared>,
    closed: Arc<AtomicBool>,
}

#[derive(Debug, thiserror::Error)]
#[error("SPDY stream {0} is closed")]
pub struct Closed(pub u32);

impl StreamWriter {
    /// Send `data` (split in frames); fails once the stream or connection is gone.
    pub async fn write(&self, data: Bytes) -> Result<(), Closed> {
        let mut data = data;
        while !data.is_empty() {
            let chunk = data.split_to(data.len().min(MAX_SEND_CHUNK));
            self.send_frame(Frame::Data {
                stream_id: self.id,
                flags: 0,
                data: chunk,
            })
            .await?;
        }
        Ok(())
    }

    /// Half-close: FIN (an empty data frame). Later calls do nothing.
    pub async fn close(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self
            .shared
            .send_frame(Frame::Data {
                stream_id: self.id,
                flags: FLAG_FIN,
                data: Bytes::new(),
            })
            .await;
    }

    /// Cancel the stream (RST_STREAM).
    pub async fn reset(&self) {
        if self.closed.swap(true, Ordering::SeqCst) {
            return;
        }
        let _ = self
            .shared
            .send_frame(Frame::RstStream {
                stream_id: self.id,
                status: RST_CANCEL,
            })
            .await;
    }

    async fn send_frame(&self, f: Frame) -> Result<(), Closed> {
        if self.closed.load(Ordering::SeqCst) {
            return Err(Closed(self.id));
        }
        self.shared.send_frame(f).await.map_err(|_| Closed(self.id))
    }
}

/// What the writer task is told.
enum Out {
    Frame(Frame),
    /// Write what is queued, then shut the write half down.
    Finish,
}

struct Entry {
    data: Option<mpsc::Sender<Bytes>>,
    writer_closed: Arc<AtomicBool>,
}

struct Shared {
    out: mpsc::Sender<Out>,
    streams: Mutex<HashMap<u32, Entry>>,
    /// Milliseconds since `epoch` of the last frame either way.
    last_activity: AtomicU64,
    epoch: Instant,
    last_stream: AtomicU64,
}

impl Shared {
    async fn send_frame(&self, f: Frame) -> Result<(), ()> {
        self.out.send(Out::Frame(f)).await.map_err(|_| ())
    }

    fn touch(&self) {
        self.last_activity
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }
}

/// One SPDY connection (server side). Dropping it ends the connection's tasks.
pub struct Conn {
    shared: Arc<Shared>,
    incoming: mpsc::Receiver<Stream>,
    /// true once the peer is gone (EOF, error or GOAWAY).
    gone: watch::Receiver<bool>,
    reader: AbortOnDrop,
    writer: tokio::task::JoinHandle<()>,
}

impl Conn {
    /// Start serving `io` (an upgraded HTTP connection).
    pub fn new<T>(io: T) -> Conn
    where
        T: AsyncRead + AsyncWrite + Send + 'static,
    {
        let (r, w) = tokio::io::split(io);
        let (out_tx, out_rx) = mpsc::channel::<Out>(64);
        let (in_tx, in_rx) = mpsc::channel::<Stream>(16);
        let (gone_tx, gone_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            out: out_tx,
            streams: Mutex::new(HashMap::new()),
            last_activity: AtomicU64::new(0),
            epoch: Instant::now(),
            last_stream: AtomicU64::new(0),
        });
        let writer = tokio::spawn(write_loop(w, out_rx, shared.clone()));
        let reader = AbortOnDrop(tokio::spawn(read_loop(r, in_tx, gone_tx, shared.clone())));
        Conn {
            shared,
            incoming: in_rx,
            gone: gone_rx,
            reader,
            writer,
        }
    }

    /// The next stream the client opens; `None` once it cannot open more.
    pub async fn accept(&mut self) -> Option<Stream> {
        self.incoming.recv().await
    }

    /// Resolves when the peer has gone (EOF, a read error or its GOAWAY).
    pub fn gone(&self) -> watch::Receiver<bool> {
        self.gone.clone()
    }

    /// How long since the last frame either way.
    pub fn idle_for(&self) -> Duration {
        let last = self.shared.last_activity.load(Ordering::Relaxed);
        self.shared
            .epoch
            .elapsed()
            .saturating_sub(Duration::from_millis(last))
    }

    /// End the connection cleanly: GOAWAY, flush, then wait (bounded) for the
    /// client to hang up so nothing it has not read yet is lost to a reset.
    pub async fn close(self) {
        let last = self.shared.last_stream.load(Ordering::SeqCst) as u32;
        let _ = self
            .shared
            .send_frame(Frame::GoAway {
                last_good_stream_id: last,
                status: 0,
            })
            .await;
        let Conn {
            shared,
            incoming,
            mut gone,
            reader,
            writer,
        } = self;
        drop(incoming);
        let _ = shared.out.send(Out::Finish).await;
        drop(shared);
        let deadline = tokio::time::sleep(CLOSE_GRACE);
        tokio::pin!(deadline);
        let mut writer = writer;
        tokio::select! {
            _ = &mut writer => {}
            _ = &mut deadline => { writer.abort(); }
        }
        tokio::select! {
            _ = gone.wait_for(|g| *g) => {}
            _ = &mut deadline => {}
        }
        drop(reader);
    }
}

/// A task aborted when its handle is dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn write_loop<W: AsyncWrite + Unpin>(
    mut w: W,
    mut rx: mpsc::Receiver<Out>,
    shared: Arc<Shared>,
) {
    // the writer holds no strong reference: the senders' owners decide its life
    let weak = Arc::downgrade(&shared);
    drop(shared);
    let mut codec = HeaderCodec::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut finish = false;
    while !finish {
        let Some(first) = rx.recv().await else { break };
        buf.clear();
        let mut next = Some(first);
        // batch what is already queued
        while let Some(o) = next.take() {
            match o {
                Out::Frame(f) => {
                    if let Err(e) = f.encode(&mut codec, &mut buf) {
                        tracing::debug!(error = %e, "SPDY frame not encoded");
                    }
                }
                Out::Finish => {
                    finish = true;
                    break;
                }
            }
            if buf.len() < 256 * 1024 {
                next = rx.try_recv().ok();
            }
        }
        if w.write_all(&buf).await.is_err() || w.flush().await.is_err() {
            break;
        }
        if let Some(s) = weak.upgrade() {
            s.touch();
        }
    }
    let _ = w.shutdown().await;
}

async fn read_loop<R: AsyncRead + Unpin>(
    mut r: R,
    incoming: mpsc::Sender<Stream>,
    gone: watch::Sender<bool>,
    shared: Arc<Shared>,
) {
    let mut codec = HeaderCodec::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    let mut last_id = 0u32;
    'read: loop {
        let frame = loop {
            match Frame::decode(&mut codec, &mut buf) {
                Ok(Some(f)) => break f,
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "SPDY connection: bad frame");
                    let _ = shared
                        .send_frame(Frame::GoAway {
                            last_good_stream_id: last_id,
                            status: 1,
                        })
                        .await;
                    break 'read;
                }
            }
            match r.read_buf(&mut buf).await {
                Ok(0) | Err(_) => break 'read,
                Ok(_) => {}
            }
        };
        shared.touch();
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                // client streams are odd and increase
                if stream_id % 2 == 0 || stream_id <= last_id {
                    let _ = shared
                        .send_frame(Frame::RstStream {
                            stream_id,
                            status: RST_PROTOCOL_ERROR,
                        })
                        .await;
                    continue;
                }
                last_id = stream_id;
                shared.last_stream.store(stream_id as u64, Ordering::SeqCst);
                let (tx, rx) = mpsc::channel(STREAM_BUFFER);
                let closed = Arc::new(AtomicBool::new(false));
                shared.streams.lock().expect("streams").insert(
                    stream_id,
                    Entry {
                        data: (flags & FLAG_FIN == 0).then_some(tx),
                        writer_closed: closed.clone(),
                    },
                );
                let _ = shared
                    .send_frame(Frame::SynReply {
                        stream_id,
                        flags: 0,
                        headers: vec![],
                    })
                    .await;
                let s = Stream {
                    id: stream_id,
                    headers,
                    rx,
                    tx: StreamWriter {
                        id: stream_id,
                        shared: shared.clone(),
                        closed,
                    },
                };
                if incoming.send(s).await.is_err() {
                    // nobody accepts streams any more
                    let _ = shared
                        .send_frame(Frame::RstStream {
                            stream_id,
                            status: super::frame::RST_REFUSED_STREAM,
                        })
                        .await;
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let tx = shared
                    .streams
                    .lock()
                    .expect("streams")
                    .get(&stream_id)
                    .and_then(|e| e.data.clone());
                if let Some(tx) = tx {
                    if !data.is_empty() {
                        // a receiver that is gone just drops the data
                        let _ = tx.send(data).await;
                    }
                    if flags & FLAG_FIN != 0
                        && let Some(e) = shared.streams.lock().expect("streams").get_mut(&stream_id)
                    {
                        e.data = None;
                    }
                }
            }
            Frame::Headers {
                stream_id, flags, ..
            } => {
                if flags & FLAG_FIN != 0
                    && let Some(e) = shared.streams.lock().expect("streams").get_mut(&stream_id)
                {
                    e.data = None;
                }
            }
            Frame::RstStream { stream_id, .. } => {
                if let Some(e) = shared.streams.lock().expect("streams").remove(&stream_id) {
                    e.writer_closed.store(true, Ordering::SeqCst);
                }
            }
            Frame::Ping { id } => {
                // echo the client's (odd) pings; ours would be even
                if id % 2 == 1 {
                    let _ = shared.send_frame(Frame::Ping { id }).await;
                }
            }
            Frame::GoAway { .. } => break 'read,
            Frame::SynReply { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Unknown { .. } => {}
        }
    }
    // every stream reads EOF; writers fail from now on
    for (_, e) in shared.streams.lock().expect("streams").drain() {
        e.writer_closed.store(true, Ordering::SeqCst);
    }
    drop(incoming);
    let _ = gone.send(true);
}
