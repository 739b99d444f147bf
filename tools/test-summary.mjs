#!/usr/bin/env node
// Prints the plain closing line of a test run from vitest's JSON report:
//   tests: N passed, N failed, N skipped
import { readFileSync } from 'node:fs';

const r = JSON.parse(readFileSync(process.argv[2] ?? '.artifacts/vitest.json', 'utf8'));
const skipped = (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0);
console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${skipped} skipped`);
