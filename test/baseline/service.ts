import { claimWaiters, ClaimWaiters as Waiters } from "../../src/background/wakeups";
import service from "../../src/index";
import { countingD1, createCounter, type D1Counter } from "../counting-d1";
import { counted } from "./counted";

/** The path on which the fleet benchmark reads what the waiting object spent on D1. */
const WAITERS_D1 = "/__bench/waiters-d1";

/** The service as deployed, with its D1 round trips counted the same way as the baseline's. */
export default counted((request, env, ctx) => {
  if (new URL(request.url).pathname === WAITERS_D1) {
    const stub = claimWaiters(env) as unknown as { d1(): Promise<unknown> };
    return stub.d1().then((spent) => Response.json(spent));
  }
  return service.fetch(request, env, ctx);
});

/** The object the long claims wait in, its own D1 round trips (the feed, last_seen) counted too. */
export class ClaimWaiters extends Waiters {
  private readonly counter: D1Counter;

  constructor(ctx: DurableObjectState, env: Env) {
    const counter = createCounter();
    super(ctx, { ...env, DB: countingD1(env.DB, counter) });
    this.counter = counter;
  }

  d1() {
    return {
      calls: this.counter.count,
      rowsRead: this.counter.rowsRead,
      rowsWritten: this.counter.rowsWritten,
      writes: this.counter.calls.filter((call) => call.rowsWritten > 0).length,
    };
  }
}
