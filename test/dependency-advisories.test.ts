// Dependency advisories without an advisory service (issue 14 item 8): npm audit cannot reach one
// from the project's machines, so security/advisories.json lists the published advisories of the
// production dependencies, and this test checks every locked production package against them.
// A new advisory is added to the list by hand (docs/reliability.md says where it was looked up).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = join(dirname(fileURLToPath(import.meta.url)), '..');

interface Advisory {
  package: string;
  id: string;
  severity: string;
  summary: string;
  ranges: { introduced: string; fixed: string }[];
}

interface Lockfile {
  packages: Record<string, { version?: string; dev?: boolean; devOptional?: boolean }>;
}

/** Compares x.y.z versions numerically; a pre-release sorts before its release, as in semver. */
function compareVersions(a: string, b: string): number {
  const parse = (v: string): { nums: number[]; pre: string | undefined } => {
    const [core, pre] = v.split('-', 2) as [string, string | undefined];
    return { nums: core.split('.').map((n) => Number(n)), pre };
  };
  const x = parse(a);
  const y = parse(b);
  for (let i = 0; i < 3; i++) {
    const d = (x.nums[i] ?? 0) - (y.nums[i] ?? 0);
    if (d !== 0) return Math.sign(d);
  }
  if (x.pre === y.pre) return 0;
  if (x.pre === undefined) return 1;
  if (y.pre === undefined) return -1;
  return x.pre < y.pre ? -1 : 1;
}

const affected = (version: string, a: Advisory): boolean =>
  a.ranges.some((r) => compareVersions(version, r.introduced) >= 0 && compareVersions(version, r.fixed) < 0);

const list = JSON.parse(readFileSync(join(REPO_ROOT, 'security', 'advisories.json'), 'utf8')) as { advisories: Advisory[] };
const lock = JSON.parse(readFileSync(join(REPO_ROOT, 'package-lock.json'), 'utf8')) as Lockfile;

/** Every installed production package (name → versions), as package-lock.json resolves them. */
function productionPackages(): Map<string, Set<string>> {
  const out = new Map<string, Set<string>>();
  for (const [path, entry] of Object.entries(lock.packages)) {
    if (path === '' || entry.dev || entry.devOptional || entry.version === undefined) continue;
    const name = path.slice(path.lastIndexOf('node_modules/') + 'node_modules/'.length);
    let versions = out.get(name);
    if (versions === undefined) out.set(name, (versions = new Set()));
    versions.add(entry.version);
  }
  return out;
}

test('the version comparison orders releases and pre-releases like semver', () => {
  assert.equal(compareVersions('5.12.8', '5.12.2'), 1);
  assert.equal(compareVersions('5.9.0', '5.12.0'), -1);
  assert.equal(compareVersions('7.5.6', '7.5.6'), 0);
  assert.equal(compareVersions('8.0.0-rc.1', '8.0.0'), -1);
  assert.ok(affected('5.8.4', list.advisories.find((a) => a.id === 'CVE-2026-33806') as Advisory), 'the check does flag an affected version');
});

test('no locked production dependency is in the range of a listed advisory', () => {
  const packages = productionPackages();
  assert.ok(packages.has('fastify') && packages.has('onnxruntime-node'), 'the lockfile lists the production dependencies');
  const hits: string[] = [];
  for (const advisory of list.advisories) {
    for (const version of packages.get(advisory.package) ?? []) {
      if (affected(version, advisory)) hits.push(`${advisory.package}@${version}: ${advisory.id} (${advisory.severity}) ${advisory.summary}`);
    }
  }
  assert.deepEqual(hits, []);
});
