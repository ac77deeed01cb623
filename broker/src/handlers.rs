//! Request handlers: one decoded request in, the encoded response frame out.
//!
//! This module owns the api-level behaviour of the broker: which shard answers what, how
//! multi-partition requests are split by owner, forwarded, and merged back in request order,
//! and how a fetch long-polls. Invariants: every request with a readable header gets exactly one
//! response frame (an `ErrorResponse` when the body cannot be decoded), except a produce with
//! `acks = none`, which gets none; a partition that could not be reached gets a per-partition
//! error, never a missing entry; fetch responses carry the storage `Bytes` as their own chunks
//! (no copy); a waiting fetch is woken by an append to any partition it watches, on any shard.

use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tracing::warn;
use weir_proto::wire::{
    ApiVersionsResponse, CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest,
    DeleteTopicResponse, DescribeTopicRequest, DescribeTopicResponse, DescribedPartition,
    ErrorCode, ErrorResponse, FetchPartition, FetchPartitionResult, FetchRecords, FetchRequest,
    FetchResponse, InitProducerIdRequest, InitProducerIdResponse, ListOffsetsPartitionResult,
    ListOffsetsRequest, ListOffsetsResponse, ListTopicsResponse, ListedTopic, MetadataRequest,
    MetadataResponse, OffsetCommitPartitionResult, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, PartitionMetadata, ProducePartitionResult,
    ProduceRequest, ProduceResponse, Request, RequestHeader, ResponseMessage, ShardMetadata,
    TopicMetadata, OFFSET_NONE,
};

use crate::catalog::TopicEntry;
use crate::control::{self, to_wire_config, CATALOG_SHARD};
use crate::group::serve as group_serve;
use crate::join::join_all;
use crate::metrics;
use crate::notify::Latch;
use crate::owner;
use crate::partition::PartitionKey;
use crate::peers::PeerError;
use crate::router::{split_by_owner, unzip_part, Merge};
use crate::shard::{PeerReply, PeerRequest, Shard};

/// Name the broker reports in ApiVersions.
pub const BROKER_NAME: &str = "weir-broker";

/// Handles one request frame from a client at `client_host` (`host:port`, for group
/// membership); `None` means no response is sent (produce with `acks = none`).
pub async fn handle(
    shard: &Rc<Shard>,
    header: RequestHeader,
    body: Bytes,
    client_host: &str,
) -> Option<Vec<Bytes>> {
    let started = Instant::now();
    let _inflight = InFlightGauge::new(&shard.metrics.requests_inflight);
    let correlation_id = header.correlation_id();
    let decoded = Request::decode(&header, &body);
    // The decoded request holds zero-copy slices of the body; without this handle a produce's
    // batch can be the only one left on its bytes, and storage then takes it without a copy.
    drop(body);
    let request = match decoded {
        Ok(request) => request,
        Err(error) => {
            let api = header.api_key().map_or("unknown", |key| key.name());
            shard
                .metrics
                .observe_request(api, elapsed_us(started), true);
            let response = ErrorResponse::for_request(&header, &error);
            return Some(encode_error_response(&response, correlation_id));
        }
    };
    let api = request.api_key().name();
    let (response, failed) = dispatch(shard, &header, request, client_host).await;
    shard
        .metrics
        .observe_request(api, elapsed_us(started), failed);
    response
}

/// Counts a request in the in-flight gauge for as long as it lives.
struct InFlightGauge<'a> {
    gauge: &'a std::cell::Cell<u64>,
}

impl<'a> InFlightGauge<'a> {
    fn new(gauge: &'a std::cell::Cell<u64>) -> Self {
        gauge.set(gauge.get() + 1);
        InFlightGauge { gauge }
    }
}

impl Drop for InFlightGauge<'_> {
    fn drop(&mut self) {
        self.gauge.set(self.gauge.get().saturating_sub(1));
    }
}

fn elapsed_us(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_micros()).unwrap_or(u64::MAX)
}

async fn dispatch(
    shard: &Rc<Shard>,
    header: &RequestHeader,
    request: Request,
    client_host: &str,
) -> (Option<Vec<Bytes>>, bool) {
    let id = header.correlation_id();
    match request {
        Request::ApiVersions(_) => respond(
            &ApiVersionsResponse {
                apis: ApiVersionsResponse::supported_apis(),
                broker_name: BROKER_NAME.to_string(),
                broker_version: env!("CARGO_PKG_VERSION").to_string(),
            },
            id,
            false,
        ),
        Request::Metadata(request) => {
            let response = metadata(shard, request);
            let failed = response.topics.iter().any(|t| !t.error_code.is_none());
            respond(&response, id, failed)
        }
        Request::CreateTopic(request) => {
            let response = create_topic(shard, request).await;
            let failed = !response.error_code.is_none();
            respond(&response, id, failed)
        }
        Request::DeleteTopic(request) => {
            let response = delete_topic(shard, request).await;
            let failed = !response.error_code.is_none();
            respond(&response, id, failed)
        }
        Request::ListTopics(_) => {
            let topics = shard
                .catalog()
                .topics()
                .filter(|topic| !topic.is_internal())
                .map(|topic| ListedTopic {
                    name: topic.name.clone(),
                    topic_id: topic.topic_id,
                    partition_count: topic.config.partitions,
                })
                .collect();
            respond(&ListTopicsResponse { topics }, id, false)
        }
        Request::DescribeTopic(request) => {
            let response = describe_topic(shard, request).await;
            let failed = !response.error_code.is_none();
            respond(&response, id, failed)
        }
        Request::Produce(request) => {
            let acks = request.acks;
            let response = produce(shard, request).await;
            let failed = response.entries.iter().any(|e| !e.error_code.is_none());
            if !acks.expects_response() {
                if failed {
                    for entry in response.entries.iter().filter(|e| !e.error_code.is_none()) {
                        warn!(topic_id = entry.topic_id, partition = entry.partition, error = %entry.error_code, message = %entry.error_message, "produce with acks=none failed");
                    }
                }
                return (None, failed);
            }
            respond(&response, id, failed)
        }
        Request::Fetch(request) => {
            let response = fetch(shard, request).await;
            let failed = response.entries.iter().any(|e| !e.error_code.is_none());
            let mut scratch = BytesMut::with_capacity(256);
            let mut chunks = Vec::with_capacity(2 + response.entries.len() * 2);
            match response.encode_frame_chunks(id, 0, &mut scratch, &mut chunks) {
                Ok(()) => (Some(chunks), failed),
                Err(error) => (Some(encode_failure(header, id, &error.to_string())), true),
            }
        }
        Request::ListOffsets(request) => {
            let response = list_offsets(shard, request).await;
            let failed = response.entries.iter().any(|e| !e.error_code.is_none());
            respond(&response, id, failed)
        }
        Request::OffsetCommit(request) => {
            let response = offset_commit(shard, request).await;
            let failed = response.entries.iter().any(|e| !e.error_code.is_none());
            respond(&response, id, failed)
        }
        Request::OffsetFetch(request) => {
            let response = offset_fetch(shard, request).await;
            let failed = !response.error_code.is_none();
            respond(&response, id, failed)
        }
        Request::InitProducerId(request) => {
            let response = init_producer_id(shard, request).await;
            let failed = !response.error_code.is_none();
            respond(&response, id, failed)
        }
        Request::JoinGroup(request) => {
            let response = group_serve::join_group(shard, request, client_host).await;
            let failed = !response.error_code.is_none();
            respond(&response, id, failed)
        }
        Request::SyncGroup(request) => {
            let response = group_serve::sync_group(shard, request).await;
            let failed = !response.error_code.is_none();
            respond(&response, id, failed)
        }
        Request::Heartbeat(request) => {
            let response = group_serve::heartbeat(shard, request).await;
            let failed = !response.error_code.is_none();
            respond(&response, id, failed)
        }
        Request::LeaveGroup(request) => {
            let response = group_serve::leave_group(shard, request).await;
            let failed = !response.error_code.is_none();
            respond(&response, id, failed)
        }
        Request::ListGroups(_) => respond(&group_serve::list_groups(shard).await, id, false),
        Request::DescribeGroups(request) => {
            let response = group_serve::describe_groups(shard, request).await;
            let failed = response.groups.iter().any(|g| !g.error_code.is_none());
            respond(&response, id, failed)
        }
        Request::DeleteGroups(request) => {
            let response = group_serve::delete_groups(shard, request).await;
            let failed = response.results.iter().any(|r| !r.error_code.is_none());
            respond(&response, id, failed)
        }
    }
}

fn respond<R: ResponseMessage>(
    response: &R,
    correlation_id: u32,
    failed: bool,
) -> (Option<Vec<Bytes>>, bool) {
    let mut out = BytesMut::new();
    match response.encode_frame(correlation_id, 0, &mut out) {
        Ok(()) => (Some(vec![out.freeze()]), failed),
        Err(error) => {
            warn!(%error, api = R::API_KEY.name(), "response could not be encoded");
            let header = RequestHeader::new(
                R::API_KEY,
                R::API_VERSION,
                correlation_id,
                Default::default(),
            );
            (
                Some(encode_failure(&header, correlation_id, &error.to_string())),
                true,
            )
        }
    }
}

fn encode_failure(header: &RequestHeader, correlation_id: u32, message: &str) -> Vec<Bytes> {
    let response = ErrorResponse::new(header, ErrorCode::UnknownServerError, message);
    encode_error_response(&response, correlation_id)
}

/// Encodes an error response frame (a short message always fits).
pub fn encode_error_response(response: &ErrorResponse, correlation_id: u32) -> Vec<Bytes> {
    let mut out = BytesMut::new();
    if response.encode_frame(correlation_id, 0, &mut out).is_err() {
        out.clear();
    }
    vec![out.freeze()]
}

/// Sends `request` to shard `to`, counting data-path forwards as crosstalk.
async fn forward(
    shard: &Rc<Shard>,
    to: usize,
    request: PeerRequest,
) -> Result<PeerReply, PeerError> {
    if request.is_data_path() {
        metrics::increment(&shard.metrics.forwarded_requests);
    }
    shard.peers.call(to, request).await
}

/// Runs each owning shard's share of `entries`: on this shard through `local`, on another by
/// forwarding `to_request(share)` and taking the results out of the reply with `from_reply`.
/// Every answer lands at its entry's index; a share whose shard does not answer leaves its
/// slots empty for the caller's fallback.
pub(crate) async fn run_on_owners<E, R, F>(
    shard: &Rc<Shard>,
    entries: Vec<E>,
    partition_of: impl Fn(&E) -> PartitionKey,
    local: impl Fn(Vec<E>) -> F,
    to_request: impl Fn(Vec<E>) -> PeerRequest,
    from_reply: impl Fn(PeerReply) -> Option<Vec<R>>,
) -> Merge<R>
where
    F: Future<Output = Vec<R>>,
{
    let entry_count = entries.len();
    let parts = split_by_owner(entries, shard.shard_count(), partition_of);
    let (local, to_request, from_reply) = (&local, &to_request, &from_reply);
    let answers = join_all(
        parts
            .into_iter()
            .map(|part| async move {
                let (to, indexes, entries) = unzip_part(part);
                let results = if to == shard.id {
                    local(entries).await
                } else {
                    match forward(shard, to, to_request(entries)).await {
                        Ok(reply) => from_reply(reply).unwrap_or_default(),
                        Err(_) => Vec::new(),
                    }
                };
                (indexes, results)
            })
            .collect(),
    )
    .await;
    let mut merge = Merge::new(entry_count);
    for (indexes, results) in answers {
        merge.put(&indexes, results);
    }
    merge
}

fn metadata(shard: &Rc<Shard>, request: MetadataRequest) -> MetadataResponse {
    let catalog = shard.catalog();
    let describe = |topic: &TopicEntry| TopicMetadata {
        error_code: ErrorCode::None,
        error_message: String::new(),
        name: topic.name.clone(),
        topic_id: topic.topic_id,
        config: Some(to_wire_config(&topic.config)),
        partitions: (0..topic.config.partitions)
            .map(|partition| PartitionMetadata {
                partition,
                owner_shard: shard.owner_of((topic.topic_id, partition)) as u32,
            })
            .collect(),
    };
    let topics = if request.topics.is_empty() {
        catalog
            .topics()
            .filter(|topic| !topic.is_internal())
            .map(|topic| describe(topic))
            .collect()
    } else {
        request
            .topics
            .iter()
            .map(|name| match catalog.topic(name) {
                Some(topic) => describe(topic),
                None => TopicMetadata {
                    error_code: ErrorCode::UnknownTopic,
                    error_message: format!("topic {name:?} does not exist"),
                    name: name.clone(),
                    topic_id: 0,
                    config: None,
                    partitions: Vec::new(),
                },
            })
            .collect()
    };
    MetadataResponse {
        broker_id: 0,
        shared_address: shard.addresses.listen.to_string(),
        shards: shard
            .addresses
            .shards
            .iter()
            .enumerate()
            .map(|(index, address)| ShardMetadata {
                shard: index as u32,
                address: address.to_string(),
            })
            .collect(),
        topics,
    }
}

async fn create_topic(shard: &Rc<Shard>, request: CreateTopicRequest) -> CreateTopicResponse {
    if shard.id == CATALOG_SHARD {
        return control::create_topic(shard, request).await;
    }
    match forward(shard, CATALOG_SHARD, PeerRequest::CreateTopic(request)).await {
        Ok(PeerReply::CreateTopic(response)) => response,
        other => CreateTopicResponse {
            error_code: ErrorCode::UnknownServerError,
            error_message: format!("catalog shard did not answer: {other:?}"),
            topic_id: 0,
        },
    }
}

async fn init_producer_id(
    shard: &Rc<Shard>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    if shard.id == CATALOG_SHARD {
        return shard.init_producer_id(request).await;
    }
    match forward(shard, CATALOG_SHARD, PeerRequest::InitProducerId(request)).await {
        Ok(PeerReply::InitProducerId(response)) => response,
        other => InitProducerIdResponse {
            error_code: ErrorCode::UnknownServerError,
            error_message: format!("producer-id shard did not answer: {other:?}"),
            ..InitProducerIdResponse::default()
        },
    }
}

async fn delete_topic(shard: &Rc<Shard>, request: DeleteTopicRequest) -> DeleteTopicResponse {
    if shard.id == CATALOG_SHARD {
        return control::delete_topic(shard, request).await;
    }
    match forward(shard, CATALOG_SHARD, PeerRequest::DeleteTopic(request)).await {
        Ok(PeerReply::DeleteTopic(response)) => response,
        other => DeleteTopicResponse {
            error_code: ErrorCode::UnknownServerError,
            error_message: format!("catalog shard did not answer: {other:?}"),
        },
    }
}

async fn describe_topic(shard: &Rc<Shard>, request: DescribeTopicRequest) -> DescribeTopicResponse {
    let catalog = shard.catalog();
    let Some(topic) = catalog.topic(&request.name) else {
        return DescribeTopicResponse {
            error_code: ErrorCode::UnknownTopic,
            error_message: format!("topic {:?} does not exist", request.name),
            name: request.name,
            topic_id: 0,
            config: None,
            partitions: Vec::new(),
        };
    };
    let topic_id = topic.topic_id;
    let partitions: Vec<u32> = (0..topic.config.partitions).collect();
    let merge = run_on_owners(
        shard,
        partitions.clone(),
        |partition| (topic_id, *partition),
        |share| std::future::ready(owner::describe(shard, topic_id, &share)),
        |share| PeerRequest::Describe(topic_id, share),
        |reply| match reply {
            PeerReply::Describe(results) => Some(results),
            _ => None,
        },
    )
    .await;
    DescribeTopicResponse {
        error_code: ErrorCode::None,
        error_message: String::new(),
        name: topic.name.clone(),
        topic_id,
        config: Some(to_wire_config(&topic.config)),
        partitions: merge.finish(|index| DescribedPartition {
            partition: partitions[index],
            owner_shard: shard.owner_of((topic_id, partitions[index])) as u32,
            error_code: ErrorCode::NotOwner,
            error_message: "the owning shard did not answer".to_string(),
            log_start_offset: OFFSET_NONE,
            log_end_offset: OFFSET_NONE,
        }),
    }
}

/// Appends a produce's entries on their owners. With `timeout_ms > 0`, entries whose append has
/// not returned by then are answered `request_timed_out`; their appends still complete (they run
/// in their own tasks), so a timed-out entry may be in the log.
async fn produce(shard: &Rc<Shard>, request: ProduceRequest) -> ProduceResponse {
    let keys: Vec<PartitionKey> = request
        .entries
        .iter()
        .map(|e| (e.topic_id, e.partition))
        .collect();
    let joined = run_on_owners(
        shard,
        request.entries,
        |e| (e.topic_id, e.partition),
        |share| {
            // Its own task: a timeout below must not cancel appends in progress.
            let owner_shard = Rc::clone(shard);
            async move {
                glommio::spawn_local(async move { owner::produce(&owner_shard, share).await })
                    .detach()
                    .await
                    .unwrap_or_default()
            }
        },
        PeerRequest::Produce,
        |reply| match reply {
            PeerReply::Produce(results) => Some(results),
            _ => None,
        },
    );
    let answered = if request.timeout_ms == 0 {
        Some(joined.await)
    } else {
        let timeout = Duration::from_millis(u64::from(request.timeout_ms));
        futures_lite::future::or(async { Some(joined.await) }, async {
            glommio::timer::sleep(timeout).await;
            None
        })
        .await
    };
    let (merge, error_code, error_message) = match answered {
        Some(merge) => (
            merge,
            ErrorCode::NotOwner,
            "the owning shard did not answer",
        ),
        None => (
            Merge::new(keys.len()),
            ErrorCode::RequestTimedOut,
            "the append did not complete within timeout_ms",
        ),
    };
    ProduceResponse {
        entries: merge.finish(|index| ProducePartitionResult {
            topic_id: keys[index].0,
            partition: keys[index].1,
            error_code,
            error_message: error_message.to_string(),
            base_offset: OFFSET_NONE,
            log_start_offset: OFFSET_NONE,
        }),
    }
}

/// One shard's share of a fetch.
struct FetchPart {
    shard: usize,
    indexes: Vec<usize>,
    entries: Vec<FetchPartition>,
}

async fn fetch(shard: &Rc<Shard>, request: FetchRequest) -> FetchResponse {
    let wait_ms = request.max_wait_ms.min(shard.config.fetch_wait_ms_max);
    let deadline = Instant::now() + Duration::from_millis(u64::from(wait_ms));
    let response_bytes_max = request.max_bytes.min(shard.config.fetch_response_bytes_max);
    let keys: Vec<PartitionKey> = request
        .entries
        .iter()
        .map(|e| (e.topic_id, e.partition))
        .collect();
    let parts: Vec<FetchPart> = split_by_owner(request.entries, shard.shard_count(), |e| {
        (e.topic_id, e.partition)
    })
    .into_iter()
    .map(|part| {
        let (shard, indexes, entries) = unzip_part(part);
        FetchPart {
            shard,
            indexes,
            entries,
        }
    })
    .collect();
    // Each shard gets an equal share of the response budget; storage still returns at least one
    // whole batch per partition read, so a consumer always makes progress.
    let share = response_bytes_max / (parts.len().max(1) as u32);
    loop {
        let results = fetch_round(shard, &parts, share, keys.len()).await;
        let bytes: u64 = results.iter().map(|r| r.records.len_bytes()).sum();
        let any_error = results.iter().any(|r| !r.error_code.is_none());
        let done = bytes >= u64::from(request.min_bytes)
            || any_error
            || Instant::now() >= deadline
            || shard.draining.is_set();
        if done {
            return FetchResponse { entries: results };
        }
        wait_for_appends(shard, &parts, &results, deadline).await;
    }
}

async fn fetch_round(
    shard: &Rc<Shard>,
    parts: &[FetchPart],
    share: u32,
    entry_count: usize,
) -> Vec<FetchPartitionResult> {
    let answers = join_all(
        parts
            .iter()
            .map(|part| async move {
                let results = if part.shard == shard.id {
                    owner::fetch_now(shard, &part.entries, share).await
                } else {
                    match forward(
                        shard,
                        part.shard,
                        PeerRequest::Fetch(part.entries.clone(), share),
                    )
                    .await
                    {
                        Ok(PeerReply::Fetch(results)) => results,
                        _ => Vec::new(),
                    }
                };
                (&part.indexes, results)
            })
            .collect(),
    )
    .await;
    let mut merge = Merge::new(entry_count);
    for (indexes, results) in answers {
        merge.put(indexes, results);
    }
    let all_entries: Vec<&FetchPartition> = {
        let mut all: Vec<(usize, &FetchPartition)> = parts
            .iter()
            .flat_map(|part| part.indexes.iter().copied().zip(part.entries.iter()))
            .collect();
        all.sort_by_key(|(index, _)| *index);
        all.into_iter().map(|(_, entry)| entry).collect()
    };
    merge.finish(|index| FetchPartitionResult {
        topic_id: all_entries[index].topic_id,
        partition: all_entries[index].partition,
        error_code: ErrorCode::NotOwner,
        error_message: "the owning shard did not answer".to_string(),
        high_watermark: OFFSET_NONE,
        log_start_offset: OFFSET_NONE,
        records: FetchRecords::new(),
    })
}

/// Waits until a watched partition on any shard moves past what the last round saw, or the
/// deadline. Remote watches that are still waiting when this returns are cancelled.
async fn wait_for_appends(
    shard: &Rc<Shard>,
    parts: &[FetchPart],
    results: &[FetchPartitionResult],
    deadline: Instant,
) {
    let wait_ms = u64::try_from(
        deadline
            .saturating_duration_since(Instant::now())
            .as_millis(),
    )
    .unwrap_or(u64::MAX);
    let local_cancel = Latch::default();
    let mut watches: Vec<Pin<Box<dyn Future<Output = ()> + '_>>> = Vec::new();
    let mut remote_ids = Vec::new();
    for part in parts {
        let watched: Vec<(PartitionKey, i64)> = part
            .indexes
            .iter()
            .map(|index| &results[*index])
            .map(|result| ((result.topic_id, result.partition), result.high_watermark))
            .collect();
        if part.shard == shard.id {
            let local_cancel = &local_cancel;
            watches.push(Box::pin(async move {
                owner::watch(shard, &watched, deadline, local_cancel).await;
            }));
        } else {
            let watch_id = shard.next_watch_id();
            remote_ids.push((part.shard, watch_id));
            let to = part.shard;
            watches.push(Box::pin(async move {
                let request = PeerRequest::Watch {
                    watch_id,
                    watched,
                    wait_ms,
                };
                let _ = forward(shard, to, request).await;
            }));
        }
    }
    let deadline_reached =
        glommio::timer::sleep(deadline.saturating_duration_since(Instant::now()));
    futures_lite::future::or(first_of(&mut watches), deadline_reached).await;
    local_cancel.set();
    drop(watches);
    for (to, watch_id) in remote_ids {
        let shard = Rc::clone(shard);
        glommio::spawn_local(async move {
            let _ = shard
                .peers
                .call(to, PeerRequest::CancelWatch(watch_id))
                .await;
        })
        .detach();
    }
}

/// Completes when the first of `futures` completes.
async fn first_of(futures: &mut [Pin<Box<dyn Future<Output = ()> + '_>>]) {
    if futures.is_empty() {
        return std::future::pending().await;
    }
    futures_lite::future::poll_fn(|context| {
        for future in futures.iter_mut() {
            if future.as_mut().poll(context).is_ready() {
                return Poll::Ready(());
            }
        }
        Poll::Pending
    })
    .await
}

/// Answers a ListOffsets by asking each partition's owning shard; a partition whose owner did
/// not answer gets `not_owner`.
pub(crate) async fn list_offsets(
    shard: &Rc<Shard>,
    request: ListOffsetsRequest,
) -> ListOffsetsResponse {
    let keys: Vec<PartitionKey> = request
        .entries
        .iter()
        .map(|e| (e.topic_id, e.partition))
        .collect();
    let merge = run_on_owners(
        shard,
        request.entries,
        |e| (e.topic_id, e.partition),
        |share| owner::list_offsets(shard, share),
        PeerRequest::ListOffsets,
        |reply| match reply {
            PeerReply::ListOffsets(results) => Some(results),
            _ => None,
        },
    )
    .await;
    ListOffsetsResponse {
        entries: merge.finish(|index| ListOffsetsPartitionResult {
            topic_id: keys[index].0,
            partition: keys[index].1,
            error_code: ErrorCode::NotOwner,
            error_message: "the owning shard did not answer".to_string(),
            offset: OFFSET_NONE,
            timestamp_ms: -1,
        }),
    }
}

async fn offset_commit(shard: &Rc<Shard>, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let owner_shard =
        owner::offsets_partition_for(shard, &request.group_id).map(|key| shard.owner_of(key));
    let entries: Vec<PartitionKey> = request
        .entries
        .iter()
        .map(|e| (e.topic_id, e.partition))
        .collect();
    let failure = |message: String| OffsetCommitResponse {
        entries: entries
            .iter()
            .map(|(topic_id, partition)| OffsetCommitPartitionResult {
                topic_id: *topic_id,
                partition: *partition,
                error_code: ErrorCode::UnknownServerError,
                error_message: message.clone(),
            })
            .collect(),
    };
    match owner_shard {
        None => failure("the offsets topic is missing".to_string()),
        Some(to) if to == shard.id => owner::commit_offsets(shard, request).await,
        Some(to) => match forward(shard, to, PeerRequest::OffsetCommit(request)).await {
            Ok(PeerReply::OffsetCommit(response)) => response,
            other => failure(format!("the group's shard did not answer: {other:?}")),
        },
    }
}

async fn offset_fetch(shard: &Rc<Shard>, request: OffsetFetchRequest) -> OffsetFetchResponse {
    let owner_shard =
        owner::offsets_partition_for(shard, &request.group_id).map(|key| shard.owner_of(key));
    let failure = |message: String| OffsetFetchResponse {
        error_code: ErrorCode::UnknownServerError,
        error_message: message,
        entries: Vec::new(),
    };
    match owner_shard {
        None => failure("the offsets topic is missing".to_string()),
        Some(to) if to == shard.id => owner::fetch_offsets(shard, request),
        Some(to) => match forward(shard, to, PeerRequest::OffsetFetch(request)).await {
            Ok(PeerReply::OffsetFetch(response)) => response,
            other => failure(format!("the group's shard did not answer: {other:?}")),
        },
    }
}
