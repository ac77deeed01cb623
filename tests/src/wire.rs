//! The native protocol over a blocking `std::net::TcpStream`, for tests that need exact control:
//! long-poll knobs, a chosen shard port, raw or malformed bytes, pipelining, not reading.
//!
//! [`WireClient`] frames requests with `weir_proto::wire` and decodes responses with its
//! [`ResponseFrameDecoder`]; every read has a timeout, and a broker that closes the connection or
//! answers garbage is reported as an error (or a test failure in the `call` helpers), never a
//! hang. The free functions build record batches and read them back, so tests can compare what
//! was produced with what is served byte for byte.

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{Bytes, BytesMut};
use weir_proto::batch::{records, BatchBuilder, BatchIter, BatchLimits};
use weir_proto::wire::{
    decode_response, ApiVersionsRequest, ApiVersionsResponse, CreateTopicRequest, ErrorCode,
    ErrorResponse, FetchPartition, FetchRequest, FetchResponse, FlushPolicy, FrameDecoderConfig,
    MetadataRequest, MetadataResponse, Priority, ProducePartition, ProducePartitionResult,
    ProduceRequest, RequestMessage, ResponseError, ResponseFrame, ResponseFrameDecoder,
    ResponseMessage, TopicConfig, TopicId, TopicMetadata,
};

/// How long a request waits for its response unless told otherwise.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);

/// One blocking connection speaking the native protocol.
#[derive(Debug)]
pub struct WireClient {
    stream: TcpStream,
    address: SocketAddr,
    read_buffer: BytesMut,
    decoder: ResponseFrameDecoder,
    next_correlation_id: u32,
}

impl WireClient {
    /// Connects to `address` (no handshake).
    pub fn connect(address: SocketAddr) -> io::Result<WireClient> {
        let stream = TcpStream::connect_timeout(&address, Duration::from_secs(10))?;
        stream.set_nodelay(true)?;
        stream.set_write_timeout(Some(RESPONSE_TIMEOUT))?;
        Ok(WireClient {
            stream,
            address,
            read_buffer: BytesMut::with_capacity(64 * 1024),
            decoder: ResponseFrameDecoder::new(FrameDecoderConfig {
                frame_bytes_max: 64 * 1024 * 1024,
            }),
            next_correlation_id: 1,
        })
    }

    /// Connects and sends the ApiVersions handshake; fails the test if either fails.
    pub fn connect_and_handshake(address: SocketAddr) -> WireClient {
        let mut client = WireClient::connect(address)
            .unwrap_or_else(|error| panic!("cannot connect to the broker at {address}: {error}"));
        let versions: Result<ApiVersionsResponse, _> = client.call(&api_versions_request());
        assert_eq!(
            versions.map(|response| response.broker_name.is_empty()),
            Ok(false),
            "ApiVersions names the broker"
        );
        client
    }

    /// The address this client is connected to.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The underlying stream, for tests that misbehave on purpose.
    pub fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }

    /// Sends a request frame and returns its correlation id.
    pub fn send<R: RequestMessage>(&mut self, request: &R) -> io::Result<u32> {
        let correlation_id = self.next_correlation_id;
        self.next_correlation_id = self.next_correlation_id.wrapping_add(1);
        let mut frame = BytesMut::new();
        request
            .encode_frame(correlation_id, Priority::Normal, &mut frame)
            .map_err(|error| io::Error::new(io::ErrorKind::InvalidInput, error.to_string()))?;
        self.stream.write_all(&frame)?;
        Ok(correlation_id)
    }

    /// Sends bytes exactly as given.
    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    /// Reads the next response frame, waiting at most `timeout`.
    pub fn receive(&mut self, timeout: Duration) -> io::Result<ResponseFrame> {
        let deadline = Instant::now() + timeout;
        loop {
            match self.decoder.decode(&mut self.read_buffer) {
                Ok(Some(frame)) => return Ok(frame),
                Ok(None) => {}
                Err(error) => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("bad response framing: {error}"),
                    ))
                }
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no whole response within {timeout:?}"),
                ));
            }
            self.stream.set_read_timeout(Some(left))?;
            let mut chunk = [0u8; 64 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the broker closed the connection",
                    ))
                }
                Ok(count) => self.read_buffer.extend_from_slice(&chunk[..count]),
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("no whole response within {timeout:?}"),
                    ))
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
    }

    /// Sends `request` and decodes its response: the api's response, or the broker's
    /// request-level [`ErrorResponse`]. Fails the test on a lost connection, a timeout, a
    /// mismatched correlation id or an undecodable response.
    pub fn call<R: RequestMessage>(&mut self, request: &R) -> Result<R::Response, ErrorResponse> {
        self.call_within(request, RESPONSE_TIMEOUT)
    }

    /// [`WireClient::call`] with a response timeout.
    pub fn call_within<R: RequestMessage>(
        &mut self,
        request: &R,
        timeout: Duration,
    ) -> Result<R::Response, ErrorResponse> {
        let correlation_id = self.send(request).unwrap_or_else(|error| {
            panic!("cannot send {:?} to {}: {error}", R::API_KEY, self.address)
        });
        let frame = self.receive(timeout).unwrap_or_else(|error| {
            panic!(
                "no response to {:?} (correlation id {correlation_id}) from {}: {error}",
                R::API_KEY,
                self.address
            )
        });
        assert_eq!(
            frame.header.correlation_id(),
            correlation_id,
            "the response echoes the request's correlation id"
        );
        decode_as::<R::Response>(&frame)
    }

    /// Like [`WireClient::call`], but also fails the test on a request-level error.
    pub fn call_ok<R: RequestMessage>(&mut self, request: &R) -> R::Response {
        self.call(request).unwrap_or_else(|error| {
            panic!(
                "{:?} was rejected with {}: {}",
                R::API_KEY,
                error.error_code,
                error.message
            )
        })
    }

    /// Whether the broker closes the connection (end of file or reset) within `timeout`,
    /// discarding whatever it sends first.
    pub fn closed_within(&mut self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut chunk = [0u8; 4096];
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            if self.stream.set_read_timeout(Some(left)).is_err() {
                return true;
            }
            match self.stream.read(&mut chunk) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    return false
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return true,
            }
        }
    }

    /// Closes the writing half, leaving the reading half open.
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.stream.shutdown(Shutdown::Write)
    }

    /// Fetches the topic's metadata; fails the test unless the topic exists.
    pub fn topic_metadata(&mut self, name: &str) -> (MetadataResponse, TopicMetadata) {
        let response = self.call_ok(&MetadataRequest {
            topics: vec![name.to_string()],
        });
        let topic = response
            .topics
            .iter()
            .find(|topic| topic.name == name)
            .cloned()
            .unwrap_or_else(|| panic!("metadata has no entry for topic {name:?}"));
        assert_eq!(
            topic.error_code,
            ErrorCode::None,
            "metadata of {name:?}: {}",
            topic.error_message
        );
        (response, topic)
    }

    /// Creates a topic and returns its id; fails the test on any error.
    pub fn create_topic(&mut self, name: &str, partitions: u32, flush: FlushPolicy) -> TopicId {
        let response = self.call_ok(&CreateTopicRequest {
            name: name.to_string(),
            partition_count: partitions,
            config: topic_config(flush).into(),
        });
        assert_eq!(
            response.error_code,
            ErrorCode::None,
            "create topic {name:?}: {}",
            response.error_message
        );
        assert_ne!(response.topic_id, 0, "a created topic has a non-zero id");
        response.topic_id
    }

    /// Produces `batch` (one or more whole batches) to one partition with `acks = leader`;
    /// returns the partition's result. Fails the test on a request-level error.
    pub fn produce(
        &mut self,
        topic_id: TopicId,
        partition: u32,
        batch: Bytes,
    ) -> ProducePartitionResult {
        let response = self.call_ok(&produce_request(topic_id, partition, batch));
        assert_eq!(response.entries.len(), 1, "one result per produce entry");
        let entry = response.entries.into_iter().next().expect("one entry");
        assert_eq!(
            (entry.topic_id, entry.partition),
            (topic_id, partition),
            "the result names the partition produced to"
        );
        entry
    }

    /// Fetches from `offset` with no waiting; returns the partition's result. Fails the test on
    /// a request-level error.
    pub fn fetch(
        &mut self,
        topic_id: TopicId,
        partition: u32,
        offset: i64,
    ) -> weir_proto::wire::FetchPartitionResult {
        let response: FetchResponse =
            self.call_ok(&fetch_request(topic_id, partition, offset, 0, 0));
        assert_eq!(response.entries.len(), 1, "one result per fetch entry");
        response.entries.into_iter().next().expect("one entry")
    }

    /// Reads every record of a partition from `from` up to its high watermark, in order.
    pub fn read_partition(
        &mut self,
        topic_id: TopicId,
        partition: u32,
        from: i64,
    ) -> Vec<StoredRecord> {
        let mut out = Vec::new();
        let mut position = from;
        loop {
            let entry = self.fetch(topic_id, partition, position);
            assert_eq!(
                entry.error_code,
                ErrorCode::None,
                "fetch of {topic_id}/{partition} at {position}: {}",
                entry.error_message
            );
            let before = out.len();
            for record in decode_records(&entry.records.to_contiguous()) {
                if record.offset >= position {
                    position = record.offset + 1;
                    out.push(record);
                }
            }
            if position >= entry.high_watermark {
                return out;
            }
            assert!(
                out.len() > before,
                "fetch of {topic_id}/{partition} at {position} returned no record below the high \
                 watermark {}",
                entry.high_watermark
            );
        }
    }
}

/// Decodes a response frame as `M`: the response, or the request-level error. Fails the test on
/// a mismatched api key or an undecodable body.
pub fn decode_as<M: ResponseMessage>(frame: &ResponseFrame) -> Result<M, ErrorResponse> {
    match decode_response::<M>(&frame.header, &frame.body) {
        Ok(response) => Ok(response),
        Err(ResponseError::Rejected(error)) => Err(error),
        Err(other) => panic!("undecodable {:?} response: {other}", M::API_KEY),
    }
}

/// A topic configuration with `flush`, no retention limit, and 16 MiB segments: room for the
/// broker's largest default batch (8 MiB) while keeping the preallocated segment files of the
/// many topics a test run creates small.
pub fn topic_config(flush: FlushPolicy) -> TopicConfig {
    TopicConfig {
        flush,
        retention_bytes: None,
        retention_ms: None,
        segment_bytes: 16 * 1024 * 1024,
        segment_ms: None,
    }
}

/// A produce request (`acks = leader`, 30 s timeout) of one entry.
pub fn produce_request(topic_id: TopicId, partition: u32, records: Bytes) -> ProduceRequest {
    ProduceRequest {
        acks: weir_proto::wire::Acks::Leader,
        timeout_ms: 30_000,
        entries: vec![ProducePartition {
            topic_id,
            partition,
            records,
        }],
    }
}

/// A fetch request of one entry (1 MiB limits).
pub fn fetch_request(
    topic_id: TopicId,
    partition: u32,
    offset: i64,
    max_wait_ms: u32,
    min_bytes: u32,
) -> FetchRequest {
    FetchRequest {
        max_wait_ms,
        min_bytes,
        max_bytes: 1 << 20,
        entries: vec![FetchPartition {
            topic_id,
            partition,
            fetch_offset: offset,
            partition_max_bytes: 1 << 20,
        }],
    }
}

/// A request frame from raw parts: length prefix, the 10-byte header, `body` as given.
pub fn raw_request_frame(
    api_key: u16,
    api_version: u16,
    correlation_id: u32,
    flags: u16,
    body: &[u8],
) -> Vec<u8> {
    let length = u32::try_from(10 + body.len()).expect("a test frame fits a u32 length");
    let mut frame = Vec::with_capacity(14 + body.len());
    frame.extend_from_slice(&length.to_be_bytes());
    frame.extend_from_slice(&api_key.to_be_bytes());
    frame.extend_from_slice(&api_version.to_be_bytes());
    frame.extend_from_slice(&correlation_id.to_be_bytes());
    frame.extend_from_slice(&flags.to_be_bytes());
    frame.extend_from_slice(body);
    frame
}

/// The direct address of the shard that owns `partition` of the topic described by `topic`, per
/// `metadata`.
pub fn owner_address(
    metadata: &MetadataResponse,
    topic: &TopicMetadata,
    partition: u32,
) -> SocketAddr {
    let owner = topic
        .partitions
        .iter()
        .find(|entry| entry.partition == partition)
        .unwrap_or_else(|| panic!("metadata of {:?} has no partition {partition}", topic.name))
        .owner_shard;
    let shard = metadata
        .shards
        .iter()
        .find(|shard| shard.shard == owner)
        .unwrap_or_else(|| panic!("metadata lists no address for shard {owner}"));
    shard
        .address
        .parse()
        .unwrap_or_else(|_| panic!("shard {owner}'s address {:?} is not ip:port", shard.address))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}

/// One batch holding `records` as `(key, value)`, timestamped now.
pub fn build_batch(records: &[(Option<&[u8]>, &[u8])]) -> Bytes {
    let now = now_ms();
    let mut builder = BatchBuilder::new(now);
    for (key, value) in records {
        builder.push(now, *key, Some(value), &[]);
    }
    Bytes::from(builder.finish())
}

/// One batch of keyless records with the given values.
pub fn build_values_batch<V: AsRef<[u8]>>(values: &[V]) -> Bytes {
    let records: Vec<(Option<&[u8]>, &[u8])> =
        values.iter().map(|value| (None, value.as_ref())).collect();
    build_batch(&records)
}

/// A record as stored: offset, key and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    /// The record's offset.
    pub offset: i64,
    /// The key.
    pub key: Option<Vec<u8>>,
    /// The value.
    pub value: Option<Vec<u8>>,
}

/// Decodes every record of the whole batches in `bytes` (a trailing partial batch is ignored);
/// fails the test on a corrupt batch or record.
pub fn decode_records(bytes: &[u8]) -> Vec<StoredRecord> {
    let limits = BatchLimits {
        batch_bytes_max: u32::MAX,
        records_per_batch_max: u32::MAX,
    };
    let mut out = Vec::new();
    for batch in BatchIter::new_with_record_walk(bytes, &limits) {
        let (_, batch) = batch.unwrap_or_else(|error| panic!("a served batch is invalid: {error}"));
        for record in records(batch).unwrap_or_else(|error| panic!("unreadable batch: {error}")) {
            let record = record.unwrap_or_else(|error| panic!("unreadable record: {error}"));
            out.push(StoredRecord {
                offset: record.offset,
                key: record.key.map(<[u8]>::to_vec),
                value: record.value.map(<[u8]>::to_vec),
            });
        }
    }
    out
}

/// The ApiVersions handshake request.
pub fn api_versions_request() -> ApiVersionsRequest {
    ApiVersionsRequest {
        client_id: "weir-tests".to_string(),
        client_software: "weir-tests/0.1.0".to_string(),
    }
}
