//! The queue runner: every host runs one over the shared queue. Each scan (every
//! `scan_interval_secs`, or at once when kicked) lists the queue, claims the entries that
//! are due, and settles each recipient: local ones into their INBOX, remote ones by MX
//! and SMTP. Delivered recipients leave the entry, failed-for-good ones get a DSN, the
//! rest stay with an exponential backoff until the queue lifetime runs out (then they are
//! bounced with 4.4.7).
//!
//! Claims are what make several hosts safe on one queue: an entry is worked on by one
//! process at a time, a dead host's claim goes stale and is taken over, and a long
//! delivery keeps its claim fresh. Storage calls block (NFS), so they run on the
//! blocking pool.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hamail_storage::cluster::{ClusterConfig, HostConfig, QueueConfig};
use hamail_storage::queue::ClaimedEntry;
use hamail_storage::{QueueEntry, Spool, StorageError};
use tokio::sync::{oneshot, Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::{JoinHandle, JoinSet};

use super::client::{self, ClientParams, Envelope, Outcome, Reply};
use super::dsn::{self, FailedRecipient};
use super::mx::MxResolver;
use crate::delivery;
use crate::shutdown::Shutdown;

/// Entries delivered at the same time by one host.
const MAX_PARALLEL: usize = 8;
/// Connections tried for one domain in one attempt (MX hosts × addresses).
const MAX_CONNECTIONS: usize = 10;
/// How long a shutdown waits for deliveries in flight before dropping them (their
/// claims are released and another host, or the next start, retries them).
const SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// Wakes the runner; cheap to clone.
#[derive(Debug, Clone)]
pub struct RelayHandle {
    kick: Arc<Notify>,
}

impl RelayHandle {
    /// Scan the queue now (the SMTP server calls this after enqueueing).
    pub fn kick(&self) {
        self.kick.notify_one();
    }
}

/// Start the runner for `host`. It stops claiming entries once `shutdown` is set and
/// the handle resolves after the deliveries in flight are done.
pub fn spawn(
    config: Arc<ClusterConfig>,
    host: HostConfig,
    spool: Spool,
    shutdown: Shutdown,
) -> (RelayHandle, JoinHandle<()>) {
    let kick = Arc::new(Notify::new());
    let relay = &config.relay;
    let ctx = Arc::new(Ctx {
        fqdn: config.fqdn(&host),
        params: ClientParams {
            helo_name: config.fqdn(&host),
            connect_timeout: Duration::from_secs(relay.connect_timeout_secs),
            command_timeout: Duration::from_secs(relay.command_timeout_secs),
            require_tls: relay.require_tls,
        },
        mx: Mutex::new(None),
        kick: kick.clone(),
        config,
        spool,
    });
    let handle = tokio::spawn(run(ctx, shutdown));
    (RelayHandle { kick }, handle)
}

struct Ctx {
    config: Arc<ClusterConfig>,
    spool: Spool,
    fqdn: String,
    params: ClientParams,
    /// Built on first use and again after a failure (resolv.conf may appear later).
    mx: Mutex<Option<MxResolver>>,
    kick: Arc<Notify>,
}

impl Ctx {
    fn resolver(&self) -> Result<MxResolver, Reply> {
        let mut slot = self.mx.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(mx) = slot.as_ref() {
            return Ok(mx.clone());
        }
        match MxResolver::new(&self.config.relay) {
            Ok(mx) => {
                *slot = Some(mx.clone());
                Ok(mx)
            }
            Err(e) => {
                tracing::error!(error = %e, "no DNS resolver; remote mail stays queued");
                Err(Reply::local(451, [4, 4, 3], e.to_string()))
            }
        }
    }
}

/// What the scheduler remembers between scans.
#[derive(Default)]
struct State {
    tasks: JoinSet<Option<i64>>,
    /// Queue ids being delivered by this process, by task.
    in_flight: HashMap<tokio::task::Id, String>,
    /// Entries we know are not due before the given time (from our own defers): they
    /// are skipped without claiming, which on NFS is the expensive part of a scan.
    not_before: HashMap<String, i64>,
}

async fn run(ctx: Arc<Ctx>, mut shutdown: Shutdown) {
    let interval = Duration::from_secs(ctx.config.relay.scan_interval_secs.max(1));
    let limit = Arc::new(Semaphore::new(MAX_PARALLEL));
    let mut state = State::default();
    'scan: while !shutdown.is_set() {
        let truncated = scan(&ctx, &limit, &mut state, &shutdown).await;
        let next = tokio::time::Instant::now() + interval;
        loop {
            tokio::select! {
                _ = shutdown.wait() => break 'scan,
                _ = ctx.kick.notified() => break,
                _ = tokio::time::sleep_until(next) => break,
                Some(done) = state.tasks.join_next_with_id(), if !state.tasks.is_empty() => {
                    finished(&mut state, done);
                    // A slot is free again: pick up what the last scan had to leave.
                    if truncated {
                        break;
                    }
                }
            }
        }
    }
    tracing::info!(
        in_flight = state.tasks.len(),
        "relay runner stopping: no new claims"
    );
    let drain = async {
        while let Some(done) = state.tasks.join_next_with_id().await {
            finished(&mut state, done);
        }
    };
    if tokio::time::timeout(SHUTDOWN_GRACE, drain).await.is_err() {
        tracing::warn!("deliveries still running at shutdown were abandoned; they will be retried");
        state.tasks.abort_all();
    }
}

fn finished(
    state: &mut State,
    done: Result<(tokio::task::Id, Option<i64>), tokio::task::JoinError>,
) {
    let (task, next_try) = match done {
        Ok((task, next_try)) => (task, next_try),
        Err(e) => {
            tracing::error!(error = %e, "relay delivery task failed");
            (e.id(), None)
        }
    };
    if let Some(id) = state.in_flight.remove(&task) {
        match next_try {
            Some(t) => state.not_before.insert(id, t),
            None => state.not_before.remove(&id),
        };
    }
}

/// One pass over the queue. True when it stopped early because every delivery slot was
/// busy.
async fn scan(
    ctx: &Arc<Ctx>,
    limit: &Arc<Semaphore>,
    state: &mut State,
    shutdown: &Shutdown,
) -> bool {
    let queue = ctx.spool.queue();
    let ids = match crate::blocking::spool(move || queue.list()).await {
        Ok(ids) => ids,
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the queue");
            return false;
        }
    };
    metrics::gauge!("hamail_queue_depth").set(ids.len() as f64);
    state
        .not_before
        .retain(|id, _| ids.binary_search(id).is_ok());
    let now = unix_now();
    for id in ids {
        if shutdown.is_set() {
            return false;
        }
        if state.in_flight.values().any(|v| *v == id)
            || state.not_before.get(&id).is_some_and(|t| *t > now)
        {
            continue;
        }
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            return true;
        };
        if let Some(claimed) = claim_due(ctx, id.clone(), now).await {
            let task = state.tasks.spawn(process(ctx.clone(), claimed, permit));
            state.in_flight.insert(task.id(), id);
        }
    }
    false
}

/// Claim `id` if it is due. Not-due entries are released at once; undecodable ones are
/// moved to `corrupt/`.
async fn claim_due(ctx: &Arc<Ctx>, id: String, now: i64) -> Option<ClaimedEntry> {
    let queue = ctx.spool.queue();
    let result = crate::blocking::run(move || match queue.claim(&id) {
        // `claim` does not look at next_try; dropping the claim here releases it.
        Ok(Some(c)) if c.entry.next_try <= now => Some(c),
        Ok(_) => None,
        Err(e @ StorageError::Corrupt { .. }) => {
            tracing::error!(queue_id = %id, error = %e, "undecodable queue entry, quarantined");
            if let Err(e) = queue.quarantine(&id) {
                tracing::error!(queue_id = %id, error = %e, "cannot quarantine");
            }
            None
        }
        Err(e) => {
            tracing::warn!(queue_id = %id, error = %e, "cannot claim queue entry");
            None
        }
    })
    .await;
    result.unwrap_or(None)
}

/// Deliver one claimed entry and record the outcome. Returns the entry's next try when
/// it stays in the queue.
async fn process(
    ctx: Arc<Ctx>,
    claimed: ClaimedEntry,
    _permit: OwnedSemaphorePermit,
) -> Option<i64> {
    let started = Instant::now();
    let claimed = Arc::new(claimed);
    let lost = Arc::new(AtomicBool::new(false));
    let (stop, stopped) = oneshot::channel();
    let period = (ctx.spool.lock_options().stale_after / 3).max(Duration::from_secs(1));
    let refresher = tokio::spawn(keep_fresh(claimed.clone(), period, stopped, lost.clone()));
    let results = attempt(&ctx, &claimed.entry).await;
    let _ = stop.send(());
    let _ = refresher.await;
    let claimed = match Arc::try_unwrap(claimed) {
        Ok(c) => c,
        Err(c) => {
            tracing::error!(queue_id = %c.entry.id, "claim still shared after delivery; left for retry");
            return None;
        }
    };
    if lost.load(Ordering::Relaxed) {
        // Another host broke our claim as stale and owns the entry now: writing our
        // outcome would clobber its work. Some recipients may get the mail twice.
        tracing::error!(queue_id = %claimed.entry.id, "claim lost during delivery; outcome not recorded");
        return None;
    }
    let next = settle(&ctx, claimed, results, started).await;
    metrics::histogram!("hamail_relay_delivery_seconds").record(started.elapsed().as_secs_f64());
    next
}

/// Touch the claim every `period` until told to stop; flag it if it was broken.
async fn keep_fresh(
    claimed: Arc<ClaimedEntry>,
    period: Duration,
    mut stop: oneshot::Receiver<()>,
    lost: Arc<AtomicBool>,
) {
    loop {
        tokio::select! {
            _ = &mut stop => return,
            _ = tokio::time::sleep(period) => {}
        }
        let c = claimed.clone();
        let refreshed = crate::blocking::spool(move || c.refresh()).await;
        if let Err(e) = refreshed {
            tracing::warn!(queue_id = %claimed.entry.id, error = %e, "cannot refresh the claim");
            // A broken or vanished claim means another host has the entry now; other
            // errors (a hiccup of the NFS server) may pass.
            if e.is_lock_lost() {
                lost.store(true, Ordering::Relaxed);
            }
        }
    }
}

/// Try every recipient once; one reply each.
async fn attempt(ctx: &Ctx, entry: &QueueEntry) -> Vec<(String, Reply)> {
    let mut results = Vec::with_capacity(entry.recipients.len());
    let mut local = Vec::new();
    let mut remote: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for rcpt in &entry.recipients {
        match rcpt.rsplit_once('@') {
            Some((user, domain)) if ctx.config.is_local_domain(domain) => {
                local.push((rcpt.clone(), user.to_string()));
            }
            Some((user, domain)) if !user.is_empty() && !domain.is_empty() => {
                remote
                    .entry(domain.trim_end_matches('.').to_ascii_lowercase())
                    .or_default()
                    .push(rcpt.clone());
            }
            _ => results.push((
                rcpt.clone(),
                Reply::local(553, [5, 1, 3], "bad recipient address syntax"),
            )),
        }
    }
    if !local.is_empty() {
        results.extend(deliver_local(ctx, entry, local).await);
    }
    for (domain, rcpts) in remote {
        results.extend(deliver_remote(ctx, entry, &domain, rcpts).await);
    }
    results
}

async fn deliver_local(
    ctx: &Ctx,
    entry: &QueueEntry,
    local: Vec<(String, String)>,
) -> Vec<(String, Reply)> {
    let spool = ctx.spool.clone();
    let users: Vec<String> = local.iter().map(|(_, u)| u.clone()).collect();
    let (queue_id, sender, data) = (entry.id.clone(), entry.sender.clone(), entry.data.clone());
    let results = crate::blocking::run(move || {
        delivery::deliver_local(&spool, &queue_id, &sender, &users, &data)
            .into_iter()
            .map(|r| match r {
                Ok(_) => Reply::local(250, [2, 0, 0], "delivered to mailbox"),
                Err(e) => storage_reply(&e),
            })
            .collect::<Vec<_>>()
    })
    .await;
    let results = results.unwrap_or_else(|e| {
        let reply = Reply::local(451, [4, 3, 0], format!("local delivery: {e}"));
        vec![reply; local.len()]
    });
    local
        .into_iter()
        .map(|(rcpt, _)| rcpt)
        .zip(results)
        .collect()
}

/// A storage failure as the reply a DSN or log shows; temporary unless it cannot get
/// better by waiting.
fn storage_reply(e: &StorageError) -> Reply {
    match e {
        StorageError::NoSpace { .. } => Reply::local(452, [4, 2, 2], e.to_string()),
        StorageError::InvalidName { .. } | StorageError::NoSuchMailbox { .. } => {
            Reply::local(550, [5, 1, 1], e.to_string())
        }
        StorageError::TooBig { .. } => Reply::local(552, [5, 2, 3], e.to_string()),
        _ if e.is_temporary() => Reply::local(451, [4, 3, 0], e.to_string()),
        _ => Reply::local(554, [5, 3, 0], e.to_string()),
    }
}

async fn deliver_remote(
    ctx: &Ctx,
    entry: &QueueEntry,
    domain: &str,
    rcpts: Vec<String>,
) -> Vec<(String, Reply)> {
    let all = |rcpts: Vec<String>, reply: Reply| -> Vec<(String, Reply)> {
        rcpts.into_iter().map(|r| (r, reply.clone())).collect()
    };
    let targets = match ctx.resolver() {
        Ok(mx) => mx.route(domain).await,
        Err(reply) => Err(reply),
    };
    let targets = match targets {
        Ok(t) => t,
        Err(reply) => return all(rcpts, reply),
    };
    let env = Envelope {
        sender: &entry.sender,
        recipients: &rcpts,
        data: &entry.data,
    };
    let mut last = Reply::local(
        451,
        [4, 4, 4],
        format!("no server for {domain} could be tried"),
    );
    let mut addrs = Vec::new();
    for t in &targets {
        for a in &t.addrs {
            addrs.push((t.name.as_str(), *a));
        }
    }
    addrs.truncate(MAX_CONNECTIONS);
    for (name, addr) in addrs {
        match client::send(addr, name, &ctx.params, &env).await {
            Ok(replies) => return rcpts.into_iter().zip(replies).collect(),
            // Refused for good (by policy, or as too large): other MX hosts will agree.
            Err(reply) if reply.outcome() == Outcome::Permanent => return all(rcpts, reply),
            Err(reply) => {
                tracing::debug!(queue_id = %entry.id, server = name, %addr,
                    reply = %reply.one_line(), "trying the next server");
                last = reply;
            }
        }
    }
    all(rcpts, last)
}

/// Record the attempt: complete, bounce, defer.
async fn settle(
    ctx: &Arc<Ctx>,
    claimed: ClaimedEntry,
    results: Vec<(String, Reply)>,
    started: Instant,
) -> Option<i64> {
    let entry = &claimed.entry;
    let now = unix_now();
    let queue_cfg = &ctx.config.queue;
    let expired = now >= entry.created.saturating_add(queue_cfg.lifetime_secs as i64);
    let mut delivered = 0;
    let mut failed = Vec::new();
    let mut remaining = Vec::new();
    let mut last_temporary: Option<&Reply> = None;
    for (rcpt, reply) in &results {
        match reply.outcome() {
            Outcome::Delivered => delivered += 1,
            Outcome::Permanent => failed.push(FailedRecipient::new(rcpt, reply, None)),
            Outcome::Temporary if expired => {
                failed.push(FailedRecipient::new(rcpt, reply, Some("4.4.7")));
            }
            Outcome::Temporary => {
                remaining.push(rcpt.clone());
                last_temporary = Some(reply);
            }
        }
    }
    let summary = last_temporary
        .or_else(|| failed.last().map(|f| &f.reply))
        .or_else(|| results.last().map(|(_, r)| r))
        .map(Reply::one_line)
        .unwrap_or_default();
    let mut bounced = failed.len();
    if !failed.is_empty() {
        if let Err(e) = bounce(ctx, entry, &failed).await {
            // Without a stored DSN the failure must not be forgotten: keep the
            // recipients, the next attempt bounces them again.
            tracing::error!(queue_id = %entry.id, error = %e, "cannot store the DSN; keeping the recipients");
            remaining.extend(failed.iter().map(|f| f.address.clone()));
            bounced = 0;
        }
    }
    let result = if bounced > 0 {
        "bounced"
    } else if !remaining.is_empty() {
        "deferred"
    } else {
        "delivered"
    };
    metrics::counter!("hamail_relay_attempts_total", "result" => result).increment(1);
    tracing::info!(
        queue_id = %entry.id,
        recipients = results.len(),
        delivered,
        deferred = remaining.len(),
        bounced,
        result,
        attempt = entry.attempts + 1,
        elapsed_ms = started.elapsed().as_millis() as u64,
        reply = %summary,
        "relay attempt"
    );
    let id = entry.id.clone();
    let (next_try, stored) = if remaining.is_empty() {
        (
            None,
            crate::blocking::spool(move || claimed.complete()).await,
        )
    } else {
        let next = next_retry(now, entry.created, entry.attempts, queue_cfg);
        (
            Some(next),
            crate::blocking::spool(move || claimed.defer(remaining, next, &summary)).await,
        )
    };
    match stored {
        Ok(()) => next_try,
        Err(e) => {
            tracing::error!(queue_id = %id, error = %e, "cannot record the delivery attempt; it will be repeated");
            None
        }
    }
}

/// Send the DSN for `failed` to the entry's sender: straight into the INBOX of a local
/// sender, else into the queue with the null sender (so it can never bounce back).
async fn bounce(
    ctx: &Arc<Ctx>,
    entry: &QueueEntry,
    failed: &[FailedRecipient],
) -> Result<(), String> {
    if entry.sender.is_empty() {
        // RFC 5321 §4.5.5: no notification about a notification.
        tracing::warn!(queue_id = %entry.id,
            recipients = %failed.iter().map(|f| f.address.as_str()).collect::<Vec<_>>().join(","),
            "undeliverable message with null sender dropped");
        return Ok(());
    }
    let domain = ctx
        .config
        .cluster
        .domains
        .first()
        .cloned()
        .unwrap_or_else(|| ctx.fqdn.clone());
    let dsn = dsn::build(&dsn::Report {
        reporting_mta: &ctx.fqdn,
        domain: &domain,
        queue_id: &entry.id,
        sender: &entry.sender,
        arrival: entry.created,
        original: &entry.data,
        failed,
    })
    .map_err(|e| e.to_string())?;
    let local_user = entry
        .sender
        .rsplit_once('@')
        .filter(|(_, d)| ctx.config.is_local_domain(d))
        .map(|(u, _)| u.to_string());
    let spool = ctx.spool.clone();
    let sender = entry.sender.clone();
    let queue_id = entry.id.clone();
    let queued = crate::blocking::spool(move || {
        if let Some(user) = local_user {
            match delivery::deliver_local(&spool, &queue_id, "", &[user], &dsn).pop() {
                Some(Ok(_)) => return Ok(false),
                Some(Err(e)) => {
                    tracing::warn!(queue_id = %queue_id, error = %e, "DSN not written to the sender's INBOX; queueing it")
                }
                None => {}
            }
        }
        spool.queue().enqueue("", &[sender], dsn).map(|_| true)
    })
    .await
    .map_err(|e| e.to_string())?;
    if queued {
        ctx.kick.notify_one();
    }
    Ok(())
}

/// When to try again: `retry_min * 2^attempts`, at most `retry_max`, and never after the
/// end of the entry's lifetime (so the final bounce is not late).
pub fn next_retry(now: i64, created: i64, attempts: u32, q: &QueueConfig) -> i64 {
    let delay = q
        .retry_min_secs
        .saturating_mul(1u64 << attempts.min(32))
        .min(q.retry_max_secs)
        .max(1);
    let next = now.saturating_add(delay as i64);
    let end = created.saturating_add(q.lifetime_secs as i64);
    next.min(end.max(now + 1))
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_caps_and_stops_at_the_lifetime() {
        let q = QueueConfig {
            lifetime_secs: 10_000,
            retry_min_secs: 60,
            retry_max_secs: 600,
        };
        assert_eq!(next_retry(1000, 1000, 0, &q), 1060);
        assert_eq!(next_retry(1000, 1000, 1, &q), 1120);
        assert_eq!(next_retry(1000, 1000, 3, &q), 1480);
        assert_eq!(next_retry(1000, 1000, 4, &q), 1600, "capped at retry_max");
        assert_eq!(next_retry(1000, 1000, 200, &q), 1600, "no overflow");
        // Close to the end of the lifetime: the last try is at the end, for the bounce.
        assert_eq!(next_retry(10_900, 1000, 5, &q), 11_000);
    }

    #[test]
    fn storage_failures_map_to_temporary_or_permanent() {
        let e = StorageError::InvalidName {
            name: "../x".into(),
            reason: "dots",
        };
        assert_eq!(storage_reply(&e).outcome(), Outcome::Permanent);
        let e = StorageError::LockTimeout { path: "/x".into() };
        assert_eq!(storage_reply(&e).outcome(), Outcome::Temporary);
    }
}
