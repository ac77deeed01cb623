//! A minimal Prometheus scraper: `GET /metrics` over a plain `TcpStream`, and a parser for the
//! text exposition format's sample lines (`name{label="value",…} value [timestamp]`).
//!
//! It reads what the tests need — counters and gauges, summed over their label sets or picked by
//! labels — and rejects anything malformed with an error naming the line, so a broker that
//! renders broken metrics fails the test instead of reading as zero.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

/// How long a scrape may take, connect to last byte.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);

/// One sample line.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name.
    pub name: String,
    /// The labels, in the order they were written.
    pub labels: Vec<(String, String)>,
    /// The value.
    pub value: f64,
}

/// Every sample of one scrape.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metrics {
    /// The samples, in the order they were written.
    pub samples: Vec<Sample>,
}

impl Metrics {
    /// Scrapes `http://<address>/metrics` and parses it.
    pub fn scrape(address: SocketAddr) -> Result<Metrics, String> {
        let body = http_get(address, "/metrics")?;
        Metrics::parse(&body)
    }

    /// Parses the text exposition format.
    pub fn parse(text: &str) -> Result<Metrics, String> {
        let mut samples = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let sample = parse_sample(line)
                .map_err(|error| format!("line {}: {error}: {line:?}", index + 1))?;
            samples.push(sample);
        }
        Ok(Metrics { samples })
    }

    /// The sum of `name` over all its label sets, or `None` if no sample has that name.
    pub fn sum(&self, name: &str) -> Option<f64> {
        let mut found = false;
        let mut total = 0.0;
        for sample in self.samples.iter().filter(|sample| sample.name == name) {
            found = true;
            total += sample.value;
        }
        found.then_some(total)
    }

    /// Like [`Metrics::sum`], but fails the test if the metric is missing.
    pub fn expect_sum(&self, name: &str) -> f64 {
        self.sum(name).unwrap_or_else(|| {
            panic!(
                "metric {name} is missing from /metrics; names present: {:?}",
                self.names()
            )
        })
    }

    /// The value of the sample of `name` whose labels include every pair of `labels`, if exactly
    /// one matches.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let mut matching = self.samples.iter().filter(|sample| {
            sample.name == name
                && labels.iter().all(|(key, value)| {
                    sample.labels.iter().any(|(sample_key, sample_value)| {
                        sample_key == key && sample_value == value
                    })
                })
        });
        let first = matching.next()?;
        matching.next().is_none().then_some(first.value)
    }

    /// Every distinct metric name, in order of first appearance.
    pub fn names(&self) -> Vec<&str> {
        let mut names: Vec<&str> = Vec::new();
        for sample in &self.samples {
            if !names.contains(&sample.name.as_str()) {
                names.push(&sample.name);
            }
        }
        names
    }
}

fn parse_sample(line: &str) -> Result<Sample, String> {
    let name_end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .ok_or("no value after the name")?;
    let name = &line[..name_end];
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
    {
        return Err(format!("invalid metric name {name:?}"));
    }
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (parsed, after_labels) = parse_labels(after_brace)?;
        labels = parsed;
        rest = after_labels;
    }
    let mut fields = rest.split_whitespace();
    let value_text = fields.next().ok_or("no value")?;
    let value = match value_text {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        "NaN" => f64::NAN,
        text => text
            .parse::<f64>()
            .map_err(|_| format!("invalid value {text:?}"))?,
    };
    if let Some(timestamp) = fields.next() {
        timestamp
            .parse::<i64>()
            .map_err(|_| format!("invalid timestamp {timestamp:?}"))?;
    }
    if fields.next().is_some() {
        return Err("trailing fields after the value".to_string());
    }
    Ok(Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// Label pairs in the order written.
type Labels = Vec<(String, String)>;

/// Parses `key="value",…}` (the opening brace already consumed); returns the labels and the text
/// after the closing brace.
fn parse_labels(text: &str) -> Result<(Labels, &str), String> {
    let mut labels = Vec::new();
    let mut rest = text.trim_start();
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok((labels, after));
        }
        let equals = rest.find('=').ok_or("label without '='")?;
        let key = rest[..equals].trim();
        if key.is_empty() {
            return Err("empty label name".to_string());
        }
        let after_equals = rest[equals + 1..].trim_start();
        let quoted = after_equals
            .strip_prefix('"')
            .ok_or("label value is not quoted")?;
        let mut value = String::new();
        let mut chars = quoted.char_indices();
        let mut closed_at = None;
        while let Some((index, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, escaped)) => value.push(escaped),
                    None => return Err("unfinished escape in a label value".to_string()),
                },
                '"' => {
                    closed_at = Some(index);
                    break;
                }
                other => value.push(other),
            }
        }
        let closed_at = closed_at.ok_or("unterminated label value")?;
        labels.push((key.to_string(), value));
        rest = quoted[closed_at + 1..].trim_start();
        if let Some(after_comma) = rest.strip_prefix(',') {
            rest = after_comma.trim_start();
        } else if !rest.starts_with('}') {
            return Err("expected ',' or '}' after a label".to_string());
        }
    }
}

/// `GET path` over HTTP/1.1 with `Connection: close`; returns the body of a 200 response.
pub fn http_get(address: SocketAddr, path: &str) -> Result<String, String> {
    let mut stream = TcpStream::connect_timeout(&address, SCRAPE_TIMEOUT)
        .map_err(|error| format!("cannot connect to {address}: {error}"))?;
    stream
        .set_read_timeout(Some(SCRAPE_TIMEOUT))
        .and_then(|()| stream.set_write_timeout(Some(SCRAPE_TIMEOUT)))
        .map_err(|error| format!("cannot set timeouts: {error}"))?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\nAccept: text/plain\r\n\r\n"
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|error| format!("cannot send the request to {address}: {error}"))?;
    let mut response = Vec::new();
    stream
        .read_to_end(&mut response)
        .map_err(|error| format!("cannot read the response from {address}: {error}"))?;
    let text = String::from_utf8(response)
        .map_err(|_| format!("the response from {address}{path} is not UTF-8"))?;
    let (head, body) = text.split_once("\r\n\r\n").ok_or_else(|| {
        format!("no end of headers in the response from {address}{path}: {text:?}")
    })?;
    let status_line = head.lines().next().unwrap_or_default();
    if !status_line.starts_with("HTTP/1.1 200") && !status_line.starts_with("HTTP/1.0 200") {
        return Err(format!(
            "GET {path} from {address} answered {status_line:?}"
        ));
    }
    let content_length = head.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.eq_ignore_ascii_case("content-length")
            .then(|| value.trim().parse::<usize>().ok())
            .flatten()
    });
    if let Some(length) = content_length {
        if length != body.len() {
            return Err(format!(
                "GET {path} from {address}: Content-Length {length} but {} body bytes",
                body.len()
            ));
        }
    }
    Ok(body.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_names_labels_values_and_skips_comments() {
        let text = "# HELP weir_x help\n# TYPE weir_x counter\nweir_x{shard=\"0\"} 3\nweir_x{shard=\"1\"} 4\n\
                    weir_y 1.5 1700000000000\nweir_z{a=\"q\\\"uote\",b=\"x,}y\"} +Inf\n";
        let metrics = Metrics::parse(text).unwrap();
        assert_eq!(metrics.sum("weir_x"), Some(7.0));
        assert_eq!(metrics.get("weir_x", &[("shard", "1")]), Some(4.0));
        assert_eq!(metrics.get("weir_x", &[]), None, "two samples match");
        assert_eq!(metrics.sum("weir_y"), Some(1.5));
        assert_eq!(
            metrics.get("weir_z", &[("a", "q\"uote"), ("b", "x,}y")]),
            Some(f64::INFINITY)
        );
        assert_eq!(metrics.sum("weir_missing"), None);
        assert_eq!(metrics.names(), ["weir_x", "weir_y", "weir_z"]);
    }

    #[test]
    fn rejects_malformed_lines() {
        for line in [
            "weir_x",
            "weir_x{shard=\"0\" 3",
            "weir_x{shard=0} 3",
            "weir_x abc",
            "weir x 1",
            "weir_x 1 2 3",
            "{a=\"b\"} 1",
        ] {
            assert!(Metrics::parse(line).is_err(), "{line:?} should be rejected");
        }
    }
}
