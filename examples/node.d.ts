// The little of Node this example uses. @types/node would clash with the Worker's runtime types,
// which the client's AppType (src/index.ts) brings into the program.
declare const process: {
  env: Record<string, string | undefined>;
  argv: string[];
  exit(code?: number): never;
};
