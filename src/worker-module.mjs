// How a worker thread loads its TypeScript module however the main thread was started. Two
// layouts:
//   - compiled (dist/, the images and the npm package): tsc puts NAME.js beside the entry, and
//     it is imported as it is; tsx is a dev dependency and is not installed there;
//   - source (src/, `node --import tsx`, the tests): there is no .js beside it, so the worker
//     registers tsx's loader itself and imports the TypeScript.
import { existsSync } from 'node:fs';

/**
 * @param {string} entryUrl the calling entry's import.meta.url
 * @param {string} name the module's file name without extension, beside the entry
 * @returns {Promise<unknown>}
 */
export async function loadWorkerModule(entryUrl, name) {
  const compiled = new URL(`./${name}.js`, entryUrl);
  if (existsSync(compiled)) return import(compiled.href);
  const { register } = await import('tsx/esm/api');
  register();
  return import(new URL(`./${name}.ts`, entryUrl).href);
}
