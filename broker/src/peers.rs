//! Shard-to-shard messaging: one bounded glommio shared channel per ordered pair of shards, and
//! request/reply correlation on top of it.
//!
//! This module owns the [`Envelope`] format and [`Peers`], a shard's senders plus its table of
//! requests awaiting a reply. Invariants: each channel holds at most `forward-queue-depth`
//! messages; a shard's receive loop never blocks on anything but its own channel (requests are
//! served by spawned tasks, replies are handed to local one-slot channels), so two shards sending
//! to each other cannot deadlock; the number of outstanding requests is bounded by the
//! connections and in-flight limits of the sending shard. Nothing here touches disk.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;

use glommio::channels::local_channel::{self, LocalSender};
use glommio::channels::shared_channel::{
    self, ConnectedReceiver, ConnectedSender, SharedReceiver, SharedSender,
};

/// A message between shards.
#[derive(Debug)]
pub enum Envelope<Request, Reply> {
    /// A request from shard `from`, to be answered with a [`Envelope::Reply`] carrying `id`.
    Request {
        /// Correlation id chosen by the sender.
        id: u64,
        /// The sending shard.
        from: usize,
        /// What is asked.
        request: Request,
    },
    /// The answer to request `id`.
    Reply {
        /// The request's correlation id.
        id: u64,
        /// The answer.
        reply: Reply,
    },
}

/// The channel ends a shard receives at start-up, before it connects them on its executor.
#[derive(Debug)]
pub struct PeerEnds<Request: Send, Reply: Send> {
    /// `senders[to]`: the channel to shard `to` (`None` for this shard itself).
    pub senders: Vec<Option<SharedSender<Envelope<Request, Reply>>>>,
    /// `receivers[from]`: the channel from shard `from` (`None` for this shard itself).
    pub receivers: Vec<Option<SharedReceiver<Envelope<Request, Reply>>>>,
}

/// Creates the full mesh of channels for `shard_count` shards, each holding `depth` messages.
pub fn mesh<Request: Send, Reply: Send>(
    shard_count: usize,
    depth: usize,
) -> Vec<PeerEnds<Request, Reply>> {
    let mut ends: Vec<PeerEnds<Request, Reply>> = (0..shard_count)
        .map(|_| PeerEnds {
            senders: (0..shard_count).map(|_| None).collect(),
            receivers: (0..shard_count).map(|_| None).collect(),
        })
        .collect();
    for from in 0..shard_count {
        for to in 0..shard_count {
            if from != to {
                let (sender, receiver) = shared_channel::new_bounded(depth);
                ends[from].senders[to] = Some(sender);
                ends[to].receivers[from] = Some(receiver);
            }
        }
    }
    ends
}

/// Why a request to another shard got no answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PeerError {
    /// The shard index is out of range or is the calling shard.
    #[error("shard {0} is not a peer")]
    NoSuchPeer(usize),
    /// The peer's channel is closed (the peer stopped).
    #[error("shard {0} is gone")]
    Gone(usize),
}

/// A shard's connected senders and its table of requests awaiting replies.
pub struct Peers<Request: Send + 'static, Reply: Send + 'static> {
    shard: usize,
    senders: Vec<Option<ConnectedSender<Envelope<Request, Reply>>>>,
    pending: RefCell<HashMap<u64, LocalSender<Reply>>>,
    next_id: Cell<u64>,
}

/// Connected receivers, one per peer, to be drained by [`Peers::deliver`] loops.
pub type Inbox<Request, Reply> = Vec<(usize, ConnectedReceiver<Envelope<Request, Reply>>)>;

impl<Request: Send + 'static, Reply: Send + 'static> Peers<Request, Reply> {
    /// Connects this shard's channel ends; completes once every peer has connected its side.
    pub async fn connect(
        shard: usize,
        ends: PeerEnds<Request, Reply>,
    ) -> (Self, Inbox<Request, Reply>) {
        let mut senders = Vec::with_capacity(ends.senders.len());
        for sender in ends.senders {
            senders.push(sender.map(|sender| glommio::spawn_local(sender.connect()).detach()));
        }
        let mut receivers = Vec::new();
        for (from, receiver) in ends.receivers.into_iter().enumerate() {
            if let Some(receiver) = receiver {
                receivers.push((from, glommio::spawn_local(receiver.connect()).detach()));
            }
        }
        let mut connected_senders = Vec::with_capacity(senders.len());
        for sender in senders {
            connected_senders.push(match sender {
                Some(task) => task.await,
                None => None,
            });
        }
        let mut inbox = Vec::with_capacity(receivers.len());
        for (from, task) in receivers {
            if let Some(receiver) = task.await {
                inbox.push((from, receiver));
            }
        }
        let peers = Peers {
            shard,
            senders: connected_senders,
            pending: RefCell::new(HashMap::new()),
            next_id: Cell::new(0),
        };
        (peers, inbox)
    }

    /// This shard's index.
    pub fn shard(&self) -> usize {
        self.shard
    }

    /// Sends `request` to shard `to` and waits for its reply.
    pub async fn call(&self, to: usize, request: Request) -> Result<Reply, PeerError> {
        let sender = self
            .senders
            .get(to)
            .and_then(Option::as_ref)
            .ok_or(PeerError::NoSuchPeer(to))?;
        let id = self.next_id.get();
        self.next_id.set(id + 1);
        let (reply_sender, reply_receiver) = local_channel::new_bounded(1);
        self.pending.borrow_mut().insert(id, reply_sender);
        let envelope = Envelope::Request {
            id,
            from: self.shard,
            request,
        };
        if sender.send(envelope).await.is_err() {
            self.pending.borrow_mut().remove(&id);
            return Err(PeerError::Gone(to));
        }
        // Removing the entry on every path keeps the table bounded even if this future is
        // dropped while waiting (e.g. a connection closes mid-request).
        let guard = PendingGuard { peers: self, id };
        let reply = reply_receiver.recv().await;
        drop(guard);
        reply.ok_or(PeerError::Gone(to))
    }

    /// Sends the reply to request `id` back to shard `to`.
    pub async fn reply(&self, to: usize, id: u64, reply: Reply) -> Result<(), PeerError> {
        let sender = self
            .senders
            .get(to)
            .and_then(Option::as_ref)
            .ok_or(PeerError::NoSuchPeer(to))?;
        sender
            .send(Envelope::Reply { id, reply })
            .await
            .map_err(|_| PeerError::Gone(to))
    }

    /// Hands a reply that arrived on the inbox to the task waiting for it. A reply nobody waits
    /// for (its caller went away) is dropped.
    pub fn deliver(&self, id: u64, reply: Reply) {
        if let Some(sender) = self.pending.borrow_mut().remove(&id) {
            // One slot, one reply: the send cannot find the slot full.
            let _ = sender.try_send(reply);
        }
    }

    /// Requests sent and not yet answered.
    pub fn pending_count(&self) -> usize {
        self.pending.borrow().len()
    }

    /// Closes every outgoing channel; peers' inbox loops then end.
    pub fn close(&self) {
        for sender in self.senders.iter().flatten() {
            sender.close();
        }
    }
}

struct PendingGuard<'a, Request: Send + 'static, Reply: Send + 'static> {
    peers: &'a Peers<Request, Reply>,
    id: u64,
}

impl<Request: Send + 'static, Reply: Send + 'static> Drop for PendingGuard<'_, Request, Reply> {
    fn drop(&mut self) {
        self.peers.pending.borrow_mut().remove(&self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::rc::Rc;

    #[test]
    fn requests_cross_shards_and_replies_find_their_caller() {
        const SHARDS: usize = 3;
        const CALLS: u64 = 200;
        const DONE: u64 = u64::MAX / 100;
        let ends = mesh::<u64, u64>(SHARDS, 4);
        let mut handles = Vec::new();
        for (shard, ends) in ends.into_iter().enumerate() {
            let handle = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                .spawn(move || async move {
                    let (peers, inbox) = Peers::connect(shard, ends).await;
                    let peers = Rc::new(peers);
                    let (done_sender, done_receiver) = local_channel::new_bounded(SHARDS);
                    let done_sender = Rc::new(done_sender);
                    let mut loops = Vec::new();
                    for (_, receiver) in inbox {
                        let peers = Rc::clone(&peers);
                        let done_sender = Rc::clone(&done_sender);
                        loops.push(glommio::spawn_local(async move {
                            while let Some(envelope) = receiver.recv().await {
                                match envelope {
                                    Envelope::Request { id, from, request } => {
                                        if request == DONE {
                                            let _ = done_sender.try_send(());
                                        }
                                        let peers = Rc::clone(&peers);
                                        glommio::spawn_local(async move {
                                            let answer = request * 10 + peers.shard() as u64;
                                            let _ = peers.reply(from, id, answer).await;
                                        })
                                        .detach();
                                    }
                                    Envelope::Reply { id, reply } => peers.deliver(id, reply),
                                }
                            }
                        }));
                    }
                    // Many concurrent calls to every peer: more than the channel depth.
                    let mut calls = Vec::new();
                    for value in 0..CALLS {
                        let to = (shard + 1 + (value as usize % (SHARDS - 1))) % SHARDS;
                        let peers = Rc::clone(&peers);
                        calls.push(glommio::spawn_local(async move {
                            (to, value, peers.call(to, value).await)
                        }));
                    }
                    for call in calls {
                        let (to, value, reply) = call.await;
                        assert_eq!(reply, Ok(value * 10 + to as u64));
                    }
                    assert_eq!(peers.pending_count(), 0);
                    assert_eq!(
                        peers.call(shard, 1).await,
                        Err(PeerError::NoSuchPeer(shard))
                    );
                    // Tell every peer this shard has no more calls, and wait until every peer
                    // has said the same: then nobody needs this shard's replies any more.
                    for peer in (0..SHARDS).filter(|peer| *peer != shard) {
                        assert!(peers.call(peer, DONE).await.is_ok());
                    }
                    for _ in 1..SHARDS {
                        done_receiver.recv().await;
                    }
                    drop(done_sender);
                    peers.close();
                    for task in loops {
                        task.await;
                    }
                })
                .unwrap();
            handles.push(handle);
        }
        for handle in handles {
            handle.join().unwrap();
        }
    }
}
