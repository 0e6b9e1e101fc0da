// Worker entry for TokenizerPool (a .mjs, so a worker can start it however the main thread was
// started). Two layouts:
//   - compiled (dist/, the images and the npm package): tsc puts tokenize-worker.js beside this
//     file, and it is imported as it is; tsx is a dev dependency and is not installed there;
//   - source (src/, `node --import tsx`, the tests): there is no .js beside it, so the worker
//     registers tsx's loader itself and imports the TypeScript.
import { existsSync } from 'node:fs';

/** @returns {Promise<typeof import('./tokenize-worker.js')>} */
async function load() {
  const compiled = new URL('./tokenize-worker.js', import.meta.url);
  if (existsSync(compiled)) return import(compiled.href);
  const { register } = await import('tsx/esm/api');
  register();
  // A variable, so tsc (allowJs in tsconfig.build.json) neither resolves nor rewrites the path.
  const source = './tokenize-worker.ts';
  return import(source);
}

const { default: tokenize } = await load();
export default tokenize;
