/**
 * The `skein` command: dispatches `skein <command> ...` to the package that implements it, and
 * says which package to install when that one is missing.
 */
interface Command {
  pkg: string;
  exportName: string;
  describe: string;
}

const COMMANDS: Record<string, Command> = {
  scheduler: { pkg: '@skein/core-scheduler', exportName: 'runSchedulerCli', describe: 'start a scheduler' },
  worker: { pkg: '@skein/core-worker', exportName: 'runWorkerCli', describe: 'start a worker (under a nanny unless --no-nanny)' },
  nanny: { pkg: '@skein/nanny', exportName: 'runNannyCli', describe: 'start a nanny that supervises a worker' },
  ssh: { pkg: '@skein/deploy-ssh', exportName: 'runSshCli', describe: 'start a cluster over SSH' },
  slurm: { pkg: '@skein/deploy-slurm', exportName: 'runSlurmCli', describe: 'start a scheduler here and workers as Slurm jobs' },
  kubernetes: { pkg: '@skein/deploy-kubernetes', exportName: 'runKubernetesCli', describe: 'start, scale and close clusters on Kubernetes' },
};

type CliMain = (argv: string[]) => Promise<number>;

function usage(): string {
  const lines = Object.entries(COMMANDS).map(([name, c]) => `  skein ${name.padEnd(10)} ${c.describe} (${c.pkg})`);
  return `Usage: skein <command> [options]\n\nCommands:\n${lines.join('\n')}\n\nRun skein <command> --help for a command's options.\n`;
}

export async function runSkeinCli(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(usage());
    return name ? 0 : 2;
  }
  // Own entries only: `skein constructor` is an unknown command, not Object.prototype.constructor.
  const cmd = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!cmd) {
    process.stderr.write(`skein: unknown command "${name}".\n${usage()}`);
    return 2;
  }
  // `skein worker` runs under a nanny when @skein/nanny is installed, unless --no-nanny.
  if (name === 'worker') {
    const noNanny = rest.includes('--no-nanny');
    const args = rest.filter((a) => a !== '--no-nanny' && a !== '--nanny');
    if (!noNanny) {
      const nanny = await tryImport('@skein/nanny');
      if (nanny && typeof nanny['runNannyCli'] === 'function') return (nanny['runNannyCli'] as CliMain)(args);
    }
    return dispatch(name, COMMANDS.worker!, args);
  }
  return dispatch(name, cmd, rest);
}

async function tryImport(pkg: string): Promise<Record<string, unknown> | undefined> {
  try {
    return (await import(pkg)) as Record<string, unknown>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes(pkg)) return undefined;
    throw err;
  }
}

async function dispatch(name: string, cmd: Command, rest: string[]): Promise<number> {
  let mod: Record<string, unknown>;
  try {
    mod = (await import(cmd.pkg)) as Record<string, unknown>;
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ERR_MODULE_NOT_FOUND' && String((err as Error).message).includes(cmd.pkg)) {
      process.stderr.write(`skein ${name}: needs the package ${cmd.pkg}, which is not installed. Install it with: npm install ${cmd.pkg}\n`);
      return 127;
    }
    throw err;
  }
  const main = mod[cmd.exportName] as CliMain | undefined;
  if (typeof main !== 'function') {
    process.stderr.write(`skein ${name}: ${cmd.pkg} does not provide ${cmd.exportName}; install a matching version of ${cmd.pkg}.\n`);
    return 1;
  }
  return main(rest);
}
