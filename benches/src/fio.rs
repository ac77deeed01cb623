//! fio as the physical limit: the disk's fdatasync'd sequential write bandwidth, measured in the
//! same run as the program that compares against it.
//!
//! Owns one scratch file (`fio.tmp` in the directory it is given) while a job runs and removes
//! it afterwards, whether fio succeeded or not. A crash of this process can leave the file
//! behind inside the caller's scratch directory.

use std::{path::Path, process::Command};

use anyhow::{bail, Context};

/// Name of fio's data file inside the scratch directory.
pub const FIO_FILE_NAME: &str = "fio.tmp";

/// What one fio sequential-write job measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FioWrite {
    /// Write bandwidth in bytes per second.
    pub bytes_per_second: f64,
    /// Bytes written.
    pub io_bytes: u64,
    /// Job run time in milliseconds.
    pub runtime_ms: u64,
}

/// The fio command line of the reference job: O_DIRECT 1 MiB sequential writes through
/// io_uring, 4 in flight, an fdatasync every 16 writes (16 MiB), JSON output.
pub fn seq_write_args(file: &Path, size_bytes: u64) -> Vec<String> {
    vec![
        "--name=seq".to_string(),
        format!("--filename={}", file.display()),
        format!("--size={size_bytes}"),
        "--bs=1M".to_string(),
        "--rw=write".to_string(),
        "--direct=1".to_string(),
        "--ioengine=io_uring".to_string(),
        "--iodepth=4".to_string(),
        "--fdatasync=16".to_string(),
        "--output-format=json".to_string(),
    ]
}

/// Runs the reference job on a new file in `dir` and removes the file afterwards.
pub fn run_seq_write(dir: &Path, size_bytes: u64) -> anyhow::Result<FioWrite> {
    let file = dir.join(FIO_FILE_NAME);
    let output = Command::new("fio")
        .args(seq_write_args(&file, size_bytes))
        .output();
    let removed = std::fs::remove_file(&file);
    let output = output.context("running fio (is it installed? apt-get install -y fio)")?;
    if !output.status.success() {
        bail!(
            "fio failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    removed.with_context(|| format!("removing {}", file.display()))?;
    parse_write_json(&String::from_utf8_lossy(&output.stdout))
}

/// Reads the first job's write figures from fio's `--output-format=json` report.
pub fn parse_write_json(report: &str) -> anyhow::Result<FioWrite> {
    // fio may print notes before the JSON document.
    let start = report.find('{').context("no JSON object in fio's output")?;
    let json: serde_json::Value =
        serde_json::from_str(&report[start..]).context("fio's JSON report")?;
    let job = &json["jobs"][0];
    let error = job["error"].as_i64().unwrap_or(0);
    if error != 0 {
        bail!("fio job reported error {error}");
    }
    let write = &job["write"];
    let number = |field: &str| {
        write[field]
            .as_u64()
            .or_else(|| write[field].as_f64().map(|value| value as u64))
            .with_context(|| format!("fio report has no jobs[0].write.{field}"))
    };
    let bytes_per_second = number("bw_bytes")?;
    if bytes_per_second == 0 {
        bail!("fio measured no write bandwidth");
    }
    Ok(FioWrite {
        bytes_per_second: bytes_per_second as f64,
        io_bytes: number("io_bytes")?,
        runtime_ms: number("runtime")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_write_bandwidth_from_a_report() {
        let report = r#"note: both iodepth >= 1 and synchronous I/O engine are selected
{"fio version": "fio-3.33", "jobs": [{"jobname": "seq", "error": 0,
  "write": {"io_bytes": 67108864, "bw_bytes": 1525201454, "runtime": 44}}]}"#;
        let write = parse_write_json(report).expect("parsed");
        assert_eq!(
            write,
            FioWrite {
                bytes_per_second: 1_525_201_454.0,
                io_bytes: 67_108_864,
                runtime_ms: 44
            }
        );
    }

    #[test]
    fn rejects_failed_or_empty_reports() {
        for report in [
            "",
            "{}",
            r#"{"jobs": [{"error": 5, "write": {"bw_bytes": 1, "io_bytes": 1, "runtime": 1}}]}"#,
            r#"{"jobs": [{"error": 0, "write": {"bw_bytes": 0, "io_bytes": 0, "runtime": 1}}]}"#,
        ] {
            assert!(parse_write_json(report).is_err(), "{report}");
        }
    }
}
