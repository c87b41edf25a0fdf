import { describe, expect, it } from "vitest";
import { JobAcceptedSchema, JobSchema } from "../src/schemas/job";
import { call, parse } from "./helpers";

describe("POST /job", () => {
  it("stores the job and answers 201 with its id, status, revision and Location", async () => {
    const response = await call("POST", "/job", {
      body: { operation: { type: "node.hostname.get", data: {} } },
    });
    expect(response.status).toBe(201);
    const accepted = await parse(response, JobAcceptedSchema);
    expect(accepted.status).toBe("unprocessed");
    expect(response.headers.get("Location")).toBe(`/job/${accepted.job_id}`);
    const job = await parse(await call("GET", `/job/${accepted.job_id}`), JobSchema);
    expect(job.target_hostname).toBe("_any");
    expect(job.revision).toBe(accepted.revision);
  });
});
