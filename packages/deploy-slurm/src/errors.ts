import { SkeinError, type ErrorCode, type SkeinErrorOptions } from '@skein/common';

/**
 * The job queue refused a job (`sbatch`, `qsub`, `bsub` exited non-zero). `message` carries the
 * queue system's own words (`systemMessage`), with what to change; subclasses name the common
 * causes.
 */
export class JobSubmitError extends SkeinError {
  /** 'Slurm', 'PBS', 'SGE', 'LSF'. */
  readonly system: string;
  /** The command line that was run. */
  readonly command: string;
  readonly exitCode: number | null;
  /** What the queue system printed (stderr, else stdout), trimmed. */
  readonly systemMessage: string;
  constructor(code: ErrorCode, system: string, command: string, exitCode: number | null, systemMessage: string, advice: string, options?: SkeinErrorOptions) {
    super(code, `${system} refused the job (${command} exited with code ${exitCode}): ${systemMessage || '(no output)'}. ${advice}`, {
      ...options,
      details: { system, command, exitCode, systemMessage, ...options?.details },
    });
    this.system = system;
    this.command = command;
    this.exitCode = exitCode;
    this.systemMessage = systemMessage;
  }
}

/** The queue (Slurm partition) does not exist, or this user may not submit to it. */
export class InvalidQueueError extends JobSubmitError {
  readonly queue: string;
  constructor(system: string, command: string, exitCode: number | null, systemMessage: string, queue: string) {
    super(
      'invalid_argument',
      system,
      command,
      exitCode,
      systemMessage,
      `The queue "${queue}" is not one you can submit to: pick one that ${system === 'Slurm' ? '`sinfo -s`' : 'the queue system'} lists (the queue option, --queue).`,
      { details: { queue } },
    );
    this.queue = queue;
  }
}

/** The job asks for more than any node (or the queue's limits) can give: memory, cores, walltime. */
export class ResourceRequestError extends JobSubmitError {
  constructor(system: string, command: string, exitCode: number | null, systemMessage: string, request: string) {
    super(
      'resource_exhausted',
      system,
      command,
      exitCode,
      systemMessage,
      `The job asked for ${request}, which no node of the queue offers: ask for less (memory, cores, jobMem, jobCpu, walltime) or use a queue with bigger nodes.`,
      { details: { request } },
    );
  }
}

/** A job-queue command (`sbatch`, `squeue`, `qsub` ...) is not installed or not on PATH here. */
export class JobQueueCommandNotFoundError extends SkeinError {
  readonly commandName: string;
  constructor(system: string, commandName: string, options?: SkeinErrorOptions) {
    super(
      'failed_precondition',
      `${commandName} (${system}) was not found on this host. Run on a login node of the ${system} cluster, or put ${system}'s commands on PATH.`,
      { ...options, details: { system, command: commandName } },
    );
    this.commandName = commandName;
  }
}

/** A job the cluster submitted ended (failed, cancelled, timed out) before its workers registered. */
export class JobEndedError extends SkeinError {
  readonly jobId: string;
  readonly state: string;
  constructor(system: string, jobId: string, state: string, reason: string, output: string) {
    super(
      'unavailable',
      `${system} job ${jobId} ended (${state}${reason ? `: ${reason}` : ''}) before its workers registered with the scheduler.` +
        ` Its output:\n${output || '(none; see logDirectory)'}`,
      { details: { jobId, state, reason } },
    );
    this.jobId = jobId;
    this.state = state;
  }
}
