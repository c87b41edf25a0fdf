/// <reference types="vite/client" />
import { describe, expect, it } from "vitest";

/**
 * The layers of src/ (docs/architecture.md) and who may import whom. Files directly in src/ are the
 * entry (the Worker, the router factory, the document, the typed client) and may import anything;
 * `import type` is free, since it leaves nothing behind at run time.
 */
const MAY_IMPORT: Record<string, string[]> = {
  middleware: ["middleware", "db", "domain", "schemas", "auth", "entry:app"],
  routes: ["routes", "middleware", "background", "db", "domain", "schemas", "auth", "entry:app"],
  background: ["background", "db", "domain", "schemas", "auth"],
  db: ["db", "domain", "schemas", "auth"],
  schemas: ["schemas", "domain", "auth"],
  auth: ["auth"],
  domain: ["domain"],
};

const sources = import.meta.glob<string>("../src/**/*.ts", {
  query: "?raw",
  import: "default",
  eager: true,
});

function layerOf(path: string): string {
  const parts = path.replace(/^\.\.\/src\//, "").split("/");
  return parts.length === 1
    ? `entry:${(parts[0] as string).replace(/\.ts$/, "")}`
    : (parts[0] as string);
}

function resolve(from: string, spec: string): string {
  const parts = from.split("/").slice(0, -1);
  for (const part of spec.split("/")) {
    if (part === "..") parts.pop();
    else if (part !== ".") parts.push(part);
  }
  return `${parts.join("/")}.ts`;
}

/** Every value import between files of src/: [importer, imported]. */
function imports(): [string, string][] {
  const edges: [string, string][] = [];
  for (const [path, text] of Object.entries(sources)) {
    for (const match of text.matchAll(
      /^(?:import|export)\s+(type\s+)?[^;]*?from\s+"(\.[^"]+)"/gms,
    )) {
      if (match[1]) continue;
      edges.push([path, resolve(path, match[2] as string)]);
    }
  }
  return edges;
}

describe("the layers of src/", () => {
  it("reads every source file", () => {
    expect(Object.keys(sources).length).toBeGreaterThan(30);
    expect(Object.keys(sources)).toContain("../src/middleware/errors.ts");
  });

  it("import only the layers below them (docs/architecture.md)", () => {
    const wrong: string[] = [];
    const edges = imports();
    expect(edges.length).toBeGreaterThan(100);
    for (const [from, to] of edges) {
      const layer = layerOf(from);
      if (layer.startsWith("entry:")) continue;
      const allowed = MAY_IMPORT[layer];
      const target = layerOf(to);
      if (!allowed?.includes(target)) wrong.push(`${from} (${layer}) imports ${to} (${target})`);
    }
    expect(wrong).toEqual([]);
  });

  it("would notice a wrong import", () => {
    const layer = layerOf("../src/db/jobs.ts");
    expect(MAY_IMPORT[layer]).not.toContain(layerOf("../src/routes/jobs.ts"));
    expect(resolve("../src/db/jobs.ts", "../middleware/errors")).toBe(
      "../src/middleware/errors.ts",
    );
  });
});
