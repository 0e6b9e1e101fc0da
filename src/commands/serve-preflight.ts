// What `rmserve serve` checks before any model loads. Loading a large model takes minutes; a busy
// port found only at listen() after that (as before) wastes them and crash-loops a pod, and a
// models root that does not exist served nothing and stayed not-ready without a word. Each
// problem is one line naming the option that sets the value, and the command exits 1.
//
// The port is checked by binding it and letting it go again, then the models load, then the real
// listen: a process that takes the port in between is still reported in one line (listenProblem),
// only later. The alternative, listening first and answering 503 until the models are ready (as
// TEI does), needs the HTTP app before the registry exists, which createService does not offer;
// /ready already tells a load balancer when to send traffic, so little would be gained.
import { createServer } from 'node:net';
import { join } from 'node:path';
import { statSync } from 'node:fs';
import { isDirectory, listDir, listVersions } from '../model/versions.js';

/** A problem that stops the command: printed as one line, exit status 1. */
export class StartupError extends Error {}

/** One line for an error of listen(): what is wrong and which option sets it. */
export function listenProblem(err: NodeJS.ErrnoException, host: string, port: number): string {
  switch (err.code) {
    case 'EADDRINUSE':
      return `port ${port} on ${host} is already in use (--port, PORT)`;
    case 'EACCES':
      return `no permission to listen on port ${port} (ports below 1024 need privileges; --port, PORT)`;
    case 'EADDRNOTAVAIL':
      return `${host} is not an address of this machine (--host, HOST)`;
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return `cannot resolve host ${host} (--host, HOST)`;
    default:
      return `cannot listen on ${host}:${port}: ${err.message}`;
  }
}

/** Resolves once `host:port` could be bound (and is free again); rejects with a StartupError otherwise. */
export function checkListen(host: string, port: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const probe = createServer();
    probe.once('error', (err: NodeJS.ErrnoException) => reject(new StartupError(listenProblem(err, host, port))));
    probe.listen({ host, port, exclusive: true }, () => probe.close(() => resolve()));
  });
}

/**
 * Checks the models root. Missing, or not a folder: a StartupError. No model with a complete
 * version: with the watch on, a warning (returned) that /ready stays 503 until one is written;
 * with --no-watch, a StartupError, since nothing could ever load.
 */
export function checkModelsRoot(root: string, watch: boolean): string[] {
  let isFolder: boolean;
  try {
    isFolder = statSync(root).isDirectory();
  } catch {
    throw new StartupError(`models root ${root} does not exist (--models, RMSERVE_MODELS)`);
  }
  if (!isFolder) throw new StartupError(`models root ${root} is not a folder (--models, RMSERVE_MODELS)`);
  const names = listDir(root).filter((entry) => !entry.startsWith('.') && isDirectory(join(root, entry)));
  if (names.some((name) => listVersions(root, join(root, name)).length > 0)) return [];
  const what = names.length === 0
    ? `models root ${root} holds no model folders`
    : `no model under ${root} has a complete version (model.onnx with rmserve.json or READY)`;
  if (!watch) throw new StartupError(`${what}, and with --no-watch none would ever load (--models, RMSERVE_MODELS)`);
  return [`${what} yet: /ready answers 503 until one is written there (the watch loads it)`];
}
