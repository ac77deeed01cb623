//! The topic catalog: topic names, ids, partition counts and configs, and its file in the data
//! directory.
//!
//! This module owns [`Catalog`], an immutable value: a change produces a new catalog with a higher
//! `version` ([`Catalog::with_topic`], [`Catalog::without_topic`]), which shard 0 (the only
//! writer) persists with [`persist`] and then publishes to every shard as an `Arc<Catalog>`.
//! Invariants: topic ids are never reused (`next_topic_id` only grows); names are unique; every
//! topic has `1..=topic-partitions-max` partitions.
//!
//! Crash behaviour of [`persist`]: the new catalog is written to `catalog.toml.tmp`, made durable
//! with `fdatasync`, renamed over `catalog.toml`, and the directory is fsynced. A crash leaves
//! either the old or the new `catalog.toml` whole; a stale `.tmp` file is ignored and overwritten.
//! A topic change is acknowledged only after [`persist`] returns.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{FlushSetting, TopicConfig, TopicConfigError};

/// The catalog's file name inside the data directory.
pub const CATALOG_FILE: &str = "catalog.toml";
/// Name of the temporary file a new catalog is written to before the rename.
pub const CATALOG_TEMP_FILE: &str = "catalog.toml.tmp";
/// Longest topic name, in bytes.
pub const TOPIC_NAME_BYTES_MAX: usize = 249;
/// Prefix reserved for internal topics; clients cannot create or delete such topics.
pub const INTERNAL_TOPIC_PREFIX: &str = "__";
/// The internal topic holding committed consumer-group offsets.
pub const OFFSETS_TOPIC: &str = "__offsets";
/// Partition count of [`OFFSETS_TOPIC`]; fixed because a group's partition is
/// `hash(group) % OFFSETS_PARTITIONS` and must never move.
pub const OFFSETS_PARTITIONS: u32 = 8;
/// Segment size of [`OFFSETS_TOPIC`]: commits are small, and segments are preallocated.
pub const OFFSETS_SEGMENT_BYTES_MAX: u64 = 4 << 20;

/// A topic identifier: assigned by the catalog at creation, never reused.
pub type TopicId = u32;

/// One topic in the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicEntry {
    /// The topic's name.
    pub name: String,
    /// The topic's id.
    pub topic_id: TopicId,
    /// The topic's settings, including its partition count.
    pub config: TopicConfig,
}

impl TopicEntry {
    /// Whether the topic is internal (its name starts with [`INTERNAL_TOPIC_PREFIX`]).
    pub fn is_internal(&self) -> bool {
        self.name.starts_with(INTERNAL_TOPIC_PREFIX)
    }
}

/// An immutable snapshot of every topic.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Catalog {
    version: u64,
    next_topic_id: TopicId,
    by_name: BTreeMap<String, Arc<TopicEntry>>,
    by_id: BTreeMap<TopicId, Arc<TopicEntry>>,
}

/// Why a catalog change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CatalogError {
    /// The name breaks the naming rules.
    #[error("invalid topic name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Which rule it breaks.
        reason: &'static str,
    },
    /// A topic of that name exists.
    #[error("topic {0:?} already exists")]
    AlreadyExists(String),
    /// No topic of that name exists.
    #[error("topic {0:?} does not exist")]
    UnknownTopic(String),
    /// Internal topics cannot be created or deleted by clients.
    #[error("topic {0:?} is internal")]
    Internal(String),
    /// A setting is out of range.
    #[error(transparent)]
    InvalidConfig(#[from] TopicConfigError),
    /// The topic id space is exhausted.
    #[error("no topic ids left")]
    IdsExhausted,
}

/// Checks a client-supplied topic name: 1..=249 bytes of `[A-Za-z0-9._-]`, not `.` or `..`,
/// not starting with the internal prefix `__`.
pub fn check_topic_name(name: &str) -> Result<(), CatalogError> {
    let invalid = |reason| CatalogError::InvalidName {
        name: name.to_string(),
        reason,
    };
    if name.is_empty() {
        return Err(invalid("empty"));
    }
    if name.len() > TOPIC_NAME_BYTES_MAX {
        return Err(invalid("longer than 249 bytes"));
    }
    if name == "." || name == ".." {
        return Err(invalid("'.' and '..' are not topic names"));
    }
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-');
    if !name.bytes().all(allowed) {
        return Err(invalid(
            "only ASCII letters, digits, '.', '_' and '-' are allowed",
        ));
    }
    if name.starts_with(INTERNAL_TOPIC_PREFIX) {
        return Err(CatalogError::Internal(name.to_string()));
    }
    Ok(())
}

impl Catalog {
    /// The catalog's version: 0 for an empty, never-written catalog; +1 per change.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Looks a topic up by name.
    pub fn topic(&self, name: &str) -> Option<&Arc<TopicEntry>> {
        self.by_name.get(name)
    }

    /// Looks a topic up by id.
    pub fn topic_by_id(&self, topic_id: TopicId) -> Option<&Arc<TopicEntry>> {
        self.by_id.get(&topic_id)
    }

    /// Every topic, ordered by name.
    pub fn topics(&self) -> impl Iterator<Item = &Arc<TopicEntry>> {
        self.by_name.values()
    }

    /// A new catalog with topic `name` added under the next id. Checks the name (internal names
    /// only when `allow_internal`) and the config against the limits.
    pub fn with_topic(
        &self,
        name: &str,
        config: TopicConfig,
        topic_partitions_max: u32,
        batch_bytes_max: u32,
        allow_internal: bool,
    ) -> Result<(Catalog, Arc<TopicEntry>), CatalogError> {
        match check_topic_name(name) {
            Err(CatalogError::Internal(_)) if allow_internal => {}
            other => other?,
        }
        if self.by_name.contains_key(name) {
            return Err(CatalogError::AlreadyExists(name.to_string()));
        }
        config.check(topic_partitions_max, batch_bytes_max)?;
        let topic_id = self.next_topic_id.max(1);
        let next_topic_id = topic_id.checked_add(1).ok_or(CatalogError::IdsExhausted)?;
        let entry = Arc::new(TopicEntry {
            name: name.to_string(),
            topic_id,
            config,
        });
        let mut next = self.clone();
        next.version += 1;
        next.next_topic_id = next_topic_id;
        next.by_name.insert(entry.name.clone(), Arc::clone(&entry));
        next.by_id.insert(topic_id, Arc::clone(&entry));
        Ok((next, entry))
    }

    /// A new catalog without topic `name`. Internal topics cannot be removed.
    pub fn without_topic(&self, name: &str) -> Result<(Catalog, Arc<TopicEntry>), CatalogError> {
        let entry = self
            .by_name
            .get(name)
            .ok_or_else(|| CatalogError::UnknownTopic(name.to_string()))?;
        if entry.is_internal() {
            return Err(CatalogError::Internal(name.to_string()));
        }
        let entry = Arc::clone(entry);
        let mut next = self.clone();
        next.version += 1;
        next.by_name.remove(name);
        next.by_id.remove(&entry.topic_id);
        Ok((next, entry))
    }

    /// Ensures the internal offsets topic exists, adding it (flush = always) when missing.
    pub fn with_offsets_topic(&self, defaults: &TopicConfig) -> Catalog {
        if self.by_name.contains_key(OFFSETS_TOPIC) {
            return self.clone();
        }
        let config = TopicConfig {
            partitions: OFFSETS_PARTITIONS,
            flush: FlushSetting::Always,
            retention_bytes_max: 0,
            retention_ms_max: 0,
            segment_bytes_max: OFFSETS_SEGMENT_BYTES_MAX,
            ..*defaults
        };
        match self.with_topic(OFFSETS_TOPIC, config, u32::MAX, 0, true) {
            Ok((catalog, _)) => catalog,
            // The name and config are constants that pass every check.
            Err(error) => unreachable!("offsets topic is always valid: {error}"),
        }
    }

    /// Serializes the catalog as the TOML text of [`CATALOG_FILE`].
    pub fn to_toml(&self) -> String {
        let file = CatalogFile {
            version: self.version,
            next_topic_id: self.next_topic_id,
            topics: self.by_id.values().map(|entry| (**entry).clone()).collect(),
        };
        // A struct of integers, strings and enums always serializes.
        toml::to_string(&file).unwrap_or_else(|error| unreachable!("catalog serializes: {error}"))
    }

    /// Parses the TOML text of [`CATALOG_FILE`], checking its invariants.
    pub fn from_toml(text: &str) -> Result<Catalog, LoadError> {
        let file: CatalogFile =
            toml::from_str(text).map_err(|error| LoadError::Parse(error.message().to_string()))?;
        let mut catalog = Catalog {
            version: file.version,
            next_topic_id: file.next_topic_id,
            ..Catalog::default()
        };
        for entry in file.topics {
            if entry.topic_id == 0 || entry.topic_id >= file.next_topic_id {
                return Err(LoadError::Corrupt(format!(
                    "topic {:?} has id {} outside 1..{}",
                    entry.name, entry.topic_id, file.next_topic_id
                )));
            }
            if entry.config.partitions == 0 {
                return Err(LoadError::Corrupt(format!(
                    "topic {:?} has 0 partitions",
                    entry.name
                )));
            }
            let entry = Arc::new(entry);
            let duplicate_name = catalog
                .by_name
                .insert(entry.name.clone(), Arc::clone(&entry))
                .is_some();
            let duplicate_id = catalog
                .by_id
                .insert(entry.topic_id, Arc::clone(&entry))
                .is_some();
            if duplicate_name || duplicate_id {
                return Err(LoadError::Corrupt(format!(
                    "topic {:?} (id {}) appears twice",
                    entry.name, entry.topic_id
                )));
            }
        }
        Ok(catalog)
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    version: u64,
    next_topic_id: TopicId,
    #[serde(default)]
    topics: Vec<TopicEntry>,
}

/// Why the catalog file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file exists but could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The catalog file.
        path: PathBuf,
        /// Why reading failed.
        source: std::io::Error,
    },
    /// The file is not valid catalog TOML.
    #[error("catalog file is not valid: {0}")]
    Parse(String),
    /// The file parses but breaks an invariant.
    #[error("catalog file is corrupt: {0}")]
    Corrupt(String),
}

/// Why a new catalog could not be made durable.
#[derive(Debug, thiserror::Error)]
#[error("cannot persist the topic catalog ({step} {path}): {source}")]
pub struct PersistError {
    /// Which step failed: create, write, fdatasync, close, rename, or fsync directory.
    pub step: &'static str,
    /// The file or directory involved.
    pub path: PathBuf,
    /// The underlying error.
    pub source: std::io::Error,
}

/// Loads the catalog from `data_dir` at start-up (before any executor runs, so blocking file
/// I/O is fine here). A missing file is an empty catalog.
pub fn load(data_dir: &Path) -> Result<Catalog, LoadError> {
    let path = data_dir.join(CATALOG_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => Catalog::from_toml(&text),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(Catalog::default()),
        Err(source) => Err(LoadError::Read { path, source }),
    }
}

/// Writes `catalog` to `data_dir` at start-up, before any executor runs: same protocol as
/// [`persist`] (temp file, fdatasync, rename, directory fsync) with blocking calls.
pub fn persist_blocking(data_dir: &Path, catalog: &Catalog) -> Result<(), PersistError> {
    use std::io::Write;
    let temp = data_dir.join(CATALOG_TEMP_FILE);
    let target = data_dir.join(CATALOG_FILE);
    let fail = |step, path: &Path| {
        let path = path.to_path_buf();
        move |source| PersistError { step, path, source }
    };
    let mut file = std::fs::File::create(&temp).map_err(fail("create", &temp))?;
    file.write_all(catalog.to_toml().as_bytes())
        .map_err(fail("write", &temp))?;
    file.sync_data().map_err(fail("fdatasync", &temp))?;
    drop(file);
    std::fs::rename(&temp, &target).map_err(fail("rename", &target))?;
    let directory = std::fs::File::open(data_dir).map_err(fail("open directory", data_dir))?;
    directory
        .sync_all()
        .map_err(fail("fsync directory", data_dir))?;
    Ok(())
}

/// Makes `catalog` durable in `data_dir` through glommio's io_uring file APIs; runs on shard 0's
/// executor. Returns once the rename and the directory fsync are done.
pub async fn persist(data_dir: &Path, catalog: &Catalog) -> Result<(), PersistError> {
    let temp = data_dir.join(CATALOG_TEMP_FILE);
    let target = data_dir.join(CATALOG_FILE);
    let io = |step, path: &Path| {
        let path = path.to_path_buf();
        move |error: glommio::GlommioError<()>| PersistError {
            step,
            path,
            source: std::io::Error::other(error.to_string()),
        }
    };
    let file = glommio::io::BufferedFile::create(&temp)
        .await
        .map_err(io("create", &temp))?;
    let mut bytes = catalog.to_toml().into_bytes();
    let mut position = 0u64;
    while !bytes.is_empty() {
        let written = file
            .write_at(bytes.clone(), position)
            .await
            .map_err(io("write", &temp))?;
        if written == 0 {
            return Err(PersistError {
                step: "write",
                path: temp,
                source: std::io::Error::from(std::io::ErrorKind::WriteZero),
            });
        }
        bytes.drain(..written);
        position += written as u64;
    }
    file.fdatasync().await.map_err(io("fdatasync", &temp))?;
    file.close().await.map_err(io("close", &temp))?;
    glommio::io::rename(&temp, &target)
        .await
        .map_err(io("rename", &target))?;
    let directory = glommio::io::Directory::open(data_dir)
        .await
        .map_err(io("open directory", data_dir))?;
    directory
        .sync()
        .await
        .map_err(io("fsync directory", data_dir))?;
    directory
        .close()
        .await
        .map_err(io("close directory", data_dir))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaults() -> TopicConfig {
        TopicConfig {
            partitions: 3,
            flush: FlushSetting::Always,
            retention_bytes_max: 0,
            retention_ms_max: 1000,
            segment_bytes_max: 1 << 20,
            segment_ms_max: 0,
        }
    }

    #[test]
    fn names_follow_the_rules() {
        for good in ["a", "orders", "Orders.v2", "a_b-c", &"x".repeat(249)] {
            assert_eq!(check_topic_name(good), Ok(()), "{good}");
        }
        for bad in ["", ".", "..", "a b", "a/b", "é", "a\0", &"x".repeat(250)] {
            assert!(
                matches!(check_topic_name(bad), Err(CatalogError::InvalidName { .. })),
                "{bad:?}"
            );
        }
        assert_eq!(
            check_topic_name("__offsets"),
            Err(CatalogError::Internal("__offsets".into()))
        );
    }

    #[test]
    fn changes_bump_version_and_never_reuse_ids() {
        let empty = Catalog::default();
        let (one, a) = empty.with_topic("a", defaults(), 16, 1024, false).unwrap();
        let (two, b) = one.with_topic("b", defaults(), 16, 1024, false).unwrap();
        assert_eq!((a.topic_id, b.topic_id), (1, 2));
        assert_eq!(two.version(), 2);
        let (three, removed) = two.without_topic("b").unwrap();
        assert_eq!(removed.topic_id, 2);
        let (four, b_again) = three.with_topic("b", defaults(), 16, 1024, false).unwrap();
        assert_eq!(b_again.topic_id, 3, "ids are never reused");
        assert_eq!(four.topic_by_id(3).map(|t| t.name.as_str()), Some("b"));
        assert!(four.topic_by_id(2).is_none());
        assert_eq!(one.version(), 1, "older snapshots are unchanged");
    }

    #[test]
    fn invalid_changes_are_refused() {
        let (catalog, _) = Catalog::default()
            .with_topic("a", defaults(), 16, 1024, false)
            .unwrap();
        assert_eq!(
            catalog
                .with_topic("a", defaults(), 16, 1024, false)
                .unwrap_err(),
            CatalogError::AlreadyExists("a".into())
        );
        let too_many = TopicConfig {
            partitions: 17,
            ..defaults()
        };
        assert!(matches!(
            catalog.with_topic("z", too_many, 16, 1024, false),
            Err(CatalogError::InvalidConfig(TopicConfigError {
                key: "partitions",
                ..
            }))
        ));
        assert_eq!(
            catalog.without_topic("nope").unwrap_err(),
            CatalogError::UnknownTopic("nope".into())
        );
        let with_offsets = catalog.with_offsets_topic(&defaults());
        assert_eq!(
            with_offsets.without_topic(OFFSETS_TOPIC).unwrap_err(),
            CatalogError::Internal(OFFSETS_TOPIC.into())
        );
        let offsets = with_offsets.topic(OFFSETS_TOPIC).unwrap();
        assert_eq!(offsets.config.partitions, OFFSETS_PARTITIONS);
        assert_eq!(offsets.config.flush, FlushSetting::Always);
        assert_eq!(with_offsets.with_offsets_topic(&defaults()), with_offsets);
    }

    #[test]
    fn toml_round_trip_and_corruption_detection() {
        let (catalog, _) = Catalog::default()
            .with_topic("a", defaults(), 16, 1024, false)
            .unwrap();
        let catalog = catalog.with_offsets_topic(&defaults());
        let text = catalog.to_toml();
        assert_eq!(Catalog::from_toml(&text).unwrap(), catalog);
        assert!(matches!(
            Catalog::from_toml("garbage ="),
            Err(LoadError::Parse(_))
        ));
        let duplicated = text.replace("name = \"__offsets\"", "name = \"a\"");
        assert!(matches!(
            Catalog::from_toml(&duplicated),
            Err(LoadError::Corrupt(_))
        ));
        let bad_id = "version = 1\nnext_topic_id = 2\n[[topics]]\nname = \"a\"\ntopic_id = 5\n\
                      [topics.config]\npartitions = 1\nflush = \"always\"\nretention_bytes_max = 0\n\
                      retention_ms_max = 0\nsegment_bytes_max = 100000\nsegment_ms_max = 0\n";
        assert!(matches!(
            Catalog::from_toml(bad_id),
            Err(LoadError::Corrupt(_))
        ));
    }

    #[test]
    fn persist_blocking_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            load(dir.path()).unwrap(),
            Catalog::default(),
            "missing file = empty"
        );
        let (catalog, _) = Catalog::default()
            .with_topic("a", defaults(), 16, 1024, false)
            .unwrap();
        persist_blocking(dir.path(), &catalog).unwrap();
        assert_eq!(load(dir.path()).unwrap(), catalog);
        assert!(!dir.path().join(CATALOG_TEMP_FILE).exists());
    }

    #[test]
    fn persist_through_glommio_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().to_path_buf();
        // A stale temp file from a crash must not matter.
        std::fs::write(path.join(CATALOG_TEMP_FILE), "half-written").unwrap();
        let (first, _) = Catalog::default()
            .with_topic("first", defaults(), 16, 1024, false)
            .unwrap();
        let (second, _) = first
            .with_topic("second", defaults(), 16, 1024, false)
            .unwrap();
        let expected = second.clone();
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                persist(&path, &first).await.unwrap();
                persist(&path, &second).await.unwrap();
            })
            .unwrap();
        executor.join().unwrap();
        assert_eq!(load(dir.path()).unwrap(), expected);
        assert!(!dir.path().join(CATALOG_TEMP_FILE).exists());
    }
}
