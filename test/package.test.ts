// The published package as a user gets it: `npm pack` output (built by its prepack script)
// installed into an empty folder, so there are no sources, no tsx and no dev dependencies, and
// its `rmserve` bin (dist/cli.js) run through npx: --help, a bad flag, and `rmserve serve`
// becoming ready and scoring 20 items (so the tokenizer worker loads from dist/ as well) with the
// same rewards as the sources give in process.
//
// The install is `npm ci --prefer-offline` from a lockfile derived from this repository's (its
// non-dev entries, each with its registry address and integrity): the versions tested here, out
// of the npm cache that the repository's own install filled, in about 10 s. A plain
// `npm install <tarball>` needs every dependency's registry metadata, which `npm ci` never caches.
// ONNXRUNTIME_NODE_INSTALL=skip: the CPU binaries are in onnxruntime-node's package; the CUDA
// ones would be downloaded from outside the npm registry.
//
// RMSERVE_PACKAGE_NODE=/path/to/node runs the installed CLI with that Node instead of this one
// (.ci/run does, with Node 22 from the npm registry, the version package.json's engines names).
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import { promisify } from 'node:util';
import { createService } from '../src/service.js';
import { REPO_ROOT, writeBowModel } from './helpers/model-fixtures.js';

const run = promisify(execFile);
const dir = mkdtempSync(join(tmpdir(), 'rmserve-package-'));
const app = join(dir, 'app');
const models = join(dir, 'models');
const node = process.env.RMSERVE_PACKAGE_NODE ?? process.execPath;
// npx and the bin's `#!/usr/bin/env node` find this Node first.
const env = { ...process.env, PATH: `${dirname(node)}${delimiter}${process.env.PATH ?? ''}`, ONNXRUNTIME_NODE_INSTALL: 'skip' };

interface LockEntry {
  version?: string;
  name?: string;
  resolved?: string;
  link?: boolean;
  dev?: boolean;
  devOptional?: boolean;
  [field: string]: unknown;
}

/** A lockfile for a project that depends on the tarball alone: rmserve's non-dev packages, hoisted as in the repository. */
function lockFor(tarball: string): object {
  const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, LockEntry> };
  const root = lock.packages[''] as LockEntry;
  const packages: Record<string, LockEntry> = {
    '': { name: 'app', dependencies: { rmserve: `file:${tarball}` } },
    'node_modules/rmserve': {
      version: root.version, resolved: `file:${tarball}`, license: root.license, dependencies: root.dependencies, bin: root.bin, engines: root.engines,
    },
  };
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === '' || entry.dev === true || entry.link === true) continue;
    const { devOptional: _devOptional, ...kept } = entry;
    // npm leaves `resolved` out for registry packages; without it an offline install has to ask the registry where the tarball is.
    const name = entry.name ?? path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
    packages[path] = { ...kept, resolved: entry.resolved ?? `https://registry.npmjs.org/${name}/-/${name.split('/').pop()}-${entry.version}.tgz` };
  }
  return { name: 'app', lockfileVersion: 3, requires: true, packages };
}

before(async () => {
  const packed = await run('npm', ['pack', '--json', '--pack-destination', dir], { cwd: REPO_ROOT, env, maxBuffer: 64 << 20 });
  // prepack's own output (the build) comes before the JSON.
  const files = JSON.parse(packed.stdout.slice(packed.stdout.indexOf('['))) as { filename: string; files: { path: string }[] }[];
  const tarball = join(dir, files[0]!.filename);
  const shipped = files[0]!.files.map((f) => f.path);
  assert.ok(shipped.includes('dist/cli.js') && shipped.includes('dist/index.d.ts') && shipped.includes('dist/scoring/tokenize-worker-entry.mjs'), shipped.join(' '));
  assert.ok(!shipped.some((p) => p.startsWith('src/') || p.startsWith('test/')), 'no sources or tests in the package');

  mkdirSync(app);
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'app', private: true, dependencies: { rmserve: `file:${tarball}` } }));
  writeFileSync(join(app, 'package-lock.json'), JSON.stringify(lockFor(tarball)));
  await run('npm', ['ci', '--prefer-offline', '--no-audit', '--no-fund'], { cwd: app, env, maxBuffer: 64 << 20 });
  writeBowModel(join(models, 'rm', '1'), { tokenizer: 'gpt2', seed: 3 });
});
after(() => rmSync(dir, { recursive: true, force: true }));

test('npx rmserve --help and --version from the installed package, without tsx', async (t) => {
  const { stdout: nodeVersion } = await run('node', ['--version'], { cwd: app, env });
  t.diagnostic(`the package runs on Node ${nodeVersion.trim()}`);
  assert.equal(nodeVersion.trim(), (await run(node, ['--version'])).stdout.trim());
  const help = await run('npx', ['--offline', 'rmserve', '--help'], { cwd: app, env });
  for (const command of ['serve', 'train', 'eval', 'report']) assert.match(help.stdout, new RegExp(`\\b${command}\\b`));
  const version = await run('npx', ['--offline', 'rmserve', '--version'], { cwd: app, env });
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { version: string };
  assert.equal(version.stdout.trim(), pkg.version);
  assert.equal(existsSync(join(app, 'node_modules', 'tsx')), false, 'tsx is a dev dependency, not installed with the package');
});

test('a bad flag is one line and exit 1', async () => {
  await assert.rejects(run('npx', ['--offline', 'rmserve', 'serve', '--max-queue', '-1'], { cwd: app, env }), (err: { code?: number; stderr?: string }) => {
    assert.equal(err.code, 1);
    assert.equal(err.stderr?.trim(), `error: option '--max-queue <n>' argument '-1' is invalid. expected a non-negative integer, got "-1"`);
    return true;
  });
});

test('rmserve serve from the package scores items as the sources do', async () => {
  // The command times batch sizes at load and opens `--instances auto`; createService does neither.
  // A calibrated limit below 20 rows splits the request into shares for the instances, whose other
  // padding moves rewards in the last float32 digit (seen once in CI). Here both batch by the same
  // limits on one session, so the same code must give the same bits.
  const serve = ['serve', '--models', models, '--port', '0', '--no-watch', '--no-calibrate-batching', '--instances', '1'];
  const child: ChildProcess = spawn(join(app, 'node_modules', '.bin', 'rmserve'), serve, {
    cwd: app, env, stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  child.stdout!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (output += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const service = await createService({ modelsRoot: models, watch: false });
  try {
    let origin: string | undefined;
    for (let i = 0; i < 600 && origin === undefined && child.exitCode === null; i++) {
      origin = /Server listening at (http:\/\/127\.0\.0\.1:\d+)/.exec(output)?.[1];
      if (origin === undefined) await new Promise((resolve) => setTimeout(resolve, 50));
    }
    assert.ok(origin !== undefined, `server did not start:\n${output}`);
    const ready = await fetch(`${origin}/ready`);
    assert.equal(ready.status, 200, await ready.text());

    const items = Array.from({ length: 20 }, (_, i) => ({ prompt: `question ${i}`, response: `answer number ${i}` }));
    const res = await fetch(`${origin}/v1/score`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ items }) });
    const body = await res.text();
    assert.equal(res.status, 200, body);
    const packaged = (JSON.parse(body) as { results: { reward: number }[] }).results.map((r) => r.reward);
    const local = await service.app.inject({ method: 'POST', url: '/v1/score', payload: { items } });
    const source = local.json<{ results: { reward: number }[] }>().results.map((r) => r.reward);
    assert.equal(packaged.length, 20);
    assert.ok(packaged.every(Number.isFinite));
    assert.deepEqual(packaged, source);

    child.kill('SIGTERM');
    assert.equal(await exited, 0, output);
  } finally {
    child.kill('SIGKILL');
    await service.close();
  }
});
