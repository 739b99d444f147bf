#!/usr/bin/env node
import { quietGrpcLogs } from '@skein/common';
import { runNannyCli } from './cli-main.js';

quietGrpcLogs();
process.exitCode = await runNannyCli(process.argv.slice(2));
process.exit();
