#!/usr/bin/env node
import { quietGrpcLogs } from '@skein/common';
import { runSlurmCli } from './cli-main.js';

quietGrpcLogs();
process.exitCode = await runSlurmCli(process.argv.slice(2));
process.exit();
