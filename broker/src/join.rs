//! Running several futures of one task concurrently on the shard's executor.
//!
//! [`join_all`] polls every future it was given each time the task wakes, in order, and returns
//! their outputs in the same order. It spawns nothing, so the futures may borrow from the caller;
//! its memory is bounded by the number of futures given (itself bounded by the request's entry
//! count, limited by the frame size).

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;

/// Runs `futures` concurrently and returns their outputs in order.
pub async fn join_all<F: Future>(futures: Vec<F>) -> Vec<F::Output> {
    let mut pending: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = pending.iter().map(|_| None).collect();
    futures_lite::future::poll_fn(|context| {
        let mut all_done = true;
        for (future, output) in pending.iter_mut().zip(outputs.iter_mut()) {
            if output.is_some() {
                continue;
            }
            match future.as_mut().poll(context) {
                Poll::Ready(value) => *output = Some(value),
                Poll::Pending => all_done = false,
            }
        }
        if all_done {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_come_back_in_order_whatever_finishes_first() {
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .spawn(|| async {
                let (sender, receiver) = glommio::channels::local_channel::new_bounded::<u32>(1);
                let waits_for_message = async { receiver.recv().await.unwrap_or(0) };
                let sends_message = async {
                    sender.send(7).await.unwrap();
                    1
                };
                let futures: Vec<Pin<Box<dyn Future<Output = u32>>>> =
                    vec![Box::pin(waits_for_message), Box::pin(sends_message)];
                assert_eq!(join_all(futures).await, vec![7, 1]);
                let empty: Vec<std::future::Ready<u8>> = Vec::new();
                assert!(join_all(empty).await.is_empty());
            })
            .unwrap();
        executor.join().unwrap();
    }
}
