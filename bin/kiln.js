#!/usr/bin/env node
// `npx kiln …` without a build step: load tsx's ESM hooks, then run the TypeScript CLI.
import { register } from "tsx/esm/api";

register();
await import(new URL("../cli/cli.ts", import.meta.url).href);
