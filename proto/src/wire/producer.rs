//! The InitProducerId api: how an idempotent producer gets its producer id and epoch.
//!
//! This module owns its bodies and the "no producer" sentinels of the batch header's producer
//! fields. Invariants: a request with `producer_id = -1` asks for a new id (epoch 0); a request
//! with an id the broker issued and that id's current epoch asks for the next epoch (KIP-360's
//! epoch bump, which resets the producer's sequences on every partition); transactional ids are
//! not part of this api.

use super::api::ApiKey;
use super::codec::{DecodeError, EncodeError, Reader, Writer};
use super::error_code::ErrorCode;
use super::message::wire_message;

/// `producerId` of a batch (or of an InitProducerId request) without an idempotent producer.
pub const PRODUCER_ID_NONE: i64 = crate::batch::NO_PRODUCER_ID;
/// `producerEpoch` of a batch without an idempotent producer.
pub const PRODUCER_EPOCH_NONE: i16 = crate::batch::NO_PRODUCER_EPOCH;
/// `baseSequence` of a batch without an idempotent producer.
pub const SEQUENCE_NONE: i32 = crate::batch::NO_SEQUENCE;

/// Asks for a new producer id, or for the next epoch of an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct InitProducerIdRequest {
    /// [`PRODUCER_ID_NONE`] for a new id, or the id whose epoch is to be bumped.
    pub producer_id: i64,
    /// With an existing id: the producer's current epoch; ignored for a new id.
    pub producer_epoch: i16,
}

impl Default for InitProducerIdRequest {
    fn default() -> Self {
        InitProducerIdRequest {
            producer_id: PRODUCER_ID_NONE,
            producer_epoch: PRODUCER_EPOCH_NONE,
        }
    }
}

impl InitProducerIdRequest {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.i64(self.producer_id);
        writer.i16(self.producer_epoch);
        Ok(())
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(InitProducerIdRequest {
            producer_id: reader.i64("init_producer_id_request.producer_id")?,
            producer_epoch: reader.i16("init_producer_id_request.producer_epoch")?,
        })
    }
}

wire_message!(request InitProducerIdRequest, ApiKey::InitProducerId, "init_producer_id_request",
    response: InitProducerIdResponse);

/// The producer id and epoch to stamp on batches, or why none was handed out.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct InitProducerIdResponse {
    /// `none`, `unknown_producer_id`, `invalid_producer_epoch`, `storage_error`, …
    pub error_code: ErrorCode,
    /// A human-readable explanation when `error_code` is not `none`; else empty.
    pub error_message: String,
    /// The producer id (-1 on error).
    pub producer_id: i64,
    /// The producer epoch (-1 on error).
    pub producer_epoch: i16,
}

impl Default for InitProducerIdResponse {
    fn default() -> Self {
        InitProducerIdResponse {
            error_code: ErrorCode::None,
            error_message: String::new(),
            producer_id: PRODUCER_ID_NONE,
            producer_epoch: PRODUCER_EPOCH_NONE,
        }
    }
}

impl InitProducerIdResponse {
    fn write_fields(&self, writer: &mut Writer<'_>) -> Result<(), EncodeError> {
        writer.error_code(self.error_code);
        writer.string(
            "init_producer_id_response.error_message",
            &self.error_message,
        )?;
        writer.i64(self.producer_id);
        writer.i16(self.producer_epoch);
        Ok(())
    }

    fn read_fields(reader: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(InitProducerIdResponse {
            error_code: reader.error_code("init_producer_id_response.error_code")?,
            error_message: reader.string("init_producer_id_response.error_message")?,
            producer_id: reader.i64("init_producer_id_response.producer_id")?,
            producer_epoch: reader.i16("init_producer_id_response.producer_epoch")?,
        })
    }
}

wire_message!(response InitProducerIdResponse, ApiKey::InitProducerId, "init_producer_id_response");
