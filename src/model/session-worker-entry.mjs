// Worker entry for ThreadedRewardSession (a .mjs, so the worker starts however the main thread
// was started: src/worker-module.mjs). The module runs on import: it reads workerData and
// answers on parentPort.
import { loadWorkerModule } from '../worker-module.mjs';

await loadWorkerModule(import.meta.url, 'session-worker');
