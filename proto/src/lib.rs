//! Weir's wire and batch formats, shared by the broker and the client.
//!
//! This crate owns every byte layout that crosses a process boundary: the record batch (Kafka
//! RecordBatch v2, byte for byte, in [`batch`]) and the native request/response protocol (in
//! [`wire`]). It does no I/O and has no async code: everything here is a pure function of its
//! input bytes. Invariant: no decoder in this crate panics on any input; each one tells "need more
//! bytes" apart from "invalid" and returns a typed error for the latter.

pub mod batch;
pub mod wire;
