//! Weir wire and batch formats.
