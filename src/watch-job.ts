// No imports: a browser bundle (the console) takes watchJob without the Worker and its types.

export type ClientOptions = {
  /** A fetch to send requests with: the global one by default; a Worker's in tests. */
  fetch?: typeof fetch;
  headers?: Record<string, string>;
};

/** One event of a watched job, as `GET /job/{id}/events` sends it. */
export type WatchedEvent = {
  id: string;
  job_id: string;
  event: string;
  hostname: string;
  timestamp: string;
  message: string;
  error?: string;
  data: Record<string, unknown> | null;
};

/** How a watch ended: the job (the chain's last, when following) and its final status. */
export type WatchEnd = { job_id: string; status: string | null };

export type WatchOptions = ClientOptions & {
  /** Go on into the retries of the job, to the end of the chain. */
  follow?: boolean;
  /** Start after this event id (resume). */
  after?: string;
  signal?: AbortSignal;
  /** Reconnect after a dropped stream this many times in a row at most (default 5). */
  reconnects?: number;
};

/** The chunks of a body; a reader rather than `for await`, which Safari's streams lack. */
async function* chunks(body: ReadableStream<Uint8Array>) {
  const reader = body.getReader();
  try {
    for (let read = await reader.read(); !read.done; read = await reader.read()) yield read.value;
  } finally {
    reader.cancel().catch(() => {});
  }
}

/** Splits a Server-Sent Events body into messages. */
async function* sseMessages(body: ReadableStream<Uint8Array>) {
  const decoder = new TextDecoder();
  let buffer = "";
  // A CR that ends a chunk waits for the next: it may be the first half of a CRLF.
  let pending = "";
  for await (const chunk of chunks(body)) {
    const text = pending + decoder.decode(chunk, { stream: true });
    pending = text.endsWith("\r") ? "\r" : "";
    buffer += text.slice(0, text.length - pending.length).replace(/\r\n?/g, "\n");
    for (let end = buffer.indexOf("\n\n"); end >= 0; end = buffer.indexOf("\n\n")) {
      const message: { id?: string; event?: string; data?: string } = {};
      for (const line of buffer.slice(0, end).split("\n")) {
        const colon = line.indexOf(":");
        if (colon <= 0) continue;
        const field = line.slice(0, colon);
        const value = line.slice(colon + 1).replace(/^ /, "");
        if (field === "data")
          message.data = message.data === undefined ? value : `${message.data}\n${value}`;
        else if (field === "id" || field === "event") message[field] = value;
      }
      buffer = buffer.slice(end + 2);
      if (message.data !== undefined) yield message;
    }
  }
}

/**
 * A job's events as they happen: its timeline so far, then each new event, until the job (with
 * `follow`, its retry chain) ends; returns how it ended. A dropped connection is resumed from the
 * last event seen (`Last-Event-ID`), so nothing is missed or repeated.
 *
 *   for await (const e of watchJob(url, key, id, { follow: true })) console.log(e.message);
 */
export async function* watchJob(
  baseUrl: string,
  key: string,
  id: string,
  options: WatchOptions = {},
): AsyncGenerator<WatchedEvent, WatchEnd> {
  const send = options.fetch ?? fetch;
  let last = options.after;
  let failures = 0;
  for (;;) {
    const url = new URL(`job/${encodeURIComponent(id)}/events`, baseUrl.replace(/\/*$/, "/"));
    if (options.follow) url.searchParams.set("follow", "retries");
    let response: Response;
    try {
      response = await send(url, {
        headers: {
          ...options.headers,
          Authorization: `Bearer ${key}`,
          Accept: "text/event-stream",
          ...(last === undefined ? {} : { "Last-Event-ID": last }),
        },
        ...(options.signal ? { signal: options.signal } : {}),
      });
    } catch (error) {
      if (options.signal?.aborted || ++failures > (options.reconnects ?? 5)) throw error;
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** failures));
      continue;
    }
    if (!response.ok || !response.body) {
      const text = await response.text();
      throw new Error(`watching job ${id}: ${response.status} ${text}`);
    }
    for await (const message of sseMessages(response.body)) {
      const data = JSON.parse(message.data as string) as unknown;
      if (message.event === "end") return data as WatchEnd;
      failures = 0;
      if (message.id !== undefined) last = message.id;
      yield data as WatchedEvent;
    }
    // The stream closed without an end: reconnect and resume after the last event.
    if (options.signal?.aborted || ++failures > (options.reconnects ?? 5))
      throw new Error(`watching job ${id}: the stream kept closing`);
  }
}
