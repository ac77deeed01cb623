//! Retention: deleting whole oldest segments by total size and by age.
//!
//! Owns the rule for which segments go: the oldest sealed segment is deleted while the log is
//! larger than `retention_bytes_max`, or while its newest timestamp (from its time index) is
//! older than `retention_age_ms_max`; the first segment that is kept stops the pass. The active
//! segment, and the newest segment when there is no active one, are never deleted. A segment
//! leaves the in-memory log (and the log start offset moves past it) before its files are
//! removed, log file first; a crash in between leaves files that the next open either lists
//! again (a log file: retention deletes it again) or removes (index files without a log file).

use crate::{
    error::{IoFailure, IoOperation, RetentionError},
    log::{PartitionLog, RetentionReport},
};

impl PartitionLog {
    /// Deletes the oldest whole segments that retention by bytes or by age (relative to
    /// `now_ms`) no longer keeps. Never deletes the active segment.
    pub async fn enforce_retention(&self, now_ms: i64) -> Result<RetentionReport, RetentionError> {
        let mut report = RetentionReport::default();
        loop {
            let candidate = {
                let state = self.state.borrow();
                let newest_sealed = state.sealed.keys().next_back().copied();
                state.sealed.values().next().cloned().filter(|segment| {
                    state.active.is_some() || Some(segment.base_offset) != newest_sealed
                })
            };
            let Some(segment) = candidate else {
                break;
            };
            let over_size = self
                .config
                .retention_bytes_max
                .is_some_and(|bytes_max| self.state.borrow().size_bytes() > bytes_max);
            let too_old = match self.config.retention_age_ms_max {
                Some(age_ms_max) if !over_size => {
                    let next_base = self.next_segment_base(segment.base_offset);
                    let loaded = self.load_sealed(&segment, next_base, false).await?;
                    now_ms.saturating_sub(loaded.max_timestamp_ms) > age_ms_max as i64
                }
                _ => false,
            };
            if !over_size && !too_old {
                break;
            }
            {
                let mut state = self.state.borrow_mut();
                let still_oldest = state
                    .sealed
                    .values()
                    .next()
                    .is_some_and(|oldest| std::rc::Rc::ptr_eq(oldest, &segment));
                if !still_oldest {
                    continue;
                }
                state.sealed.remove(&segment.base_offset);
                let next_start = state
                    .sealed
                    .keys()
                    .next()
                    .copied()
                    .or_else(|| state.active.as_ref().map(|active| active.base_offset))
                    .unwrap_or(state.log_end_offset);
                assert!(
                    next_start > state.log_start_offset,
                    "log start moves forward"
                );
                state.log_start_offset = next_start;
                state.tail_cache.drop_below(next_start);
                state.assert_offsets();
            }
            report.segments_deleted += 1;
            report.bytes_deleted += segment.size_bytes;
            let loaded = segment.loaded.borrow_mut().take();
            if let Some(loaded) = loaded {
                // A read still using the file keeps it open until it finishes.
                loaded.file.close().await.map_err(|error| {
                    IoFailure::new(IoOperation::Close, &segment.paths.log, None, error)
                })?;
            }
            for path in [
                &segment.paths.log,
                &segment.paths.index,
                &segment.paths.time_index,
            ] {
                match self.backend.remove(path).await {
                    Ok(()) => {}
                    Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                    Err(error) => {
                        return Err(IoFailure::new(IoOperation::Remove, path, None, error).into())
                    }
                }
            }
        }
        report.log_start_offset = self.log_start_offset();
        Ok(report)
    }
}
