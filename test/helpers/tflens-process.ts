// The tflens command line from the sources, as a child process: `node --import tsx test/helpers/tflens-process.ts <args>`.
import { main } from '../../src/cli/main.js';

main(process.argv.slice(2)).then((code) => {
  process.exitCode = code;
});
