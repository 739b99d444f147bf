import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { InvalidArgumentError, Security } from '@skein/common';
import {
  InvalidQueueError,
  LSFCluster,
  PBSCluster,
  ResourceRequestError,
  SGECluster,
  SLURMCluster,
  SlurmRunner,
  compileJobQueueOptions,
  lsfSystem,
  parseMemory,
  parseSlurmArgs,
  parseWalltime,
  pbsSystem,
  sgeSystem,
  slurmMemory,
  slurmSystem,
  writeLaunchFiles,
  type JobQueueOptions,
} from '../src/index.js';
import { SKEIN_BIN, SLURM_BIN } from './helpers.js';

// Level 1: no Slurm needed. The PBS, SGE and LSF variants are pinned here by their scripts,
// commands and parsers (there is no PBS, SGE or LSF to run them against).

describe('memory and walltime', () => {
  it('parses sizes in decimal and binary units', () => {
    expect(parseMemory('128GB')).toBe(128e9);
    expect(parseMemory('500 MB')).toBe(5e8);
    expect(parseMemory('2GiB')).toBe(2 * 2 ** 30);
    expect(parseMemory('1.5g')).toBe(1.5e9);
    expect(parseMemory(4096)).toBe(4096);
  });
  it('refuses what is not a size, saying what works', () => {
    for (const bad of ['', 'lots', '12 parsecs', '-4GB', '0', 'constructor']) {
      expect(() => parseMemory(bad)).toThrow(InvalidArgumentError);
    }
    expect(() => parseMemory('12XB')).toThrow(/memory "12XB" is not a size: write a number with a unit, e.g. "128GB"/);
  });
  it("parses Slurm's walltime forms", () => {
    expect(parseWalltime('00:30:00')).toBe(1800);
    expect(parseWalltime('1-00:00:00')).toBe(86400);
    expect(parseWalltime('2-12')).toBe(2 * 86400 + 12 * 3600);
    expect(parseWalltime('1-02:30')).toBe(86400 + 2 * 3600 + 30 * 60);
    expect(parseWalltime('90')).toBe(5400); // minutes, as sbatch -t
    expect(parseWalltime('90:30')).toBe(5430);
    expect(parseWalltime('48:00:00')).toBe(172800);
    expect(parseWalltime(600)).toBe(600);
  });
  it('refuses what is not a walltime, saying what works', () => {
    for (const bad of ['', 'soon', '00:61:00', '00:00:75', '1-25:00:00', '1:2:3:4', '00:00:00', '-1']) {
      expect(() => parseWalltime(bad), bad).toThrow(InvalidArgumentError);
    }
    expect(() => parseWalltime('half an hour')).toThrow(/walltime "half an hour" is not a walltime: write HH:MM:SS \("00:30:00"\), D-HH:MM:SS \("1-00:00:00"\)/);
  });
  it("formats Slurm's --mem in its binary units, rounded up", () => {
    expect(slurmMemory(12)).toBe('1K');
    expect(slurmMemory(1234)).toBe('2K');
    expect(slurmMemory(12345678)).toBe('12M');
    expect(slurmMemory(15e9)).toBe('14G');
  });
});

const common: JobQueueOptions = {
  cores: 8,
  memory: '24GB',
  processes: 2,
  queue: 'cpu',
  account: 'proj1',
  walltime: '1-00:00:00',
  interface: 'ib0',
  jobName: 'skein',
  jobExtraDirectives: ['--exclusive'],
  jobScriptPrologue: ['module load nodejs'],
  jobScriptEpilogue: ['echo done'],
  localDirectory: '/scratch',
  logDirectory: '/shared/logs',
  env: { GREETING: 'hello world' },
  skeinCommand: 'skein',
  deathTimeout: 120,
};

const body = (script: string) => script.slice(script.indexOf('\n\n', script.indexOf('\n\n') + 2) + 2);
const header = (script: string, prefix: string) => script.split('\n').filter((l) => l.startsWith(`${prefix} `));

describe('job scripts', () => {
  it('a SLURMCluster job: the directives, the prologue, one worker per process under a nanny, the epilogue', () => {
    const cluster = new SLURMCluster({ ...common, jobDirectivesSkip: ['-N 1'] });
    expect(cluster.jobScript('job-7')).toBe(
      [
        '#!/usr/bin/env bash',
        '',
        '#SBATCH -J skein',
        '#SBATCH -o /shared/logs/skein-%j.out',
        '#SBATCH -p cpu',
        '#SBATCH -A proj1',
        '#SBATCH -n 1',
        '#SBATCH --cpus-per-task=8',
        '#SBATCH --mem=23G',
        '#SBATCH -t 1-00:00:00',
        '#SBATCH --exclusive',
        '',
        "export GREETING='hello world'",
        'module load nodejs',
        "skein worker 'tcp://<scheduler-address>:8786' --interface ib0 --name job-7-0 --nthreads 4 --memory-limit 12GB --death-timeout 120 --local-directory /scratch &",
        "skein worker 'tcp://<scheduler-address>:8786' --interface ib0 --name job-7-1 --nthreads 4 --memory-limit 12GB --death-timeout 120 --local-directory /scratch &",
        'wait',
        'echo done',
        '',
      ].join('\n'),
    );
  });

  it('a job of one process runs its worker in the foreground; jobCpu and jobMem override what Slurm is asked for', () => {
    const script = new SLURMCluster({ cores: 4, memory: '8GB', skeinCommand: 'skein', logDirectory: '/l', jobCpu: 6, jobMem: '10GB', workerExtraArgs: ['--validate'] }).jobScript('slurm-3');
    expect(header(script, '#SBATCH')).toEqual(['#SBATCH -J skein-worker', '#SBATCH -o /l/skein-worker-%j.out', '#SBATCH -n 1', '#SBATCH -N 1', '#SBATCH --cpus-per-task=6', '#SBATCH --mem=10G']);
    expect(body(script)).toBe("skein worker 'tcp://<scheduler-address>:8786' --name slurm-3 --nthreads 4 --memory-limit 8GB --death-timeout 60 --validate\n");
  });

  it('a PBSCluster job', () => {
    const script = new PBSCluster(common).jobScript('job-7');
    expect(header(script, '#PBS')).toEqual([
      '#PBS -N skein', '#PBS -q cpu', '#PBS -A proj1', '#PBS -l select=1:ncpus=8:mem=23GB', '#PBS -l walltime=24:00:00', '#PBS -j oe', '#PBS -o /shared/logs/', '#PBS --exclusive',
    ]);
    expect(body(script)).toContain("module load nodejs\nskein worker 'tcp://<scheduler-address>:8786' --interface ib0 --name job-7-0 --nthreads 4 --memory-limit 12GB");
    expect(header(new PBSCluster({ ...common, resourceSpec: 'nodes=1:ppn=8' }).jobScript(), '#PBS')).toContain('#PBS -l nodes=1:ppn=8');
  });

  it('an SGECluster job', () => {
    const script = new SGECluster({ ...common, resourceSpec: 'h_vmem=24G' }).jobScript('job-7');
    expect(header(script, '#$')).toEqual(['#$ -N skein', '#$ -q cpu', '#$ -P proj1', '#$ -l h_vmem=24G', '#$ -l h_rt=24:00:00', '#$ -o /shared/logs/', '#$ -cwd', '#$ -j y', '#$ --exclusive']);
    expect(body(script)).toContain('--name job-7-1 --nthreads 4 --memory-limit 12GB --death-timeout 120 --local-directory /scratch &\nwait\necho done');
  });

  it('an LSFCluster job (memory in the site\'s LSF units)', () => {
    const script = new LSFCluster({ ...common, walltime: '01:30:00', lsfUnits: 'mb' }).jobScript('job-7');
    expect(header(script, '#BSUB')).toEqual([
      '#BSUB -J skein', '#BSUB -o /shared/logs/skein-%J.out', '#BSUB -q cpu', '#BSUB -P "proj1"', '#BSUB -n 8', '#BSUB -R "span[hosts=1]"', '#BSUB -M 24000', '#BSUB -W 1:30', '#BSUB --exclusive',
    ]);
    expect(header(new LSFCluster({ ...common, cores: 1, processes: 1 }).jobScript(), '#BSUB')).toContain('#BSUB -M 24000000');
    expect(header(new LSFCluster({ ...common, cores: 1, processes: 1 }).jobScript(), '#BSUB')).not.toContain('#BSUB -R "span[hosts=1]"');
  });

  it('says what is missing or wrong in the options', () => {
    expect(() => new SLURMCluster({} as never)).toThrow(/SLURMCluster needs the cores and memory of one job, e.g. new SLURMCluster\(\{ cores: 8, memory: '24GB' \}\)/);
    expect(() => new SLURMCluster({ cores: 2, memory: '4GB', processes: 3 })).toThrow(/processes \(3\) must not exceed cores \(2\)/);
    expect(() => new SLURMCluster({ cores: 1.5, memory: '4GB' })).toThrow(/cores must be a whole number ≥ 1/);
    expect(() => new SLURMCluster({ cores: 1, memory: 'a lot' })).toThrow(/memory "a lot" is not a size/);
    expect(() => new SLURMCluster({ cores: 1, memory: '1GB', walltime: '25:99' })).toThrow(/walltime "25:99" is not a walltime/);
    expect(() => new PBSCluster({ cores: 1, memory: '1GB', env: { 'NOT A NAME': 'x' } })).toThrow(/env must map variable names to strings/);
    expect(() => new SLURMCluster({ cores: 1, memory: '1GB', jobCpu: 0 })).toThrow(/jobCpu must be a whole number ≥ 1/);
    expect(() => new SLURMCluster({ cores: 1, memory: '1GB' }).scale({ jobs: -1 })).toThrow(/scale\(\{ jobs \}\) needs a whole number ≥ 0/);
  });
});

describe('credentials of the jobs', () => {
  it('a job script names the TLS files and the token file in the cluster directory, and holds no key or token', () => {
    const security = Security.temporary({ token: 'the-secret-token' });
    const cluster = new SLURMCluster({ cores: 1, memory: '1GB', skeinCommand: 'skein', sharedDirectory: '/shared', security });
    const dir = join(cluster.directory, 'security', 'worker');
    const script = cluster.jobScript();
    expect(cluster.directory).toMatch(/^\/shared\/\.skein-jobqueue\/[0-9a-f]{8}$/);
    expect(script).toContain(
      `--tls-ca-file ${dir}/ca.pem --tls-cert ${dir}/nanny-worker.pem --tls-key ${dir}/nanny-worker-key.pem --require-encryption --auth-token-file ${dir}/token`,
    );
    expect(script).not.toMatch(/PRIVATE KEY|BEGIN CERTIFICATE|the-secret-token/);
    expect(cluster.security).toBe(security);
  });
  it('security: true is a Security.temporary() of the cluster (mutual TLS, plaintext refused); false none; anything else is refused', () => {
    const cluster = new SLURMCluster({ cores: 1, memory: '1GB', skeinCommand: 'skein', sharedDirectory: '/shared', security: true });
    expect(cluster.security).toMatchObject({ tls: true, requireEncryption: true, token: false });
    const dir = join(cluster.directory, 'security', 'worker');
    expect(cluster.jobScript()).toContain(`--tls-ca-file ${dir}/ca.pem --tls-cert ${dir}/nanny-worker.pem --tls-key ${dir}/nanny-worker-key.pem --require-encryption`);
    const none = new SLURMCluster({ cores: 1, memory: '1GB', skeinCommand: 'skein', security: false });
    expect(none.security.enabled).toBe(false);
    expect(none.jobScript()).not.toContain('--tls');
    expect(() => new SLURMCluster({ cores: 1, memory: '1GB', security: { token: 'x' } as unknown as Security })).toThrow(
      /security must be a Security \(Security.temporary\(\), Security.fromFiles\(...\), Security.fromToken\(...\)\) or true, got \{"token":"x"\}/,
    );
  });
  it('writes launch files readable only by the user: the directory 0700, each file 0600', () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'skein-creds-')), 'a', 'worker');
    const { files } = Security.temporary().launchFiles(['worker', 'nanny'], dir);
    // Even over a directory and a file left readable by an earlier run.
    mkdirSync(dir, { recursive: true, mode: 0o755 });
    writeFileSync(files[0]!.path, 'old', { mode: 0o644 });
    writeLaunchFiles(files, dir);
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    for (const f of files) {
      expect(statSync(f.path).mode & 0o777).toBe(0o600);
      expect(readFileSync(f.path, 'utf8')).toBe(f.contents);
    }
    rmSync(dirname(dirname(dir)), { recursive: true, force: true });
  });
});

describe("the queue systems' commands and what they print", () => {
  const o = compileJobQueueOptions({ cores: 2, memory: '4GB', queue: 'gpu' }, 'X');
  it('Slurm: sbatch --parsable, squeue over every job at once, scancel', () => {
    const s = slurmSystem();
    expect(s.submit('/d/job.sh')).toEqual({ argv: ['sbatch', '--parsable', '/d/job.sh'] });
    expect(s.jobId('1234\n')).toBe('1234');
    expect(s.jobId('1234;cluster2\n')).toBe('1234');
    expect(s.cancel(['1', '2'])).toEqual(['scancel', '1', '2']);
    expect(s.status(['1', '2'], 'me')).toEqual(['squeue', '--noheader', '--states=all', '--jobs=1,2', '--format=%i|%T|%r']);
    const st = s.parseStatus({ code: 0, stdout: '1|PENDING|Resources\n2|RUNNING|None\n3|COMPLETED|None\n4|CANCELLED|None\n5|TIMEOUT|TimeLimit\n', stderr: '' });
    expect([...st].map(([id, j]) => `${id}:${j.state}:${j.reason}`)).toEqual(['1:pending:Resources', '2:running:None', '3:done:None', '4:failed:None', '5:failed:TimeLimit']);
    expect(s.parseStatus({ code: 1, stdout: '', stderr: 'slurm_load_jobs error: Invalid job id specified\n' }).size).toBe(0);
    expect(() => s.parseStatus({ code: 1, stdout: '', stderr: 'Unable to contact slurm controller' })).toThrow(/Is slurmctld up/);
  });
  it("Slurm: its refusals become typed errors carrying Slurm's message", () => {
    const s = slurmSystem();
    const q = s.submitError('sbatch --parsable x.sh', 1, 'sbatch: error: invalid partition specified: gpu; sbatch: error: Batch job submission failed: Invalid partition name specified', o);
    expect(q).toBeInstanceOf(InvalidQueueError);
    expect(q.message).toBe(
      'Slurm refused the job (sbatch --parsable x.sh exited with code 1): sbatch: error: invalid partition specified: gpu; sbatch: error: Batch job submission failed: Invalid partition name specified. ' +
        'The queue "gpu" is not one you can submit to: pick one that `sinfo -s` lists (the queue option, --queue).',
    );
    const m = s.submitError('sbatch', 1, 'sbatch: error: Memory specification can not be satisfied', o);
    expect(m).toBeInstanceOf(ResourceRequestError);
    expect(m.message).toMatch(/asked for 2 CPUs and 4G of memory per job, which no node of the queue offers/);
    expect(s.submitError('sbatch', 1, 'sbatch: error: Batch job submission failed: Invalid account or account/partition combination specified', o).code).toBe('invalid_argument');
    expect(s.submitError('sbatch', 1, 'sbatch: error: Socket timed out', o).code).toBe('unavailable');
  });
  it('PBS: qsub, qstat -x, qdel', () => {
    const s = pbsSystem();
    expect(s.submit('/d/j.sh').argv).toEqual(['qsub', '/d/j.sh']);
    expect(s.jobId('4242.pbs-server\n')).toBe('4242');
    expect(s.cancel(['4242'])).toEqual(['qdel', '4242']);
    const stdout = 'Job id            Name             User              Time Use S Queue\n----------------  ---------------- ----------------  -------- - -----\n4242.pbs          skein            me                00:00:01 R workq\n4243.pbs          skein            me                       0 Q workq\n4244.pbs          skein            me                00:01:00 F workq\n';
    expect([...s.parseStatus({ code: 0, stdout, stderr: '' })].map(([id, j]) => `${id}:${j.state}`)).toEqual(['4242:running', '4243:pending', '4244:done']);
    expect(s.submitError('qsub', 1, 'qsub: Unknown queue', o)).toBeInstanceOf(InvalidQueueError);
    expect(s.submitError('qsub', 188, 'qsub: Job exceeds queue resource limits', o)).toBeInstanceOf(ResourceRequestError);
  });
  it('SGE: qsub, qstat -u, qdel', () => {
    const s = sgeSystem();
    expect(s.jobId('Your job 77 ("skein") has been submitted\n')).toBe('77');
    expect(s.status(['77'], 'me')).toEqual(['qstat', '-u', 'me']);
    const stdout = 'job-ID  prior   name       user         state submit/start at     queue                          slots ja-task-ID\n-----\n     77 0.55500 skein      me           r     12/01/2026 10:00:00 all.q@node1                        1\n     78 0.00000 skein      me           qw    12/01/2026 10:00:01                                    1\n     79 0.00000 skein      me           Eqw   12/01/2026 10:00:01                                    1\n';
    expect([...s.parseStatus({ code: 0, stdout, stderr: '' })].map(([id, j]) => `${id}:${j.state}:${j.raw}`)).toEqual(['77:running:r', '78:pending:qw', '79:failed:Eqw']);
    expect(s.submitError('qsub', 1, 'Unable to run job: Job was rejected because job requests unknown queue "gpu".', o)).toBeInstanceOf(InvalidQueueError);
  });
  it('LSF: bsub < script, bjobs, bkill', () => {
    const s = lsfSystem();
    expect(s.submit('/d/j.sh')).toEqual({ argv: ['bsub'], stdin: true });
    expect(lsfSystem({ useStdin: false }).submit('/d/j.sh')).toEqual({ argv: ['bsub', '/d/j.sh'] });
    expect(s.jobId('Job <5150> is submitted to queue <normal>.\n')).toBe('5150');
    expect(s.cancel(['5150'])).toEqual(['bkill', '5150']);
    const st = s.parseStatus({ code: 255, stdout: '5150|RUN|-\n5151|PEND|Not enough job slot(s)\n5152|DONE|-\n', stderr: 'Job <5153> is not found\n' });
    expect([...st].map(([id, j]) => `${id}:${j.state}:${j.reason}`)).toEqual(['5150:running:', '5151:pending:Not enough job slot(s)', '5152:done:']);
    expect(s.submitError('bsub', 255, 'gpu: No such queue. Job not submitted.', o)).toBeInstanceOf(InvalidQueueError);
  });
});

describe('the skein-slurm command line', () => {
  it('parses its flags into SLURMCluster options, jobs and adaptive bounds', async () => {
    const plan = await parseSlurmArgs(['--cores', '32', '--memory', '128GB', '--queue', 'cpu', '--walltime', '01:00:00', '--jobs', '10', '--interface', 'ib0', '--job-extra=--exclusive']);
    expect(plan).toMatchObject({ jobs: 10, adapt: undefined, printJobScript: false, options: { cores: 32, memory: '128GB', queue: 'cpu', walltime: '01:00:00', interface: 'ib0', jobExtraDirectives: ['--exclusive'] } });
    expect(await parseSlurmArgs(['--cores', '4', '--memory', '8GB', '--adapt-min', '1', '--adapt-max', '20'])).toMatchObject({ adapt: { minimumJobs: 1, maximumJobs: 20 } });
    await expect(parseSlurmArgs(['--cores', '4', '--memory', '8GB', '--adapt-min', '5', '--adapt-max', '2'])).rejects.toThrow(/--adapt-max \(2\) must be ≥ --adapt-min \(5\)/);
    await expect(parseSlurmArgs(['--memory', '8GB'])).rejects.toThrow(/cores/);
  });
  it('takes the credential flags of every Skein command: the cluster gets that Security; without them, none', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'skein-slurm-cli-'));
    const { files } = Security.temporary({ token: 'cli-token-0123456789abcdef' }).launchFiles(['client', 'scheduler', 'worker', 'nanny'], dir);
    for (const f of files) writeFileSync(f.path, f.contents, { mode: f.mode });
    const [ca, cert, key, token] = files.map((f) => f.path);
    const plan = await parseSlurmArgs(['--cores', '1', '--memory', '1GB', '--tls-ca-file', ca!, '--tls-cert', cert!, '--tls-key', key!, '--auth-token-file', token!, '--require-encryption'], 'skein-slurm', {});
    if (plan === 'help') throw new Error('help');
    expect(plan.options.security).toMatchObject({ tls: true, token: true, requireEncryption: true });
    const plain = await parseSlurmArgs(['--cores', '1', '--memory', '1GB'], 'skein-slurm', {});
    expect(plain !== 'help' && plain.options.security).toBeUndefined();
    await expect(parseSlurmArgs(['--cores', '1', '--memory', '1GB', '--tls-ca-file', ca!], 'skein-slurm', {})).rejects.toThrow(/TLS needs all three.*missing: --tls-cert/);
    rmSync(dir, { recursive: true, force: true });
  });
  it('--print-job-script prints the script and submits nothing', () => {
    const r = spawnSync(process.execPath, [SLURM_BIN, '--cores', '4', '--memory', '8GB', '--queue', 'cpu', '--walltime', '00:30:00', '--skein-command', 'skein', '--log-directory', '/l', '--print-job-script'], { encoding: 'utf8' });
    expect(r.status).toBe(0);
    expect(r.stdout).toBe(
      '#!/usr/bin/env bash\n\n#SBATCH -J skein-worker\n#SBATCH -o /l/skein-worker-%j.out\n#SBATCH -p cpu\n#SBATCH -n 1\n#SBATCH -N 1\n#SBATCH --cpus-per-task=4\n#SBATCH --mem=8G\n#SBATCH -t 00:30:00\n\n' +
        "skein worker 'tcp://<scheduler-address>:8786' --name slurm-0 --nthreads 4 --memory-limit 8GB --death-timeout 60\n",
    );
  });
  it('explains bad arguments', () => {
    const r = spawnSync(process.execPath, [SLURM_BIN, '--cores', '4', '--memory', 'lots'], { encoding: 'utf8' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/skein-slurm: memory "lots" is not a size.*Run skein-slurm --help/s);
  });
  it('skein slurm is dispatched to this package (which the skein package does not pull in)', () => {
    const r = spawnSync(process.execPath, [SKEIN_BIN, 'slurm', '--help'], { encoding: 'utf8' });
    expect(r.stderr.trim()).toBe('skein slurm: needs the package @skein/deploy-slurm, which is not installed. Install it with: npm install @skein/deploy-slurm');
    expect(r.status).toBe(127);
  });
});

describe('SlurmRunner', () => {
  it('gives rank 0 the scheduler, rank 1 the client, the rest workers', () => {
    expect([0, 1, 2, 7].map((r) => SlurmRunner.roleOf(r))).toEqual(['scheduler', 'client', 'worker', 'worker']);
  });
  it('says how to start it when it runs outside srun, or with too few tasks', async () => {
    await expect(SlurmRunner.start({ env: {} })).rejects.toThrow(/SlurmRunner runs inside srun: SLURM_PROCID, SLURM_NTASKS and SLURM_JOB_ID must be set/);
    await expect(SlurmRunner.start({ env: { SLURM_PROCID: '1', SLURM_NTASKS: '2', SLURM_JOB_ID: '9' } })).rejects.toThrow(/needs at least 3 tasks .*srun started 2/);
  });
});
