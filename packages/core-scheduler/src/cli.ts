#!/usr/bin/env node
import { runSchedulerCli } from './cli-main.js';

process.exitCode = await runSchedulerCli(process.argv.slice(2));
process.exit();
