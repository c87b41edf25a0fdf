// A loopback port nobody listens on now: the runners' default, so clones never share one.
import { createServer } from "node:net";

/** Asks the system for a free port on 127.0.0.1 (closed again before it is returned). */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** `preferred` when nobody listens on it, else a free port: wrangler's inspector (9229) in two clones. */
export function portOr(preferred) {
  return new Promise((resolve) => {
    const server = createServer();
    server.once("error", () => resolve(freePort()));
    server.listen(preferred, "127.0.0.1", () => server.close(() => resolve(preferred)));
  });
}
