// npm install: a fresh clone gets .dev.vars (local secrets for wrangler dev) from .dev.vars.example,
// so `npm run dev` signs webhooks at once; an existing .dev.vars is never touched.
import { copyFileSync, existsSync } from "node:fs";

const target = new URL("../.dev.vars", import.meta.url);
if (!existsSync(target)) copyFileSync(new URL("../.dev.vars.example", import.meta.url), target);
