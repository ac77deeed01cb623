//! The producer-id coordinator: hands out idempotent producer ids (InitProducerId, api 23) that
//! are unique across broker restarts.
//!
//! This module owns the `producer-ids` file in the data directory and the allocator that runs on
//! shard 0 only (one owner). Ids are handed out from blocks of [`PRODUCER_ID_BLOCK`]: before the
//! first id of a block is handed out, the block's end (the allocation high-water mark) is made
//! durable — temporary file, fdatasync, rename, directory fsync — so every id ever handed out
//! is below the mark on disk. After a restart, allocation starts at the mark: ids of a block
//! that was reserved but not used up are skipped, never reused. A crash during the write leaves
//! the old file (or, before the first write, none: ids start at 0 again, and none was handed
//! out). A damaged file fails the request with `storage_error` rather than risk reuse.
//!
//! An epoch bump (request with an id and its epoch, KIP-360) keeps no per-id state here: any id
//! below the allocator's next id was issued, and its next epoch is `epoch + 1`; at `i16::MAX`
//! the producer gets a new id at epoch 0, as in Kafka. Partitions enforce the epochs.

use std::path::Path;

use weir_proto::wire::{
    ErrorCode, InitProducerIdRequest, InitProducerIdResponse, PRODUCER_ID_NONE,
};

/// Ids reserved by one durable write of the high-water mark.
pub const PRODUCER_ID_BLOCK: i64 = 1000;
/// Name of the file holding the high-water mark, in the data directory.
pub const PRODUCER_IDS_FILE: &str = "producer-ids";
/// Name of the temporary file the mark is written to before the rename.
pub const PRODUCER_IDS_TEMP_FILE: &str = "producer-ids.tmp";
const FILE_MAGIC: [u8; 4] = *b"WPID";
const FILE_VERSION: u16 = 1;
/// Bytes of the file: magic, version, reserved, mark, CRC-32C of the bytes before it.
const FILE_BYTES: usize = 4 + 2 + 2 + 8 + 4;

/// Why the high-water mark could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum ProducerIdsError {
    /// The file could not be read or written.
    #[error("producer-ids file {step}: {source}")]
    Io {
        /// Which step failed.
        step: &'static str,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file's bytes are not a valid mark.
    #[error("producer-ids file is corrupt: {0}")]
    Corrupt(&'static str),
    /// Every id has been handed out.
    #[error("producer ids are exhausted")]
    Exhausted,
}

/// Encodes a high-water mark as the file's bytes.
pub fn encode_mark(mark: i64) -> Vec<u8> {
    let mut out = Vec::with_capacity(FILE_BYTES);
    out.extend_from_slice(&FILE_MAGIC);
    out.extend_from_slice(&FILE_VERSION.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes());
    out.extend_from_slice(&mark.to_be_bytes());
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_be_bytes());
    out
}

/// Decodes the file's bytes into the high-water mark.
pub fn decode_mark(bytes: &[u8]) -> Result<i64, ProducerIdsError> {
    if bytes.len() != FILE_BYTES {
        return Err(ProducerIdsError::Corrupt("wrong size"));
    }
    if bytes[..4] != FILE_MAGIC {
        return Err(ProducerIdsError::Corrupt("bad magic"));
    }
    let (body, crc) = bytes.split_at(FILE_BYTES - 4);
    if crc32c::crc32c(body).to_be_bytes() != crc {
        return Err(ProducerIdsError::Corrupt("checksum mismatch"));
    }
    if u16::from_be_bytes([body[4], body[5]]) != FILE_VERSION {
        return Err(ProducerIdsError::Corrupt("unsupported version"));
    }
    let mut mark = [0u8; 8];
    mark.copy_from_slice(&body[8..16]);
    let mark = i64::from_be_bytes(mark);
    if mark < 0 {
        return Err(ProducerIdsError::Corrupt("negative mark"));
    }
    Ok(mark)
}

/// Reads the durable high-water mark; 0 when the file does not exist yet.
pub fn load_mark(data_dir: &Path) -> Result<i64, ProducerIdsError> {
    match std::fs::read(data_dir.join(PRODUCER_IDS_FILE)) {
        Ok(bytes) => decode_mark(&bytes),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(source) => Err(ProducerIdsError::Io {
            step: "read",
            source,
        }),
    }
}

/// Makes `mark` durable: temporary file, fdatasync, rename, directory fsync (glommio io_uring).
pub async fn persist_mark(data_dir: &Path, mark: i64) -> Result<(), ProducerIdsError> {
    let temp = data_dir.join(PRODUCER_IDS_TEMP_FILE);
    let target = data_dir.join(PRODUCER_IDS_FILE);
    let io = |step| {
        move |error: glommio::GlommioError<()>| ProducerIdsError::Io {
            step,
            source: std::io::Error::other(error.to_string()),
        }
    };
    let file = glommio::io::BufferedFile::create(&temp)
        .await
        .map_err(io("create"))?;
    let bytes = encode_mark(mark);
    let written = file.write_at(bytes, 0).await.map_err(io("write"))?;
    if written != FILE_BYTES {
        return Err(ProducerIdsError::Io {
            step: "write",
            source: std::io::Error::from(std::io::ErrorKind::WriteZero),
        });
    }
    file.fdatasync().await.map_err(io("fdatasync"))?;
    file.close().await.map_err(io("close"))?;
    glommio::io::rename(&temp, &target)
        .await
        .map_err(io("rename"))?;
    let directory = glommio::io::Directory::open(data_dir)
        .await
        .map_err(io("open directory"))?;
    directory.sync().await.map_err(io("fsync directory"))?;
    directory.close().await.map_err(io("close directory"))
}

/// The allocator's state: the next id and the durable mark it may hand out up to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerIds {
    /// The next id to hand out.
    pub next_id: i64,
    /// Ids below this are covered by the durable mark.
    pub durable_mark: i64,
}

/// What answering a request needs, decided without I/O.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Answer now.
    Answer(InitProducerIdResponse),
    /// Persist this new mark first, then hand out `next_id` at epoch 0.
    Reserve {
        /// The mark to make durable.
        mark: i64,
    },
}

impl ProducerIds {
    /// An allocator restarting from the durable `mark`.
    pub fn from_mark(mark: i64) -> ProducerIds {
        ProducerIds {
            next_id: mark,
            durable_mark: mark,
        }
    }

    /// Decides how to answer `request`.
    pub fn decide(&self, request: &InitProducerIdRequest) -> Decision {
        let fail = |error_code, error_message: String| {
            Decision::Answer(InitProducerIdResponse {
                error_code,
                error_message,
                ..InitProducerIdResponse::default()
            })
        };
        if request.producer_id != PRODUCER_ID_NONE {
            if request.producer_id < 0 || request.producer_id >= self.next_id {
                return fail(
                    ErrorCode::UnknownProducerId,
                    format!(
                        "producer id {} was not issued by this broker",
                        request.producer_id
                    ),
                );
            }
            if request.producer_epoch < 0 {
                return fail(
                    ErrorCode::InvalidRequest,
                    format!("producer epoch {} is negative", request.producer_epoch),
                );
            }
            if request.producer_epoch < i16::MAX {
                return Decision::Answer(InitProducerIdResponse {
                    producer_id: request.producer_id,
                    producer_epoch: request.producer_epoch + 1,
                    ..InitProducerIdResponse::default()
                });
            }
            // Epochs are exhausted: a new id, as Kafka does.
        }
        if self.next_id < self.durable_mark {
            return self.hand_out_answer();
        }
        match self.durable_mark.checked_add(PRODUCER_ID_BLOCK) {
            Some(mark) => Decision::Reserve { mark },
            None => fail(
                ErrorCode::UnknownServerError,
                ProducerIdsError::Exhausted.to_string(),
            ),
        }
    }

    fn hand_out_answer(&self) -> Decision {
        Decision::Answer(InitProducerIdResponse {
            producer_id: self.next_id,
            producer_epoch: 0,
            ..InitProducerIdResponse::default()
        })
    }

    /// Applies an answer that handed out a new id, or a durable reservation.
    pub fn apply(&mut self, decision: &Decision) {
        match decision {
            Decision::Answer(response)
                if response.error_code.is_none()
                    && response.producer_epoch == 0
                    && response.producer_id == self.next_id =>
            {
                self.next_id += 1;
            }
            Decision::Answer(_) => {}
            Decision::Reserve { mark } => self.durable_mark = *mark,
        }
    }
}

/// Answers an InitProducerId on the coordinator shard: `state` is the allocator (loaded on
/// first use), `data_dir` where its mark lives. The caller serializes calls.
pub async fn init_producer_id(
    state: &mut Option<ProducerIds>,
    data_dir: &Path,
    request: &InitProducerIdRequest,
) -> InitProducerIdResponse {
    let storage_error = |error: ProducerIdsError| InitProducerIdResponse {
        error_code: ErrorCode::StorageError,
        error_message: error.to_string(),
        ..InitProducerIdResponse::default()
    };
    let ids = match state {
        Some(ids) => ids,
        None => match load_mark(data_dir) {
            Ok(mark) => state.insert(ProducerIds::from_mark(mark)),
            Err(error) => return storage_error(error),
        },
    };
    loop {
        let decision = ids.decide(request);
        match &decision {
            Decision::Answer(response) => {
                let response = response.clone();
                ids.apply(&decision);
                return response;
            }
            Decision::Reserve { mark } => {
                if let Err(error) = persist_mark(data_dir, *mark).await {
                    return storage_error(error);
                }
                ids.apply(&decision);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_id() -> InitProducerIdRequest {
        InitProducerIdRequest::default()
    }

    fn answer(ids: &mut ProducerIds, request: InitProducerIdRequest) -> Decision {
        let decision = ids.decide(&request);
        ids.apply(&decision);
        decision
    }

    #[test]
    fn ids_come_from_durable_blocks_and_a_restart_skips_the_rest_of_a_block() {
        let mut ids = ProducerIds::from_mark(0);
        assert_eq!(
            answer(&mut ids, new_id()),
            Decision::Reserve {
                mark: PRODUCER_ID_BLOCK
            }
        );
        for expected in 0..3 {
            let Decision::Answer(response) = answer(&mut ids, new_id()) else {
                panic!("the block is reserved");
            };
            assert_eq!(
                (response.producer_id, response.producer_epoch),
                (expected, 0)
            );
        }
        let restarted = ProducerIds::from_mark(ids.durable_mark);
        assert_eq!(
            restarted.next_id, PRODUCER_ID_BLOCK,
            "never below an id handed out"
        );
        let mut full = ProducerIds {
            next_id: 5,
            durable_mark: 5,
        };
        assert_eq!(
            answer(&mut full, new_id()),
            Decision::Reserve {
                mark: 5 + PRODUCER_ID_BLOCK
            }
        );
    }

    #[test]
    fn an_epoch_bump_needs_an_issued_id() {
        let mut ids = ProducerIds {
            next_id: 10,
            durable_mark: 1000,
        };
        let bump = InitProducerIdRequest {
            producer_id: 3,
            producer_epoch: 4,
        };
        let Decision::Answer(response) = answer(&mut ids, bump) else {
            panic!()
        };
        assert_eq!((response.producer_id, response.producer_epoch), (3, 5));
        assert_eq!(ids.next_id, 10, "a bump hands out no id");
        let unknown = InitProducerIdRequest {
            producer_id: 10,
            producer_epoch: 0,
        };
        let Decision::Answer(response) = answer(&mut ids, unknown) else {
            panic!()
        };
        assert_eq!(response.error_code, ErrorCode::UnknownProducerId);
        let exhausted = InitProducerIdRequest {
            producer_id: 3,
            producer_epoch: i16::MAX,
        };
        let Decision::Answer(response) = answer(&mut ids, exhausted) else {
            panic!()
        };
        assert_eq!(
            (response.producer_id, response.producer_epoch),
            (10, 0),
            "a new id"
        );
        let negative = InitProducerIdRequest {
            producer_id: 3,
            producer_epoch: -2,
        };
        let Decision::Answer(response) = answer(&mut ids, negative) else {
            panic!()
        };
        assert_eq!(response.error_code, ErrorCode::InvalidRequest);
    }

    #[test]
    fn the_mark_file_round_trips_and_damage_is_detected() {
        let bytes = encode_mark(123_000);
        assert_eq!(decode_mark(&bytes).unwrap(), 123_000);
        for index in 0..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[index] ^= 0x04;
            assert!(decode_mark(&damaged).is_err(), "byte {index}");
        }
        assert!(decode_mark(&bytes[..10]).is_err());
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(load_mark(dir.path()).unwrap(), 0, "no file yet");
        std::fs::write(dir.path().join(PRODUCER_IDS_FILE), &bytes).unwrap();
        assert_eq!(load_mark(dir.path()).unwrap(), 123_000);
    }
}
