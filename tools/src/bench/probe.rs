//! What `weir bench` reads from the broker besides its answers: CPU time from
//! `/proc/<pid>/stat`, time its threads waited for a CPU from `/proc/<pid>/task/*/schedstat`,
//! counters from the Prometheus `/metrics` page, and the broker's pid and
//! metrics address from its `--ready-file`.
//!
//! The parsers are plain functions over text, tested without a broker; the scrape is a minimal
//! HTTP/1.1 `GET` with `Connection: close` (the broker's metrics endpoint answers with a
//! `Content-Length` and closes), bounded in time and size.

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long one scrape may take, connect to last byte.
pub const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// The largest `/metrics` response read.
pub const SCRAPE_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    /// `/proc/<pid>/stat` does not have the expected shape.
    #[error("cannot parse /proc/<pid>/stat: {0}")]
    ProcStat(String),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        source: std::io::Error,
    },
    /// The metrics URL is not `http://host:port/path`.
    #[error("metrics URL {0:?} is not of the form http://host:port/path")]
    Url(String),
    /// The scrape failed on the network or timed out.
    #[error("cannot scrape {url}: {reason}")]
    Scrape {
        /// The URL scraped.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A sample line of the metrics page is malformed.
    #[error("metrics line {line_number} is malformed: {line:?}")]
    MetricsLine {
        /// The 1-based line number.
        line_number: usize,
        /// The line.
        line: String,
    },
    /// The ready file is not the broker's TOML.
    #[error("cannot parse ready file {path}: {reason}")]
    ReadyFile {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
}

/// A process's CPU time so far, in clock ticks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTicks {
    /// Time in user mode (`utime`).
    pub user: u64,
    /// Time in kernel mode (`stime`).
    pub system: u64,
}

impl CpuTicks {
    /// User plus system ticks.
    pub fn total(&self) -> u64 {
        self.user + self.system
    }
}

/// Parses `utime` and `stime` (fields 14 and 15) out of a `/proc/<pid>/stat` line. The command
/// name (field 2) is in parentheses and may hold spaces and parentheses itself, so the fields
/// are counted from the last `)`.
pub fn parse_proc_stat(text: &str) -> Result<CpuTicks, ProbeError> {
    let after_name = text
        .rfind(')')
        .map(|at| &text[at + 1..])
        .ok_or_else(|| ProbeError::ProcStat("no ')' closing the command name".to_string()))?;
    // After the name come field 3 (state) onwards: utime is field 14, index 11 here.
    let mut fields = after_name.split_whitespace().skip(11);
    let mut field = |name: &str| -> Result<u64, ProbeError> {
        let text = fields
            .next()
            .ok_or_else(|| ProbeError::ProcStat(format!("the line ends before {name}")))?;
        text.parse()
            .map_err(|_| ProbeError::ProcStat(format!("{name} is {text:?}, not a tick count")))
    };
    let user = field("utime")?;
    let system = field("stime")?;
    Ok(CpuTicks { user, system })
}

/// Reads the CPU ticks of process `pid`.
pub fn read_cpu_ticks(pid: u32) -> Result<CpuTicks, ProbeError> {
    let path = format!("/proc/{pid}/stat");
    let text =
        std::fs::read_to_string(&path).map_err(|source| ProbeError::Read { path, source })?;
    parse_proc_stat(&text)
}

/// Parses the run-queue wait out of a `/proc/<pid>/task/<tid>/schedstat` line: nanoseconds on
/// a CPU, nanoseconds runnable but waiting for one, and time slices run.
pub fn parse_schedstat_wait_ns(text: &str) -> Result<u64, ProbeError> {
    let field = text.split_whitespace().nth(1).ok_or_else(|| {
        ProbeError::ProcStat(format!("schedstat {text:?} has no run-queue wait field"))
    })?;
    field.parse().map_err(|_| {
        ProbeError::ProcStat(format!(
            "schedstat wait {field:?} is not a nanosecond count"
        ))
    })
}

/// Nanoseconds the threads of process `pid` have spent runnable but waiting for a CPU (the
/// kernel's run-queue wait, summed over the threads alive now). On a machine where the broker
/// and the generator share the cores, it says how much of a latency is queueing for a core.
pub fn read_run_queue_wait_ns(pid: u32) -> Result<u64, ProbeError> {
    let dir = format!("/proc/{pid}/task");
    let entries = std::fs::read_dir(&dir).map_err(|source| ProbeError::Read {
        path: dir.clone(),
        source,
    })?;
    let mut total = 0u64;
    for entry in entries {
        let entry = entry.map_err(|source| ProbeError::Read {
            path: dir.clone(),
            source,
        })?;
        let path = entry.path().join("schedstat");
        // A thread that exited since the listing has no file left: it no longer waits.
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        total = total.saturating_add(parse_schedstat_wait_ns(&text)?);
    }
    Ok(total)
}

/// The machine's CPU time by state, summed over all CPUs, from the `cpu` line of `/proc/stat`,
/// in clock ticks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct MachineTicks {
    /// User mode, niced included.
    pub user: u64,
    /// Kernel mode, interrupts and softirqs included.
    pub system: u64,
    /// Idle, waiting for I/O included.
    pub idle: u64,
    /// Taken by the hypervisor for other guests while this machine had work (a virtual
    /// machine's steal time).
    pub steal: u64,
}

impl MachineTicks {
    /// The growth from `earlier` to `self`, state by state.
    pub fn since(&self, earlier: &MachineTicks) -> MachineTicks {
        MachineTicks {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
            idle: self.idle.saturating_sub(earlier.idle),
            steal: self.steal.saturating_sub(earlier.steal),
        }
    }
}

/// Parses the aggregate `cpu` line of `/proc/stat`: user, nice, system, idle, iowait, irq,
/// softirq, steal (kernels before 2.6.11 lack steal; it then counts as 0).
pub fn parse_machine_ticks(text: &str) -> Result<MachineTicks, ProbeError> {
    let line = text
        .lines()
        .find(|line| line.split_whitespace().next() == Some("cpu"))
        .ok_or_else(|| ProbeError::ProcStat("/proc/stat has no aggregate cpu line".to_string()))?;
    let fields: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|field| {
            field.parse().map_err(|_| {
                ProbeError::ProcStat(format!(
                    "/proc/stat cpu field {field:?} is not a tick count"
                ))
            })
        })
        .collect::<Result<_, _>>()?;
    if fields.len() < 7 {
        return Err(ProbeError::ProcStat(format!(
            "/proc/stat cpu line has {} fields, expected at least 7",
            fields.len()
        )));
    }
    Ok(MachineTicks {
        user: fields[0] + fields[1],
        system: fields[2] + fields[5] + fields[6],
        idle: fields[3] + fields[4],
        steal: fields.get(7).copied().unwrap_or(0),
    })
}

/// Reads the machine's CPU ticks by state.
pub fn read_machine_ticks() -> Result<MachineTicks, ProbeError> {
    let path = "/proc/stat".to_string();
    let text =
        std::fs::read_to_string(&path).map_err(|source| ProbeError::Read { path, source })?;
    parse_machine_ticks(&text)
}

/// The kernel's clock ticks per second (`sysconf(_SC_CLK_TCK)`), the unit of [`CpuTicks`].
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    // Linux has answered 100 on every architecture for decades; fall back to it on an error.
    u64::try_from(ticks)
        .ok()
        .filter(|&ticks| ticks > 0)
        .unwrap_or(100)
}

/// The sum of every sample of metric `name` (over all its label sets) in a Prometheus text page,
/// or `None` if the page has no sample of it. Malformed lines of that metric are errors; other
/// metrics' lines are skipped unread.
pub fn sum_metric(page: &str, name: &str) -> Result<Option<f64>, ProbeError> {
    let mut total: Option<f64> = None;
    for (index, line) in page.lines().enumerate() {
        let line = line.trim();
        let Some(rest) = line.strip_prefix(name) else {
            continue;
        };
        let value_text = match rest.chars().next() {
            Some('{') => after_labels(rest),
            Some(c) if c.is_whitespace() => Some(rest),
            // Another metric whose name starts with `name`, or a comment.
            _ => continue,
        };
        let value = value_text
            .and_then(|text| text.split_whitespace().next())
            .and_then(|text| text.parse::<f64>().ok())
            .ok_or_else(|| ProbeError::MetricsLine {
                line_number: index + 1,
                line: line.to_string(),
            })?;
        *total.get_or_insert(0.0) += value;
    }
    Ok(total)
}

/// The text after a `{…}` label set (which `text` starts with), honouring quotes and escapes in
/// label values; `None` if it never closes.
fn after_labels(text: &str) -> Option<&str> {
    let mut quoted = false;
    let mut escaped = false;
    for (at, c) in text.char_indices() {
        match (quoted, escaped, c) {
            (true, true, _) => escaped = false,
            (true, false, '\\') => escaped = true,
            (true, false, '"') => quoted = false,
            (false, _, '"') => quoted = true,
            (false, _, '}') => return Some(&text[at + 1..]),
            _ => {}
        }
    }
    None
}

/// Splits `http://host:port/path` into `host:port` and `/path` (default `/metrics`).
pub fn parse_http_url(url: &str) -> Result<(String, String), ProbeError> {
    let rest = url
        .strip_prefix("http://")
        .ok_or_else(|| ProbeError::Url(url.to_string()))?;
    let (authority, path) = match rest.find('/') {
        Some(at) => (&rest[..at], rest[at..].to_string()),
        None => (rest, "/metrics".to_string()),
    };
    let port_ok = authority
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok());
    if !port_ok {
        return Err(ProbeError::Url(url.to_string()));
    }
    Ok((authority.to_string(), path))
}

/// Fetches a metrics page with one HTTP/1.1 `GET`.
pub async fn scrape(url: &str) -> Result<String, ProbeError> {
    let (authority, path) = parse_http_url(url)?;
    let failed = |reason: String| ProbeError::Scrape {
        url: url.to_string(),
        reason,
    };
    let exchange = async {
        let mut stream = tokio::net::TcpStream::connect(&authority)
            .await
            .map_err(|error| failed(error.to_string()))?;
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {authority}\r\nConnection: close\r\n\r\n");
        stream
            .write_all(request.as_bytes())
            .await
            .map_err(|error| failed(error.to_string()))?;
        let mut response = Vec::new();
        (&mut stream)
            .take(SCRAPE_BYTES_MAX + 1)
            .read_to_end(&mut response)
            .await
            .map_err(|error| failed(error.to_string()))?;
        if response.len() as u64 > SCRAPE_BYTES_MAX {
            return Err(failed(format!(
                "the response exceeds {SCRAPE_BYTES_MAX} bytes"
            )));
        }
        http_body(response).map_err(failed)
    };
    tokio::time::timeout(SCRAPE_TIMEOUT, exchange)
        .await
        .map_err(|_| failed(format!("no complete answer within {SCRAPE_TIMEOUT:?}")))?
}

/// The body of a complete HTTP/1.x response with status 200.
pub fn http_body(response: Vec<u8>) -> Result<String, String> {
    let head_end = response
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or("the response has no end of headers")?;
    let head =
        std::str::from_utf8(&response[..head_end]).map_err(|_| "the headers are not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line.split_whitespace().nth(1).unwrap_or_default();
    if !status_line.starts_with("HTTP/1.") || status != "200" {
        return Err(format!("the answer is {status_line:?}, not 200"));
    }
    let mut content_length = None;
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("transfer-encoding") && value.eq_ignore_ascii_case("chunked") {
            return Err("chunked responses are not supported".to_string());
        }
        if name.eq_ignore_ascii_case("content-length") {
            content_length = Some(
                value
                    .parse::<usize>()
                    .map_err(|_| format!("Content-Length {value:?} is not a number"))?,
            );
        }
    }
    let mut body = response[head_end + 4..].to_vec();
    if let Some(length) = content_length {
        if body.len() < length {
            return Err(format!("the body has {} of its {length} bytes", body.len()));
        }
        body.truncate(length);
    }
    String::from_utf8(body).map_err(|_| "the body is not UTF-8".to_string())
}

/// What `weir bench` takes from the broker's ready file.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
pub struct ReadyFile {
    /// The broker's process id.
    pub pid: u32,
    /// The `/metrics` listener (`host:port`), if the file names one.
    pub metrics: Option<String>,
    /// The shared client listener (`host:port`), if the file names one.
    pub listen: Option<String>,
}

/// Reads and parses the broker's `--ready-file` (TOML).
pub fn read_ready_file(path: &Path) -> Result<ReadyFile, ProbeError> {
    let text = std::fs::read_to_string(path).map_err(|source| ProbeError::Read {
        path: path.display().to_string(),
        source,
    })?;
    toml::from_str(&text).map_err(|error| ProbeError::ReadyFile {
        path: path.display().to_string(),
        reason: error.message().to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_stat_gives_utime_and_stime_even_with_odd_command_names() {
        let tail = "S 1 1234 1234 0 -1 4194560 3000 0 0 0 250 75 0 0 20 0 9 0 100 0 0";
        for name in ["weir-broker", "a b", "x) (y", ")"] {
            let line = format!("4321 ({name}) {tail}\n");
            assert_eq!(
                parse_proc_stat(&line).expect("valid stat line"),
                CpuTicks {
                    user: 250,
                    system: 75
                },
                "{line}"
            );
        }
        assert_eq!(
            CpuTicks {
                user: 250,
                system: 75
            }
            .total(),
            325
        );
    }

    #[test]
    fn proc_stat_rejects_truncated_or_garbled_lines() {
        for line in [
            "",
            "4321 weir-broker S 1",
            "4321 (weir) S 1 1234 1234 0 -1 4194560 3000 0 0 0 250",
            "4321 (weir) S 1 1234 1234 0 -1 4194560 3000 0 0 0 x 75",
        ] {
            assert!(parse_proc_stat(line).is_err(), "{line:?}");
        }
    }

    #[test]
    fn this_process_has_a_readable_stat() {
        let ticks = read_cpu_ticks(std::process::id()).expect("own /proc/<pid>/stat");
        assert!(ticks.total() < u64::MAX);
        assert!(clock_ticks_per_second() > 0);
    }

    #[test]
    fn proc_stat_cpu_line_gives_the_machine_ticks_by_state() {
        let text = "cpu  100 5 40 900 30 2 8 17 0 0\ncpu0 50 2 20 450 15 1 4 9 0 0\nintr 1\n";
        let ticks = parse_machine_ticks(text).expect("valid /proc/stat");
        assert_eq!(
            ticks,
            MachineTicks {
                user: 105,
                system: 50,
                idle: 930,
                steal: 17
            }
        );
        let earlier = MachineTicks {
            user: 5,
            system: 10,
            idle: 30,
            steal: 20,
        };
        assert_eq!(
            ticks.since(&earlier),
            MachineTicks {
                user: 100,
                system: 40,
                idle: 900,
                steal: 0
            }
        );
        for bad in [
            "",
            "cpu0 1 2 3 4 5 6 7\n",
            "cpu 1 2 3\n",
            "cpu 1 2 x 4 5 6 7 8\n",
        ] {
            assert!(parse_machine_ticks(bad).is_err(), "{bad:?}");
        }
        assert!(read_machine_ticks().is_ok(), "this machine's /proc/stat");
    }

    #[test]
    fn schedstat_gives_the_run_queue_wait_and_rejects_other_shapes() {
        assert_eq!(
            parse_schedstat_wait_ns("1234567 890123 4567\n").expect("valid schedstat"),
            890_123
        );
        for line in ["", "1234567", "1234567 -5 10", "1 x 2"] {
            assert!(parse_schedstat_wait_ns(line).is_err(), "{line:?}");
        }
    }

    #[test]
    fn a_thread_that_waits_for_a_busy_cpu_shows_in_the_run_queue_wait() {
        use std::sync::{
            atomic::{AtomicBool, Ordering},
            Arc,
        };
        let before = read_run_queue_wait_ns(std::process::id()).expect("own schedstat");
        // More spinning threads than cores: each must wait for a CPU while others run.
        let cores = std::thread::available_parallelism().map_or(2, usize::from);
        let stop = Arc::new(AtomicBool::new(false));
        let spinners: Vec<_> = (0..cores * 2 + 1)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        std::hint::spin_loop();
                    }
                })
            })
            .collect();
        // Read while the spinners are alive: exited threads leave the sum.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let mut during = before;
        while during <= before && std::time::Instant::now() < deadline {
            during = read_run_queue_wait_ns(std::process::id()).expect("own schedstat");
        }
        stop.store(true, Ordering::Relaxed);
        for spinner in spinners {
            spinner.join().expect("spinner");
        }
        assert!(
            during > before,
            "{} threads spinning on {cores} cores never waited for a CPU",
            cores * 2 + 1
        );
    }

    #[test]
    fn metrics_sum_over_label_sets_and_only_of_the_named_metric() {
        let page = "\
# HELP weir_forwarded_requests_total Requests forwarded to another shard.
# TYPE weir_forwarded_requests_total counter
weir_forwarded_requests_total{shard=\"0\"} 3
weir_forwarded_requests_total{shard=\"1\",note=\"a}b \\\" c\"} 4 1700000000000
weir_forwarded_requests_total_other 100
weir_records_in_total 7
";
        assert_eq!(
            sum_metric(page, "weir_forwarded_requests_total").expect("valid page"),
            Some(7.0)
        );
        assert_eq!(
            sum_metric(page, "weir_records_in_total").expect("valid page"),
            Some(7.0)
        );
        assert_eq!(sum_metric(page, "weir_missing").expect("valid page"), None);
        assert_eq!(
            sum_metric("weir_x 0\n", "weir_x").expect("valid page"),
            Some(0.0)
        );
    }

    #[test]
    fn malformed_lines_of_the_metric_are_errors() {
        for page in [
            "weir_x{shard=\"0\" 1\n",
            "weir_x{shard=\"0\"}\n",
            "weir_x one\n",
        ] {
            assert!(sum_metric(page, "weir_x").is_err(), "{page:?}");
        }
    }

    #[test]
    fn urls_split_into_authority_and_path() {
        assert_eq!(
            parse_http_url("http://127.0.0.1:9348/metrics").expect("valid"),
            ("127.0.0.1:9348".to_string(), "/metrics".to_string())
        );
        assert_eq!(
            parse_http_url("http://localhost:1").expect("valid"),
            ("localhost:1".to_string(), "/metrics".to_string())
        );
        for url in [
            "https://a:1/metrics",
            "127.0.0.1:9348",
            "http://host/metrics",
            "http://:1/",
        ] {
            assert!(parse_http_url(url).is_err(), "{url}");
        }
    }

    #[test]
    fn http_bodies_need_status_200_and_respect_content_length() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello".to_vec();
        assert_eq!(http_body(ok), Ok("hello".to_string()));
        let no_length = b"HTTP/1.0 200 OK\r\n\r\nall of it".to_vec();
        assert_eq!(http_body(no_length), Ok("all of it".to_string()));
        for response in [
            &b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nshort",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n",
        ] {
            assert!(http_body(response.to_vec()).is_err(), "{response:?}");
        }
    }

    #[test]
    fn ready_files_give_the_pid_metrics_and_listen_addresses() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let path = dir.path().join("ready.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9347\"\nshards = [\"127.0.0.1:40001\"]\nmetrics = \"127.0.0.1:9348\"\npid = 4242\n",
        )
        .expect("write the ready file");
        assert_eq!(
            read_ready_file(&path).expect("valid ready file"),
            ReadyFile {
                pid: 4242,
                metrics: Some("127.0.0.1:9348".to_string()),
                listen: Some("127.0.0.1:9347".to_string()),
            }
        );
        std::fs::write(&path, "listen = \"x\"\n").expect("write");
        assert!(read_ready_file(&path).is_err());
        assert!(read_ready_file(&dir.path().join("absent.toml")).is_err());
    }
}
