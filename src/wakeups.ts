import { DurableObject } from "cloudflare:workers";

/**
 * Long claims: an agent whose claim found nothing waits here, not in a loop over D1. Writers
 * announce the work they made due (a job created or retried for a target, `_any` leases freed),
 * claims announce when the leases they handed out run out, and each announcement wakes the
 * waiting claims it concerns, which then claim again. One object ("fleet") holds every waiter.
 *
 * Nothing here is a source of truth: a lost announcement (the object restarting, a failed call)
 * costs a waiting claim at most the rest of its wait, since every long claim looks at D1 once
 * more at its deadline. No job is ever kept from an agent by this object.
 */

/** Work that became due, as of the store revision that made it so. */
export type Announcement = { target: string; revision: number; count?: number };

/** A lease that runs out at `at` (ms since the epoch): then its job is due again for `target`. */
export type LeaseEnd = { target: string; at: number };

export type Waiter = {
  hostname: string;
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
/** Lease ends are grouped to this precision, so many leases make few timers. */
const LEASE_TICK_MS = 250;

type Pending = Waiter & { wake: (woken: boolean) => void };

/** Whether work for this target is work for this agent (hostname, `_any`, `_all`, or a label). */
export function concerns(target: string, agent: Pick<Waiter, "hostname" | "labels">): boolean {
  if (target === "_any" || target === "_all") return true;
  const colon = target.indexOf(":");
  if (colon < 0) return target === agent.hostname;
  const have = agent.labels[target.slice(0, colon)];
  const value = target.slice(colon + 1);
  return have !== undefined && (have === value || have.startsWith(`${value}.`));
}

export class ClaimWaiters extends DurableObject<Env> {
  private readonly waiters = new Set<Pending>();
  private readonly recent: Announcement[] = [];
  /** The highest revision among announcements no longer kept. */
  private forgotten = 0;
  private readonly leaseEnds = new Map<number, Set<string>>();

  /** Resolves true when work for the waiter is announced, false when its time runs out. */
  wait(waiter: Waiter): Promise<boolean> {
    if (waiter.since < this.forgotten) return Promise.resolve(true);
    if (this.recent.some((a) => a.revision > waiter.since && concerns(a.target, waiter)))
      return Promise.resolve(true);
    return new Promise((resolve) => {
      const pending: Pending = {
        ...waiter,
        wake: (woken) => {
          clearTimeout(timer);
          this.waiters.delete(pending);
          resolve(woken);
        },
      };
      const timer = setTimeout(() => pending.wake(false), Math.max(0, waiter.timeoutMs));
      this.waiters.add(pending);
    });
  }

  /** Wakes the waiters each announcement concerns, and keeps it for waiters still on their way. */
  announce(announcements: Announcement[]): void {
    for (const announcement of announcements) {
      this.recent.push(announcement);
      this.wakeFor(announcement.target, announcement.count ?? 1);
    }
    const excess = this.recent.length - KEPT;
    if (excess > 0) {
      for (const old of this.recent.splice(0, excess))
        this.forgotten = Math.max(this.forgotten, old.revision);
    }
  }

  /** Schedules the wake-ups of leases that run out, a timer per tick however many leases. */
  leasesEnd(leases: LeaseEnd[]): void {
    for (const { target, at } of leases) {
      const tick = Math.ceil(at / LEASE_TICK_MS) * LEASE_TICK_MS;
      let targets = this.leaseEnds.get(tick);
      if (!targets) {
        targets = new Set();
        this.leaseEnds.set(tick, targets);
        setTimeout(() => this.endLeases(tick), Math.max(0, tick - Date.now()));
      }
      targets.add(target);
    }
  }

  /** How many claims are waiting now (for tests and the fleet benchmark). */
  waiting(): number {
    return this.waiters.size;
  }

  private endLeases(tick: number): void {
    const targets = this.leaseEnds.get(tick);
    this.leaseEnds.delete(tick);
    for (const target of targets ?? []) this.wakeFor(target, 1);
  }

  /** `_any` work wakes a few waiters, longest waiting first; any other wakes all it concerns. */
  private wakeFor(target: string, count: number): void {
    let left = target === "_any" ? count * ANY_FANOUT : Number.POSITIVE_INFINITY;
    for (const waiter of [...this.waiters]) {
      if (left <= 0) return;
      if (!concerns(target, waiter)) continue;
      waiter.wake(true);
      left--;
    }
  }
}

/** The one object every waiting claim and every announcement goes to. */
export function claimWaiters(env: Env): DurableObjectStub<ClaimWaiters> {
  return env.CLAIM_WAITERS.get(env.CLAIM_WAITERS.idFromName("fleet"));
}

/** Tells waiting claims about work made due, after the response: a failure only delays them. */
export function announce(
  ctx: { waitUntil(promise: Promise<unknown>): void },
  env: Env,
  announcements: Announcement[],
  leases: LeaseEnd[] = [],
): void {
  if (announcements.length === 0 && leases.length === 0) return;
  const waiters = claimWaiters(env);
  ctx.waitUntil(
    Promise.all([
      announcements.length > 0 ? waiters.announce(announcements) : undefined,
      leases.length > 0 ? waiters.leasesEnd(leases) : undefined,
    ]).catch(() => {}),
  );
}
