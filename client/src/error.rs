//! The client's typed errors.
//!
//! [`Error`] is what a request to the broker can fail with: connecting, a lost connection, a
//! frame the client cannot read, or an error code the broker answered with. [`ProduceError`] adds
//! what only a producer meets (a full buffer, a record too large, a delivery timeout). Both are
//! `Clone` because one failed batch resolves every record in it with the same error. Each error
//! says whether retrying may help ([`Retriable`]).

use std::sync::Arc;

use crate::retry::Retriable;

/// An error code the broker answered with, as the wire protocol carries it.
pub use weir_proto::wire::ErrorCode;

/// What a request to the broker, or an administrative call, can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// The TCP connection to a broker address could not be opened.
    #[error("cannot connect to broker {address}: {source}")]
    Connect {
        /// The address that was dialled.
        address: String,
        /// Why the connection failed.
        source: Arc<std::io::Error>,
    },
    /// The connection closed or failed while requests were in flight; they may not have been
    /// processed, or may have been processed without an answer reaching the client.
    #[error("connection to broker {address} lost: {reason}")]
    ConnectionLost {
        /// The broker address of the connection.
        address: String,
        /// What ended the connection.
        reason: String,
    },
    /// No response arrived within the request timeout.
    #[error("request {api} to {address} timed out after {timeout_ms} ms")]
    Timeout {
        /// The broker address of the connection.
        address: String,
        /// The request kind.
        api: &'static str,
        /// The timeout that ran out.
        timeout_ms: u64,
    },
    /// The broker sent bytes the client cannot decode, or an answer that does not fit the request.
    #[error("protocol error from broker {address}: {reason}")]
    Protocol {
        /// The broker address of the connection.
        address: String,
        /// What was wrong.
        reason: String,
    },
    /// The broker answered with an error code.
    #[error("broker error {code:?}{}", message_suffix(.message))]
    Broker {
        /// The code the broker answered with.
        code: ErrorCode,
        /// The broker's explanation, if it sent one.
        message: String,
    },
    /// The topic is not in the broker's metadata.
    #[error("topic \"{topic}\" does not exist")]
    UnknownTopic {
        /// The topic name asked for.
        topic: String,
    },
    /// The topic exists but has no such partition.
    #[error(
        "partition {partition} of topic \"{topic}\" does not exist (the topic has {partitions})"
    )]
    UnknownPartition {
        /// The topic name.
        topic: String,
        /// The partition asked for.
        partition: u32,
        /// The topic's partition count.
        partitions: u32,
    },
    /// An argument was rejected before anything was sent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// The client (or the producer, consumer or connection) was closed.
    #[error("the client is closed")]
    Closed,
}

fn message_suffix(message: &str) -> String {
    if message.is_empty() {
        String::new()
    } else {
        format!(": {message}")
    }
}

impl Retriable for Error {
    fn is_retriable(&self) -> bool {
        match self {
            Error::Connect { .. } | Error::ConnectionLost { .. } | Error::Timeout { .. } => true,
            Error::Broker { code, .. } => code.is_retriable(),
            Error::Protocol { .. }
            | Error::UnknownTopic { .. }
            | Error::UnknownPartition { .. }
            | Error::InvalidArgument(_)
            | Error::Closed => false,
        }
    }
}

/// What sending a record can fail with.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProduceError {
    /// The producer's buffer is full and `block_on_full` is false.
    #[error("the producer buffer is full ({buffer_bytes_max} bytes)")]
    BufferFull {
        /// The configured buffer size.
        buffer_bytes_max: u64,
    },
    /// The producer's buffer stayed full for longer than `block_ms_max`.
    #[error("the producer buffer stayed full for {block_ms_max} ms")]
    BufferFullTimeout {
        /// The configured longest wait.
        block_ms_max: u64,
    },
    /// The record cannot fit in one batch or in the buffer.
    #[error("record of {record_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    RecordTooLarge {
        /// The record's size as the batch would hold it (upper bound).
        record_bytes: u64,
        /// The limit it exceeds (`batch_bytes_max` or `buffer_bytes_max`).
        limit_bytes: u64,
    },
    /// The record was not acknowledged within `delivery_timeout_ms` of being batched.
    #[error("record not delivered within {delivery_timeout_ms} ms{}", last_error_suffix(.last_error))]
    DeliveryTimeout {
        /// The configured delivery timeout.
        delivery_timeout_ms: u64,
        /// The last error seen while retrying, if any.
        last_error: Option<Box<Error>>,
    },
    /// The record cannot be encoded in a batch (for example a timestamp out of range).
    #[error("record cannot be encoded: {reason}")]
    InvalidRecord {
        /// Why the batch builder refused it.
        reason: String,
    },
    /// The producer was closed before the record was accepted.
    #[error("the producer is closed")]
    Closed,
    /// The request failed with an error that retrying cannot fix, or the retries ran out.
    #[error(transparent)]
    Request(#[from] Error),
}

fn last_error_suffix(last_error: &Option<Box<Error>>) -> String {
    match last_error {
        Some(error) => format!(" (last error: {error})"),
        None => String::new(),
    }
}

impl Retriable for ProduceError {
    fn is_retriable(&self) -> bool {
        match self {
            ProduceError::BufferFull { .. } | ProduceError::BufferFullTimeout { .. } => true,
            ProduceError::Request(error) => error.is_retriable(),
            ProduceError::RecordTooLarge { .. }
            | ProduceError::InvalidRecord { .. }
            | ProduceError::DeliveryTimeout { .. }
            | ProduceError::Closed => false,
        }
    }
}
