#!/usr/bin/env node
import { EXIT_FAILURE, runMain } from './exit.js';

// Placeholder until gossip messaging (issue 3) lands: the bin entry exists so the package
// layout of DESIGN.md section 1 is complete, and says plainly it is not there yet.
await runMain('gclient', async () => {
  process.stderr.write('gclient: not implemented yet\n');
  return EXIT_FAILURE;
});
