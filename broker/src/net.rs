//! Sockets: binding every listener before the shards start, the ready file, vectored writes on
//! glommio streams, and reads of what a socket already holds into a buffer's spare capacity.
//!
//! This module owns the broker's addresses. Invariants: all shared listeners are bound to the same
//! port with SO_REUSEPORT (so the kernel spreads new connections over the shards); shard `i`'s
//! direct listener is on the shared listener's IP at port `shard_port_base + i`, or on an
//! ephemeral port when `shard_port_base` or the shared port is 0 (so a broker asked for ephemeral
//! ports never takes a fixed one); the ready file is written only after every listener is bound
//! and every shard serves, by a rename, so a reader never sees a partial file. A crash leaves at
//! most a stale `.tmp` beside the ready file.

use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;

use bytes::{BufMut, Bytes, BytesMut};
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

/// The address shard `shard`'s direct listener binds: `listen`'s IP at `shard_port_base + shard`,
/// or port 0 (ephemeral) when `shard_port_base` or `listen`'s port is 0. `None` when the port
/// would be past 65535.
pub fn direct_address(
    listen: SocketAddr,
    shard_port_base: u16,
    shard: usize,
) -> Option<SocketAddr> {
    let port = if shard_port_base == 0 || listen.port() == 0 {
        0
    } else {
        u16::try_from(usize::from(shard_port_base).checked_add(shard)?).ok()?
    };
    let mut address = listen;
    address.set_port(port);
    Some(address)
}

/// Binds the shared, direct and metrics listeners for `shard_count` shards; shard `i`'s direct
/// listener goes to [`direct_address`]`(listen, shard_port_base, i)`. Every address is checked
/// before the first socket is bound.
pub fn bind_listeners(
    listen: SocketAddr,
    shard_port_base: u16,
    metrics: SocketAddr,
    shard_count: usize,
) -> Result<BoundListeners, BindError> {
    let direct_wanted = (0..shard_count)
        .map(|shard| {
            direct_address(listen, shard_port_base, shard).ok_or_else(|| BindError {
                role: format!("direct listener of shard {shard}"),
                address: listen,
                source: io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("shard port base {shard_port_base} + shard {shard} is past port 65535"),
                ),
            })
        })
        .collect::<Result<Vec<SocketAddr>, BindError>>()?;
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
    for (shard, address) in direct_wanted.into_iter().enumerate() {
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

/// Reads what the socket `fd` holds now, without waiting, into `buffer`'s spare capacity: at
/// most `bytes_max` bytes, and at least one unless the socket has none. Returns the bytes read,
/// 0 at the end of the stream, or `WouldBlock` when nothing is there yet.
///
/// Unlike a read through `AsyncRead`, which needs an initialized slice, the buffer's capacity is
/// not zeroed first: a 1 MiB produce frame is written once, by the kernel. Needs spare capacity
/// (`bytes_max` of 0 or a full buffer reads nothing and returns `Ok(0)`, which callers must not
/// take for the end of the stream: they reserve first).
pub fn recv_available(fd: i32, buffer: &mut BytesMut, bytes_max: usize) -> io::Result<usize> {
    let spare = buffer.spare_capacity_mut();
    let length = spare.len().min(bytes_max);
    if length == 0 {
        return Ok(0);
    }
    // SAFETY: the pointer and length describe `spare`, memory owned by `buffer` and writable for
    // `length` bytes; recv writes at most `length` bytes into it and reads none.
    let received = unsafe {
        libc::recv(
            fd,
            spare.as_mut_ptr().cast::<libc::c_void>(),
            length,
            libc::MSG_DONTWAIT,
        )
    };
    let received = usize::try_from(received).map_err(|_| io::Error::last_os_error())?;
    // SAFETY: recv initialized the first `received` (≤ `length`) bytes of the spare capacity.
    unsafe { buffer.advance_mut(received) };
    Ok(received)
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
    fn shared_listeners_share_one_port_and_every_listener_has_its_own() {
        // A shared port of 0 makes the direct listeners ephemeral too, whatever the base.
        let bound = bind_listeners(
            "127.0.0.1:0".parse().unwrap(),
            9350,
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
    fn direct_address_is_base_plus_shard_at_the_listen_ip_or_ephemeral() {
        let listen: SocketAddr = "10.1.2.3:9347".parse().unwrap();
        let cases: &[(SocketAddr, u16, usize, Option<&str>)] = &[
            (listen, 9350, 0, Some("10.1.2.3:9350")),
            (listen, 9350, 7, Some("10.1.2.3:9357")),
            (listen, 65535, 0, Some("10.1.2.3:65535")),
            (listen, 65535, 1, None),
            (listen, 0, 5, Some("10.1.2.3:0")),
            ("10.1.2.3:0".parse().unwrap(), 9350, 5, Some("10.1.2.3:0")),
            ("[::1]:9347".parse().unwrap(), 9350, 2, Some("[::1]:9352")),
        ];
        for (listen, base, shard, expected) in cases {
            let expected = expected.map(|text| text.parse::<SocketAddr>().unwrap());
            assert_eq!(
                direct_address(*listen, *base, *shard),
                expected,
                "{listen} base {base} shard {shard}"
            );
        }
    }

    /// Two free ports, each with the next one free too: a shared port and a direct base.
    fn free_port_pairs() -> impl Iterator<Item = (u16, u16)> {
        let probe = || {
            let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            socket.local_addr().unwrap().port()
        };
        std::iter::repeat_with(move || (probe(), probe()))
            .filter(|(shared, base)| *base < 65535 && shared.abs_diff(*base) > 1)
    }

    #[test]
    fn fixed_ports_put_shard_i_on_base_plus_i_and_the_shared_port_apart() {
        // Ports probed free may be taken again before they are bound: retry a few pairs.
        for (shared, base) in free_port_pairs().take(20) {
            let listen: SocketAddr = format!("127.0.0.1:{shared}").parse().unwrap();
            let Ok(bound) = bind_listeners(listen, base, "127.0.0.1:0".parse().unwrap(), 2) else {
                continue;
            };
            assert_eq!(bound.addresses.listen.port(), shared);
            assert_eq!(bound.addresses.shards[0].port(), base);
            assert_eq!(bound.addresses.shards[1].port(), base + 1);
            for address in &bound.addresses.shards {
                assert_eq!(address.ip(), listen.ip());
                std::net::TcpStream::connect(address).unwrap();
            }
            return;
        }
        panic!("no free pair of port blocks found in 20 tries");
    }

    #[test]
    fn fixed_shared_port_with_base_zero_gives_ephemeral_direct_ports() {
        for (shared, _) in free_port_pairs().take(20) {
            let listen: SocketAddr = format!("127.0.0.1:{shared}").parse().unwrap();
            let Ok(bound) = bind_listeners(listen, 0, "127.0.0.1:0".parse().unwrap(), 2) else {
                continue;
            };
            assert_eq!(bound.addresses.listen.port(), shared);
            let direct: Vec<u16> = bound.addresses.shards.iter().map(|a| a.port()).collect();
            assert!(
                direct.iter().all(|port| *port != 0 && *port != shared) && direct[0] != direct[1],
                "direct ports {direct:?} are ephemeral and distinct"
            );
            return;
        }
        panic!("no free shared port found in 20 tries");
    }

    #[test]
    fn a_shard_port_past_65535_is_an_error_naming_the_shard_before_any_bind() {
        // Port 1 needs privileges: the call fails on the address check before binding anything.
        let listen: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let error = bind_listeners(listen, 65535, "127.0.0.1:0".parse().unwrap(), 2).unwrap_err();
        assert_eq!(error.role, "direct listener of shard 1", "{error}");
        assert_eq!(error.source.kind(), io::ErrorKind::InvalidInput, "{error}");
    }

    #[test]
    fn occupied_port_is_a_bind_error_naming_the_role() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let address = taken.local_addr().unwrap();
        let error = bind_listeners("127.0.0.1:0".parse().unwrap(), 0, address, 1).unwrap_err();
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
