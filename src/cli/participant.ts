#!/usr/bin/env node
import { EXIT_FAILURE, runMain } from './exit.js';

// Placeholder until persistent asynchronous multicast (issue 4) lands: the bin entry exists so the package
// layout of DESIGN.md section 1 is complete, and says plainly it is not there yet.
await runMain('participant', async () => {
  process.stderr.write('participant: not implemented yet\n');
  return EXIT_FAILURE;
});
