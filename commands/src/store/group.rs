//! Group commit: appends that arrive while another is being written share the next INSERT.
//!
//! Every append joins a queue, then takes its turn as the committer. A committer takes the whole
//! queue (its own append and every one that arrived meanwhile), checks each append against its
//! streams' heads on its own (an append whose expected version does not hold is refused alone,
//! and later appends of the group to the same stream chain from the earlier ones), and writes
//! all the rows with one statement: one commit, one WAL flush, for many commands. An append that
//! finds its outcome already decided when its turn comes returns it.
//!
//! If the server refuses the shared statement (another process appended to one of the streams,
//! say), nothing of it was written, and each append of the group is tried again alone, so one
//! append's conflict never fails another. If the connection fails with the statement sent, it
//! may have committed: each append is told its outcome is unknown, as a lone one would be, and
//! none is tried again (that could write it twice).
//!
//! The write runs in a task of its own: a caller that stops waiting cannot cut the statement off
//! half-way for the others.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{SubsecRound, Utc};
use tokio::sync::{oneshot, Mutex};

use super::*;

/// How appends are grouped. `max_wait` is how long a committer that is alone waits for company
/// (it goes as soon as another append arrives; zero: it goes at once, and only appends that
/// arrive while a write is in flight are grouped).
#[derive(Clone, Copy, Debug)]
pub struct GroupCommit {
    /// Off: every append is a statement of its own, written concurrently with the others.
    pub enabled: bool,
    pub max_wait: Duration,
    /// A group stops growing at this many events (a bulk append still goes whole).
    pub max_events: usize,
    /// An append of this many events or more goes alone, concurrently with the others: its own
    /// rows cost more than a commit, so sharing one saves little, and waiting for a turn would
    /// keep bulk writers from overlapping.
    pub alone_from: usize,
}

impl Default for GroupCommit {
    fn default() -> GroupCommit {
        GroupCommit { enabled: true, max_wait: Duration::ZERO, max_events: 20_000, alone_from: 100 }
    }
}

struct Request {
    appends: Arc<Vec<StreamAppend>>,
    known: Vec<Option<Head>>,
    reply: oneshot::Sender<Result<Appended, StoreError>>,
}

/// What an append is told when it cannot know whether it was written: the database error a
/// lone append gets when its connection fails mid-statement.
fn outcome_unknown(why: impl std::fmt::Display) -> StoreError {
    let e = std::io::Error::other(format!("the outcome of this append is unknown: {why}"));
    StoreError::Database(sqlx::Error::Io(e))
}

/// Why a group's shared statement failed.
enum Failed {
    /// Certainly nothing written: before the statement was sent, or refused by the server.
    NotWritten(StoreError),
    /// The connection failed with the statement sent: it may have committed.
    Unknown(sqlx::Error),
}

#[derive(Default)]
pub(crate) struct Groups {
    queue: std::sync::Mutex<Vec<Request>>,
    /// Held by the committer; the queue fills while it is.
    turn: Arc<Mutex<()>>,
    /// Told of every append that joins the queue (a lone committer waits on it for company).
    arrived: tokio::sync::Notify,
}

impl EventStore {
    /// Appends through the group committer; `known` as for `append_with_heads`.
    pub(crate) async fn append_grouped(
        &self,
        appends: Arc<Vec<StreamAppend>>,
        known: Vec<Option<Head>>,
    ) -> Result<Appended, StoreError> {
        let (reply, mut outcome) = oneshot::channel();
        self.groups.queue.lock().expect("append queue lock").push(Request { appends, known, reply });
        self.groups.arrived.notify_waiters();
        loop {
            let turn = self.groups.turn.clone().lock_owned().await;
            match outcome.try_recv() {
                Ok(result) => return result,
                Err(oneshot::error::TryRecvError::Closed) => return Err(outcome_unknown("its committer stopped")),
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            if !self.group_commit.max_wait.is_zero() {
                // Listening before looking, so that an append arriving in between still wakes it.
                let company = self.groups.arrived.notified();
                tokio::pin!(company);
                company.as_mut().enable();
                if self.queued() < 2 {
                    let _ = tokio::time::timeout(self.group_commit.max_wait, company).await;
                }
            }
            let group = self.take_group();
            if group.is_empty() {
                // Taken by an earlier committer, whose answer is on its way.
                drop(turn);
                return outcome.await.unwrap_or_else(|_| Err(outcome_unknown("its committer stopped")));
            }
            let store = self.clone();
            let write = tokio::spawn(async move {
                store.commit_group(group).await;
                drop(turn);
            });
            let _ = write.await;
        }
    }

    fn queued(&self) -> usize {
        self.groups.queue.lock().expect("append queue lock").len()
    }

    /// The queue's head, up to `max_events` events (at least one request).
    fn take_group(&self) -> Vec<Request> {
        let mut queue = self.groups.queue.lock().expect("append queue lock");
        let mut events = 0;
        let mut n = 0;
        for request in queue.iter() {
            let size: usize = request.appends.iter().map(|a| a.events.len()).sum();
            if n > 0 && events + size > self.group_commit.max_events {
                break;
            }
            events += size;
            n += 1;
        }
        queue.drain(..n).collect()
    }

    async fn commit_group(&self, group: Vec<Request>) {
        if group.len() == 1 {
            let request = group.into_iter().next().expect("one request");
            let result = self.append_alone(&request.appends, request.known).await;
            let _ = request.reply.send(result);
            return;
        }
        match self.write_group(&group).await {
            Ok(outcomes) => {
                for (request, outcome) in group.into_iter().zip(outcomes) {
                    let _ = request.reply.send(outcome);
                }
            }
            Err(failed) => {
                let streams: Vec<StreamId> =
                    group.iter().flat_map(|r| r.appends.iter()).map(|a| a.stream_id.clone()).collect();
                self.heads.forget(&streams);
                match failed {
                    Failed::Unknown(e) => {
                        // The connection failed with the statement sent: it may have committed
                        // or not. Each append is told so, as a lone append would be; going again
                        // could write it twice.
                        tracing::warn!(error = %e, appends = group.len(), "A grouped append's outcome is unknown.");
                        for request in group {
                            let _ = request.reply.send(Err(outcome_unknown(&e)));
                        }
                    }
                    Failed::NotWritten(e) => {
                        // Nothing of the statement was written: each append on its own, so that
                        // one's conflict is not another's.
                        tracing::debug!(error = %e, appends = group.len(), "A grouped append failed; each goes alone.");
                        for request in group {
                            let known = vec![None; request.appends.len()];
                            let result = self.append_alone(&request.appends, known).await;
                            let _ = request.reply.send(result);
                        }
                    }
                }
            }
        }
    }

    /// One statement for the whole group. `Err` only when the statement failed, saying whether
    /// anything may have been written; each append's own refusal is in its outcome.
    async fn write_group(&self, group: &[Request]) -> Result<Vec<Result<Appended, StoreError>>, Failed> {
        let not_written = |e: sqlx::Error| Failed::NotWritten(e.into());
        let mut conn = self.pool.acquire().await.map_err(not_written)?;
        // Every stream's head as the group goes: known, looked up once, then as earlier appends
        // of the group leave it.
        let mut heads: HashMap<StreamId, Head, foldhash::fast::RandomState> = HashMap::default();
        let mut unknown = std::collections::BTreeSet::new();
        for request in group {
            for (append, known) in request.appends.iter().zip(&request.known) {
                match known {
                    Some(head) => {
                        heads.entry(append.stream_id.clone()).or_insert(*head);
                    }
                    None => {
                        unknown.insert(append.stream_id.clone());
                    }
                }
            }
        }
        let unknown: Vec<StreamId> = unknown.into_iter().filter(|id| !heads.contains_key(id)).collect();
        if !unknown.is_empty() {
            let found = stream_heads(&mut conn, &unknown).await.map_err(not_written)?;
            heads.extend(unknown.into_iter().zip(found));
        }
        let events = group.iter().flat_map(|r| r.appends.iter()).map(|a| a.events.len()).sum();
        let mut rows = Rows::new(Utc::now().trunc_subsecs(6), events);
        let mut planned = Vec::with_capacity(group.len());
        for request in group {
            let outcome = validate(&request.appends).and_then(|()| {
                let mine = request.appends.iter().map(|a| heads[&a.stream_id]).collect();
                plan(&request.appends, mine, &self.names, &mut rows)
            });
            if let Ok(p) = &outcome {
                heads.extend(p.heads().iter().cloned());
            }
            planned.push(outcome);
        }
        let inserted = match rows.is_empty() {
            true => Vec::new(),
            // The server refused the statement (a unique key, say): it wrote nothing.
            false => insert(&mut conn, &rows, Returning::Each).await.map_err(|e| match e {
                e @ sqlx::Error::Database(_) => not_written(e),
                e => Failed::Unknown(e),
            })?,
        };
        let outcomes: Vec<Result<Appended, StoreError>> =
            planned.into_iter().map(|p| p.map(|p| p.appended(&inserted))).collect();
        self.committed(outcomes.iter().flatten());
        Ok(outcomes)
    }
}

#[cfg(any(test, feature = "testing"))]
impl EventStore {
    /// Holds back every commit until the guard is dropped, so that appends queue (for tests that
    /// drive grouping step by step).
    pub async fn hold_commits(&self) -> tokio::sync::OwnedMutexGuard<()> {
        self.groups.turn.clone().lock_owned().await
    }

    /// How many appends wait for their turn.
    pub fn queued_appends(&self) -> usize {
        self.queued()
    }
}
