//! A shard: one pinned glommio executor with the partitions, connections and metrics it owns.
//!
//! This module owns [`Shard`], the per-executor state every task on the shard shares through an
//! `Rc`, and [`run`], the shard's life: connect to peers, open owned partitions, accept, serve,
//! drain, close. Invariants: a `Shard` is never sent to another thread; state reached from other
//! shards arrives only as [`PeerRequest`] messages; the catalog a shard sees is an immutable
//! `Arc<Catalog>` replaced whole by shard 0's publications. On a crash nothing here needs
//! recovery: partitions recover in storage, the catalog on disk is always whole.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;

use futures_lite::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, info, warn};

use crate::catalog::Catalog;
use crate::config::Config;
use crate::http;
use crate::metrics::{self, MetricsSnapshot, ShardMetrics};
use crate::net::{self, Addresses};
use crate::notify::Latch;
use crate::peers::{Envelope, Inbox, Peers};
use crate::runtime::{Command, Event, ShardSetup};

/// A request from one shard to another.
#[derive(Debug)]
pub enum PeerRequest {
    /// Report your metrics.
    Metrics,
    /// Replace your catalog with this newer one and open/close partitions to match.
    ApplyCatalog(Arc<Catalog>),
}

/// The answer to a [`PeerRequest`].
#[derive(Debug)]
pub enum PeerReply {
    /// The shard's metrics.
    Metrics(Box<MetricsSnapshot>),
    /// The catalog was applied.
    CatalogApplied,
}

/// Why a shard stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ShardError {
    /// The control socket from the main thread failed.
    #[error("control socket: {0}")]
    Control(String),
}

/// One shard's state, shared by every task on its executor.
pub struct Shard {
    /// This shard's index.
    pub id: usize,
    /// The broker configuration.
    pub config: Arc<Config>,
    /// Every address the broker listens on.
    pub addresses: Arc<Addresses>,
    /// The shard's counters.
    pub metrics: ShardMetrics,
    /// Channels to the other shards.
    pub peers: Peers<PeerRequest, PeerReply>,
    /// Set when the shard starts draining: stop accepting and reading new requests.
    pub draining: Latch,
    catalog: RefCell<Arc<Catalog>>,
}

impl Shard {
    /// The number of shards in the broker.
    pub fn shard_count(&self) -> usize {
        self.config.cores
    }

    /// The catalog snapshot this shard currently serves from.
    pub fn catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.catalog.borrow())
    }

    /// Installs a newer catalog snapshot; older or equal versions are ignored.
    pub async fn apply_catalog(&self, catalog: Arc<Catalog>) {
        if catalog.version() < self.catalog.borrow().version() {
            return;
        }
        *self.catalog.borrow_mut() = catalog;
    }

    /// This shard's metrics snapshot, with gauges filled in.
    pub fn metrics_snapshot(&self) -> MetricsSnapshot {
        self.metrics.snapshot(self.id)
    }

    /// Serves a request from another shard.
    pub async fn serve_peer(self: &Rc<Self>, request: PeerRequest) -> PeerReply {
        match request {
            PeerRequest::Metrics => PeerReply::Metrics(Box::new(self.metrics_snapshot())),
            PeerRequest::ApplyCatalog(catalog) => {
                self.apply_catalog(catalog).await;
                PeerReply::CatalogApplied
            }
        }
    }

    /// Every shard's metrics rendered in the Prometheus text format.
    pub async fn render_metrics(self: &Rc<Self>) -> String {
        let mut snapshots = Vec::with_capacity(self.shard_count());
        for shard in 0..self.shard_count() {
            if shard == self.id {
                snapshots.push(self.metrics_snapshot());
                continue;
            }
            match self.peers.call(shard, PeerRequest::Metrics).await {
                Ok(PeerReply::Metrics(snapshot)) => snapshots.push(*snapshot),
                Ok(other) => warn!(shard, ?other, "unexpected reply to a metrics request"),
                Err(error) => warn!(shard, %error, "no metrics from shard"),
            }
        }
        metrics::render(&snapshots)
    }
}

/// Runs shard `setup.shard` until the main thread sends [`Command::Close`].
pub async fn run(setup: ShardSetup) -> Result<(), ShardError> {
    let ShardSetup {
        shard: id,
        config,
        addresses,
        catalog,
        shared_listener,
        direct_listener,
        metrics_listener,
        control,
        peers,
        events,
    } = setup;
    let (peers, inbox) = Peers::connect(id, peers).await;
    let shard = Rc::new(Shard {
        id,
        config,
        addresses,
        metrics: ShardMetrics::default(),
        peers,
        draining: Latch::default(),
        catalog: RefCell::new(Arc::clone(&catalog)),
    });
    shard.apply_catalog(catalog).await;
    let inbox_tasks = spawn_inbox(&shard, inbox);
    let metrics_task = metrics_listener.map(|socket| {
        let listener = net::glommio_listener(socket);
        glommio::spawn_local(serve_metrics(Rc::clone(&shard), listener))
    });
    // Client listeners stay bound (the kernel queues connections) until connection handling
    // takes them over.
    let _client_listeners = (shared_listener, direct_listener);
    let _ = events.send(Event::Ready(id));
    debug!(shard = id, "shard ready");

    let mut control = control_stream(control)?;
    wait_for(&mut control, Command::Drain).await?;
    shard.draining.set();
    drop(metrics_task);
    let _ = events.send(Event::Drained(id));
    wait_for(&mut control, Command::Close).await?;
    shard.peers.close();
    for task in inbox_tasks {
        task.await;
    }
    info!(shard = id, "shard closed");
    Ok(())
}

fn control_stream(
    control: std::os::unix::net::UnixStream,
) -> Result<glommio::net::UnixStream, ShardError> {
    use std::os::fd::{FromRawFd, IntoRawFd};
    control
        .set_nonblocking(true)
        .map_err(|error| ShardError::Control(error.to_string()))?;
    // SAFETY: the descriptor is a connected Unix stream socket owned by `control`, consumed here.
    Ok(unsafe { glommio::net::UnixStream::from_raw_fd(control.into_raw_fd()) })
}

/// Waits for `expected` on the control socket. End of file (the main thread died) counts as any
/// command, so the shard still drains and closes.
async fn wait_for(
    stream: &mut glommio::net::UnixStream,
    expected: Command,
) -> Result<(), ShardError> {
    let mut byte = [0u8; 1];
    loop {
        match stream.read(&mut byte).await {
            Ok(0) => return Ok(()),
            Ok(_) if byte[0] == expected as u8 => return Ok(()),
            Ok(_) => continue,
            Err(error) => return Err(ShardError::Control(error.to_string())),
        }
    }
}

fn spawn_inbox(
    shard: &Rc<Shard>,
    inbox: Inbox<PeerRequest, PeerReply>,
) -> Vec<glommio::task::JoinHandle<()>> {
    inbox
        .into_iter()
        .map(|(from, receiver)| {
            let shard = Rc::clone(shard);
            glommio::spawn_local(async move {
                while let Some(envelope) = receiver.recv().await {
                    match envelope {
                        Envelope::Request { id, from, request } => {
                            let shard = Rc::clone(&shard);
                            glommio::spawn_local(async move {
                                metrics::increment(&shard.metrics.forwarded_served);
                                let reply = shard.serve_peer(request).await;
                                if let Err(error) = shard.peers.reply(from, id, reply).await {
                                    debug!(shard = shard.id, to = from, %error, "reply not delivered");
                                }
                            })
                            .detach();
                        }
                        Envelope::Reply { id, reply } => shard.peers.deliver(id, reply),
                    }
                }
                debug!(shard = shard.id, from, "peer channel closed");
            })
            .detach()
        })
        .collect()
}

async fn serve_metrics(shard: Rc<Shard>, listener: glommio::net::TcpListener) {
    let slots = Rc::new(glommio::sync::Semaphore::new(http::METRICS_CONNECTIONS_MAX));
    loop {
        let Ok(permit) = slots.acquire_static_permit(1).await else {
            return;
        };
        let stream = match listener.accept().await {
            Ok(stream) => stream,
            Err(error) => {
                warn!(%error, "metrics accept failed");
                continue;
            }
        };
        let shard = Rc::clone(&shard);
        glommio::spawn_local(async move {
            let _permit = permit;
            if let Err(error) = serve_scrape(&shard, stream).await {
                debug!(%error, "metrics connection ended with an error");
            }
        })
        .detach();
    }
}

async fn serve_scrape(
    shard: &Rc<Shard>,
    mut stream: glommio::net::TcpStream,
) -> std::io::Result<()> {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let read_head = async {
        while !http::head_complete(&head) {
            let count = stream.read(&mut chunk).await?;
            if count == 0 || head.len() + count > http::REQUEST_HEAD_BYTES_MAX {
                return Ok(false);
            }
            head.extend_from_slice(&chunk[..count]);
        }
        Ok::<bool, std::io::Error>(true)
    };
    let complete = futures_lite::future::or(read_head, async {
        glommio::timer::sleep(http::REQUEST_HEAD_TIMEOUT).await;
        Ok(false)
    })
    .await?;
    if !complete {
        return Ok(());
    }
    let route = http::route(&head);
    let body = match route {
        http::Route::Metrics => shard.render_metrics().await,
        _ => String::new(),
    };
    stream.write_all(&http::response(route, &body)).await?;
    stream.close().await
}
