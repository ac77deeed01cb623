//! Dead-letter handling for consumers: retry a failing record a bounded number of times, then
//! publish it to a dead-letter topic and commit past it, so one poison record cannot stall a
//! partition.
//!
//! [`DeadLetterProcessor`] owns a [`Consumer`] (which must have a `group_id`) and shares a
//! [`Producer`]. [`DeadLetterProcessor::poll_and_handle`] polls once and hands each record, in
//! the order the poll returned them (per partition, offset order), to the caller's handler. A
//! record whose handler fails is tried again after an exponential backoff with full jitter
//! ([`RetryPolicy`]), up to `attempts_max` attempts in all and no retry starting later than
//! `retry_timeout_ms` after its first attempt. Then it is published to the dead-letter topic
//! with its original key, value and headers, followed by the headers [`HEADER_TOPIC`],
//! [`HEADER_PARTITION`], [`HEADER_OFFSET`], [`HEADER_ERROR`] (the last error's text, at most
//! [`ERROR_TEXT_BYTES_MAX`] bytes) and [`HEADER_ATTEMPTS`]. Only once the broker has
//! acknowledged that publish is the record's offset committed ([`CommitMode`]).
//!
//! Delivery guarantee (at least once, never lost): the order is always "handle or publish, wait
//! for the acknowledgement, then commit". A crash after the handler succeeded (or the dead-letter
//! publish was acknowledged) but before the commit re-delivers the record to the next consumer of
//! the group: the handler may see it twice, and the dead-letter topic may hold it twice. A crash
//! before that point leaves the record uncommitted, so it is handled again. No crash leaves a
//! record committed but neither handled nor dead-lettered.
//!
//! Failure: if the publish or a commit fails, `poll_and_handle` returns the error after moving
//! the consumer's position of each affected partition back to its first record that was not
//! finished, so the next call starts there and nothing polled is skipped. Dropping the future of
//! `poll_and_handle` before it completes is not cancel-safe: the consumer's positions stay past
//! records that were polled but not finished. They are not committed, so a consumer started from
//! the group's committed offsets sees them again; the dropped processor's consumer does not.
//!
//! The dead-letter topic must not be one the consumer reads, or a dead-lettered record would be
//! read and dead-lettered again; [`DeadLetterProcessor::new`] refuses that assignment.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;

use crate::accumulator::Header;
use crate::consumer::{ConsumedRecord, Consumer, SeekTo};
use crate::error::{Error, ProduceError};
use crate::producer::Producer;
use crate::retry::{RetryPolicy, RetryState};

/// Header naming the topic the dead-lettered record was read from.
pub const HEADER_TOPIC: &str = "weir.dlq.topic";
/// Header with the record's partition, in decimal.
pub const HEADER_PARTITION: &str = "weir.dlq.partition";
/// Header with the record's offset, in decimal.
pub const HEADER_OFFSET: &str = "weir.dlq.offset";
/// Header with the text of the handler's last error (UTF-8, at most [`ERROR_TEXT_BYTES_MAX`]).
pub const HEADER_ERROR: &str = "weir.dlq.error";
/// Header with the number of handler attempts made, in decimal.
pub const HEADER_ATTEMPTS: &str = "weir.dlq.attempts";
/// Header present (value `true`) only when the original record's value was null: the producer
/// writes values as bytes, so a null value is published as an empty one and flagged here.
pub const HEADER_NULL_VALUE: &str = "weir.dlq.null-value";

/// The most bytes of error text kept in [`HEADER_ERROR`]; longer texts are cut at a character
/// boundary, so a verbose error cannot make the dead-letter record too large to publish.
pub const ERROR_TEXT_BYTES_MAX: usize = 4_096;
/// The largest `attempts_max` accepted.
pub const ATTEMPTS_MAX_LIMIT: u32 = 1_000;
/// The largest `retry_timeout_ms` accepted (one day).
pub const RETRY_TIMEOUT_MS_LIMIT: u64 = 24 * 60 * 60 * 1_000;

/// When a [`DeadLetterProcessor`] commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CommitMode {
    /// After each record is handled or dead-lettered: at most one record per partition is
    /// re-delivered after a crash, at one commit round trip per record.
    #[default]
    EachRecord,
    /// After every record of a poll is handled or dead-lettered: one commit per poll, and after
    /// a crash up to a whole poll's records are re-delivered. A call that fails part-way commits
    /// nothing; the next successful commit of each partition covers the records finished before
    /// the failure.
    EachPoll,
}

/// How a [`DeadLetterProcessor`] retries and commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeadLetterConfig {
    /// The most handler attempts per record, the first included (1 = never retry), in
    /// `1..=ATTEMPTS_MAX_LIMIT`.
    pub attempts_max: u32,
    /// The backoff ceiling before a record's first retry; it doubles with each retry.
    pub backoff_ms_initial: u64,
    /// The largest backoff ceiling.
    pub backoff_ms_max: u64,
    /// No retry of a record starts later than this after its first attempt; the record is
    /// dead-lettered instead, with fewer than `attempts_max` attempts. In
    /// `1..=RETRY_TIMEOUT_MS_LIMIT`.
    pub retry_timeout_ms: u64,
    /// When to commit.
    pub commit: CommitMode,
}

impl Default for DeadLetterConfig {
    fn default() -> Self {
        Self {
            attempts_max: 5,
            backoff_ms_initial: 100,
            backoff_ms_max: 5_000,
            retry_timeout_ms: 60_000,
            commit: CommitMode::EachRecord,
        }
    }
}

impl DeadLetterConfig {
    /// Checks the bounds documented on each field.
    pub fn validate(&self) -> Result<(), DeadLetterError> {
        if self.attempts_max == 0 || self.attempts_max > ATTEMPTS_MAX_LIMIT {
            return Err(DeadLetterError::InvalidConfig(format!(
                "attempts_max must be in 1..={ATTEMPTS_MAX_LIMIT}, got {}",
                self.attempts_max
            )));
        }
        if self.backoff_ms_initial > self.backoff_ms_max {
            return Err(DeadLetterError::InvalidConfig(format!(
                "backoff_ms_initial ({}) exceeds backoff_ms_max ({})",
                self.backoff_ms_initial, self.backoff_ms_max
            )));
        }
        if self.retry_timeout_ms == 0 || self.retry_timeout_ms > RETRY_TIMEOUT_MS_LIMIT {
            return Err(DeadLetterError::InvalidConfig(format!(
                "retry_timeout_ms must be in 1..={RETRY_TIMEOUT_MS_LIMIT}, got {}",
                self.retry_timeout_ms
            )));
        }
        Ok(())
    }

    /// The retry policy of one record: `attempts_max - 1` retries.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy {
            retries_max: self.attempts_max.saturating_sub(1),
            backoff_ms_initial: self.backoff_ms_initial,
            backoff_ms_max: self.backoff_ms_max,
            timeout_ms: self.retry_timeout_ms,
        }
    }
}

/// What a [`DeadLetterProcessor`] did, counted in records or attempts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DeadLetterCounters {
    /// Records the handler succeeded on (at the first attempt or after retries).
    pub processed: u64,
    /// Handler attempts after a record's first one (a record tried 3 times counts 2).
    pub retried: u64,
    /// Records published to the dead-letter topic (acknowledged by the broker).
    pub dead_lettered: u64,
}

impl DeadLetterCounters {
    fn add(&mut self, other: DeadLetterCounters) {
        self.processed += other.processed;
        self.retried += other.retried;
        self.dead_lettered += other.dead_lettered;
    }
}

/// What [`DeadLetterProcessor`] can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeadLetterError {
    /// The configuration, the consumer or the producer cannot give the documented guarantee.
    #[error("invalid dead-letter setup: {0}")]
    InvalidConfig(String),
    /// The dead-letter topic cannot be found.
    #[error("dead-letter topic \"{topic}\": {source}")]
    DeadLetterTopic {
        /// The dead-letter topic's name.
        topic: String,
        /// Why the lookup failed.
        source: Error,
    },
    /// The consumer's poll failed; nothing of it was handled.
    #[error("poll failed: {0}")]
    Poll(#[source] Error),
    /// Publishing a record to the dead-letter topic failed; the record is not committed and the
    /// consumer's position is back at it.
    #[error(
        "publishing {topic}/{partition} offset {offset} to the dead-letter topic \
         \"{dead_letter_topic}\" failed: {source}"
    )]
    Publish {
        /// The record's topic.
        topic: String,
        /// The record's partition.
        partition: u32,
        /// The record's offset.
        offset: i64,
        /// The dead-letter topic.
        dead_letter_topic: String,
        /// Why the publish failed.
        source: ProduceError,
    },
    /// Committing failed; the records are handled but not committed, so a restarted consumer
    /// handles them again.
    #[error("commit failed: {0}")]
    Commit(#[source] Error),
}

/// What to do after a handler attempt failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// Wait this long, then call the handler again.
    Retry {
        /// The jittered backoff.
        delay: Duration,
    },
    /// Give up: publish the record to the dead-letter topic.
    DeadLetter,
}

/// The retries of one record: how many attempts were made and whether another is allowed.
#[derive(Debug, Clone)]
pub struct RecordRetries {
    state: RetryState,
    attempts: u32,
}

impl RecordRetries {
    /// Starts counting the attempts of a record whose first attempt begins at `started`.
    pub fn start(policy: &RetryPolicy, started: Instant) -> RecordRetries {
        RecordRetries {
            state: policy.start(started),
            attempts: 1,
        }
    }

    /// Decides, after the current attempt failed at `now`, whether to retry (and after what
    /// delay, drawn from `rng`) or to dead-letter the record.
    pub fn after_failure<R: Rng + ?Sized>(&mut self, now: Instant, rng: &mut R) -> AfterFailure {
        match self.state.next_delay(now, rng) {
            Some(delay) => {
                self.attempts += 1;
                AfterFailure::Retry { delay }
            }
            None => AfterFailure::DeadLetter,
        }
    }

    /// Returns the attempts begun so far, the first included.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }
}

/// The values of the dead-letter headers of one record, formatted once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterFields {
    partition: String,
    offset: String,
    attempts: String,
    error: String,
    null_value: bool,
}

impl DeadLetterFields {
    /// Formats the headers' values for `record`, which failed `attempts` times, the last time
    /// with `error` (cut to [`ERROR_TEXT_BYTES_MAX`] bytes).
    pub fn new(record: &ConsumedRecord, error: &str, attempts: u32) -> DeadLetterFields {
        DeadLetterFields {
            partition: record.partition.to_string(),
            offset: record.offset.to_string(),
            attempts: attempts.to_string(),
            error: truncate_at_char_boundary(error, ERROR_TEXT_BYTES_MAX).to_string(),
            null_value: record.value.is_none(),
        }
    }

    /// Returns the dead-letter record's headers: the original headers in order, then the
    /// `weir.dlq.*` headers. A record dead-lettered twice (read back from a dead-letter topic)
    /// carries both sets; the last header of a name is the newest.
    pub fn headers<'a>(&'a self, record: &'a ConsumedRecord) -> Vec<Header<'a>> {
        let mut headers: Vec<Header<'a>> = Vec::with_capacity(record.headers.len() + 6);
        headers.extend(
            record
                .headers
                .iter()
                .map(|(key, value)| (&key[..], value.as_deref())),
        );
        headers.extend([
            (HEADER_TOPIC.as_bytes(), Some(record.topic.as_bytes())),
            (HEADER_PARTITION.as_bytes(), Some(self.partition.as_bytes())),
            (HEADER_OFFSET.as_bytes(), Some(self.offset.as_bytes())),
            (HEADER_ERROR.as_bytes(), Some(self.error.as_bytes())),
            (HEADER_ATTEMPTS.as_bytes(), Some(self.attempts.as_bytes())),
        ]);
        if self.null_value {
            headers.push((HEADER_NULL_VALUE.as_bytes(), Some(&b"true"[..])));
        }
        headers
    }
}

fn truncate_at_char_boundary(text: &str, bytes_max: usize) -> &str {
    if text.len() <= bytes_max {
        return text;
    }
    let mut end = bytes_max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Runs a handler over polled records with retries and a dead-letter topic (see the module
/// documentation).
///
/// ```no_run
/// use std::sync::Arc;
/// use std::time::Duration;
/// use weir_client::dead_letter::{DeadLetterConfig, DeadLetterProcessor};
/// use weir_client::{ClientConfig, Cluster, Consumer, ConsumerConfig, Producer, ProducerConfig};
///
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// let cluster = Cluster::connect(ClientConfig::new("127.0.0.1:9347")).await?;
/// let config = ConsumerConfig {
///     group_id: Some("billing".to_string()),
///     ..ConsumerConfig::default()
/// };
/// let mut consumer = Consumer::new(cluster.clone(), config);
/// consumer.assign_all("payments").await?;
/// let producer = Arc::new(Producer::new(cluster, ProducerConfig::default())?);
/// let mut processor = DeadLetterProcessor::new(
///     consumer,
///     producer,
///     "payments.dlq",
///     DeadLetterConfig::default(),
/// )
/// .await?;
/// loop {
///     processor
///         .poll_and_handle(Duration::from_secs(1), |record| {
///             // The future cannot borrow the record: take what it needs (cheap `Bytes` clones).
///             let value = record.value.clone();
///             async move {
///                 match value {
///                     Some(value) if !value.is_empty() => Ok(()),
///                     _ => Err("empty payment"),
///                 }
///             }
///         })
///         .await?;
/// #   break;
/// }
/// println!("{:?}", processor.counters());
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct DeadLetterProcessor {
    consumer: Consumer,
    producer: Arc<Producer>,
    dead_letter_topic: String,
    config: DeadLetterConfig,
    policy: RetryPolicy,
    counters: DeadLetterCounters,
}

impl DeadLetterProcessor {
    /// Creates a processor. Fails if the configuration is out of bounds, the consumer has no
    /// `group_id` (nothing could be committed), the producer does not wait for acknowledgements
    /// (`Acks::None` would void the guarantee), the dead-letter topic does not exist, or the
    /// consumer reads the dead-letter topic itself.
    pub async fn new(
        consumer: Consumer,
        producer: Arc<Producer>,
        dead_letter_topic: &str,
        config: DeadLetterConfig,
    ) -> Result<DeadLetterProcessor, DeadLetterError> {
        config.validate()?;
        if consumer.config().group_id.is_none() {
            return Err(DeadLetterError::InvalidConfig(
                "the consumer has no group_id, so nothing can be committed".to_string(),
            ));
        }
        if !producer.config().acks.expects_response() {
            return Err(DeadLetterError::InvalidConfig(
                "the producer uses acks = none, so a dead-letter publish cannot be confirmed"
                    .to_string(),
            ));
        }
        if consumer
            .assignment()
            .iter()
            .any(|(topic, _)| &**topic == dead_letter_topic)
        {
            return Err(DeadLetterError::InvalidConfig(format!(
                "the consumer reads the dead-letter topic \"{dead_letter_topic}\" itself"
            )));
        }
        consumer
            .cluster()
            .topic(dead_letter_topic)
            .await
            .map_err(|source| DeadLetterError::DeadLetterTopic {
                topic: dead_letter_topic.to_string(),
                source,
            })?;
        Ok(DeadLetterProcessor {
            consumer,
            producer,
            dead_letter_topic: dead_letter_topic.to_string(),
            policy: config.retry_policy(),
            config,
            counters: DeadLetterCounters::default(),
        })
    }

    /// Returns the counters summed over every call so far.
    pub fn counters(&self) -> DeadLetterCounters {
        self.counters
    }

    /// Returns the consumer.
    pub fn consumer(&self) -> &Consumer {
        &self.consumer
    }

    /// Returns the consumer, for example to change its assignment (which must not come to
    /// include the dead-letter topic).
    pub fn consumer_mut(&mut self) -> &mut Consumer {
        &mut self.consumer
    }

    /// Returns the dead-letter topic's name.
    pub fn dead_letter_topic(&self) -> &str {
        &self.dead_letter_topic
    }

    /// Gives the consumer and the producer back.
    pub fn into_parts(self) -> (Consumer, Arc<Producer>) {
        (self.consumer, self.producer)
    }

    /// Polls once (waiting up to `timeout`) and runs `handler` on each record in order,
    /// retrying, dead-lettering and committing as configured. Returns this call's counters
    /// (all zero when the poll returned nothing).
    ///
    /// The handler's future cannot borrow the record; clone the fields it needs (they are
    /// `Bytes`, so a clone is a reference count).
    pub async fn poll_and_handle<H, Fut, E>(
        &mut self,
        timeout: Duration,
        mut handler: H,
    ) -> Result<DeadLetterCounters, DeadLetterError>
    where
        H: FnMut(&ConsumedRecord) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let records = self
            .consumer
            .poll(timeout)
            .await
            .map_err(DeadLetterError::Poll)?;
        let mut counters = DeadLetterCounters::default();
        let outcome = self.handle_all(&records, &mut handler, &mut counters).await;
        self.counters.add(counters);
        outcome.map(|()| counters)
    }

    async fn handle_all<H, Fut, E>(
        &mut self,
        records: &[ConsumedRecord],
        handler: &mut H,
        counters: &mut DeadLetterCounters,
    ) -> Result<(), DeadLetterError>
    where
        H: FnMut(&ConsumedRecord) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        for (index, record) in records.iter().enumerate() {
            if let Err(error) = self.handle_one(record, handler, counters).await {
                self.rewind(&records[index..]).await;
                return Err(error);
            }
            if self.config.commit == CommitMode::EachRecord {
                let offsets = [(&*record.topic, record.partition, record.offset + 1)];
                if let Err(error) = self.consumer.commit_offsets(&offsets).await {
                    self.rewind(&records[index + 1..]).await;
                    return Err(DeadLetterError::Commit(error));
                }
            }
        }
        if self.config.commit == CommitMode::EachPoll {
            let offsets = next_offsets(records);
            let offsets: Vec<(&str, u32, i64)> = offsets
                .iter()
                .map(|(topic, partition, offset)| (&**topic, *partition, *offset))
                .collect();
            self.consumer
                .commit_offsets(&offsets)
                .await
                .map_err(DeadLetterError::Commit)?;
        }
        Ok(())
    }

    /// Runs the handler on one record until it succeeds or the retries run out, then
    /// dead-letters it and waits for the acknowledgement.
    async fn handle_one<H, Fut, E>(
        &mut self,
        record: &ConsumedRecord,
        handler: &mut H,
        counters: &mut DeadLetterCounters,
    ) -> Result<(), DeadLetterError>
    where
        H: FnMut(&ConsumedRecord) -> Fut,
        Fut: Future<Output = Result<(), E>>,
        E: Display,
    {
        let mut retries = RecordRetries::start(&self.policy, Instant::now());
        loop {
            let error = match handler(record).await {
                Ok(()) => {
                    counters.processed += 1;
                    return Ok(());
                }
                Err(error) => error.to_string(),
            };
            let decision = retries.after_failure(Instant::now(), &mut rand::thread_rng());
            match decision {
                AfterFailure::Retry { delay } => {
                    tracing::debug!(
                        topic = %record.topic,
                        partition = record.partition,
                        offset = record.offset,
                        attempt = retries.attempts(),
                        delay_ms = delay.as_millis() as u64,
                        %error,
                        "handler failed; retrying"
                    );
                    counters.retried += 1;
                    tokio::time::sleep(delay).await;
                }
                AfterFailure::DeadLetter => {
                    self.publish(record, &error, retries.attempts()).await?;
                    counters.dead_lettered += 1;
                    return Ok(());
                }
            }
        }
    }

    async fn publish(
        &self,
        record: &ConsumedRecord,
        error: &str,
        attempts: u32,
    ) -> Result<(), DeadLetterError> {
        tracing::warn!(
            topic = %record.topic,
            partition = record.partition,
            offset = record.offset,
            attempts,
            error,
            dead_letter_topic = %self.dead_letter_topic,
            "dead-lettering a record"
        );
        let fields = DeadLetterFields::new(record, error, attempts);
        let headers = fields.headers(record);
        let value = record.value.clone().unwrap_or_default();
        self.producer
            .send(&self.dead_letter_topic, record.key.clone(), value, &headers)
            .await
            .map(|_| ())
            .map_err(|source| DeadLetterError::Publish {
                topic: record.topic.to_string(),
                partition: record.partition,
                offset: record.offset,
                dead_letter_topic: self.dead_letter_topic.clone(),
                source,
            })
    }

    /// Moves the position of each partition among `unfinished` back to its first record there,
    /// so the next poll returns them again.
    async fn rewind(&mut self, unfinished: &[ConsumedRecord]) {
        for (topic, partition, offset) in first_offsets(unfinished) {
            if let Err(error) = self
                .consumer
                .seek(&topic, partition, SeekTo::Offset(offset))
                .await
            {
                // The partition was assigned when it was polled; only a concurrent unassign
                // ends here, and then there is no position to keep.
                tracing::warn!(%error, %topic, partition, offset, "cannot rewind after a failure");
            }
        }
    }
}

/// Returns, per partition among `records`, the offset of its first record, in first-seen order.
fn first_offsets(records: &[ConsumedRecord]) -> Vec<(Arc<str>, u32, i64)> {
    let mut firsts: Vec<(Arc<str>, u32, i64)> = Vec::new();
    for record in records {
        let seen = firsts
            .iter()
            .any(|(topic, partition, _)| *partition == record.partition && *topic == record.topic);
        if !seen {
            firsts.push((record.topic.clone(), record.partition, record.offset));
        }
    }
    firsts
}

/// Returns, per partition among `records`, the offset after its last record: what to commit.
fn next_offsets(records: &[ConsumedRecord]) -> Vec<(Arc<str>, u32, i64)> {
    let mut nexts: Vec<(Arc<str>, u32, i64)> = Vec::new();
    for record in records {
        let next = record.offset + 1;
        match nexts
            .iter_mut()
            .find(|(topic, partition, _)| *partition == record.partition && *topic == record.topic)
        {
            Some(entry) => entry.2 = entry.2.max(next),
            None => nexts.push((record.topic.clone(), record.partition, next)),
        }
    }
    nexts
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    fn record(topic: &str, partition: u32, offset: i64) -> ConsumedRecord {
        ConsumedRecord {
            topic: Arc::from(topic),
            partition,
            offset,
            timestamp_ms: 1_700_000_000_000,
            key: Some(Bytes::from_static(b"user-7")),
            value: Some(Bytes::from_static(b"payload")),
            headers: vec![
                (
                    Bytes::from_static(b"trace"),
                    Some(Bytes::from_static(b"abc")),
                ),
                (Bytes::from_static(b"flag"), None),
            ],
        }
    }

    fn header_map<'a>(headers: &[Header<'a>]) -> Vec<(&'a str, Option<&'a str>)> {
        headers
            .iter()
            .map(|(key, value)| {
                (
                    std::str::from_utf8(key).expect("utf-8 key"),
                    value.map(|value| std::str::from_utf8(value).expect("utf-8 value")),
                )
            })
            .collect()
    }

    #[test]
    fn headers_keep_the_originals_then_name_the_source_error_and_attempts() {
        let original = record("payments", 3, 1_234_567);
        let fields = DeadLetterFields::new(&original, "card declined: code 51", 4);
        let headers = fields.headers(&original);
        assert_eq!(
            header_map(&headers),
            vec![
                ("trace", Some("abc")),
                ("flag", None),
                ("weir.dlq.topic", Some("payments")),
                ("weir.dlq.partition", Some("3")),
                ("weir.dlq.offset", Some("1234567")),
                ("weir.dlq.error", Some("card declined: code 51")),
                ("weir.dlq.attempts", Some("4")),
            ]
        );
    }

    #[test]
    fn a_null_value_is_flagged() {
        let mut original = record("payments", 0, 0);
        original.value = None;
        original.headers.clear();
        let fields = DeadLetterFields::new(&original, "boom", 1);
        let headers = header_map(&fields.headers(&original));
        assert_eq!(headers.last(), Some(&("weir.dlq.null-value", Some("true"))));
        assert_eq!(headers.len(), 6);
    }

    #[test]
    fn long_error_texts_are_cut_at_a_character_boundary() {
        let original = record("payments", 0, 0);
        // 'é' is two bytes, so ERROR_TEXT_BYTES_MAX falls inside one when preceded by one 'x'.
        let error = format!("x{}", "é".repeat(ERROR_TEXT_BYTES_MAX));
        let fields = DeadLetterFields::new(&original, &error, 1);
        assert_eq!(fields.error.len(), ERROR_TEXT_BYTES_MAX - 1);
        assert!(error.starts_with(&fields.error));
        let short = DeadLetterFields::new(&original, "short", 1);
        assert_eq!(short.error, "short");
    }

    fn config(attempts_max: u32) -> DeadLetterConfig {
        DeadLetterConfig {
            attempts_max,
            backoff_ms_initial: 10,
            backoff_ms_max: 40,
            retry_timeout_ms: 60_000,
            commit: CommitMode::EachRecord,
        }
    }

    #[test]
    fn a_record_is_tried_attempts_max_times_with_growing_backoff_then_dead_lettered() {
        let policy = config(5).retry_policy();
        let now = Instant::now();
        let mut rng = StdRng::seed_from_u64(9);
        let mut retries = RecordRetries::start(&policy, now);
        let mut delays = Vec::new();
        while let AfterFailure::Retry { delay } = retries.after_failure(now, &mut rng) {
            delays.push(delay);
        }
        assert_eq!(retries.attempts(), 5);
        assert_eq!(delays.len(), 4);
        // Full jitter below a ceiling of 10, 20, 40, 40 ms (doubling, capped at the maximum).
        for (retry, delay) in delays.iter().enumerate() {
            assert!(*delay <= Duration::from_millis([10, 20, 40, 40][retry]));
        }
        // Asking again after giving up still gives up.
        assert_eq!(
            retries.after_failure(now, &mut rng),
            AfterFailure::DeadLetter
        );
        assert_eq!(retries.attempts(), 5);
    }

    #[test]
    fn one_attempt_means_no_retry() {
        let policy = config(1).retry_policy();
        let now = Instant::now();
        let mut retries = RecordRetries::start(&policy, now);
        let decision = retries.after_failure(now, &mut StdRng::seed_from_u64(1));
        assert_eq!(decision, AfterFailure::DeadLetter);
        assert_eq!(retries.attempts(), 1);
    }

    #[test]
    fn no_retry_starts_after_the_retry_timeout() {
        let policy = DeadLetterConfig {
            retry_timeout_ms: 1_000,
            ..config(100)
        }
        .retry_policy();
        let started = Instant::now();
        let mut rng = StdRng::seed_from_u64(2);
        let mut retries = RecordRetries::start(&policy, started);
        assert!(matches!(
            retries.after_failure(started, &mut rng),
            AfterFailure::Retry { .. }
        ));
        let late = started + Duration::from_millis(1_000);
        assert_eq!(
            retries.after_failure(late, &mut rng),
            AfterFailure::DeadLetter
        );
        assert_eq!(retries.attempts(), 2);
    }

    #[test]
    fn config_bounds_are_checked() {
        assert!(DeadLetterConfig::default().validate().is_ok());
        let cases = [
            (
                "no attempts",
                DeadLetterConfig {
                    attempts_max: 0,
                    ..config(1)
                },
            ),
            (
                "too many attempts",
                DeadLetterConfig {
                    attempts_max: ATTEMPTS_MAX_LIMIT + 1,
                    ..config(1)
                },
            ),
            (
                "initial above max",
                DeadLetterConfig {
                    backoff_ms_initial: 50,
                    backoff_ms_max: 40,
                    ..config(3)
                },
            ),
            (
                "zero timeout",
                DeadLetterConfig {
                    retry_timeout_ms: 0,
                    ..config(3)
                },
            ),
            (
                "timeout past a day",
                DeadLetterConfig {
                    retry_timeout_ms: RETRY_TIMEOUT_MS_LIMIT + 1,
                    ..config(3)
                },
            ),
        ];
        for (what, case) in cases {
            assert!(
                matches!(case.validate(), Err(DeadLetterError::InvalidConfig(_))),
                "{what} must be refused"
            );
        }
    }

    #[test]
    fn rewind_and_commit_offsets_follow_each_partition() {
        let records = [
            record("a", 0, 10),
            record("a", 1, 5),
            record("a", 0, 11),
            record("b", 0, 7),
            record("a", 1, 6),
        ];
        let firsts: Vec<(String, u32, i64)> = first_offsets(&records[1..])
            .into_iter()
            .map(|(topic, partition, offset)| (topic.to_string(), partition, offset))
            .collect();
        assert_eq!(
            firsts,
            vec![("a".into(), 1, 5), ("a".into(), 0, 11), ("b".into(), 0, 7)]
        );
        let nexts: Vec<(String, u32, i64)> = next_offsets(&records)
            .into_iter()
            .map(|(topic, partition, offset)| (topic.to_string(), partition, offset))
            .collect();
        assert_eq!(
            nexts,
            vec![("a".into(), 0, 12), ("a".into(), 1, 7), ("b".into(), 0, 8)]
        );
    }
}
