// Worker entry for TokenizerPool: registers the tsx loader, then serves tokenize-worker.ts.
import { register } from 'tsx/esm/api';

register();
const { default: tokenize } = await import('./tokenize-worker.ts');
export default tokenize;
