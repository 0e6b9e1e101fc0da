// Worker entry for TokenizerPool (a .mjs, so a worker can start it however the main thread was
// started: src/worker-module.mjs). Piscina calls its default export.
import { loadWorkerModule } from '../worker-module.mjs';

/** @type {typeof import('./tokenize-worker.js')} */
const worker = await loadWorkerModule(import.meta.url, 'tokenize-worker');
export default worker.default;
