//! The control plane: topic creation and deletion on shard 0, the catalog's only writer, and
//! the publication of each new catalog snapshot to every shard.
//!
//! Invariants: catalog changes are serialized by shard 0's catalog lock; a change is persisted
//! (temp file, fdatasync, rename, directory fsync) before it is published; the request is
//! answered only after every shard applied the new snapshot (opened or deleted its partitions),
//! so a client that created a topic can produce to it at once through any shard. A crash after
//! the persist and before publication is harmless: every shard loads the persisted catalog at
//! start.

use std::rc::Rc;
use std::sync::Arc;

use tracing::{error, info};
use weir_proto::wire::{
    CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, DeleteTopicResponse, ErrorCode,
    FlushPolicy, TopicConfig as WireTopicConfig,
};

use crate::catalog::{self, Catalog, CatalogError};
use crate::config::{FlushSetting, TopicConfig};
use crate::shard::{PeerReply, PeerRequest, Shard};

/// The shard that owns the catalog.
pub const CATALOG_SHARD: usize = 0;

/// A topic's settings as the wire protocol carries them.
pub fn to_wire_config(config: &TopicConfig) -> WireTopicConfig {
    let optional = |value: u64| (value > 0).then_some(value);
    WireTopicConfig {
        flush: match config.flush {
            FlushSetting::Always => FlushPolicy::Always,
            FlushSetting::Never => FlushPolicy::Never,
            FlushSetting::Interval { interval_ms } => FlushPolicy::Interval {
                interval_ms: u32::try_from(interval_ms).unwrap_or(u32::MAX),
            },
        },
        retention_bytes: optional(config.retention_bytes_max),
        retention_ms: optional(config.retention_ms_max),
        segment_bytes: config.segment_bytes_max,
        segment_ms: optional(config.segment_ms_max),
    }
}

/// The settings of a topic created with `partition_count` partitions and `wire` settings:
/// `partition_count = 0` and `segment_bytes = 0` mean the broker's defaults; absent retention
/// and segment age mean no limit.
pub fn from_wire_config(
    partition_count: u32,
    wire: &WireTopicConfig,
    defaults: &TopicConfig,
) -> TopicConfig {
    TopicConfig {
        partitions: if partition_count == 0 {
            defaults.partitions
        } else {
            partition_count
        },
        flush: match wire.flush {
            FlushPolicy::Always => FlushSetting::Always,
            FlushPolicy::Never => FlushSetting::Never,
            FlushPolicy::Interval { interval_ms } => FlushSetting::Interval {
                interval_ms: u64::from(interval_ms.max(1)),
            },
        },
        retention_bytes_max: wire.retention_bytes.unwrap_or(0),
        retention_ms_max: wire.retention_ms.unwrap_or(0),
        segment_bytes_max: if wire.segment_bytes == 0 {
            defaults.segment_bytes_max
        } else {
            wire.segment_bytes
        },
        segment_ms_max: wire.segment_ms.unwrap_or(0),
    }
}

fn catalog_error_code(error: &CatalogError) -> ErrorCode {
    match error {
        CatalogError::InvalidName { .. } | CatalogError::Internal(_) => ErrorCode::InvalidTopicName,
        CatalogError::AlreadyExists(_) => ErrorCode::TopicAlreadyExists,
        CatalogError::UnknownTopic(_) => ErrorCode::UnknownTopic,
        CatalogError::InvalidConfig(_) => ErrorCode::InvalidConfig,
        CatalogError::IdsExhausted => ErrorCode::UnknownServerError,
    }
}

/// Persists `catalog` and makes every shard apply it; returns the failures to report.
async fn commit_catalog(shard: &Rc<Shard>, catalog: Catalog) -> Result<(), (ErrorCode, String)> {
    if let Err(error) = catalog::persist(&shard.config.data_dir, &catalog).await {
        error!(%error, "cannot persist the topic catalog");
        return Err((ErrorCode::StorageError, error.to_string()));
    }
    let catalog = Arc::new(catalog);
    let mut failures = shard.apply_catalog(Arc::clone(&catalog)).await;
    for peer in (0..shard.shard_count()).filter(|peer| *peer != shard.id) {
        match shard
            .peers
            .call(peer, PeerRequest::ApplyCatalog(Arc::clone(&catalog)))
            .await
        {
            Ok(PeerReply::CatalogApplied(peer_failures)) => failures.extend(peer_failures),
            Ok(other) => failures.push(format!("shard {peer}: unexpected reply {other:?}")),
            Err(error) => failures.push(format!("shard {peer}: {error}")),
        }
    }
    if failures.is_empty() {
        Ok(())
    } else {
        Err((ErrorCode::StorageError, failures.join("; ")))
    }
}

/// Creates a topic; must run on [`CATALOG_SHARD`].
pub async fn create_topic(shard: &Rc<Shard>, request: CreateTopicRequest) -> CreateTopicResponse {
    debug_assert_eq!(shard.id, CATALOG_SHARD);
    let config = from_wire_config(
        request.partition_count,
        &request.config,
        &shard.config.topic_defaults,
    );
    let outcome = shard
        .with_catalog_lock(async {
            let current = shard.catalog();
            let (next, entry) = current
                .with_topic(
                    &request.name,
                    config,
                    shard.config.topic_partitions_max,
                    shard.config.batch_bytes_max,
                    false,
                )
                .map_err(|error| (catalog_error_code(&error), error.to_string()))?;
            commit_catalog(shard, next).await?;
            Ok::<_, (ErrorCode, String)>(entry)
        })
        .await
        .unwrap_or_else(|| {
            Err((
                ErrorCode::BrokerShuttingDown,
                "broker is stopping".to_string(),
            ))
        });
    match outcome {
        Ok(entry) => {
            info!(topic = %entry.name, topic_id = entry.topic_id, partitions = entry.config.partitions, flush = %entry.config.flush, "topic created");
            CreateTopicResponse {
                error_code: ErrorCode::None,
                error_message: String::new(),
                topic_id: entry.topic_id,
            }
        }
        Err((error_code, error_message)) => CreateTopicResponse {
            error_code,
            error_message,
            topic_id: 0,
        },
    }
}

/// Deletes a topic and its data; must run on [`CATALOG_SHARD`].
pub async fn delete_topic(shard: &Rc<Shard>, request: DeleteTopicRequest) -> DeleteTopicResponse {
    debug_assert_eq!(shard.id, CATALOG_SHARD);
    let outcome = shard
        .with_catalog_lock(async {
            let current = shard.catalog();
            let (next, entry) = current
                .without_topic(&request.name)
                .map_err(|error| (catalog_error_code(&error), error.to_string()))?;
            commit_catalog(shard, next).await?;
            Ok::<_, (ErrorCode, String)>(entry)
        })
        .await
        .unwrap_or_else(|| {
            Err((
                ErrorCode::BrokerShuttingDown,
                "broker is stopping".to_string(),
            ))
        });
    match outcome {
        Ok(entry) => {
            info!(topic = %entry.name, topic_id = entry.topic_id, "topic deleted");
            DeleteTopicResponse {
                error_code: ErrorCode::None,
                error_message: String::new(),
            }
        }
        Err((error_code, error_message)) => DeleteTopicResponse {
            error_code,
            error_message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_config_round_trips_and_zero_means_default() {
        let defaults = TopicConfig {
            partitions: 3,
            flush: FlushSetting::Always,
            retention_bytes_max: 0,
            retention_ms_max: 0,
            segment_bytes_max: 1 << 20,
            segment_ms_max: 0,
        };
        let custom = TopicConfig {
            partitions: 5,
            flush: FlushSetting::Interval { interval_ms: 20 },
            retention_bytes_max: 1000,
            retention_ms_max: 2000,
            segment_bytes_max: 1 << 21,
            segment_ms_max: 3000,
        };
        assert_eq!(
            from_wire_config(5, &to_wire_config(&custom), &defaults),
            custom
        );
        assert_eq!(
            from_wire_config(3, &to_wire_config(&defaults), &defaults),
            defaults
        );
        let mut wire = to_wire_config(&custom);
        wire.segment_bytes = 0;
        let resolved = from_wire_config(0, &wire, &defaults);
        assert_eq!(resolved.partitions, 3);
        assert_eq!(resolved.segment_bytes_max, 1 << 20);
        assert_eq!(to_wire_config(&defaults).retention_bytes, None);
    }
}
