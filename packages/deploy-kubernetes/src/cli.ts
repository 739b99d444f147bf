#!/usr/bin/env node
import { quietGrpcLogs } from '@skein/common';
import { runKubernetesCli } from './cli-main.js';

quietGrpcLogs();
process.exitCode = await runKubernetesCli(process.argv.slice(2));
process.exit();
