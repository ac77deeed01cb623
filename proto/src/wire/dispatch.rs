//! The [`Request`] and [`Response`] enums over every api, decoded from a frame's header and body,
//! and the error response that answers a request the broker cannot serve.
//!
//! This module owns the request-level error path. Invariant: every request frame with a readable
//! header gets an answer the client can decode, even for an unknown api key, an unsupported
//! version, reserved flag bits or an undecodable body: a response header echoing the request's
//! correlation id, api key and version with a non-`none` error code, and an error body holding
//! only a `u16`-length-prefixed message. The only request without a response is a produce with
//! `acks = none`.

use bytes::{Bytes, BytesMut};

use super::admin::{
    CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, DeleteTopicResponse,
    DescribeTopicRequest, DescribeTopicResponse, ListTopicsRequest, ListTopicsResponse,
};
use super::api::{ApiKey, Priority, VersionRange};
use super::codec::{DecodeError, EncodeError, Reader, STRING_BYTES_MAX};
use super::control::{ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse};
use super::error_code::ErrorCode;
use super::fetch::{FetchRequest, FetchResponse};
use super::frame::encode_frame;
use super::group::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    HeartbeatRequest, HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, ListGroupsRequest, ListGroupsResponse, SyncGroupRequest, SyncGroupResponse,
};
use super::header::{InvalidFlags, RequestHeader, ResponseHeader};
use super::message::{RequestMessage, ResponseMessage};
use super::offsets::{
    ListOffsetsRequest, ListOffsetsResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse,
};
use super::produce::{ProduceRequest, ProduceResponse};
use super::producer::{InitProducerIdRequest, InitProducerIdResponse};

/// Why a request frame cannot be served; each maps to the error code the broker answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The api key names no api this broker implements.
    #[error("unknown api key {api_key}")]
    UnknownApiKey {
        /// The key as received.
        api_key: u16,
    },
    /// The api exists but not at this version.
    #[error("{api_key} version {api_version} is not supported (supported: {}..={})", supported.min, supported.max)]
    UnsupportedVersion {
        /// The api.
        api_key: ApiKey,
        /// The version asked for.
        api_version: u16,
        /// The versions this build supports.
        supported: VersionRange,
    },
    /// The header's flags use reserved bits.
    #[error(transparent)]
    InvalidFlags(#[from] InvalidFlags),
    /// The body does not decode as the api's request.
    #[error("invalid {api_key} request: {source}")]
    InvalidBody {
        /// The api.
        api_key: ApiKey,
        /// What was wrong.
        source: DecodeError,
    },
}

impl RequestError {
    /// The error code the broker answers with.
    pub const fn error_code(&self) -> ErrorCode {
        match self {
            RequestError::UnknownApiKey { .. } => ErrorCode::UnknownApiKey,
            RequestError::UnsupportedVersion { .. } => ErrorCode::UnsupportedVersion,
            RequestError::InvalidFlags(_) | RequestError::InvalidBody { .. } => {
                ErrorCode::InvalidRequest
            }
        }
    }
}

/// The answer to a request the broker cannot serve as asked: the response header carries
/// `error_code` (never `none`) and the body only `message`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ErrorResponse {
    /// The api key of the request, raw (it may be one the broker does not know).
    pub api_key: u16,
    /// The api version of the request.
    pub api_version: u16,
    /// Why the request was not served.
    pub error_code: ErrorCode,
    /// A human-readable explanation.
    pub message: String,
}

impl ErrorResponse {
    /// The answer to the request with `header` that failed with `error`.
    pub fn for_request(header: &RequestHeader, error: &RequestError) -> ErrorResponse {
        ErrorResponse::new(header, error.error_code(), &error.to_string())
    }

    /// An answer to the request with `header` carrying `error_code` and `message`; the message
    /// is cut at a character boundary if it exceeds the wire's string limit.
    pub fn new(header: &RequestHeader, error_code: ErrorCode, message: &str) -> ErrorResponse {
        let mut end = message.len().min(STRING_BYTES_MAX);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        ErrorResponse {
            api_key: header.api_key_raw(),
            api_version: header.api_version(),
            error_code,
            message: message[..end].to_owned(),
        }
    }

    /// Appends the whole error response frame to `dst`.
    pub fn encode_frame(
        &self,
        correlation_id: u32,
        throttle_time_ms: u32,
        dst: &mut BytesMut,
    ) -> Result<(), EncodeError> {
        let header = ResponseHeader::new(
            correlation_id,
            throttle_time_ms,
            self.api_key,
            self.api_version,
            self.error_code,
        );
        encode_frame(&header, dst, |writer| {
            writer.string("error_response.message", &self.message)
        })
    }

    /// Decodes the error body of a response whose header carries a non-`none` error code.
    pub fn decode(header: &ResponseHeader, body: &Bytes) -> Result<ErrorResponse, DecodeError> {
        let mut reader = Reader::new(body);
        let message = reader.string("error_response.message")?;
        reader.finish("error_response")?;
        Ok(ErrorResponse {
            api_key: header.api_key_raw(),
            api_version: header.api_version(),
            error_code: header.error_code(),
            message,
        })
    }
}

/// Why a response frame could not be turned into the expected response.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResponseError {
    /// The broker answered with a request-level error instead of the api's response.
    #[error("request rejected with {}: {}", .0.error_code, .0.message)]
    Rejected(ErrorResponse),
    /// The response's api key is not the one expected (or not one this build knows).
    #[error("response for api key {actual}, expected {expected:?}")]
    ApiKeyMismatch {
        /// The api the caller expected, if any.
        expected: Option<ApiKey>,
        /// The api key the header carries.
        actual: u16,
    },
    /// The body does not decode.
    #[error("invalid response body for api key {api_key}: {source}")]
    InvalidBody {
        /// The api key the header carries.
        api_key: u16,
        /// What was wrong.
        source: DecodeError,
    },
}

/// Decodes a response frame as the response type `M` the caller expects (the client knows it from
/// the correlation id): the api's response, or [`ResponseError::Rejected`] with the broker's
/// request-level error.
pub fn decode_response<M: ResponseMessage>(
    header: &ResponseHeader,
    body: &Bytes,
) -> Result<M, ResponseError> {
    let api_key = header.api_key_raw();
    if !header.error_code().is_none() {
        return Err(decode_rejection(header, body));
    }
    if api_key != M::API_KEY.to_u16() {
        return Err(ResponseError::ApiKeyMismatch {
            expected: Some(M::API_KEY),
            actual: api_key,
        });
    }
    M::decode(body, header.api_version())
        .map_err(|source| ResponseError::InvalidBody { api_key, source })
}

fn decode_rejection(header: &ResponseHeader, body: &Bytes) -> ResponseError {
    match ErrorResponse::decode(header, body) {
        Ok(rejection) => ResponseError::Rejected(rejection),
        Err(source) => ResponseError::InvalidBody {
            api_key: header.api_key_raw(),
            source,
        },
    }
}

/// Declares the [`Request`] and [`Response`] enums over every api.
macro_rules! dispatch {
    ($($api:ident($request:ident, $response:ident),)*) => {
        /// A decoded request of any api.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Request {
            $(
                #[doc = concat!("A ", stringify!($api), " request.")]
                $api($request),
            )*
        }

        impl Request {
            /// The api of this request.
            pub const fn api_key(&self) -> ApiKey {
                match self {
                    $(Request::$api(_) => ApiKey::$api,)*
                }
            }

            /// Decodes the body of a request frame, checking its api key, version and flags.
            pub fn decode(header: &RequestHeader, body: &Bytes) -> Result<Request, RequestError> {
                header.priority()?;
                let api_key = header.api_key().ok_or(RequestError::UnknownApiKey {
                    api_key: header.api_key_raw(),
                })?;
                let api_version = header.api_version();
                let supported = api_key.versions();
                if !supported.contains(api_version) {
                    return Err(RequestError::UnsupportedVersion { api_key, api_version, supported });
                }
                let invalid = |source| RequestError::InvalidBody { api_key, source };
                match api_key {
                    $(ApiKey::$api => $request::decode(body, api_version)
                        .map(Request::$api)
                        .map_err(invalid),)*
                }
            }

            /// Appends the whole request frame to `dst`.
            pub fn encode_frame(
                &self,
                correlation_id: u32,
                priority: Priority,
                dst: &mut BytesMut,
            ) -> Result<(), EncodeError> {
                match self {
                    $(Request::$api(request) => {
                        RequestMessage::encode_frame(request, correlation_id, priority, dst)
                    })*
                }
            }
        }

        $(
            impl From<$request> for Request {
                fn from(request: $request) -> Self {
                    Request::$api(request)
                }
            }
        )*

        /// A decoded response of any api, or the request-level error the broker answered with.
        #[derive(Debug, Clone, PartialEq, Eq)]
        pub enum Response {
            $(
                #[doc = concat!("A ", stringify!($api), " response.")]
                $api($response),
            )*
            /// The broker could not serve the request (unknown api, unsupported version, invalid
            /// request, …).
            Error(ErrorResponse),
        }

        impl Response {
            /// The api key this response answers, raw.
            pub const fn api_key_raw(&self) -> u16 {
                match self {
                    $(Response::$api(_) => ApiKey::$api.to_u16(),)*
                    Response::Error(error) => error.api_key,
                }
            }

            /// Decodes the body of a response frame of any api.
            pub fn decode(header: &ResponseHeader, body: &Bytes) -> Result<Response, ResponseError> {
                if !header.error_code().is_none() {
                    return match decode_rejection(header, body) {
                        ResponseError::Rejected(rejection) => Ok(Response::Error(rejection)),
                        other => Err(other),
                    };
                }
                let api_key = header.api_key_raw();
                let known = ApiKey::from_u16(api_key).ok_or(ResponseError::ApiKeyMismatch {
                    expected: None,
                    actual: api_key,
                })?;
                let invalid = |source| ResponseError::InvalidBody { api_key, source };
                match known {
                    $(ApiKey::$api => $response::decode(body, header.api_version())
                        .map(Response::$api)
                        .map_err(invalid),)*
                }
            }

            /// Appends the whole response frame to `dst`.
            pub fn encode_frame(
                &self,
                correlation_id: u32,
                throttle_time_ms: u32,
                dst: &mut BytesMut,
            ) -> Result<(), EncodeError> {
                match self {
                    $(Response::$api(response) => {
                        ResponseMessage::encode_frame(response, correlation_id, throttle_time_ms, dst)
                    })*
                    Response::Error(error) => error.encode_frame(correlation_id, throttle_time_ms, dst),
                }
            }
        }

        $(
            impl From<$response> for Response {
                fn from(response: $response) -> Self {
                    Response::$api(response)
                }
            }
        )*
    };
}

dispatch! {
    ApiVersions(ApiVersionsRequest, ApiVersionsResponse),
    Metadata(MetadataRequest, MetadataResponse),
    CreateTopic(CreateTopicRequest, CreateTopicResponse),
    DeleteTopic(DeleteTopicRequest, DeleteTopicResponse),
    ListTopics(ListTopicsRequest, ListTopicsResponse),
    DescribeTopic(DescribeTopicRequest, DescribeTopicResponse),
    Produce(ProduceRequest, ProduceResponse),
    Fetch(FetchRequest, FetchResponse),
    ListOffsets(ListOffsetsRequest, ListOffsetsResponse),
    InitProducerId(InitProducerIdRequest, InitProducerIdResponse),
    OffsetCommit(OffsetCommitRequest, OffsetCommitResponse),
    OffsetFetch(OffsetFetchRequest, OffsetFetchResponse),
    JoinGroup(JoinGroupRequest, JoinGroupResponse),
    SyncGroup(SyncGroupRequest, SyncGroupResponse),
    Heartbeat(HeartbeatRequest, HeartbeatResponse),
    LeaveGroup(LeaveGroupRequest, LeaveGroupResponse),
    ListGroups(ListGroupsRequest, ListGroupsResponse),
    DescribeGroups(DescribeGroupsRequest, DescribeGroupsResponse),
    DeleteGroups(DeleteGroupsRequest, DeleteGroupsResponse),
}

impl Request {
    /// Whether the broker answers this request: every request except a produce with
    /// `acks = none`.
    pub fn expects_response(&self) -> bool {
        match self {
            Request::Produce(produce) => produce.acks.expects_response(),
            _ => true,
        }
    }
}
