// What bench/methods.ts and bench/sft-reference.ts share: both run `rmserve train` and
// `rmserve eval` as child processes, one log per job, show each running job's step from its
// metrics file, and can keep a job whose folder holds the result of exactly the same command.
import { spawn, type ChildProcess } from 'node:child_process';
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The CLI as a user runs it from the repository root. */
export const CLI = ['--import', 'tsx', 'src/cli.ts'];

const children = new Set<ChildProcess>();
process.once('SIGINT', () => {
  for (const c of children) if (c.pid) process.kill(c.pid, 'SIGTERM');
  process.exit(130);
});

/** Runs `node src/cli.ts <args>` with stdout and stderr appended to `logPath`; rejects on a non-zero exit. */
export function runCli(args: string[], logPath: string): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const out = openSync(logPath, 'a');
    const child = spawn(process.execPath, [...CLI, ...args], { stdio: ['ignore', out, out] });
    children.add(child);
    child.on('error', reject);
    child.on('exit', (code) => {
      children.delete(child);
      closeSync(out);
      if (code === 0) resolvePromise();
      else reject(new Error(`${args[0]} exited with ${code}: see ${logPath}`));
    });
  });
}

export const readJson = <T>(path: string): T => JSON.parse(readFileSync(path, 'utf8')) as T;

/** The result a job left in `dir` if it was run with exactly `args` (an interrupted bench goes on), else undefined. */
export function reusedResult<T>(dir: string, args: readonly string[]): T | undefined {
  const resultPath = join(dir, 'bench-result.json');
  const commandPath = join(dir, 'bench-command.json');
  if (!existsSync(resultPath) || !existsSync(commandPath)) return undefined;
  return JSON.stringify(readJson<string[]>(commandPath)) === JSON.stringify(args) ? readJson<T>(resultPath) : undefined;
}

/** Records a finished job's result beside the command that produced it, for reusedResult. */
export function saveResult(dir: string, args: readonly string[], result: unknown): void {
  writeFileSync(join(dir, 'bench-result.json'), JSON.stringify(result, null, 1));
  writeFileSync(join(dir, 'bench-command.json'), JSON.stringify(args));
}

/** The last complete line of a growing JSONL file, read from its tail only. */
export function lastJsonLine(path: string): Record<string, unknown> | undefined {
  if (!existsSync(path)) return undefined;
  const size = statSync(path).size;
  const n = Math.min(size, 4096);
  const buf = Buffer.alloc(n);
  const fd = openSync(path, 'r');
  readSync(fd, buf, 0, n, size - n);
  closeSync(fd);
  const lines = buf.toString('utf8').split('\n').filter((l) => l.trim().startsWith('{'));
  for (const line of lines.reverse()) {
    try { return JSON.parse(line) as Record<string, unknown>; } catch { /* a partial line */ }
  }
  return undefined;
}

/** Seconds as m:ss. */
export const clock = (s: number): string => `${Math.floor(s / 60)}:${String(Math.round(s % 60)).padStart(2, '0')}`;
