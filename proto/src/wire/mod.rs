//! The native wire protocol: framing, request/response headers, api messages, error codes.
