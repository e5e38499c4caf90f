// One failover transition as a list of explicit steps, run one after another, each logged at its start and end
// with its duration, and recorded for `carp-hast status`.
import type { Logger } from '../common/log.js';
import { describeError } from '../common/errors.js';

// The directions a node moves in: towards serving the storage, towards letting go of it, or (split-brain
// recovery) towards a fresh copy of the peer's data.
export type Direction = 'promote' | 'demote' | 'recover';

const NOUNS: Record<Direction, string> = { promote: 'Promotion', demote: 'Demotion', recover: 'Recovery' };

// One step of a transition. `interruptible` steps only wait (for a device, for the peer) and may be abandoned
// when a newer wish arrives; every other step runs to its end, so cancellation happens at step boundaries.
export interface Step {
  name: string;
  // The resource or service the step acts on.
  target: string;
  interruptible?: boolean;
  // A failure is recorded and the transition goes on (a service that will not stop must not keep the
  // demotion ladder from unmounting).
  tolerateFailure?: boolean;
  // Does the work; resolves to a short detail for the record ("clean", "already mounted"), or nothing.
  run(signal: AbortSignal): Promise<string | undefined>;
}

// What became of a transition: done, failed at a step, cancelled by a newer wish, or refused before any step.
export type Outcome = 'done' | 'failed' | 'cancelled' | 'refused';

// The record of one step, as `carp-hast status` shows it.
export interface StepRecord {
  name: string;
  target: string;
  outcome: 'done' | 'failed' | 'cancelled';
  durationMs: number;
  detail?: string;
}

// The record of one transition.
export interface TransitionRecord {
  id: number;
  direction: Direction;
  reason: string;
  startedAt: string;
  durationMs: number;
  outcome: Outcome;
  steps: StepRecord[];
  error?: string;
}

// A step gave up because the transition was cancelled while it waited.
export class StepCancelledError extends Error {
  constructor(step: string, options?: ErrorOptions) {
    super(`${step} was abandoned for a newer wish.`, options);
    this.name = 'StepCancelledError';
  }
}

// A promotion that must not happen (split-brain, failback turned off): refused before anything is changed.
export class RefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RefusedError';
  }
}

let nextId = 1;

// The record of a promotion refused before any step ran.
export function refusedPromotion(reason: string): TransitionRecord {
  const startedAt = new Date().toISOString();
  return { id: nextId++, direction: 'promote', reason, startedAt, durationMs: 0, outcome: 'refused', steps: [], error: reason };
}

// Runs the steps in order until one fails or `signal` is aborted between steps.
export async function runSteps(
  direction: Direction,
  reason: string,
  steps: readonly Step[],
  options: { log: Logger; signal: AbortSignal },
): Promise<TransitionRecord> {
  const record: TransitionRecord = {
    id: nextId++,
    direction,
    reason,
    startedAt: new Date().toISOString(),
    durationMs: 0,
    outcome: 'done',
    steps: [],
  };
  const started = performance.now();
  const log = options.log.child({ transition: record.id, direction });
  const noun = NOUNS[direction];
  log.info({ reason }, `${noun} started: ${reason}.`);
  const noAbort = new AbortController().signal;
  for (const step of steps) {
    if (options.signal.aborted) {
      record.outcome = 'cancelled';
      break;
    }
    const stepLog = log.child({ step: step.name, target: step.target });
    stepLog.info(`Starting ${step.name} of ${step.target}.`);
    const stepStarted = performance.now();
    try {
      const detail = await step.run(step.interruptible ? options.signal : noAbort);
      const durationMs = Math.round(performance.now() - stepStarted);
      record.steps.push({ name: step.name, target: step.target, outcome: 'done', durationMs, ...(detail ? { detail } : {}) });
      stepLog.info({ durationMs, ...(detail ? { detail } : {}) }, `Finished ${step.name} of ${step.target}.`);
    } catch (error) {
      const durationMs = Math.round(performance.now() - stepStarted);
      const message = describeError(error);
      if (error instanceof StepCancelledError || (step.interruptible === true && options.signal.aborted)) {
        record.steps.push({ name: step.name, target: step.target, outcome: 'cancelled', durationMs });
        stepLog.warn({ durationMs }, `Abandoned ${step.name} of ${step.target} for a newer wish.`);
        record.outcome = 'cancelled';
        break;
      }
      record.steps.push({ name: step.name, target: step.target, outcome: 'failed', durationMs, detail: message });
      if (step.tolerateFailure === true) {
        stepLog.error({ durationMs, err: message }, `Failed ${step.name} of ${step.target}; going on.`);
        continue;
      }
      record.outcome = error instanceof RefusedError ? 'refused' : 'failed';
      record.error = `${step.name} of ${step.target}: ${message}`;
      stepLog.error({ durationMs, err: message }, `Failed ${step.name} of ${step.target}.`);
      break;
    }
  }
  record.durationMs = Math.round(performance.now() - started);
  const summary = { outcome: record.outcome, durationMs: record.durationMs };
  if (record.outcome === 'done') log.info(summary, `${noun} finished in ${record.durationMs} ms.`);
  else if (record.outcome === 'cancelled') log.warn(summary, `${noun} cancelled for a newer wish.`);
  else log.error({ ...summary, err: record.error }, `${noun} ${record.outcome}: ${record.error}.`);
  return record;
}
