// deploy/grafana/rmserve-dashboard.json: picks its Prometheus through a datasource variable, has
// the panels an operator looks for first (error ratio, 429s, readiness, memory), and every query
// names only metrics that a running server's /metrics exposes (a renamed metric breaks this test,
// not a dashboard nobody looks at until an incident).
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { createService, type Service } from '../src/service.js';
import { REPO_ROOT, tempModelsRoot, writeBowModel } from './helpers/model-fixtures.js';

interface Target {
  expr: string;
  datasource?: { type: string; uid: string };
}
interface Panel {
  title: string;
  type: string;
  datasource?: { type: string; uid: string };
  targets?: Target[];
}
interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
  datasource?: { type: string; uid: string };
}
interface Dashboard {
  templating: { list: Variable[] };
  panels: Panel[];
}

const dashboard = JSON.parse(readFileSync(join(REPO_ROOT, 'deploy', 'grafana', 'rmserve-dashboard.json'), 'utf8')) as Dashboard;
const DATASOURCE = { type: 'prometheus', uid: '${datasource}' };

// PromQL words that look like metric names but are not.
const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'and', 'or', 'unless', 'offset', 'inf', 'nan']);

/** The metric names a PromQL expression (or a Grafana label_values() query) selects. */
function metricNames(expr: string): string[] {
  const labelValues = /^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*,/.exec(expr.trim());
  if (labelValues) return [labelValues[1] as string];
  const stripped = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""')
    .replace(/\{[^}]*\}/g, '')
    .replace(/\[[^\]]*\]/g, '')
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, '');
  const names: string[] = [];
  for (const match of stripped.matchAll(/(?<![\w.$])[a-zA-Z_:][a-zA-Z0-9_:]*/g)) {
    const rest = stripped.slice((match.index ?? 0) + match[0].length);
    // A function or an aggregation, not a selector.
    if (/^\s*\(/.test(rest) || KEYWORDS.has(match[0].toLowerCase())) continue;
    names.push(match[0]);
  }
  return names;
}

const queries = (): { where: string; expr: string }[] => [
  ...dashboard.panels.flatMap((p) => (p.targets ?? []).map((t) => ({ where: `panel "${p.title}"`, expr: t.expr }))),
  ...dashboard.templating.list
    .filter((v) => v.type === 'query')
    .map((v) => ({ where: `variable $${v.name}`, expr: typeof v.query === 'string' ? v.query : v.query.query })),
];

describe('Grafana dashboard', () => {
  const root = tempModelsRoot();
  let service: Service;
  before(async () => {
    writeBowModel(join(root, 'rm', '1'), { tokenizer: 'gpt2' });
    service = await createService({ modelsRoot: root });
  });
  after(() => service.close());

  test('the Prometheus datasource is a variable that every panel and query uses', () => {
    const variable = dashboard.templating.list.find((v) => v.type === 'datasource');
    assert.ok(variable !== undefined, 'a datasource variable');
    assert.equal(variable.name, 'datasource');
    assert.equal(variable.query, 'prometheus');
    for (const panel of dashboard.panels) {
      assert.deepEqual(panel.datasource, DATASOURCE, panel.title);
      for (const target of panel.targets ?? []) assert.deepEqual(target.datasource, DATASOURCE, panel.title);
    }
    for (const v of dashboard.templating.list.filter((v) => v.type === 'query')) assert.deepEqual(v.datasource, DATASOURCE, v.name);
  });

  test('it has panels for error ratio, 429s, readiness and memory', () => {
    const titles = dashboard.panels.map((p) => p.title);
    for (const wanted of [/error ratio/i, /429/, /ready|readiness/i, /memory/i]) {
      assert.ok(titles.some((t) => wanted.test(t)), `a panel matching ${wanted}: ${titles.join(' | ')}`);
    }
  });

  test('every query names only metrics /metrics exposes', async () => {
    const text = (await service.app.inject({ method: 'GET', url: '/metrics' })).body;
    const exposed = new Set<string>();
    for (const [, name, type] of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
      exposed.add(name as string);
      if (type === 'histogram') for (const suffix of ['_bucket', '_sum', '_count']) exposed.add(`${name}${suffix}`);
      if (type === 'summary') for (const suffix of ['_sum', '_count']) exposed.add(`${name}${suffix}`);
    }
    const all = queries();
    assert.ok(all.length > 10, `${all.length} queries`);
    for (const { where, expr } of all) {
      const names = metricNames(expr);
      assert.ok(names.length > 0, `${where}: no metric in ${expr}`);
      for (const name of names) assert.ok(exposed.has(name), `${where}: ${name} is not exposed (${expr})`);
    }
  });

  test('metricNames reads selectors, not functions, labels or keywords', () => {
    assert.deepEqual(
      metricNames('histogram_quantile(0.99, sum by (le, model) (rate(rmserve_queue_wait_seconds_bucket{model=~"$model"}[$__rate_interval])))'),
      ['rmserve_queue_wait_seconds_bucket'],
    );
    assert.deepEqual(metricNames('sum(rate(a_total{status=~"5.."}[5m])) / sum(rate(b_total[5m])) > bool 0.5'), ['a_total', 'b_total']);
    assert.deepEqual(metricNames('rmserve_model_info == 1'), ['rmserve_model_info']);
    assert.deepEqual(metricNames('label_values(rmserve_model_info, model)'), ['rmserve_model_info']);
  });
});
