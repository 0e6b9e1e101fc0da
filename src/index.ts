// The package's library entry (package.json "exports"): the server as a program embeds it (what
// the tests and bench/ use), training and evaluation as the CLI runs them. The CLI is dist/cli.js.
export { createService, DEFAULT_CONFIG, type Service, type ServiceConfig } from './service.js';
export { runTraining } from './training/pipeline.js';
export { evaluateFiles } from './eval/evaluate-files.js';
