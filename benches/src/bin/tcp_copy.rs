//! `tcp-copy`: the plain loopback socket copy that Weir's network throughput is compared with.
//!
//! One process, two threads: a listener on 127.0.0.1 (ephemeral port) accepts one connection
//! and reads into a reused buffer until end of stream, counting bytes (and, with `--verify`,
//! summing them); the main thread connects and sends `--total-mib` in `--chunk-bytes` chunks
//! with `write_all` from one buffer filled once, then shuts its side down. Time runs from just
//! before the first write to the reader seeing end of stream, so it covers every byte arriving.
//! This is the best case for the bytes Weir moves between a client and a broker: no framing,
//! no storage, no second process, no scheduling across processes. Nothing touches the disk.

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpListener, TcpStream},
    path::PathBuf,
    thread,
    time::Instant,
};

use anyhow::Context;
use clap::Parser;
use weir_benches::{megabytes_per_second, MIB};

/// The largest `--total-mib`: 1 TiB.
const TOTAL_MIB_MAX: u64 = 1 << 20;
/// The largest `--chunk-bytes`: 64 MiB.
const CHUNK_BYTES_MAX: usize = 64 << 20;

/// Loopback TCP copy throughput: one sender thread, one reading thread, one connection.
#[derive(Debug, Parser)]
#[command(name = "tcp-copy")]
struct Args {
    /// Bytes to send, in MiB.
    #[arg(long, default_value_t = 2048,
          value_parser = clap::value_parser!(u64).range(1..=TOTAL_MIB_MAX))]
    total_mib: u64,
    /// Bytes per `write_all`, and the size of the reader's buffer.
    #[arg(long, default_value_t = 1 << 20)]
    chunk_bytes: usize,
    /// Also sum every byte on both sides and check that the sums match (costs the reader a
    /// pass over the data, so the copy alone is faster without it).
    #[arg(long)]
    verify: bool,
    /// Also write the figures as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
}

/// What the reading side saw.
struct Received {
    bytes: u64,
    sum: u64,
    finished: Instant,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(
        (1..=CHUNK_BYTES_MAX).contains(&args.chunk_bytes),
        "--chunk-bytes must be in 1..={CHUNK_BYTES_MAX}"
    );
    let total_bytes = args.total_mib * MIB;
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    let address = listener.local_addr()?;
    println!(
        "workload: one TCP connection over loopback ({address}), {} MiB sent in {} B write_all \
         chunks from one buffer, read into a {} B buffer and discarded{}; sender and reader are \
         two threads of one process",
        args.total_mib,
        args.chunk_bytes,
        args.chunk_bytes,
        if args.verify {
            ", every byte summed on both sides"
        } else {
            " (bytes counted)"
        }
    );

    let (chunk_bytes, verify) = (args.chunk_bytes, args.verify);
    let reader = thread::spawn(move || receive(&listener, chunk_bytes, verify));

    let chunk = pattern(args.chunk_bytes);
    let chunk_sum = if args.verify { byte_sum(&chunk) } else { 0 };
    let mut stream =
        TcpStream::connect(address).with_context(|| format!("connecting {address}"))?;
    stream.set_nodelay(true)?;
    let started = Instant::now();
    let (mut sent_bytes, mut sent_sum) = (0u64, 0u64);
    while sent_bytes < total_bytes {
        let length = (total_bytes - sent_bytes).min(chunk.len() as u64) as usize;
        stream.write_all(&chunk[..length]).context("sending")?;
        sent_bytes += length as u64;
        if args.verify {
            sent_sum = sent_sum.wrapping_add(if length == chunk.len() {
                chunk_sum
            } else {
                byte_sum(&chunk[..length])
            });
        }
    }
    stream
        .shutdown(Shutdown::Write)
        .context("closing the sending side")?;
    let received = reader
        .join()
        .map_err(|_| anyhow::anyhow!("the reading thread panicked"))??;

    anyhow::ensure!(
        received.bytes == sent_bytes,
        "sent {sent_bytes} B but received {} B",
        received.bytes
    );
    anyhow::ensure!(
        received.sum == sent_sum,
        "byte sums differ: sent {sent_sum:#x}, received {:#x}",
        received.sum
    );
    let seconds = received.finished.duration_since(started).as_secs_f64();
    let megabytes_per_second = megabytes_per_second(sent_bytes, seconds);
    println!(
        "tcp-copy: {} MiB in {seconds:.3} s = {megabytes_per_second:.1} MB/s",
        args.total_mib
    );
    if let Some(path) = &args.json {
        let report = serde_json::json!({
            "total_bytes": sent_bytes,
            "chunk_bytes": args.chunk_bytes,
            "verified": args.verify,
            "seconds": seconds,
            "megabytes_per_second": megabytes_per_second,
            "address": address.to_string(),
        });
        std::fs::write(path, serde_json::to_string_pretty(&report)? + "\n")
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// Accepts one connection and reads it to end of stream.
fn receive(listener: &TcpListener, buffer_bytes: usize, verify: bool) -> anyhow::Result<Received> {
    let (mut stream, _) = listener.accept().context("accepting")?;
    let mut buffer = vec![0u8; buffer_bytes];
    let (mut bytes, mut sum) = (0u64, 0u64);
    loop {
        let length = match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(length) => length,
            Err(error) if error.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(error) => return Err(error).context("receiving"),
        };
        bytes += length as u64;
        if verify {
            sum = sum.wrapping_add(byte_sum(&buffer[..length]));
        }
    }
    Ok(Received {
        bytes,
        sum,
        finished: Instant::now(),
    })
}

/// Incompressible-looking bytes (xorshift), so nothing on the path can shortcut them.
fn pattern(length: usize) -> Vec<u8> {
    let mut state = 0x2545_f491_4f6c_dd1d_u64;
    (0..length)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect()
}

/// The sum of the bytes: independent of how reads split the stream, and cheap.
fn byte_sum(bytes: &[u8]) -> u64 {
    bytes.iter().map(|&byte| u64::from(byte)).sum()
}
