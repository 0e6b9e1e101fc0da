// The README's option tables are generated from src/config/ (`npm run docs:options`): stale tables
// fail here, and so does a flag a command has that its table (and so the README) lacks.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Command } from 'commander';
import { evalCommand } from '../src/commands/eval.js';
import { reportCommand } from '../src/commands/report.js';
import { serveCommand } from '../src/commands/serve.js';
import { trainCommand } from '../src/commands/train.js';
import { COMMAND_TABLES, optionBlock, optionsMarkdown } from '../src/config/markdown.js';
import { REPO_ROOT } from './helpers/model-fixtures.js';

const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
const commands: Record<string, Command> = { serve: serveCommand(), train: trainCommand(), eval: evalCommand(), report: reportCommand() };

test('the README option tables are the ones generated from src/config (else: npm run docs:options)', () => {
  assert.deepEqual(Object.keys(COMMAND_TABLES).sort(), Object.keys(commands).sort(), 'every command has a table');
  for (const [name, table] of Object.entries(COMMAND_TABLES)) {
    assert.equal(optionBlock(readme, name), `\n${optionsMarkdown(table)}\n`, `README.md's ${name} table is stale: run npm run docs:options`);
  }
});

test('the README lists every flag of every command, with its environment variable', () => {
  for (const [name, command] of Object.entries(commands)) {
    const rows = optionBlock(readme, name).split('\n').filter((line) => line.startsWith('| `-'));
    assert.equal(rows.length, command.options.length, `${name}: one README row per flag`);
    for (const option of command.options) {
      const row = rows.find((line) => line.startsWith(`| \`${option.flags}\` |`));
      assert.ok(row, `${name}: README row for ${option.flags}`);
      if (option.envVar !== undefined) assert.ok(row.includes(`\`${option.envVar}\``), `${name}: README names ${option.envVar} for ${option.flags}`);
    }
  }
  // The ones the issue names, to be sure the rows are real ones.
  assert.match(optionBlock(readme, 'serve'), /\| `--max-queue <n>` \| `RMSERVE_MAX_QUEUE` \| `4096` \| `maxQueueItems` \|/);
  assert.match(optionBlock(readme, 'serve'), /\| `--max-item-chars <n>` \| `RMSERVE_MAX_ITEM_CHARS` \| 1048576/);
  assert.match(optionBlock(readme, 'train'), /\| `--max-length <n>` \| – \| `256` \| `maxLength` \|/);
});
