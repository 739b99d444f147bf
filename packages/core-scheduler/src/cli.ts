#!/usr/bin/env node
import { quietGrpcLogs } from '@skein/common';
import { runSchedulerCli } from './cli-main.js';

quietGrpcLogs();
process.exitCode = await runSchedulerCli(process.argv.slice(2));
process.exit();
