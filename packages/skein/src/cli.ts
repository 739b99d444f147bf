#!/usr/bin/env node
import { quietGrpcLogs } from '@skein/common';
import { runSkeinCli } from './dispatch.js';

quietGrpcLogs();
process.exitCode = await runSkeinCli(process.argv.slice(2));
process.exit();
