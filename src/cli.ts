#!/usr/bin/env node
// `rmserve <command>`: each command lives in src/commands/ and is registered here. Compiled to
// dist/cli.js, this file is the package's bin (tsc keeps the line above); from source it runs
// with `node --import tsx src/cli.ts` (`npm run rmserve --`).
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { serveCommand } from './commands/serve.js';
import { trainCommand } from './commands/train.js';
import { evalCommand } from './commands/eval.js';
import { reportCommand } from './commands/report.js';

// package.json is one folder up from src/cli.ts and from dist/cli.js alike.
const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string };

const program = new Command('rmserve')
  .description('reward-model server and trainer on ONNX Runtime')
  .version(version)
  .addCommand(serveCommand())
  .addCommand(trainCommand())
  .addCommand(evalCommand())
  .addCommand(reportCommand());

await program.parseAsync(process.argv);
