//! Holding back the answer to an accepted send until its status webhooks
//! have gone out (`StatusConfig::answer_after_status_ms`), as happens with
//! Meta when its webhooks outrun its HTTP answer.
//!
//! Each status of the held message carries a `Posted` signal through the
//! outbox into the POST that carries it; the delivery task fires it once
//! that POST's first attempt is over (answered, whatever the status, or
//! failed), and dropping it (the work discarded, the target removed, the
//! outbox cleared, delivery stopped) releases it too, so an answer is never
//! held by work that will not be posted. The send route awaits `Hold::wait`:
//! the first status's POST, then the extra time, then the POST of any other
//! status of the message that came due meanwhile. So the first status
//! webhook is always attempted before the answer, and the answer never
//! overtakes a status that is already due.

use std::time::{Duration, Instant};

use tokio::sync::oneshot;

/// Beyond a status's due time and the target's POST timeout, how long the
/// answer still waits for that POST (the delivery loop far behind).
const MARGIN: Duration = Duration::from_secs(5);

/// Fired (or dropped) when the POST carrying one status has been attempted.
#[derive(Debug)]
pub(crate) struct Posted(oneshot::Sender<()>);

impl Posted {
    pub(crate) fn done(self) {
        // The receiver may have stopped waiting (its deadline passed, or the
        // request was cancelled); nothing is lost then.
        let _ = self.0.send(());
    }
}

/// One status the answer may wait for.
#[derive(Debug)]
struct Awaited {
    /// When the status is due to be posted.
    due: Instant,
    /// After this the answer stops waiting for it.
    deadline: Instant,
    posted: oneshot::Receiver<()>,
}

/// An accepted send's answer, held until its status webhooks went out.
#[derive(Debug)]
pub(crate) struct Hold {
    first: Awaited,
    others: Vec<Awaited>,
    extra: Duration,
}

/// Builds the hold for statuses due at `due` (in order of scheduling; the
/// earliest due, first scheduled on a tie, is the one posted first), with
/// `extra` after the first one's POST and `post_timeout` the target's.
/// Returns the hold and one `Posted` per status, in the same order; `None`
/// when there is no status.
pub(crate) fn hold(
    due: &[Instant],
    extra: Duration,
    post_timeout: Duration,
) -> Option<(Hold, Vec<Posted>)> {
    let first = due
        .iter()
        .enumerate()
        .min_by_key(|&(index, at)| (*at, index))
        .map(|(index, _)| index)?;
    let mut signals = Vec::with_capacity(due.len());
    let mut first_awaited = None;
    let mut others = Vec::with_capacity(due.len().saturating_sub(1));
    for (index, &at) in due.iter().enumerate() {
        let (sender, posted) = oneshot::channel();
        signals.push(Posted(sender));
        let awaited = Awaited {
            due: at,
            deadline: at
                .checked_add(post_timeout.saturating_add(MARGIN))
                .unwrap_or(at),
            posted,
        };
        if index == first {
            first_awaited = Some(awaited);
        } else {
            others.push(awaited);
        }
    }
    let first = first_awaited?;
    Some((
        Hold {
            first,
            others,
            extra,
        },
        signals,
    ))
}

impl Hold {
    /// Resolves when the answer may go: the first status's POST attempted,
    /// `extra` later, and every other status due by then attempted too.
    pub(crate) async fn wait(self) {
        posted(self.first).await;
        tokio::time::sleep(self.extra).await;
        let release = Instant::now();
        for awaited in self.others {
            if awaited.due <= release {
                posted(awaited).await;
            }
        }
    }
}

async fn posted(awaited: Awaited) {
    let deadline = tokio::time::Instant::from_std(awaited.deadline);
    // Fired or dropped, the POST is no longer ahead of the answer; past the
    // deadline the answer goes anyway.
    let _ = tokio::time::timeout_at(deadline, awaited.posted).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn no_status_no_hold() {
        assert!(hold(&[], MS, MS).is_none());
    }

    #[tokio::test]
    async fn the_answer_waits_for_the_first_status_then_the_extra_time() {
        let t0 = Instant::now();
        let (hold, mut signals) = hold(&[t0, t0 + 60_000 * MS], 50 * MS, MS).expect("a hold");
        let later = signals.pop().expect("two signals");
        let first = signals.pop().expect("two signals");
        let waiting = tokio::spawn(hold.wait());
        tokio::time::sleep(30 * MS).await;
        assert!(!waiting.is_finished(), "the first status is not posted yet");
        let posted_at = Instant::now();
        first.done();
        waiting.await.expect("the hold ends");
        assert!(posted_at.elapsed() >= 50 * MS, "then the extra time");
        drop(later);
    }

    #[tokio::test]
    async fn a_status_due_within_the_hold_is_waited_for_and_a_later_one_is_not() {
        let t0 = Instant::now();
        let due = [t0 + 20 * MS, t0 + 10 * MS, t0 + 60_000 * MS];
        let (hold, mut signals) = hold(&due, 40 * MS, MS).expect("a hold");
        let _read = signals.pop().expect("three");
        let sent = signals.pop().expect("three");
        let delivered = signals.pop().expect("three");
        let waiting = tokio::spawn(hold.wait());
        // The earliest due (index 1) is the first: its POST starts the hold.
        sent.done();
        tokio::time::sleep(100 * MS).await;
        assert!(
            !waiting.is_finished(),
            "a status due within the hold and not posted holds the answer"
        );
        delivered.done();
        tokio::time::timeout(Duration::from_secs(5), waiting)
            .await
            .expect("the status due in a minute does not hold it")
            .expect("the hold ends");
    }

    #[tokio::test]
    async fn work_that_is_dropped_releases_the_answer() {
        let t0 = Instant::now();
        let (hold, signals) = hold(&[t0, t0], Duration::ZERO, MS).expect("a hold");
        drop(signals);
        tokio::time::timeout(Duration::from_secs(5), hold.wait())
            .await
            .expect("released");
    }

    #[tokio::test]
    async fn a_post_never_attempted_holds_the_answer_only_until_its_deadline() {
        let t0 = Instant::now();
        // Due long ago: its deadline (due + timeout + margin) has passed.
        let Some(long_ago) = t0.checked_sub(MARGIN + 10 * MS) else {
            return; // a machine up for less than that
        };
        let (hold, _signals) = hold(&[long_ago], Duration::ZERO, MS).expect("a hold");
        tokio::time::timeout(Duration::from_secs(5), hold.wait())
            .await
            .expect("released at the deadline");
    }
}
