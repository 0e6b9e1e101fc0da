// The images and the Kubernetes manifests, checked without Docker or a cluster (neither runs
// here):
//   - Dockerfile and Dockerfile.cuda pass dockerfile-utils' linter (the validator behind VS
//     Code's Docker support: instruction syntax, flags, durations, ports, stage names) with every
//     warning counted, and keep what the deployment relies on: pinned base images on Node 22
//     (package.json's engines), a build stage that compiles with tsc, `node dist/cli.js serve`, a
//     numeric non-root USER, a HEALTHCHECK, CUDA 12 + cuDNN 9 and onnxruntime-node's CUDA
//     binaries in the GPU image, and .dockerignore letting through every path they copy;
//   - every document in deploy/k8s validates against the Kubernetes API schemas (kubernetes-models'
//     compiled JSON-schema validators), and no field is one the schema does not know (a typo such
//     as `readinesProbe` is otherwise silently ignored by the API server's lenient decoding);
//   - the manifests keep what docs/operations.md promises: probes, the preStop drain within the
//     grace period, the security context, the HPA and PDB pointing at the Deployment, the GPU
//     request, pinned image tags of this package's version, and only environment variables that
//     rmserve serve reads.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { Copy, DockerfileParser, type Instruction } from 'dockerfile-ast';
import { validate as lintDockerfile, ValidationSeverity } from 'dockerfile-utils';
import { parseAllDocuments } from 'yaml';
import { optionEntries } from '../src/config/options.js';
import { SERVE_OPTIONS } from '../src/config/serve.js';
import { REPO_ROOT } from './helpers/model-fixtures.js';

const read = (path: string): string => readFileSync(join(REPO_ROOT, path), 'utf8');
const pkg = JSON.parse(read('package.json')) as { version: string; engines: { node: string }; scripts: Record<string, string> };

// ---- Dockerfiles

interface Stage {
  name: string | null;
  /** the base image with the global ARG defaults filled in */
  image: string;
  instructions: Instruction[];
}

function stagesOf(content: string): Stage[] {
  const dockerfile = DockerfileParser.parse(content);
  const defaults = new Map<string, string>();
  for (const arg of dockerfile.getInitialARGs()) {
    const [name, value] = (arg.getArgumentsContent() ?? '').split('=');
    if (name !== undefined && value !== undefined) defaults.set(name, value);
  }
  const stages: Stage[] = [];
  for (const instruction of dockerfile.getInstructions()) {
    if (instruction.getKeyword() === 'FROM') {
      const [image = '', , name = null] = (instruction.getArgumentsContent() ?? '').split(/\s+/);
      stages.push({ name, image: image.replace(/\$\{(\w+)\}/g, (_, v: string) => defaults.get(v) ?? `\${${v}}`), instructions: [] });
    } else {
      stages.at(-1)?.instructions.push(instruction);
    }
  }
  return stages;
}

/** An instruction's text after its keyword, flags included, continuation lines joined. */
const args = (i: Instruction): string =>
  i.getTextContent().replace(/\\\r?\n/g, ' ').replace(/\s+/g, ' ').trim().slice(i.getKeyword().length).trim();
const all = (stage: Stage, keyword: string): Instruction[] => stage.instructions.filter((i) => i.getKeyword() === keyword);

/** Every rule of the linter at error level: a warning (two HEALTHCHECKs, a relative WORKDIR …) fails too. */
const STRICT = {
  deprecatedMaintainer: ValidationSeverity.ERROR, directiveCasing: ValidationSeverity.ERROR, emptyContinuationLine: ValidationSeverity.ERROR,
  instructionCasing: ValidationSeverity.ERROR, instructionCmdMultiple: ValidationSeverity.ERROR, instructionEntrypointMultiple: ValidationSeverity.ERROR,
  instructionHealthcheckMultiple: ValidationSeverity.ERROR, instructionJSONInSingleQuotes: ValidationSeverity.ERROR,
  instructionWorkdirRelative: ValidationSeverity.ERROR,
};

/** Paths .dockerignore lets into the build context (it excludes everything, then lists these). */
function contextPaths(): string[] {
  const lines = read('.dockerignore').split('\n').map((l) => l.trim()).filter((l) => l !== '' && !l.startsWith('#'));
  assert.equal(lines[0], '*', '.dockerignore starts by excluding everything');
  return lines.slice(1).map((l) => {
    assert.ok(l.startsWith('!'), `.dockerignore: ${l} should be an exception`);
    return l.slice(1).replace(/\/$/, '');
  });
}

describe('Dockerfiles', () => {
  for (const file of ['Dockerfile', 'Dockerfile.cuda']) {
    const content = read(file);
    const stages = stagesOf(content);
    const final = stages.at(-1)!;

    test(`${file}: dockerfile-utils finds nothing, warnings included`, () => {
      const problems = lintDockerfile(content, STRICT).map((d) => `line ${d.range.start.line + 1}: ${d.message}`);
      assert.deepEqual(problems, []);
    });

    test(`${file}: pinned bases, Node 22, compiled in a build stage`, () => {
      for (const stage of stages) {
        if (stages.some((s) => s.name === stage.image)) continue; // FROM an earlier stage
        assert.match(stage.image, /^[\w./-]+:\d+\.\d+\.\d+[\w.-]*$/, `${stage.image}: a base image pinned to a release (major.minor.patch), never latest`);
      }
      const node = stages.map((s) => /^node:(\d+)\./.exec(s.image)?.[1]).find((v) => v !== undefined);
      assert.equal(node, '22', 'Node 22');
      assert.equal(pkg.engines.node, '>=22.12', 'engines says the Node the images run');
      const build = stages.find((s) => all(s, 'RUN').some((r) => args(r) === 'npm run build'));
      assert.ok(build, 'a stage runs npm run build');
      assert.match(pkg.scripts.build ?? '', /tsc -p tsconfig\.build\.json/);
    });

    test(`${file}: runs node dist/cli.js serve as a numeric non-root user, with a HEALTHCHECK`, () => {
      assert.deepEqual(all(final, 'CMD').map(args), ['["node", "dist/cli.js", "serve"]']);
      const users = all(final, 'USER').map(args);
      assert.equal(users.length, 1);
      assert.match(users[0]!, /^[1-9]\d*:[1-9]\d*$/, 'USER uid:gid, numeric (runAsNonRoot can verify it) and not 0');
      const health = all(final, 'HEALTHCHECK').map(args);
      assert.equal(health.length, 1);
      assert.match(health[0]!, /--start-period=\d+s/);
      assert.match(health[0]!, /\/ready/);
      assert.ok(all(final, 'COPY').some((c) => /--from=\S+ \/src\/dist \.\/dist/.test(args(c))), 'dist/ from the build stage');
      assert.equal(all(final, 'ENV').some((e) => /RMSERVE_MODELS=/.test(args(e))), true);
    });

    test(`${file}: everything it copies is in the build context`, () => {
      const allowed = contextPaths();
      for (const stage of stages) {
        for (const copy of stage.instructions.filter((i): i is Copy => i instanceof Copy)) {
          if (copy.getFlags().some((f) => f.getName() === 'from')) continue;
          const sources = copy.getArguments().map((a) => a.getValue()).slice(0, -1);
          for (const source of sources) {
            assert.ok(allowed.includes(source.replace(/\/$/, '')), `${file}: COPY ${source} is excluded by .dockerignore`);
            assert.ok(existsSync(join(REPO_ROOT, source)), `${file}: COPY ${source} does not exist`);
          }
        }
      }
    });
  }

  test('Dockerfile.cuda: CUDA 12 + cuDNN 9 runtime, onnxruntime-node CUDA binaries, device cuda', () => {
    const stages = stagesOf(read('Dockerfile.cuda'));
    const final = stages.at(-1)!;
    assert.match(final.image, /^nvidia\/cuda:12\.\d+\.\d+-cudnn-runtime-ubuntu\d+\.\d+$/);
    assert.ok(all(final, 'COPY').some((c) => args(c) === '--from=node /usr/local/bin/node /usr/local/bin/node'), 'Node from the pinned official image');
    const runs = stages.flatMap((s) => all(s, 'RUN').map(args)).join('\n');
    assert.match(runs, /ONNXRUNTIME_NODE_INSTALL=cuda12 node node_modules\/onnxruntime-node\/script\/install\.js/);
    assert.match(runs, /test -f node_modules\/onnxruntime-node\/bin\/napi-v6\/linux\/x64\/libonnxruntime_providers_cuda\.so/);
    assert.match(runs, /useradd --uid 10001/);
    assert.ok(all(final, 'ENV').some((e) => /RMSERVE_DEVICE=cuda/.test(args(e))));
  });
});

// ---- Kubernetes

type Json = null | boolean | number | string | Json[] | { [key: string]: Json };
type JsonObject = { [key: string]: Json };
interface SchemaValidator {
  (data: unknown): boolean;
  errors?: { instancePath: string; message?: string }[] | null;
}

/** The compiled validator of a kind (kubernetes-models/_schemas/IoK8sApi<Group><Version><Kind>). */
async function validatorFor(apiVersion: string, kind: string): Promise<SchemaValidator> {
  const [group, version] = apiVersion.includes('/') ? apiVersion.split('/') as [string, string] : ['core', apiVersion];
  const cap = (s: string): string => s.charAt(0).toUpperCase() + s.slice(1);
  const module = (await import(`kubernetes-models/_schemas/IoK8sApi${cap(group.split('.')[0]!)}${cap(version)}${kind}`)) as { validate: SchemaValidator };
  return module.validate;
}

const isObject = (v: Json | undefined): v is JsonObject => typeof v === 'object' && v !== null && !Array.isArray(v);

/**
 * Fields the schema does not know. The compiled validators check only the properties they know,
 * so a key is known when putting a value of the wrong shape under it ([] where an object or a
 * scalar goes, {} where a list goes) is reported at that key, and unknown when both pass.
 */
function unknownFields(validate: SchemaValidator, doc: JsonObject): string[] {
  const unknown: string[] = [];
  const visit = (node: Json, path: string[]): void => {
    if (Array.isArray(node)) node.forEach((item, i) => visit(item, [...path, String(i)]));
    if (!isObject(node)) return;
    for (const key of Object.keys(node)) {
      const original = node[key]!;
      // A JSON pointer, as ajv reports it: `/` in a key (app.kubernetes.io/name) is written ~1.
      const at = `/${[...path, key].map((k) => k.replace(/~/g, '~0').replace(/\//g, '~1')).join('/')}`;
      const known = ([[], {}] as Json[]).some((probe) => {
        node[key] = probe;
        const valid = validate(doc);
        return !valid && (validate.errors ?? []).some((e) => e.instancePath === at || e.instancePath.startsWith(`${at}/`));
      });
      node[key] = original;
      if (!known) unknown.push(at);
      else visit(original, [...path, key]);
    }
  };
  visit(doc, []);
  return unknown;
}

function documents(file: string): JsonObject[] {
  return parseAllDocuments(read(file)).map((d) => {
    assert.deepEqual(d.errors.map(String), [], `${file}: YAML errors`);
    const value = d.toJS() as Json;
    assert.ok(isObject(value), `${file}: every document is an object`);
    return value;
  });
}

const get = (doc: Json | undefined, path: string): Json | undefined =>
  path.split('.').reduce<Json | undefined>((node, key) => (Array.isArray(node) ? node[Number(key)] : isObject(node) ? node[key] : undefined), doc);

const SERVE_ENV = new Set(optionEntries(SERVE_OPTIONS).flatMap(({ spec }) => (spec.env === undefined ? [] : [spec.env])));

describe('Kubernetes manifests', () => {
  for (const [file, variant] of [['deploy/k8s/rmserve.yaml', 'cpu'], ['deploy/k8s/rmserve-gpu.yaml', 'gpu']] as const) {
    const docs = documents(file);
    const byKind = (kind: string): JsonObject => {
      const found = docs.filter((d) => d.kind === kind);
      assert.equal(found.length, 1, `${file}: one ${kind}`);
      return found[0]!;
    };

    test(`${file}: valid against the Kubernetes schemas, no unknown fields`, async () => {
      assert.deepEqual(docs.map((d) => d.kind).sort(), ['Deployment', 'HorizontalPodAutoscaler', 'PodDisruptionBudget', 'Service']);
      for (const doc of docs) {
        const validate = await validatorFor(String(doc.apiVersion), String(doc.kind));
        assert.ok(validate(doc), `${file} ${doc.kind}: ${JSON.stringify(validate.errors)}`);
        assert.deepEqual(unknownFields(validate, structuredClone(doc)), [], `${file} ${doc.kind}: fields the schema does not have`);
      }
    });

    test(`${file}: probes, drain, security context, pinned image, known env vars`, () => {
      const deployment = byKind('Deployment');
      const pod = get(deployment, 'spec.template.spec') as JsonObject;
      const container = get(pod, 'containers.0') as JsonObject;
      assert.equal(get(container, 'startupProbe.httpGet.path'), '/health');
      assert.ok(Number(get(container, 'startupProbe.periodSeconds')) * Number(get(container, 'startupProbe.failureThreshold')) >= 300, 'at least 5 minutes to load models');
      assert.equal(get(container, 'readinessProbe.httpGet.path'), '/ready');
      assert.equal(get(container, 'livenessProbe.httpGet.path'), '/health');
      const ports = (get(container, 'ports') as JsonObject[]).map((p) => p.name);
      for (const probe of ['startupProbe', 'readinessProbe', 'livenessProbe']) assert.ok(ports.includes(get(container, `${probe}.httpGet.port`) as string));

      const [sleep, seconds] = get(container, 'lifecycle.preStop.exec.command') as string[];
      assert.equal(sleep, 'sleep');
      const env = new Map((get(container, 'env') as JsonObject[]).map((e) => [String(e.name), String(e.value)]));
      const drain = Number(env.get('RMSERVE_SHUTDOWN_TIMEOUT_MS') ?? 25_000) / 1000;
      assert.ok(Number(get(pod, 'terminationGracePeriodSeconds')) > Number(seconds) + drain, 'grace period > preStop + shutdown timeout');
      for (const name of env.keys()) {
        if (name.startsWith('RMSERVE_')) assert.ok(SERVE_ENV.has(name), `${name} is not an environment variable of rmserve serve`);
      }

      assert.equal(get(pod, 'securityContext.runAsNonRoot'), true);
      const uid = variant === 'gpu' ? 10001 : 1000; // the images' USER
      assert.equal(get(pod, 'securityContext.runAsUser'), uid);
      assert.equal(get(pod, 'automountServiceAccountToken'), false);
      assert.equal(get(container, 'securityContext.readOnlyRootFilesystem'), true);
      assert.equal(get(container, 'securityContext.allowPrivilegeEscalation'), false);
      assert.deepEqual(get(container, 'securityContext.capabilities.drop'), ['ALL']);
      assert.equal(get(container, 'image'), `rmserve:${pkg.version}-${variant === 'gpu' ? 'cuda12' : 'cpu'}`, 'image pinned to this release');
      assert.ok(get(container, 'resources.requests.cpu') !== undefined, 'a CPU request (the HPA needs one)');
      if (variant === 'gpu') {
        assert.equal((get(container, 'resources.limits') as JsonObject)['nvidia.com/gpu'], '1');
        assert.equal(env.get('RMSERVE_DEVICE'), 'cuda');
      }
    });

    test(`${file}: Service, HPA and PDB select the Deployment`, () => {
      const deployment = byKind('Deployment');
      const labels = get(deployment, 'spec.template.metadata.labels') as JsonObject;
      const matches = (selector: Json | undefined): boolean => isObject(selector) && Object.entries(selector).every(([k, v]) => labels[k] === v);
      assert.ok(matches(get(deployment, 'spec.selector.matchLabels')));
      assert.ok(matches(get(byKind('Service'), 'spec.selector')));
      assert.ok(matches(get(byKind('PodDisruptionBudget'), 'spec.selector.matchLabels')));
      const hpa = byKind('HorizontalPodAutoscaler');
      assert.deepEqual(get(hpa, 'spec.scaleTargetRef'), { apiVersion: 'apps/v1', kind: 'Deployment', name: get(deployment, 'metadata.name') as string });
      const metric = get(hpa, 'spec.metrics.0') as JsonObject;
      if (variant === 'cpu') {
        assert.equal(get(metric, 'resource.name'), 'cpu');
      } else {
        const name = String(get(metric, 'pods.metric.name'));
        assert.equal(name, 'rmserve_queue_depth');
        assert.match(read('src/metrics.ts'), new RegExp(`name: '${name}'`), 'a metric /metrics exposes');
      }
    });
  }
});
