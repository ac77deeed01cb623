//! Weir client.
