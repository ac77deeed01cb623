//! Weir partition log.
