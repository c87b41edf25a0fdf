import { DurableObject } from "cloudflare:workers";
import { type FeedPosition, readFeed, touchAgents } from "../db/agents";
import { anyWebhooks, eventsAfter, type FeedEvent, lastEventSeq } from "../db/webhooks";
import { agentTtlSeconds } from "../domain/agent-settings";
import { concerns } from "../domain/target";

/**
 * Long claims: an agent whose claim found nothing waits here, not in a loop over D1. One object
 * ("fleet") holds every waiting claim and wakes those that work concerns:
 *
 * - Writers announce, after they answer, what they made due (a job created or retried for a
 *   target, `_any` leases freed), with the store revision that made it so: the wake-up in
 *   milliseconds.
 * - While claims wait, the object reads D1's change feed once a second for the whole fleet: jobs
 *   created since it last looked, jobs whose `not_before` came, leases that ran out, and `_any`
 *   work nobody has taken. So an
 *   announcement that was lost (a failed call) costs a waiting claim about a second, never a job,
 *   and lease ends need no announcement.
 * - An agent whose wait ran out with nothing for it is known idle as of the revision its claim saw.
 *   Its next long claim waits at once, without a D1 claim, while the feed has run without a break
 *   since, nothing concerning it was seen, no `_any` work is waiting for a taker, and its last
 *   D1 claim is at most VOUCH_MAX_MS old. The object writes `last_seen` for the agents waiting in
 *   it, in one statement for the fleet.
 *
 * Nothing here is a source of truth: if the object restarts, it knows nothing, vouches for no one,
 * and every claim looks at D1 first. Handing out stays the claim's single D1 batch.
 */

/** Work that became due, as of the store revision that made it so. */
export type Announcement = { target: string; revision: number; count?: number };

/** An announcement as kept: for `_any` work, how many more waiters it should still wake. */
type Kept = Announcement & { owed: number };

/** A claim that waits: the agent, and what its last look at D1 saw. */
export type Waiter = {
  hostname: string;
  /** The lineage of the key acting as the agent (checked by the D1 claim that preceded the wait). */
  lineage: string;
  labels: Record<string, string>;
  /** The store revision the agent's last claim saw: work announced after it wakes the waiter. */
  since: number;
  /** How long to wait at most, in ms. */
  timeoutMs: number;
};

/** How many waiting claims one `_any` job wakes: one takes it; the other covers a departed client. */
const ANY_FANOUT = 2;
/** Announcements kept for waiters that register after them; older ones wake such waiters at once. */
const KEPT = 1024;
/** How often the object reads D1's change feed while claims wait or agents are known idle. */
const FEED_MS = 1000;
/** How long the object trusts what it knows of whether any webhook exists. */
const WEBHOOKS_RECHECK_MS = 60_000;
/** How often, while any webhook exists, the object sweeps the events for changes nobody enqueued. */
const SWEEP_MS = 30_000;
/** Events younger than this are left to the writers' announcements for one more sweep. */
const SWEEP_GRACE_MS = 10_000;
/** Events one read of the sweep takes, and how many such reads one sweep makes at most. */
const SWEEP_PAGE = 1000;
const SWEEP_PAGES = 10;
/** The object's storage key for the sweep's position: the seq of the last event it covered. */
const SWEPT = "webhooks-swept-seq";
/** A queue's sendBatch takes at most this many messages. */
const SEND_BATCH = 100;
/** An idle agent is sent to D1 at least this often, whatever the object believes. */
const VOUCH_MAX_MS = 300_000;

type Pending = Waiter & { wake: (woken: boolean) => void; validatedAt: number };

/** A job that changed (a new event), as of the store revision that changed it. */
export type JobChange = { job: string; revision: number };

/** Someone watching jobs' events: woken when one of them changes after `since`. */
type Watch = { jobs: ReadonlySet<string>; since: number; wake: (changed: boolean) => void };

/** What the object knows of an agent whose last wait ran out: idle as of `since`. */
type Idle = Omit<Waiter, "timeoutMs" | "hostname"> & { validatedAt: number };

export class ClaimWaiters extends DurableObject<Env> {
  private readonly waiters = new Set<Pending>();
  private readonly idle = new Map<string, Idle>();
  private readonly recent: Kept[] = [];
  /** The highest revision among announcements no longer kept. */
  private forgotten = 0;
  /** Where the change feed stands; undefined until its first read (and after a failed one). */
  private feed: FeedPosition | undefined;
  /** `_any` jobs due that nobody took within a feed interval. */
  private anyBacklog = 0;
  private feeding = false;
  /** Agents that waited since `last_seen` was last written for them, with their lineage. */
  private readonly seen = new Map<string, string>();
  private seenWrittenAt = 0;
  private readonly watches = new Set<Watch>();
  /** Job changes kept for watchers on their way; the highest revision among those no longer kept. */
  private readonly changes: JobChange[] = [];
  private changesForgotten = 0;

  /**
   * A claim that found nothing waits here. Resolves true when work for it is announced or seen
   * in the feed, false when its time runs out (and the agent is then known idle).
   */
  wait(waiter: Waiter): Promise<boolean> {
    return this.enter(waiter, Date.now());
  }

  /**
   * The start of a long claim: when the object can vouch that nothing is due for the agent, the
   * claim waits at once (true: woken, false: ran out); null sends it to D1 first.
   */
  resume(agent: { hostname: string; lineage: string; timeoutMs: number }): Promise<boolean | null> {
    const known = this.idle.get(agent.hostname);
    const now = Date.now();
    if (
      !known ||
      known.lineage !== agent.lineage ||
      this.feed === undefined ||
      known.since < this.feed.initRevision ||
      this.anyBacklog > 0 ||
      now - known.validatedAt > VOUCH_MAX_MS
    )
      return Promise.resolve(null);
    return this.enter(
      { ...known, hostname: agent.hostname, timeoutMs: agent.timeoutMs },
      known.validatedAt,
      true,
    );
  }

  /**
   * Wakes the waiters each announcement concerns, and keeps it for waiters still on their way.
   * Returns how many agents the object holds (waiting, or known idle): with none, writers may stay
   * quiet for a moment, since the feed would see their work anyway.
   */
  announce(announcements: Announcement[]): number {
    for (const announcement of announcements) this.note(announcement);
    return this.waiters.size + this.idle.size;
  }

  /**
   * Event streams wait here between reads of D1: resolves true when one of `jobs` changed after
   * revision `since` (at once if it did already, or if the object no longer knows), false when
   * `timeoutMs` passes. Nothing here reads D1: a watcher costs a D1 read per change, not per second.
   */
  watch(watch: { jobs: string[]; since: number; timeoutMs: number }): Promise<boolean> {
    const jobs = new Set(watch.jobs);
    if (watch.since < this.changesForgotten) return Promise.resolve(true);
    if (this.changes.some((c) => c.revision > watch.since && jobs.has(c.job)))
      return Promise.resolve(true);
    return new Promise((resolve) => {
      const entry: Watch = {
        jobs,
        since: watch.since,
        wake: (changed) => {
          clearTimeout(timer);
          this.watches.delete(entry);
          resolve(changed);
        },
      };
      const timer = setTimeout(() => entry.wake(false), Math.max(0, watch.timeoutMs));
      this.watches.add(entry);
    });
  }

  /**
   * Jobs got new events: wakes their watchers and, while any webhook exists, enqueues the change
   * for the webhook consumer (src/background/webhooks.ts). Returns how many listen now: watchers, and one
   * for the webhooks (0: writers may rest). A change that fails to enqueue here (or whose
   * announcement never arrives) is enqueued by the sweep.
   */
  async jobsChanged(changes: JobChange[]): Promise<number> {
    const hooks = await this.webhooksExist();
    if (hooks) {
      await this.enqueueChanges(changes).catch(() => {});
      await this.scheduleSweep().catch(() => {});
    }
    return this.noteChanges(changes) + (hooks ? 1 : 0);
  }

  /** A webhook was created or deleted: look again whether any exists, and sweep while any does. */
  async webhooksChanged(): Promise<void> {
    this.webhooksKnown = undefined;
    if (await this.webhooksExist()) await this.scheduleSweep();
  }

  private webhooksKnown: { exists: boolean; at: number } | undefined;

  private async webhooksExist(): Promise<boolean> {
    const now = Date.now();
    if (this.webhooksKnown === undefined || now - this.webhooksKnown.at > WEBHOOKS_RECHECK_MS)
      this.webhooksKnown = { exists: await anyWebhooks(this.env.DB), at: now };
    return this.webhooksKnown.exists;
  }

  /** Revisions whose changes were enqueued as announced and the sweep has not passed yet. */
  private readonly enqueued = new Set<number>();
  private sweepScheduled = false;

  private async enqueueChanges(changes: JobChange[]): Promise<void> {
    const byRevision = new Map<number, Set<string>>();
    for (const { job, revision } of changes)
      if (revision < Number.MAX_SAFE_INTEGER)
        byRevision.set(revision, (byRevision.get(revision) ?? new Set()).add(job));
    const messages = [...byRevision].map(([revision, jobs]) => ({
      body: { kind: "changes" as const, revision, jobs: [...jobs] },
    }));
    for (let i = 0; i < messages.length; i += SEND_BATCH)
      await this.env.WEBHOOK_QUEUE.sendBatch(messages.slice(i, i + SEND_BATCH));
    for (const revision of byRevision.keys()) this.enqueued.add(revision);
  }

  /**
   * The sweep starts where the events stand when the first webhook appears (it delivers what
   * happens from then on, not history), and runs on the object's alarm while any webhook exists.
   */
  private async scheduleSweep(inMs = SWEEP_MS): Promise<void> {
    if (this.sweepScheduled) return;
    const storage = this.ctx.storage;
    if ((await storage.get<number>(SWEPT)) === undefined)
      await storage.put(SWEPT, await lastEventSeq(this.env.DB));
    if ((await storage.getAlarm()) === null) await storage.setAlarm(Date.now() + inMs);
    this.sweepScheduled = true;
  }

  async alarm(): Promise<void> {
    this.sweepScheduled = false;
    this.webhooksKnown = undefined;
    if (!(await this.webhooksExist())) {
      await this.ctx.storage.delete(SWEPT);
      this.enqueued.clear();
      return;
    }
    this.sweepBehind = false;
    await this.sweep(Date.now());
    await this.scheduleSweep(this.sweepBehind ? 1000 : SWEEP_MS);
  }

  /**
   * Nothing a write changed is lost to the webhooks when its announcement is (a failed call, an
   * isolate gone, a failed send): the sweep reads the events committed since its position, in
   * commit order, and enqueues each revision not enqueued as announced. Events younger than
   * SWEEP_GRACE_MS wait for the next sweep, so announcements on their way are not doubled; a
   * change enqueued twice (the object restarted) makes no second delivery, since a delivery's id
   * is derived from what it delivers. Returns how many revisions it enqueued.
   */
  async sweep(now: number): Promise<number> {
    let revisions = 0;
    for (let page = 0; page < SWEEP_PAGES; page++) {
      const swept = await this.sweepPage(now);
      revisions += swept.revisions;
      if (!swept.more) return revisions;
    }
    this.sweepBehind = true;
    return revisions;
  }

  /** More than SWEEP_PAGES pages were waiting at the last sweep: the next comes at once. */
  private sweepBehind = false;

  private async sweepPage(now: number): Promise<{ revisions: number; more: boolean }> {
    const from = (await this.ctx.storage.get<number>(SWEPT)) ?? (await lastEventSeq(this.env.DB));
    const events = await eventsAfter(this.env.DB, from, SWEEP_PAGE);
    const ripe: FeedEvent[] = [];
    for (const event of events) {
      if (Date.parse(event.created_at) > now - SWEEP_GRACE_MS) break;
      ripe.push(event);
    }
    const last = ripe.at(-1);
    if (last === undefined) return { revisions: 0, more: false };
    const missed = ripe
      .filter((event) => !this.enqueued.has(event.revision))
      .map((event) => ({ job: event.job_id, revision: event.revision }));
    await this.enqueueChanges(missed);
    await this.ctx.storage.put(SWEPT, last.seq);
    for (const revision of this.enqueued)
      if (revision <= last.revision) this.enqueued.delete(revision);
    return {
      revisions: new Set(missed.map((change) => change.revision)).size,
      more: ripe.length === SWEEP_PAGE,
    };
  }

  private noteChanges(changes: JobChange[]): number {
    for (const change of changes) {
      this.changes.push(change);
      for (const watch of [...this.watches])
        if (watch.jobs.has(change.job) && change.revision > watch.since) watch.wake(true);
    }
    const excess = this.changes.length - KEPT;
    if (excess > 0)
      for (const old of this.changes.splice(0, excess))
        this.changesForgotten = Math.max(this.changesForgotten, old.revision);
    return this.watches.size;
  }

  /** The agent's registration changed (labels, or it was deregistered): vouch no more for it. */
  forget(hostname: string): void {
    this.idle.delete(hostname);
  }

  /** How many claims are waiting now (for tests and the fleet benchmark). */
  waiting(): number {
    return this.waiters.size;
  }

  /** Writes `last_seen` for the agents that waited here (tests call it; the feed does it too). */
  async writeSeen(): Promise<void> {
    for (const waiter of this.waiters) this.seen.set(waiter.hostname, waiter.lineage);
    const agents = [...this.seen].map(([hostname, lineage]) => ({ hostname, lineage }));
    this.seen.clear();
    this.seenWrittenAt = Date.now();
    if (agents.length > 0)
      await touchAgents(this.env.DB, agents, new Date(), (agentTtlSeconds(this.env) * 1000) / 2);
  }

  /**
   * A vouched agent's record was kept up to date as announcements arrived (any that concerned it
   * ended the record), so only `_any` work still owing a wake-up matters for it; a claim from D1
   * may have missed announcements no longer kept, and is woken to look again.
   */
  private enter(waiter: Waiter, validatedAt: number, vouched = false): Promise<boolean> {
    this.seen.set(waiter.hostname, waiter.lineage);
    this.idle.delete(waiter.hostname);
    this.startFeed();
    if (!vouched && waiter.since < this.forgotten) return Promise.resolve(true);
    // Work announced after the agent's claim looked: `_any` work only while it still owes a
    // wake-up (it woke others already), anything else that concerns the agent.
    for (const kept of this.recent) {
      if (kept.revision <= waiter.since || !concerns(kept.target, waiter)) continue;
      if (kept.target !== "_any") return Promise.resolve(true);
      if (kept.owed > 0) {
        kept.owed--;
        return Promise.resolve(true);
      }
    }
    return new Promise((resolve) => {
      const pending: Pending = {
        ...waiter,
        validatedAt,
        wake: (woken) => {
          clearTimeout(timer);
          this.waiters.delete(pending);
          if (!woken) {
            const { hostname, timeoutMs, wake, ...idle } = pending;
            this.idle.set(hostname, idle);
          }
          resolve(woken);
        },
      };
      const timer = setTimeout(() => pending.wake(false), Math.max(0, waiter.timeoutMs));
      this.waiters.add(pending);
    });
  }

  private note(announcement: Announcement): void {
    const kept: Kept = { ...announcement, owed: 0 };
    this.recent.push(kept);
    const excess = this.recent.length - KEPT;
    if (excess > 0) {
      for (const old of this.recent.splice(0, excess))
        this.forgotten = Math.max(this.forgotten, old.revision);
    }
    kept.owed = this.wakeFor(announcement.target, announcement.count ?? 1);
  }

  /**
   * `_any` work wakes a few waiters, longest waiting first (and the feed's backlog check covers
   * them if they go away); any other wakes all it concerns, and ends the vouching for them.
   */
  /** Returns how many wake-ups `_any` work still owes (no waiter was there for them). */
  private wakeFor(target: string, count: number): number {
    if (target !== "_any") {
      for (const [hostname, idle] of this.idle)
        if (concerns(target, { hostname, labels: idle.labels })) this.idle.delete(hostname);
    }
    let left = target === "_any" ? count * ANY_FANOUT : Number.POSITIVE_INFINITY;
    for (const waiter of [...this.waiters]) {
      if (left <= 0) break;
      if (!concerns(target, waiter)) continue;
      waiter.wake(true);
      left--;
    }
    return target === "_any" ? left : 0;
  }

  /** Reads the feed once a second while anyone waits or is known idle. */
  private startFeed(): void {
    if (this.feeding) return;
    this.feeding = true;
    const tick = async () => {
      try {
        await this.tickFeed();
      } catch {
        // A gap in what the object saw: it vouches for no one until the feed runs again.
        this.feed = undefined;
        this.idle.clear();
      }
      if (this.waiters.size === 0 && this.idle.size === 0) {
        this.feeding = false;
        return;
      }
      setTimeout(tick, FEED_MS);
    };
    setTimeout(tick, 0);
  }

  private async tickFeed(): Promise<void> {
    const now = Date.now();
    const writeSeen = now - this.seenWrittenAt >= (agentTtlSeconds(this.env) * 1000) / 4;
    const read = await readFeed(this.env.DB, this.feed, new Date(now));
    if (this.feed !== undefined) {
      for (const job of read.jobs) {
        const known = this.recent.some(
          (a) => a.revision === job.revision && a.target === job.target,
        );
        if (!known) this.note(job);
      }
      for (const target of [...read.leaseEnds, ...read.cameDue])
        this.note({ target, revision: read.revision });
      this.anyBacklog = read.anyBacklog;
      if (read.anyBacklog > 0) this.wakeFor("_any", read.anyBacklog);
    }
    this.feed = read.position;
    if (writeSeen) await this.writeSeen();
  }
}

/** The one object every waiting claim and every announcement goes to. */
export function claimWaiters(env: Env): DurableObjectStub<ClaimWaiters> {
  return env.CLAIM_WAITERS.get(env.CLAIM_WAITERS.idFromName("fleet"));
}

/** How long an isolate skips telling the object after it said nobody waits for that news. */
const QUIET_MS = 1000;

type Ctx = { waitUntil(promise: Promise<unknown>): void };

/**
 * Sends news to the object after the response; a failure only delays those waiting. When the
 * object answers that nobody waits for this kind of news, the isolate skips it for QUIET_MS: a
 * service nobody waits on pays no call per write.
 */
function teller<T>(send: (stub: DurableObjectStub<ClaimWaiters>, news: T[]) => Promise<number>) {
  let quietUntil = 0;
  return (ctx: Ctx, env: Env, news: T[]): void => {
    if (news.length === 0 || Date.now() < quietUntil) return;
    ctx.waitUntil(
      send(claimWaiters(env), news)
        .then((waiting) => {
          if (waiting === 0) quietUntil = Date.now() + QUIET_MS;
        })
        .catch(() => {}),
    );
  };
}

/**
 * Tells waiting claims about work made due. A lost call costs a waiting claim about a second: the
 * object's feed sees the work.
 */
export const announce = teller<Announcement>((stub, news) => stub.announce(news));

/**
 * Tells event streams that jobs got new events. A lost call costs a watcher at most its next
 * timed read.
 */
export const jobsChanged = teller<JobChange>((stub, news) => stub.jobsChanged(news));

/**
 * After a webhook was created or deleted: the object looks again whether to enqueue changes. Then
 * waits out the quiet window of every isolate (which may have stopped telling the object about
 * writes a moment ago, when nobody listened), so every write that starts after this returns
 * reaches the webhooks.
 */
export async function webhooksChanged(env: Env): Promise<void> {
  await claimWaiters(env)
    .webhooksChanged()
    .catch(() => {});
  await new Promise((resolve) => setTimeout(resolve, QUIET_MS));
}

/** After an agent's registration changed: the object vouches no more for it. */
export function forgetAgent(ctx: Ctx, env: Env, hostname: string): void {
  ctx.waitUntil(
    claimWaiters(env)
      .forget(hostname)
      .catch(() => {}),
  );
}
