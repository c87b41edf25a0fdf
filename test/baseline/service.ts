import service from "../../src/index";
import { counted } from "./counted";

/** The service as deployed, with its D1 round trips counted the same way as the baseline's. */
export default counted((request, env, ctx) => service.fetch(request, env, ctx));

/** The Durable Object the service's long claims wait in, which wrangler needs from the main module. */
export { ClaimWaiters } from "../../src/wakeups";
