//! The metrics endpoint: a minimal HTTP/1.1 responder for `GET /metrics` on shard 0.
//!
//! This module owns the parsing of one request head and the writing of one response per
//! connection (`Connection: close`). Invariants: a request head larger than
//! [`REQUEST_HEAD_BYTES_MAX`] or slower than [`REQUEST_HEAD_TIMEOUT`] is dropped; at most
//! [`METRICS_CONNECTIONS_MAX`] scrapes are served at once, further connections wait in the
//! listen backlog. It never touches partition data; a scrape reads counters only.

use std::time::Duration;

/// Largest accepted HTTP request head, in bytes.
pub const REQUEST_HEAD_BYTES_MAX: usize = 8192;
/// Longest time a scraper may take to send its request head.
pub const REQUEST_HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Scrapes served concurrently.
pub const METRICS_CONNECTIONS_MAX: u64 = 16;

/// What a request head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `GET /metrics` (query string ignored).
    Metrics,
    /// Any other path.
    NotFound,
    /// A method other than GET or HEAD.
    MethodNotAllowed,
    /// Not an HTTP/1.x request line.
    BadRequest,
}

/// Whether `buffer` holds a complete request head (ends with an empty line).
pub fn head_complete(buffer: &[u8]) -> bool {
    buffer.windows(4).any(|window| window == b"\r\n\r\n")
}

/// Routes a complete request head by its request line.
pub fn route(head: &[u8]) -> Route {
    let line_end = head
        .windows(2)
        .position(|window| window == b"\r\n")
        .unwrap_or(head.len());
    let Ok(line) = std::str::from_utf8(&head[..line_end]) else {
        return Route::BadRequest;
    };
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Route::BadRequest;
    };
    if !version.starts_with("HTTP/1.") {
        return Route::BadRequest;
    }
    if method != "GET" && method != "HEAD" {
        return Route::MethodNotAllowed;
    }
    let path = target.split('?').next().unwrap_or(target);
    if path == "/metrics" {
        Route::Metrics
    } else {
        Route::NotFound
    }
}

/// The full response (head and body) for `route`, with `metrics` as the body of a scrape.
pub fn response(route: Route, metrics: &str) -> Vec<u8> {
    let (status, content_type, body) = match route {
        Route::Metrics => (
            "200 OK",
            "text/plain; version=0.0.4; charset=utf-8",
            metrics,
        ),
        Route::NotFound => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "try /metrics\n",
        ),
        Route::MethodNotAllowed => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "GET only\n",
        ),
        Route::BadRequest => (
            "400 Bad Request",
            "text/plain; charset=utf-8",
            "bad request\n",
        ),
    };
    let mut out = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_request_lines() {
        let cases: &[(&[u8], Route)] = &[
            (b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", Route::Metrics),
            (b"GET /metrics?name=x HTTP/1.0\r\n\r\n", Route::Metrics),
            (b"HEAD /metrics HTTP/1.1\r\n\r\n", Route::Metrics),
            (b"GET / HTTP/1.1\r\n\r\n", Route::NotFound),
            (b"POST /metrics HTTP/1.1\r\n\r\n", Route::MethodNotAllowed),
            (b"GET /metrics SPDY/3\r\n\r\n", Route::BadRequest),
            (b"\xff\xfe\r\n\r\n", Route::BadRequest),
            (b"GET\r\n\r\n", Route::BadRequest),
        ];
        for (head, expected) in cases {
            assert_eq!(
                route(head),
                *expected,
                "{:?}",
                String::from_utf8_lossy(head)
            );
        }
    }

    #[test]
    fn head_completion_needs_the_blank_line() {
        assert!(!head_complete(b"GET /metrics HTTP/1.1\r\n"));
        assert!(head_complete(b"GET /metrics HTTP/1.1\r\n\r\n"));
    }

    #[test]
    fn response_has_length_and_closes() {
        let text = String::from_utf8(response(Route::Metrics, "a 1\n")).unwrap();
        assert!(text.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(text.contains("Content-Length: 4\r\n"));
        assert!(text.contains("Connection: close\r\n"));
        assert!(text.ends_with("\r\n\r\na 1\n"));
        assert!(String::from_utf8(response(Route::NotFound, ""))
            .unwrap()
            .starts_with("HTTP/1.1 404"));
    }
}
