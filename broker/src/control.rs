//! The control plane: topic creation and deletion on shard 0, the catalog's only writer, and
//! the publication of each new catalog snapshot to every shard.
//!
//! A CreateTopic carries only the settings its client chose ([`TopicConfigOverrides`]); this
//! module resolves them against the broker's configured topic defaults
//! ([`crate::config::Config::topic_defaults`]) into the [`TopicConfig`] the catalog stores and
//! DescribeTopic and Metadata report, so a topic created without settings gets the operator's
//! `--default-*` values.
//!
//! Invariants: catalog changes are serialized by shard 0's catalog lock; a change is persisted
//! (temp file, fdatasync, rename, directory fsync) before it is published; the request is
//! answered only after every shard applied the new snapshot (opened or deleted its partitions),
//! so a client that created a topic can produce to it at once through any shard. A crash after
//! the persist and before publication is harmless: every shard loads the persisted catalog at
//! start.

use std::rc::Rc;
use std::sync::Arc;

use tracing::{error, info, warn};
use weir_proto::wire::{
    CreateTopicRequest, CreateTopicResponse, DeleteTopicRequest, DeleteTopicResponse, ErrorCode,
    FlushPolicy, Limit, TopicConfig as WireTopicConfig, TopicConfigOverrides,
};

use crate::catalog::{self, Catalog, CatalogError, TopicId};
use crate::config::{FlushSetting, TopicConfig, TopicConfigError};
use crate::shard::{join_failures, PartitionFailure, PeerReply, PeerRequest, Shard};

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

/// The settings of a topic created with `partition_count` partitions and `overrides`: a partition
/// count of 0 and every absent setting take `defaults`; [`Limit::Unlimited`] means no limit even
/// where the default has one.
///
/// Refuses a limit of 0 and a flush interval of 0, which would otherwise be read as "no limit"
/// or "sync constantly" by accident; the ranges of the result are checked by
/// [`TopicConfig::check`] when the topic is added to the catalog.
pub fn resolve_topic_config(
    partition_count: u32,
    overrides: &TopicConfigOverrides,
    defaults: &TopicConfig,
) -> Result<TopicConfig, TopicConfigError> {
    let flush = match overrides.flush {
        None => defaults.flush,
        Some(FlushPolicy::Always) => FlushSetting::Always,
        Some(FlushPolicy::Never) => FlushSetting::Never,
        Some(FlushPolicy::Interval { interval_ms: 0 }) => {
            return Err(TopicConfigError {
                key: "flush",
                value: "interval:0".to_string(),
                reason: "the interval must be at least 1 ms".to_string(),
            })
        }
        Some(FlushPolicy::Interval { interval_ms }) => FlushSetting::Interval {
            interval_ms: u64::from(interval_ms),
        },
    };
    Ok(TopicConfig {
        partitions: if partition_count == 0 {
            defaults.partitions
        } else {
            partition_count
        },
        flush,
        retention_bytes_max: resolve_limit(
            "retention-bytes-max",
            overrides.retention_bytes,
            defaults.retention_bytes_max,
        )?,
        retention_ms_max: resolve_limit(
            "retention-ms-max",
            overrides.retention_ms,
            defaults.retention_ms_max,
        )?,
        segment_bytes_max: overrides
            .segment_bytes
            .unwrap_or(defaults.segment_bytes_max),
        segment_ms_max: resolve_limit(
            "segment-ms-max",
            overrides.segment_ms,
            defaults.segment_ms_max,
        )?,
    })
}

/// One limit of [`resolve_topic_config`], in the catalog's form (0 = no limit).
fn resolve_limit(
    key: &'static str,
    limit: Option<Limit>,
    default: u64,
) -> Result<u64, TopicConfigError> {
    match limit {
        None => Ok(default),
        Some(Limit::Unlimited) => Ok(0),
        Some(Limit::Value(0)) => Err(TopicConfigError {
            key,
            value: "0".to_string(),
            reason: "must be at least 1; ask for unlimited to have no limit".to_string(),
        }),
        Some(Limit::Value(value)) => Ok(value),
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

/// Persists `catalog` and makes every shard apply it. Fails if the catalog could not be
/// persisted or a shard could not apply it; otherwise returns the partitions (of any topic) that
/// did not open, for the caller to report those that concern its request.
async fn commit_catalog(
    shard: &Rc<Shard>,
    catalog: Catalog,
) -> Result<Vec<PartitionFailure>, (ErrorCode, String)> {
    if let Err(error) = catalog::persist(&shard.config.data_dir, &catalog).await {
        error!(%error, "cannot persist the topic catalog");
        return Err((ErrorCode::StorageError, error.to_string()));
    }
    let catalog = Arc::new(catalog);
    let mut failures = Vec::new();
    let mut shard_errors = Vec::new();
    match shard.apply_catalog(Arc::clone(&catalog)).await {
        Ok(own) => failures.extend(own),
        Err(error) => shard_errors.push(format!("shard {}: {error}", shard.id)),
    }
    for peer in (0..shard.shard_count()).filter(|peer| *peer != shard.id) {
        match shard
            .peers
            .call(peer, PeerRequest::ApplyCatalog(Arc::clone(&catalog)))
            .await
        {
            Ok(PeerReply::CatalogApplied(Ok(peer_failures))) => failures.extend(peer_failures),
            Ok(PeerReply::CatalogApplied(Err(error))) => {
                shard_errors.push(format!("shard {peer}: {error}"))
            }
            Ok(other) => shard_errors.push(format!("shard {peer}: unexpected reply {other:?}")),
            Err(error) => shard_errors.push(format!("shard {peer}: {error}")),
        }
    }
    if shard_errors.is_empty() {
        Ok(failures)
    } else {
        Err((ErrorCode::StorageError, shard_errors.join("; ")))
    }
}

/// The refusal of a CreateTopic whose topic `topic_id` was added to the catalog but some of whose
/// partitions did not open, or `None` if all of them did. Failures of other topics' partitions
/// (retried with every catalog change) say nothing about this topic and are left out.
fn created_topic_failure(
    topic_id: TopicId,
    topic_name: &str,
    failures: &[PartitionFailure],
) -> Option<(ErrorCode, String)> {
    let own: Vec<PartitionFailure> = failures
        .iter()
        .filter(|failure| failure.topic_id == topic_id)
        .cloned()
        .collect();
    if own.is_empty() {
        return None;
    }
    Some((
        ErrorCode::StorageError,
        format!(
            "topic {topic_name}: {} of its partitions did not open: {}",
            own.len(),
            join_failures(&own)
        ),
    ))
}

/// Logs partitions of other topics that still do not open; a catalog change retries them.
fn log_other_failures(topic_id: TopicId, failures: &[PartitionFailure]) {
    for failure in failures
        .iter()
        .filter(|failure| failure.topic_id != topic_id)
    {
        warn!(topic = %failure.topic_name, partition = failure.partition, reason = %failure.reason, "partition still not open");
    }
}

/// Creates a topic; must run on [`CATALOG_SHARD`].
pub async fn create_topic(shard: &Rc<Shard>, request: CreateTopicRequest) -> CreateTopicResponse {
    debug_assert_eq!(shard.id, CATALOG_SHARD);
    let resolved = resolve_topic_config(
        request.partition_count,
        &request.config,
        &shard.config.topic_defaults,
    );
    let config = match resolved {
        Ok(config) => config,
        Err(error) => {
            return CreateTopicResponse {
                error_code: ErrorCode::InvalidConfig,
                error_message: error.to_string(),
                topic_id: 0,
            }
        }
    };
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
            let failures = commit_catalog(shard, next).await?;
            log_other_failures(entry.topic_id, &failures);
            if let Some(refusal) = created_topic_failure(entry.topic_id, &entry.name, &failures) {
                return Err(refusal);
            }
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
            let failures = commit_catalog(shard, next).await?;
            // Deleting opens nothing: any failure is another topic's, still not open.
            log_other_failures(entry.topic_id, &failures);
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

    fn defaults() -> TopicConfig {
        TopicConfig {
            partitions: 3,
            flush: FlushSetting::Never,
            retention_bytes_max: 1 << 30,
            retention_ms_max: 7 * 24 * 3600 * 1000,
            segment_bytes_max: 1 << 20,
            segment_ms_max: 3_600_000,
        }
    }

    #[test]
    fn absent_settings_and_zero_partitions_take_the_broker_defaults() {
        let resolved = resolve_topic_config(0, &TopicConfigOverrides::default(), &defaults());
        assert_eq!(resolved, Ok(defaults()));
    }

    #[test]
    fn each_override_replaces_only_its_own_setting() {
        type Case = (
            &'static str,
            u32,
            TopicConfigOverrides,
            fn(&mut TopicConfig),
        );
        let cases: [Case; 8] = [
            ("partitions", 5, TopicConfigOverrides::default(), |c| {
                c.partitions = 5
            }),
            (
                "flush always",
                0,
                TopicConfigOverrides {
                    flush: Some(FlushPolicy::Always),
                    ..TopicConfigOverrides::default()
                },
                |c| c.flush = FlushSetting::Always,
            ),
            (
                "flush interval",
                0,
                TopicConfigOverrides {
                    flush: Some(FlushPolicy::Interval { interval_ms: 20 }),
                    ..TopicConfigOverrides::default()
                },
                |c| c.flush = FlushSetting::Interval { interval_ms: 20 },
            ),
            (
                "unlimited retention bytes over a default limit",
                0,
                TopicConfigOverrides {
                    retention_bytes: Some(Limit::Unlimited),
                    ..TopicConfigOverrides::default()
                },
                |c| c.retention_bytes_max = 0,
            ),
            (
                "retention bytes value",
                0,
                TopicConfigOverrides {
                    retention_bytes: Some(Limit::Value(1000)),
                    ..TopicConfigOverrides::default()
                },
                |c| c.retention_bytes_max = 1000,
            ),
            (
                "unlimited retention age",
                0,
                TopicConfigOverrides {
                    retention_ms: Some(Limit::Unlimited),
                    ..TopicConfigOverrides::default()
                },
                |c| c.retention_ms_max = 0,
            ),
            (
                "segment bytes",
                0,
                TopicConfigOverrides {
                    segment_bytes: Some(1 << 21),
                    ..TopicConfigOverrides::default()
                },
                |c| c.segment_bytes_max = 1 << 21,
            ),
            (
                "roll by size only",
                0,
                TopicConfigOverrides {
                    segment_ms: Some(Limit::Unlimited),
                    ..TopicConfigOverrides::default()
                },
                |c| c.segment_ms_max = 0,
            ),
        ];
        for (name, partitions, overrides, change) in cases {
            let mut expected = defaults();
            change(&mut expected);
            assert_eq!(
                resolve_topic_config(partitions, &overrides, &defaults()),
                Ok(expected),
                "{name}"
            );
        }
    }

    #[test]
    fn a_resolved_config_round_trips_through_explicit_overrides() {
        let custom = TopicConfig {
            partitions: 5,
            flush: FlushSetting::Interval { interval_ms: 20 },
            retention_bytes_max: 0,
            retention_ms_max: 2000,
            segment_bytes_max: 1 << 21,
            segment_ms_max: 0,
        };
        let overrides = TopicConfigOverrides::from(to_wire_config(&custom));
        assert_eq!(
            resolve_topic_config(5, &overrides, &defaults()),
            Ok(custom),
            "every setting explicit: the defaults play no part"
        );
        assert_eq!(to_wire_config(&custom).retention_bytes, None);
        assert_eq!(to_wire_config(&custom).segment_ms, None);
        assert_eq!(to_wire_config(&custom).retention_ms, Some(2000));
    }

    #[test]
    fn zero_limits_and_a_zero_interval_are_refused_with_their_key() {
        let cases = [
            (
                TopicConfigOverrides {
                    flush: Some(FlushPolicy::Interval { interval_ms: 0 }),
                    ..TopicConfigOverrides::default()
                },
                "flush",
            ),
            (
                TopicConfigOverrides {
                    retention_bytes: Some(Limit::Value(0)),
                    ..TopicConfigOverrides::default()
                },
                "retention-bytes-max",
            ),
            (
                TopicConfigOverrides {
                    retention_ms: Some(Limit::Value(0)),
                    ..TopicConfigOverrides::default()
                },
                "retention-ms-max",
            ),
            (
                TopicConfigOverrides {
                    segment_ms: Some(Limit::Value(0)),
                    ..TopicConfigOverrides::default()
                },
                "segment-ms-max",
            ),
        ];
        for (overrides, key) in cases {
            let error = resolve_topic_config(1, &overrides, &defaults()).unwrap_err();
            assert_eq!(error.key, key, "{overrides:?}");
        }
    }

    #[test]
    fn a_create_topic_refusal_names_only_the_created_topic() {
        let failure = |topic_id: TopicId, topic_name: &str, partition: u32| PartitionFailure {
            topic_id,
            topic_name: topic_name.to_string(),
            partition,
            reason: "permission denied".to_string(),
        };
        let others = [failure(1, "__offsets", 0), failure(1, "__offsets", 3)];
        assert_eq!(created_topic_failure(7, "orders", &others), None);
        let mixed = [
            others[0].clone(),
            failure(7, "orders", 2),
            others[1].clone(),
        ];
        let (code, message) = created_topic_failure(7, "orders", &mixed).unwrap();
        assert_eq!(code, ErrorCode::StorageError);
        assert!(message.contains("orders/2: permission denied"), "{message}");
        assert!(!message.contains("__offsets"), "{message}");
    }
}
