//! One TCP connection to one broker address, with several requests in flight.
//!
//! A [`Connection`] owns a tokio `TcpStream` split between a writer task and a reader task.
//! Callers get a correlation id, hand the writer an encoded frame, and wait on a one-shot channel
//! that the reader completes when the response with that correlation id arrives, so responses may
//! come back in any order. Invariants:
//! - at most `inflight_requests_max` requests are in flight (a caller past the limit waits for a
//!   permit), and the writer's queue is bounded by the same number;
//! - the read buffer never holds more than one frame of at most `frame_bytes_max` bytes plus one
//!   read's worth;
//! - when the connection fails, every pending and every later request fails: after an I/O
//!   error or the end of the stream with [`Error::ConnectionLost`], which is retriable; after a
//!   frame that cannot be decoded (over `frame_bytes_max`, or breaking the protocol) with
//!   [`Error::Protocol`], which is not, since the same answer would come again. The connection
//!   never recovers, and the owner replaces it with a new one;
//! - a response's throttle time delays the next frame the writer sends, so a throttled client
//!   slows down instead of being cut off.
//!
//! Dropping the last handle aborts both tasks and closes the socket.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use weir_proto::wire::{
    ApiKey, ErrorResponse, FrameDecoderConfig, ResponseFrame, ResponseFrameDecoder,
    LENGTH_PREFIX_BYTES,
};

use crate::error::Error;

/// The bytes the reader asks the socket for at a time.
const READ_CHUNK_BYTES: usize = 64 * 1024;
/// The writer's buffer: small frames are coalesced into one write, large ones bypass it.
const WRITE_BUFFER_BYTES: usize = 64 * 1024;

/// Limits and timeouts of one connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionConfig {
    /// The most requests sent and not yet answered.
    pub inflight_requests_max: usize,
    /// The largest response frame accepted (length prefix value).
    pub frame_bytes_max: u32,
    /// How long opening the TCP connection may take.
    pub connect_timeout_ms: u64,
    /// How long a request may wait for its response once sent.
    pub request_timeout_ms: u64,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        Self {
            inflight_requests_max: 32,
            frame_bytes_max: weir_proto::wire::FRAME_BYTES_MAX_DEFAULT,
            connect_timeout_ms: 10_000,
            request_timeout_ms: 30_000,
        }
    }
}

/// Encoded request frames, as chunks for a vectored write.
pub type FrameChunks = Vec<Bytes>;

type ResponseSender = oneshot::Sender<Result<ResponseFrame, Error>>;

/// Requests waiting for their response, or why the connection ended.
struct Pending {
    waiting: HashMap<u32, ResponseSender>,
    /// Set once the connection failed; every later request fails with it.
    /// Why the connection failed, once it has: what every later request fails with.
    failure: Option<Error>,
}

struct Shared {
    address: String,
    pending: Mutex<Pending>,
    inflight: Arc<Semaphore>,
    /// Throttle deadline from the latest response, as milliseconds since `epoch`; 0 when none.
    throttle_until_ms: AtomicU64,
    epoch: Instant,
}

impl Shared {
    /// Fails every pending request and marks the connection failed with `reason`.
    /// Ends the connection after a transport failure; its requests may be retried.
    fn fail(&self, reason: String) {
        self.fail_with(Error::ConnectionLost {
            address: self.address.clone(),
            reason,
        });
    }

    /// Ends the connection with `error`, which every waiting and later request gets.
    fn fail_with(&self, error: Error) {
        let (waiting, error) = {
            let mut pending = lock(&self.pending);
            let error = pending.failure.get_or_insert(error).clone();
            (std::mem::take(&mut pending.waiting), error)
        };
        self.inflight.close();
        for (_, sender) in waiting {
            let _ = sender.send(Err(error.clone()));
        }
    }

    fn lost(&self) -> Error {
        lock(&self.pending)
            .failure
            .clone()
            .unwrap_or_else(|| Error::ConnectionLost {
                address: self.address.clone(),
                reason: "connection closed".to_string(),
            })
    }
}

/// Locks a mutex, taking the data even if a panicking thread poisoned it: the pending map stays
/// consistent because every critical section is a single insert, remove or take.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Aborts the reader and writer tasks when the last [`Connection`] handle is dropped.
struct Tasks {
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Tasks {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

/// A multiplexed connection to one broker address (see the module documentation).
#[derive(Clone)]
pub struct Connection {
    shared: Arc<Shared>,
    outgoing: mpsc::Sender<FrameChunks>,
    next_correlation_id: Arc<AtomicU32>,
    config: ConnectionConfig,
    _tasks: Arc<Tasks>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Connection")
            .field("address", &self.shared.address)
            .field("closed", &self.is_closed())
            .finish()
    }
}

impl Connection {
    /// Opens a connection to `address` (`host:port`) and starts its reader and writer tasks.
    pub async fn connect(address: &str, config: ConnectionConfig) -> Result<Connection, Error> {
        let connect_error = |source: std::io::Error| Error::Connect {
            address: address.to_string(),
            source: Arc::new(source),
        };
        let timeout = Duration::from_millis(config.connect_timeout_ms);
        let stream = match tokio::time::timeout(timeout, TcpStream::connect(address)).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(connect_error(error)),
            Err(_elapsed) => {
                return Err(connect_error(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no answer within {} ms", config.connect_timeout_ms),
                )))
            }
        };
        // Requests are small and latency-bound; batching happens above this layer.
        stream.set_nodelay(true).map_err(connect_error)?;
        Ok(Self::from_stream(address, stream, config))
    }

    /// Wraps an open stream (used by [`Connection::connect`], and by tests with their own server).
    pub fn from_stream(address: &str, stream: TcpStream, config: ConnectionConfig) -> Connection {
        let inflight_requests_max = config.inflight_requests_max.max(1);
        let shared = Arc::new(Shared {
            address: address.to_string(),
            pending: Mutex::new(Pending {
                waiting: HashMap::with_capacity(inflight_requests_max),
                failure: None,
            }),
            inflight: Arc::new(Semaphore::new(inflight_requests_max)),
            throttle_until_ms: AtomicU64::new(0),
            epoch: Instant::now(),
        });
        let (read_half, write_half) = stream.into_split();
        let (outgoing, queued) = mpsc::channel(inflight_requests_max);
        let reader = tokio::spawn(read_loop(read_half, shared.clone(), config.frame_bytes_max));
        let writer = tokio::spawn(write_loop(write_half, queued, shared.clone()));
        Connection {
            shared,
            outgoing,
            next_correlation_id: Arc::new(AtomicU32::new(1)),
            config,
            _tasks: Arc::new(Tasks { reader, writer }),
        }
    }

    /// Returns the broker address this connection goes to.
    pub fn address(&self) -> &str {
        &self.shared.address
    }

    /// Returns true once the connection has failed or closed; it never reopens.
    pub fn is_closed(&self) -> bool {
        lock(&self.shared.pending).failure.is_some()
    }

    /// Sends one request and waits for its response frame.
    ///
    /// `encode` gets the correlation id to put in the request header and appends the encoded
    /// frame to the chunk list. A response whose header carries an error code is returned as
    /// [`Error::Broker`] with the broker's message.
    pub async fn call<E>(&self, api: ApiKey, encode: E) -> Result<ResponseFrame, Error>
    where
        E: FnOnce(u32, &mut FrameChunks) -> Result<(), weir_proto::wire::EncodeError>,
    {
        self.submit(api, encode).await?.response().await
    }

    /// Queues one request for writing and returns its pending response without waiting for it.
    ///
    /// Requests submitted one after the other (each `submit` awaited before the next starts)
    /// are written to the socket in that order, so a caller that needs several requests in
    /// flight in a fixed order submits them in sequence and awaits the responses separately.
    /// The request holds one of the connection's in-flight slots until its response arrives.
    pub async fn submit<E>(&self, api: ApiKey, encode: E) -> Result<PendingResponse, Error>
    where
        E: FnOnce(u32, &mut FrameChunks) -> Result<(), weir_proto::wire::EncodeError>,
    {
        let permit = self
            .shared
            .inflight
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.shared.lost())?;
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let mut chunks = FrameChunks::new();
        encode(correlation_id, &mut chunks)
            .map_err(|error| Error::InvalidArgument(error.to_string()))?;

        let (sender, receiver) = oneshot::channel();
        {
            let mut pending = lock(&self.shared.pending);
            if pending.failure.is_some() {
                drop(pending);
                return Err(self.shared.lost());
            }
            pending.waiting.insert(correlation_id, sender);
        }
        if self.outgoing.send(chunks).await.is_err() {
            lock(&self.shared.pending).waiting.remove(&correlation_id);
            return Err(self.shared.lost());
        }
        Ok(PendingResponse {
            shared: self.shared.clone(),
            api,
            correlation_id,
            timeout_ms: self.config.request_timeout_ms,
            receiver,
            _permit: permit,
        })
    }

    /// Sends one request that the broker does not answer (a produce with `acks = none`), waiting
    /// only until the writer has taken it.
    pub async fn send_without_response<E>(&self, encode: E) -> Result<(), Error>
    where
        E: FnOnce(u32, &mut FrameChunks) -> Result<(), weir_proto::wire::EncodeError>,
    {
        if self.is_closed() {
            return Err(self.shared.lost());
        }
        let correlation_id = self.next_correlation_id.fetch_add(1, Ordering::Relaxed);
        let mut chunks = FrameChunks::new();
        encode(correlation_id, &mut chunks)
            .map_err(|error| Error::InvalidArgument(error.to_string()))?;
        self.outgoing
            .send(chunks)
            .await
            .map_err(|_| self.shared.lost())
    }
}

/// A request written (or queued for writing) on a [`Connection`] whose response has not been
/// awaited yet; see [`Connection::submit`].
pub struct PendingResponse {
    shared: Arc<Shared>,
    api: ApiKey,
    correlation_id: u32,
    timeout_ms: u64,
    receiver: oneshot::Receiver<Result<ResponseFrame, Error>>,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

impl std::fmt::Debug for PendingResponse {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("PendingResponse")
            .field("address", &self.shared.address)
            .field("correlation_id", &self.correlation_id)
            .finish_non_exhaustive()
    }
}

impl PendingResponse {
    /// Waits for the response frame, at most the connection's request timeout; a response whose
    /// header carries an error code is returned as [`Error::Broker`].
    pub async fn response(self) -> Result<ResponseFrame, Error> {
        let timeout = Duration::from_millis(self.timeout_ms);
        let outcome = tokio::time::timeout(timeout, self.receiver).await;
        let frame = match outcome {
            Ok(Ok(result)) => result?,
            Ok(Err(_dropped)) => return Err(self.shared.lost()),
            Err(_elapsed) => {
                lock(&self.shared.pending)
                    .waiting
                    .remove(&self.correlation_id);
                return Err(Error::Timeout {
                    address: self.shared.address.clone(),
                    api: self.api.name(),
                    timeout_ms: self.timeout_ms,
                });
            }
        };
        check_response(&self.shared.address, self.api, frame)
    }
}

/// Checks that a response frame answers `api` and carries no request-level error.
fn check_response(
    address: &str,
    api: ApiKey,
    frame: ResponseFrame,
) -> Result<ResponseFrame, Error> {
    let code = frame.header.error_code();
    if !code.is_none() {
        let message = ErrorResponse::decode(&frame.header, &frame.body)
            .map(|rejection| rejection.message)
            .unwrap_or_else(|error| format!("(undecodable error message: {error})"));
        return Err(Error::Broker { code, message });
    }
    if frame.header.api_key_raw() != api.to_u16() {
        return Err(Error::Protocol {
            address: address.to_string(),
            reason: format!(
                "response to a {api} request is for api key {}",
                frame.header.api_key_raw()
            ),
        });
    }
    Ok(frame)
}

async fn write_loop(
    write_half: OwnedWriteHalf,
    mut queued: mpsc::Receiver<FrameChunks>,
    shared: Arc<Shared>,
) {
    let mut writer = BufWriter::with_capacity(WRITE_BUFFER_BYTES, write_half);
    while let Some(chunks) = queued.recv().await {
        wait_out_throttle(&shared).await;
        if let Err(error) = write_chunks(&mut writer, &chunks).await {
            shared.fail(format!("write failed: {error}"));
            return;
        }
        // Coalesce whatever else is queued into the same flush.
        while let Ok(chunks) = queued.try_recv() {
            if let Err(error) = write_chunks(&mut writer, &chunks).await {
                shared.fail(format!("write failed: {error}"));
                return;
            }
        }
        if let Err(error) = writer.flush().await {
            shared.fail(format!("write failed: {error}"));
            return;
        }
    }
    let _ = writer.shutdown().await;
}

async fn write_chunks(
    writer: &mut BufWriter<OwnedWriteHalf>,
    chunks: &[Bytes],
) -> std::io::Result<()> {
    for chunk in chunks {
        writer.write_all(chunk).await?;
    }
    Ok(())
}

async fn wait_out_throttle(shared: &Shared) {
    let until_ms = shared.throttle_until_ms.load(Ordering::Relaxed);
    if until_ms == 0 {
        return;
    }
    let until = shared.epoch + Duration::from_millis(until_ms);
    tokio::time::sleep_until(until).await;
}

async fn read_loop(mut read_half: OwnedReadHalf, shared: Arc<Shared>, frame_bytes_max: u32) {
    let mut decoder = ResponseFrameDecoder::new(FrameDecoderConfig { frame_bytes_max });
    let mut buffer = BytesMut::with_capacity(READ_CHUNK_BYTES);
    loop {
        loop {
            match decoder.decode(&mut buffer) {
                Ok(Some(frame)) => deliver(&shared, frame),
                Ok(None) => break,
                Err(error) => {
                    // Not a transport failure: the same answer would come again (a frame over
                    // this client's limit, or one that breaks the protocol), so retrying
                    // cannot help. The requests fail with a protocol error instead.
                    shared.fail_with(Error::Protocol {
                        address: shared.address.clone(),
                        reason: format!(
                            "undecodable response frame: {error} (frame_bytes_max {frame_bytes_max})"
                        ),
                    });
                    return;
                }
            }
        }
        if buffer.capacity() - buffer.len() < LENGTH_PREFIX_BYTES {
            buffer.reserve(READ_CHUNK_BYTES);
        }
        match read_half.read_buf(&mut buffer).await {
            Ok(0) => {
                shared.fail("the broker closed the connection".to_string());
                return;
            }
            Ok(_) => {}
            Err(error) => {
                shared.fail(format!("read failed: {error}"));
                return;
            }
        }
    }
}

fn deliver(shared: &Shared, frame: ResponseFrame) {
    let throttle_ms = frame.header.throttle_time_ms();
    if throttle_ms > 0 {
        let now_ms = shared.epoch.elapsed().as_millis() as u64;
        let until_ms = now_ms.saturating_add(u64::from(throttle_ms));
        shared
            .throttle_until_ms
            .fetch_max(until_ms, Ordering::Relaxed);
    }
    let sender = lock(&shared.pending)
        .waiting
        .remove(&frame.header.correlation_id());
    // A response without a waiter answers a request that timed out: nothing to do.
    if let Some(sender) = sender {
        let _ = sender.send(Ok(frame));
    }
}
