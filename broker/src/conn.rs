//! Client connections: accepting within the connection limit, reading frames under the shard's
//! request-memory budget, running pipelined requests, and writing responses in request order.
//!
//! Each connection is two tasks on its shard: the reader (decodes frames, starts one handler
//! task per request) and the writer (awaits handlers in request order, writes their responses
//! with vectored writes). Invariants and bounds:
//! - at most `connections-max` connections per shard; one more is accepted and closed at once;
//! - at most `inflight-requests-max` requests per connection between decode and response
//!   written; the reader stops reading while that many are in flight;
//! - a frame's bytes are charged to the shard's `produce-memory-bytes-max` budget before its body
//!   is read and released when its handler finishes (for a produce: after the append returned);
//!   when the budget is exhausted the reader stops reading the socket (backpressure) instead of
//!   buffering;
//! - a connection's read buffer holds [`READ_BUFFER_BYTES_IDLE`] between frames and grows only to
//!   fit the frame being read (at most `frame-bytes-max`), so idle connections cost little memory;
//! - a frame over `frame-bytes-max` or shorter than a header gets an error response when its
//!   header is readable and closes that connection only; a body that does not decode gets a
//!   typed error response and the connection goes on.
//!
//! No state here outlives the connection; a crash loses only unanswered requests, which were not
//! acknowledged.

use std::cell::RefCell;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_lite::{AsyncRead, AsyncReadExt, AsyncWrite};
use glommio::channels::local_channel;
use glommio::net::{TcpListener, TcpStream};
use glommio::sync::Semaphore;
use tracing::{debug, warn};
use weir_proto::wire::{
    ErrorCode, ErrorResponse, FrameDecoderConfig, FrameError, RequestFrameDecoder, RequestHeader,
    LENGTH_PREFIX_BYTES,
};

use crate::handlers;
use crate::metrics;
use crate::net::{self, write_all_vectored};
use crate::shard::Shard;

/// Capacity of a connection's read buffer between frames, and the most bytes read per call when
/// no frame size is known yet.
///
/// Small because every open connection holds one, idle or not (1,000 connections with 64 KiB
/// each held 64 MB): the buffer grows only to fit the frame being read and goes back to this
/// size after a frame that did not fit it (`release_large_buffer`).
pub const READ_BUFFER_BYTES_IDLE: usize = 4 * 1024;
/// Connections that must have closed since the shard's peak of open connections before its
/// maintenance tick asks the allocator to return freed memory to the OS ([`HeapTrim`]).
pub const TRIM_CONNECTIONS_CLOSED_MIN: u64 = 64;
/// Pause after a failed accept (e.g. out of file descriptors) before the next one.
pub const ACCEPT_ERROR_BACKOFF: Duration = Duration::from_millis(100);
/// Size of the fixed request header that follows the length prefix.
const REQUEST_HEADER_BYTES: usize = RequestHeader::BYTES;

/// Accepts connections on `listener` until the task is dropped (shutdown drops it).
pub async fn accept_loop(shard: Rc<Shard>, listener: TcpListener) {
    loop {
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                warn!(shard = shard.id, %error, "accept failed");
                glommio::timer::sleep(ACCEPT_ERROR_BACKOFF).await;
                continue;
            }
        };
        if shard.metrics.connections_open.get() >= u64::from(shard.config.connections_max) {
            metrics::increment(&shard.metrics.connections_rejected);
            debug!(
                shard = shard.id,
                limit = shard.config.connections_max,
                "connection limit reached; closing a new connection"
            );
            drop(stream);
            continue;
        }
        metrics::increment(&shard.metrics.connections_accepted);
        metrics::increment(&shard.metrics.connections_open);
        shard
            .heap_trim
            .connection_opened(shard.metrics.connections_open.get());
        let shard = Rc::clone(&shard);
        glommio::spawn_local(async move {
            let guard = OpenConnection {
                shard: Rc::clone(&shard),
            };
            serve_connection(&shard, stream).await;
            drop(guard);
        })
        .detach();
    }
}

/// Decides when a shard gives the memory of closed connections back to the OS.
///
/// Freeing a connection's buffers returns them to glibc's malloc, not to the OS: each shard
/// thread allocates from its own arena, and glibc shrinks an arena only from its top, so the
/// memory of a thousand closed connections stays in the process's RSS for good. `malloc_trim`
/// releases the free pages of every arena; it walks the heaps, so it runs from the maintenance
/// tick and only after many connections closed, not per connection. Sans-I/O: the caller
/// reports open counts and performs the trim.
#[derive(Debug, Default)]
pub struct HeapTrim {
    /// Most connections open at once since the last trim.
    open_peak: std::cell::Cell<u64>,
}

impl HeapTrim {
    /// Records that a connection opened, `open` being the count now open.
    pub fn connection_opened(&self, open: u64) {
        self.open_peak.set(self.open_peak.get().max(open));
    }

    /// Whether to trim now, with `open` connections open: at least
    /// [`TRIM_CONNECTIONS_CLOSED_MIN`] fewer than at the peak since the last trim. A `true`
    /// starts a new peak from `open`.
    pub fn due(&self, open: u64) -> bool {
        let peak = self.open_peak.get().max(open);
        let due = peak - open >= TRIM_CONNECTIONS_CLOSED_MIN;
        self.open_peak.set(if due { open } else { peak });
        due
    }
}

/// Returns the free memory of glibc's malloc arenas to the OS. Only glibc keeps freed memory in
/// per-thread arenas this way and has `malloc_trim`; elsewhere this does nothing.
pub fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks and madvises the allocator's own free memory; it is
    // thread-safe (it locks each arena) and takes no pointers.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Keeps the open-connection gauge right however the connection task ends.
struct OpenConnection {
    shard: Rc<Shard>,
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let open = &self.shard.metrics.connections_open;
        open.set(open.get().saturating_sub(1));
        self.shard.connection_closed.notify();
    }
}

/// One half of a connection's stream; both halves share it on one thread and borrow it only
/// inside a poll, so reading and writing proceed independently.
struct Half {
    stream: Rc<RefCell<TcpStream>>,
    fd: RawFd,
}

impl AsRawFd for Half {
    fn as_raw_fd(&self) -> RawFd {
        self.fd
    }
}

impl AsyncRead for Half {
    fn poll_read(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream.borrow_mut()).poll_read(context, buffer)
    }
}

impl AsyncWrite for Half {
    fn poll_write(
        self: Pin<&mut Self>,
        context: &mut Context<'_>,
        buffer: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut *self.stream.borrow_mut()).poll_write(context, buffer)
    }

    fn poll_flush(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream.borrow_mut()).poll_flush(context)
    }

    fn poll_close(self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut *self.stream.borrow_mut()).poll_close(context)
    }
}

/// A request started by the reader, awaited by the writer.
struct InFlight {
    response: glommio::task::JoinHandle<Option<Vec<Bytes>>>,
    _slot: glommio::sync::StaticPermit,
}

/// What the reader does with the next bytes.
enum Next {
    /// A whole frame was read and its handler started.
    Frame,
    /// The peer closed, the shard is draining, or the connection must close.
    Stop,
}

async fn serve_connection(shard: &Rc<Shard>, stream: TcpStream) {
    let _ = stream.set_nodelay(true);
    let fd = stream.as_raw_fd();
    let peer = stream.peer_addr().ok();
    let client_host: Rc<str> = peer
        .map_or_else(String::new, |address| address.to_string())
        .into();
    let stream = Rc::new(RefCell::new(stream));
    let mut reader = Half {
        stream: Rc::clone(&stream),
        fd,
    };
    let writer = Half {
        stream: Rc::clone(&stream),
        fd,
    };
    let inflight_max = shard.config.inflight_requests_max as usize;
    let slots = Rc::new(Semaphore::new(inflight_max as u64));
    let (queue_sender, queue_receiver) = local_channel::new_bounded::<InFlight>(inflight_max);
    let writer_task = glommio::spawn_local(write_responses(writer, queue_receiver));

    let mut buffer = BytesMut::with_capacity(READ_BUFFER_BYTES_IDLE);
    let mut decoder = RequestFrameDecoder::new(FrameDecoderConfig {
        frame_bytes_max: shard.config.frame_bytes_max,
    });
    loop {
        let Ok(slot) = slots.acquire_static_permit(1).await else {
            break;
        };
        let next = read_frame(
            shard,
            &mut reader,
            &mut buffer,
            &mut decoder,
            &queue_sender,
            slot,
            &client_host,
        )
        .await;
        match next {
            Ok(Next::Frame) => {}
            Ok(Next::Stop) => break,
            Err(error) => {
                debug!(shard = shard.id, ?peer, %error, "connection read ended");
                break;
            }
        }
    }
    drop(queue_sender);
    writer_task.await;
    let _ = futures_lite::AsyncWriteExt::close(&mut Half { stream, fd }).await;
}

/// Reads one frame (waiting for request memory before its body) and starts its handler.
async fn read_frame(
    shard: &Rc<Shard>,
    reader: &mut Half,
    buffer: &mut BytesMut,
    decoder: &mut RequestFrameDecoder,
    queue: &local_channel::LocalSender<InFlight>,
    slot: glommio::sync::StaticPermit,
    client_host: &Rc<str>,
) -> io::Result<Next> {
    if !fill(shard, reader, buffer, LENGTH_PREFIX_BYTES).await? {
        return Ok(Next::Stop);
    }
    let frame_bytes = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]);
    let total_bytes = LENGTH_PREFIX_BYTES + frame_bytes as usize;
    if frame_bytes > shard.config.frame_bytes_max || (frame_bytes as usize) < REQUEST_HEADER_BYTES {
        // Answer with the request's own header when it is already here, then close.
        let (error_code, message) = match decoder.decode(buffer) {
            Err(error @ FrameError::Oversized { .. }) => {
                (ErrorCode::MessageTooLarge, error.to_string())
            }
            Err(error) => (ErrorCode::InvalidRequest, error.to_string()),
            Ok(_) => (
                ErrorCode::InvalidRequest,
                "invalid frame length".to_string(),
            ),
        };
        reject_frame(shard, buffer, error_code, &message, queue, slot).await;
        return Ok(Next::Stop);
    }
    let memory = match shard
        .request_memory
        .try_acquire_static_permit(total_bytes as u64)
    {
        Ok(permit) => permit,
        Err(_) => {
            metrics::increment(&shard.metrics.produce_throttled);
            match shard
                .request_memory
                .acquire_static_permit(total_bytes as u64)
                .await
            {
                Ok(permit) => permit,
                Err(_) => return Ok(Next::Stop),
            }
        }
    };
    // Once a frame has started, the rest must arrive in time: a stalled sender would otherwise
    // hold its share of the shard's request memory for ever.
    let timeout = Duration::from_millis(shard.config.frame_read_timeout_ms);
    let body = futures_lite::future::or(
        async { Some(fill(shard, reader, buffer, total_bytes).await) },
        async {
            glommio::timer::sleep(timeout).await;
            None
        },
    );
    match body.await {
        Some(Ok(true)) => {}
        Some(Ok(false)) => return Ok(Next::Stop),
        Some(Err(error)) => return Err(error),
        None => {
            metrics::increment(&shard.metrics.protocol_errors);
            warn!(
                shard = shard.id,
                frame_bytes,
                timeout_ms = shard.config.frame_read_timeout_ms,
                "frame not received in time; closing the connection"
            );
            return Ok(Next::Stop);
        }
    }
    let decoded = decoder.decode(buffer);
    release_large_buffer(buffer, total_bytes);
    let frame = match decoded {
        Ok(Some(frame)) => frame,
        Ok(None) => {
            return Err(io::Error::other(
                "frame decoder wants more bytes than the length said",
            ))
        }
        Err(error) => return Err(io::Error::other(error.to_string())),
    };
    let handler_shard = Rc::clone(shard);
    let client_host = Rc::clone(client_host);
    let response = glommio::spawn_local(async move {
        let response =
            handlers::handle(&handler_shard, frame.header, frame.body, &client_host).await;
        drop(memory);
        response
    })
    .detach();
    if queue
        .send(InFlight {
            response,
            _slot: slot,
        })
        .await
        .is_err()
    {
        return Ok(Next::Stop);
    }
    Ok(Next::Frame)
}

/// Gives a large read buffer back after the frame it held was split off.
///
/// The split-off frame and the buffer's remainder share one allocation, so the remainder alone
/// would keep a large frame's whole allocation alive for as long as the connection lives (and
/// `capacity()` shows only the remainder's share of it). After a frame larger than the idle
/// size, the few leftover bytes (at most one over-read chunk of a pipelined next frame) move to
/// a fresh buffer of the idle size; the frame's allocation is freed when its handler is done.
fn release_large_buffer(buffer: &mut BytesMut, frame_total_bytes: usize) {
    if frame_total_bytes > READ_BUFFER_BYTES_IDLE || buffer.capacity() > READ_BUFFER_BYTES_IDLE {
        let mut small = BytesMut::with_capacity(READ_BUFFER_BYTES_IDLE.max(buffer.len()));
        small.extend_from_slice(buffer);
        *buffer = small;
    }
}

/// Sends an error response for a frame that cannot be read, when its header is available.
async fn reject_frame(
    shard: &Rc<Shard>,
    buffer: &BytesMut,
    error_code: ErrorCode,
    message: &str,
    queue: &local_channel::LocalSender<InFlight>,
    slot: glommio::sync::StaticPermit,
) {
    metrics::increment(&shard.metrics.protocol_errors);
    warn!(shard = shard.id, %message, "closing a connection after a bad frame");
    // Only bytes already received are used: waiting for more could hang on garbage.
    let frame_bytes = u32::from_be_bytes([buffer[0], buffer[1], buffer[2], buffer[3]]) as usize;
    if frame_bytes < REQUEST_HEADER_BYTES
        || buffer.len() < LENGTH_PREFIX_BYTES + REQUEST_HEADER_BYTES
    {
        return;
    }
    let field = |at: usize| u16::from_be_bytes([buffer[at], buffer[at + 1]]);
    let correlation_id = u32::from_be_bytes([buffer[8], buffer[9], buffer[10], buffer[11]]);
    let header = RequestHeader::from_raw(field(4), field(6), correlation_id, field(12));
    let chunks = handlers::encode_error_response(
        &ErrorResponse::new(&header, error_code, message),
        correlation_id,
    );
    let response = glommio::spawn_local(async move { Some(chunks) }).detach();
    let _ = queue
        .send(InFlight {
            response,
            _slot: slot,
        })
        .await;
}

/// Reads until `buffer` holds `wanted` bytes. `false` on end of stream or when the shard starts
/// draining while the connection is idle (no partial frame is abandoned mid-way by draining:
/// only the wait for a new frame is interrupted).
async fn fill(
    shard: &Rc<Shard>,
    reader: &mut Half,
    buffer: &mut BytesMut,
    wanted: usize,
) -> io::Result<bool> {
    while buffer.len() < wanted {
        let start = buffer.len();
        // Read into all the room the buffer has, so that small pipelined frames take few reads
        // (the over-read is bounded by the buffer's idle size); a frame that does not fit grows
        // the buffer to fit it, by no more than the idle size past the frame's end.
        let target_len = if wanted <= buffer.capacity() {
            buffer.capacity()
        } else {
            wanted.max(start + READ_BUFFER_BYTES_IDLE)
        };
        // What the socket already holds goes straight into the spare capacity, unzeroed.
        buffer.reserve(target_len - start);
        match net::recv_available(reader.fd, buffer, target_len - start) {
            Ok(0) => return Ok(false),
            Ok(_) => continue,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if error.kind() != io::ErrorKind::WouldBlock => return Err(error),
            Err(_) => {}
        }
        // Nothing there yet: wait for it with glommio's read, into a zeroed region of at most
        // the idle size (the rest of a large frame comes through the path above).
        let target_len = target_len.min(start + READ_BUFFER_BYTES_IDLE);
        buffer.resize(target_len, 0);
        let idle = start == 0;
        let read = async { Some(reader.read(&mut buffer[start..]).await) };
        let result = if idle {
            futures_lite::future::or(read, async {
                shard.draining.wait().await;
                None
            })
            .await
        } else {
            read.await
        };
        match result {
            None => {
                buffer.truncate(start);
                return Ok(false);
            }
            Some(Ok(0)) => {
                buffer.truncate(start);
                return Ok(false);
            }
            Some(Ok(count)) => buffer.truncate(start + count),
            Some(Err(error)) => {
                buffer.truncate(start);
                return Err(error);
            }
        }
    }
    Ok(true)
}

async fn write_responses(mut writer: Half, queue: local_channel::LocalReceiver<InFlight>) {
    while let Some(inflight) = queue.recv().await {
        let InFlight { response, _slot } = inflight;
        let Some(Some(chunks)) = response.await else {
            continue;
        };
        if let Err(error) = write_all_vectored(&mut writer, &chunks).await {
            debug!(%error, "response write failed; closing the connection");
            // Wake the reader out of its read: the connection is finished.
            // SAFETY: shutdown on a descriptor the connection's stream owns and keeps open.
            unsafe { libc::shutdown(writer.fd, libc::SHUT_RDWR) };
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heap_trim_is_due_once_many_connections_closed_since_the_peak() {
        let trim = HeapTrim::default();
        for open in 1..=1_000 {
            trim.connection_opened(open);
        }
        assert!(!trim.due(1_000), "nothing closed yet");
        assert!(!trim.due(1_000 - TRIM_CONNECTIONS_CLOSED_MIN + 1));
        assert!(trim.due(10), "most closed");
        assert!(!trim.due(10), "the peak restarts at the trim");
        assert!(!trim.due(0), "fewer than the minimum closed since");
        trim.connection_opened(TRIM_CONNECTIONS_CLOSED_MIN);
        assert!(trim.due(0));
    }

    #[test]
    fn the_read_buffer_goes_back_to_the_idle_size_after_a_large_frame() {
        let frame_total_bytes = 1 << 20;
        let leftover = [7u8; 100];
        let mut buffer = BytesMut::with_capacity(frame_total_bytes + leftover.len());
        buffer.resize(frame_total_bytes, 1);
        buffer.extend_from_slice(&leftover);
        let frame = buffer.split_to(frame_total_bytes).freeze();
        release_large_buffer(&mut buffer, frame_total_bytes);
        assert_eq!(
            &buffer[..],
            &leftover[..],
            "the next frame's bytes are kept"
        );
        assert_eq!(buffer.capacity(), READ_BUFFER_BYTES_IDLE);
        drop(frame);

        let mut small = BytesMut::with_capacity(READ_BUFFER_BYTES_IDLE);
        small.resize(200, 1);
        let address = small.as_ptr();
        let _frame = small.split_to(100).freeze();
        release_large_buffer(&mut small, 100);
        assert_eq!(
            small.as_ptr(),
            address.wrapping_add(100),
            "a small frame's buffer is kept, not copied"
        );
    }
}
