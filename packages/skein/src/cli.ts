#!/usr/bin/env node
import { runSkeinCli } from './dispatch.js';

process.exitCode = await runSkeinCli(process.argv.slice(2));
process.exit();
