// `rmserve <command>`: each command lives in src/commands/ and is registered here.
import { Command } from 'commander';
import { serveCommand } from './commands/serve.js';
import { trainCommand } from './commands/train.js';
import { evalCommand } from './commands/eval.js';
import { reportCommand } from './commands/report.js';

const program = new Command('rmserve')
  .description('reward-model server and trainer on ONNX Runtime')
  .version('0.1.0')
  .addCommand(serveCommand())
  .addCommand(trainCommand())
  .addCommand(evalCommand())
  .addCommand(reportCommand());

await program.parseAsync(process.argv);
