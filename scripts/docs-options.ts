// `npm run docs:options`: regenerate the option tables in README.md from the commands' tables in
// src/config/ (test/readme-options.test.ts fails until the README matches them).
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { withOptionTables } from '../src/config/markdown.js';

const path = join(fileURLToPath(new URL('..', import.meta.url)), 'README.md');
const before = readFileSync(path, 'utf8');
const after = withOptionTables(before);
if (after === before) {
  process.stdout.write('README.md option tables are up to date\n');
} else {
  writeFileSync(path, after);
  process.stdout.write('README.md option tables regenerated\n');
}
