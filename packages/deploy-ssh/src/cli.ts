#!/usr/bin/env node
import { quietGrpcLogs } from '@skein/common';
import { runSshCli } from './cli-main.js';

quietGrpcLogs();
process.exitCode = await runSshCli(process.argv.slice(2));
process.exit();
