// rmserve's own version, read from its package.json, for rmserve_build_info and the OpenAPI
// document. Found by walking up from this module rather than a fixed relative path, so it holds
// whether the code runs from src/ through tsx or from compiled output in another folder.
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

function readPackageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const file = join(dir, 'package.json');
    if (existsSync(file)) {
      const pkg = JSON.parse(readFileSync(file, 'utf8')) as { name?: unknown; version?: unknown };
      if (pkg.name === 'rmserve' && typeof pkg.version === 'string') return pkg.version;
    }
    const parent = dirname(dir);
    // No rmserve package.json above this module (copied out of its package): say so, not a guess.
    if (parent === dir) return 'unknown';
    dir = parent;
  }
}

export const RMSERVE_VERSION = readPackageVersion();
