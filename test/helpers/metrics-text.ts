// Reads values out of Prometheus text exposition format (what GET /metrics returns).
/** Sums the samples of `name` whose labels include `labels`; `ifMissing` when there are none. */
export function metricValue(text: string, name: string, labels: Record<string, string> = {}, ifMissing?: number): number {
  let total = 0;
  let found = false;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const match = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (match === null || match[1] !== name) continue;
    const lineLabels = Object.fromEntries([...(match[2] ?? '').matchAll(/(\w+)="([^"]*)"/g)].map((m) => [m[1], m[2]]));
    if (Object.entries(labels).every(([k, v]) => lineLabels[k] === v)) {
      total += Number(match[3]);
      found = true;
    }
  }
  if (!found && ifMissing !== undefined) return ifMissing;
  if (!found) throw new Error(`metric ${name} ${JSON.stringify(labels)} not found`);
  return total;
}
