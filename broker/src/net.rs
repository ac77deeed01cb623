//! Sockets: binding every listener before the shards start, the ready file, and vectored writes
//! on glommio streams.
//!
//! This module owns the broker's addresses. Invariants: all shared listeners are bound to the same
//! port with SO_REUSEPORT (so the kernel spreads new connections over the shards); shard `i`'s
//! direct listener is on `port + 1 + i`, or ephemeral when the configured port is 0; the ready
//! file is written only after every listener is bound and every shard serves, by a rename, so a
//! reader never sees a partial file. A crash leaves at most a stale `.tmp` beside the ready file.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use socket2::{Domain, Protocol, Socket, Type};

/// Pending connections the kernel queues per listener before accept.
pub const LISTEN_BACKLOG: i32 = 1024;
/// Most iovecs passed to one `sendmsg` (Linux's `IOV_MAX`).
const IOVECS_PER_SEND_MAX: usize = 1024;

/// The addresses the broker actually listens on.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Addresses {
    /// The shared client address (every shard accepts here).
    pub listen: SocketAddr,
    /// Each shard's direct client address, indexed by shard.
    pub shards: Vec<SocketAddr>,
    /// The Prometheus metrics address (`/metrics`).
    pub metrics: SocketAddr,
}

/// Every listening socket, bound and listening, ready to be handed to its shard.
#[derive(Debug)]
pub struct BoundListeners {
    /// One SO_REUSEPORT socket per shard, all on the shared port.
    pub shared: Vec<OwnedFd>,
    /// One direct socket per shard.
    pub direct: Vec<OwnedFd>,
    /// The metrics socket (served by shard 0).
    pub metrics: OwnedFd,
    /// What those sockets are bound to.
    pub addresses: Addresses,
}

/// Why a listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {address} ({role}): {source}")]
pub struct BindError {
    /// What the socket was for.
    pub role: String,
    /// The address tried.
    pub address: SocketAddr,
    /// The socket error.
    pub source: io::Error,
}

fn listen_on(address: SocketAddr, reuse_port: bool, role: String) -> Result<Socket, BindError> {
    let attempt = || -> io::Result<Socket> {
        let socket = Socket::new(
            Domain::for_address(address),
            Type::STREAM,
            Some(Protocol::TCP),
        )?;
        socket.set_reuse_address(true)?;
        if reuse_port {
            socket.set_reuse_port(true)?;
        }
        socket.bind(&address.into())?;
        socket.listen(LISTEN_BACKLOG)?;
        Ok(socket)
    };
    attempt().map_err(|source| BindError {
        role,
        address,
        source,
    })
}

fn local_address(socket: &Socket, role: &str, wanted: SocketAddr) -> Result<SocketAddr, BindError> {
    socket
        .local_addr()
        .and_then(|address| {
            address
                .as_socket()
                .ok_or_else(|| io::Error::other("not an IP socket"))
        })
        .map_err(|source| BindError {
            role: role.to_string(),
            address: wanted,
            source,
        })
}

/// Binds the shared, direct and metrics listeners for `shard_count` shards.
pub fn bind_listeners(
    listen: SocketAddr,
    metrics: SocketAddr,
    shard_count: usize,
) -> Result<BoundListeners, BindError> {
    let mut shared = Vec::with_capacity(shard_count);
    let first = listen_on(listen, true, "shared listener of shard 0".into())?;
    let shared_address = local_address(&first, "shared listener", listen)?;
    shared.push(OwnedFd::from(first));
    for shard in 1..shard_count {
        let socket = listen_on(
            shared_address,
            true,
            format!("shared listener of shard {shard}"),
        )?;
        shared.push(OwnedFd::from(socket));
    }
    let mut direct = Vec::with_capacity(shard_count);
    let mut shard_addresses = Vec::with_capacity(shard_count);
    for shard in 0..shard_count {
        let mut address = listen;
        if listen.port() != 0 {
            // Validated: port + shard_count <= 65535.
            address.set_port(listen.port() + 1 + shard as u16);
        }
        let socket = listen_on(address, false, format!("direct listener of shard {shard}"))?;
        shard_addresses.push(local_address(&socket, "direct listener", address)?);
        direct.push(OwnedFd::from(socket));
    }
    let metrics_socket = listen_on(metrics, false, "metrics listener".into())?;
    let metrics_address = local_address(&metrics_socket, "metrics listener", metrics)?;
    Ok(BoundListeners {
        shared,
        direct,
        metrics: OwnedFd::from(metrics_socket),
        addresses: Addresses {
            listen: shared_address,
            shards: shard_addresses,
            metrics: metrics_address,
        },
    })
}

/// Turns a bound, listening socket into a glommio listener on the current executor.
pub fn glommio_listener(socket: OwnedFd) -> glommio::net::TcpListener {
    use std::os::fd::{FromRawFd, IntoRawFd};
    // SAFETY: the descriptor is a bound, listening TCP socket that this call owns (the
    // `OwnedFd` is consumed), so the listener becomes its only owner.
    unsafe { glommio::net::TcpListener::from_raw_fd(socket.into_raw_fd()) }
}

/// Writes `addresses` to `path` atomically (temp file, fsync, rename) as TOML:
/// `listen = "ip:port"`, `shards = ["ip:port", ...]`, `metrics = "ip:port"`, `pid = N`.
pub fn write_ready_file(path: &Path, addresses: &Addresses) -> io::Result<()> {
    use std::io::Write;
    #[derive(serde::Serialize)]
    struct ReadyFile {
        listen: String,
        shards: Vec<String>,
        metrics: String,
        pid: u32,
    }
    let ready = ReadyFile {
        listen: addresses.listen.to_string(),
        shards: addresses.shards.iter().map(ToString::to_string).collect(),
        metrics: addresses.metrics.to_string(),
        pid: std::process::id(),
    };
    let text = toml::to_string(&ready).map_err(io::Error::other)?;
    let mut temp = path.as_os_str().to_owned();
    temp.push(".tmp");
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    drop(file);
    std::fs::rename(&temp, path)
}

/// Writes every byte of `chunks`, in order, with as few `sendmsg` calls as the socket allows.
///
/// The fast path hands all chunks to the kernel in one vectored, non-blocking `sendmsg`; when the
/// socket buffer is full it falls back to glommio's `write` of the first unsent chunk, which
/// waits for the socket to become writable, and then resumes vectored sends.
pub async fn write_all_vectored<W: futures_lite::AsyncWrite + AsRawFd + Unpin>(
    stream: &mut W,
    chunks: &[Bytes],
) -> io::Result<()> {
    let mut index = 0;
    let mut offset = 0;
    while index < chunks.len() {
        if chunks[index].len() == offset {
            index += 1;
            offset = 0;
            continue;
        }
        let sent = match send_vectored(stream.as_raw_fd(), &chunks[index..], offset) {
            Ok(sent) => sent,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => continue,
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                let written = stream.write(&chunks[index][offset..]).await?;
                if written == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                written
            }
            Err(error) => return Err(error),
        };
        // Advance past `sent` bytes.
        let mut remaining = sent;
        while remaining > 0 && index < chunks.len() {
            let available = chunks[index].len() - offset;
            if remaining < available {
                offset += remaining;
                remaining = 0;
            } else {
                remaining -= available;
                index += 1;
                offset = 0;
            }
        }
    }
    Ok(())
}

fn send_vectored(fd: i32, chunks: &[Bytes], first_offset: usize) -> io::Result<usize> {
    let mut iovecs: Vec<libc::iovec> = Vec::with_capacity(chunks.len().min(IOVECS_PER_SEND_MAX));
    for (position, chunk) in chunks.iter().take(IOVECS_PER_SEND_MAX).enumerate() {
        let slice: &[u8] = if position == 0 {
            &chunk[first_offset..]
        } else {
            chunk
        };
        if slice.is_empty() {
            continue;
        }
        iovecs.push(libc::iovec {
            iov_base: slice.as_ptr() as *mut libc::c_void,
            iov_len: slice.len(),
        });
    }
    if iovecs.is_empty() {
        return Ok(0);
    }
    // SAFETY: an all-zero msghdr is valid; the iovec pointers point into `chunks`, which
    // outlives the call, and the kernel only reads from them.
    let mut header: libc::msghdr = unsafe { std::mem::zeroed() };
    header.msg_iov = iovecs.as_mut_ptr();
    header.msg_iovlen = iovecs.len() as _;
    // SAFETY: `fd` is an open socket owned by the caller's stream; `header` is valid as above.
    let sent = unsafe { libc::sendmsg(fd, &header, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    #[test]
    fn shared_listeners_share_one_port_and_direct_ports_follow_it() {
        let bound = bind_listeners(
            "127.0.0.1:0".parse().unwrap(),
            "127.0.0.1:0".parse().unwrap(),
            3,
        )
        .unwrap();
        assert_eq!(bound.shared.len(), 3);
        assert_eq!(bound.direct.len(), 3);
        assert_ne!(bound.addresses.listen.port(), 0);
        let mut ports: Vec<u16> = bound.addresses.shards.iter().map(|a| a.port()).collect();
        ports.push(bound.addresses.listen.port());
        ports.push(bound.addresses.metrics.port());
        ports.sort_unstable();
        ports.dedup();
        assert_eq!(ports.len(), 5, "every listener has its own port");
        // Connecting to the shared port works (some shard's socket takes it).
        std::net::TcpStream::connect(bound.addresses.listen).unwrap();
    }

    #[test]
    fn fixed_port_puts_shard_i_on_port_plus_one_plus_i() {
        // Find a free block of ports by binding ephemeral and retrying a few candidates.
        for _ in 0..20 {
            let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let port = probe.local_addr().unwrap().port();
            drop(probe);
            if port > 65000 {
                continue;
            }
            let listen: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
            let Ok(bound) = bind_listeners(listen, "127.0.0.1:0".parse().unwrap(), 2) else {
                continue;
            };
            assert_eq!(bound.addresses.listen.port(), port);
            assert_eq!(bound.addresses.shards[0].port(), port + 1);
            assert_eq!(bound.addresses.shards[1].port(), port + 2);
            return;
        }
        panic!("no free block of 3 ports found in 20 tries");
    }

    #[test]
    fn occupied_port_is_a_bind_error_naming_the_role() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap();
        let error = bind_listeners("127.0.0.1:0".parse().unwrap(), address, 1).unwrap_err();
        assert!(error.to_string().contains("metrics listener"), "{error}");
    }

    #[test]
    fn ready_file_is_toml_with_every_address() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ready.toml");
        let addresses = Addresses {
            listen: "127.0.0.1:1000".parse().unwrap(),
            shards: vec![
                "127.0.0.1:1001".parse().unwrap(),
                "127.0.0.1:1002".parse().unwrap(),
            ],
            metrics: "127.0.0.1:999".parse().unwrap(),
        };
        write_ready_file(&path, &addresses).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        assert_eq!(parsed["listen"].as_str(), Some("127.0.0.1:1000"));
        assert_eq!(parsed["metrics"].as_str(), Some("127.0.0.1:999"));
        let shards: Vec<&str> = parsed["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(shards, ["127.0.0.1:1001", "127.0.0.1:1002"]);
        assert_eq!(
            parsed["pid"].as_integer(),
            Some(i64::from(std::process::id()))
        );
    }

    #[test]
    fn vectored_write_sends_every_chunk_in_order_even_past_the_socket_buffer() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        // 8 MiB in uneven chunks: far more than a socket buffer, so the slow path runs too.
        let chunks: Vec<Bytes> = (0..64u32)
            .map(|i| Bytes::from(vec![(i % 251) as u8; 100_000 + (i as usize * 1013)]))
            .collect();
        let expected: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let reader = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut received = Vec::new();
            stream.read_to_end(&mut received).unwrap();
            received
        });
        let writer = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(move || async move {
                let mut stream = glommio::net::TcpStream::connect(address).await.unwrap();
                write_all_vectored(&mut stream, &chunks).await.unwrap();
                stream.close().await.unwrap();
            })
            .unwrap();
        writer.join().unwrap();
        let received = reader.join().unwrap();
        assert_eq!(received.len(), expected.len());
        assert!(received == expected, "bytes differ");
    }
}
