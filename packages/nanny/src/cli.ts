#!/usr/bin/env node
import { runNannyCli } from './cli-main.js';

process.exitCode = await runNannyCli(process.argv.slice(2));
process.exit();
