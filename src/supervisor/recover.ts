// The split-brain recovery. On the node whose changes are given up, the documented procedure (hastd(8), the
// Handbook's "Recovering from the Split-brain Condition"): role init, fresh metadata, role secondary; the
// primary then copies everything over. On the node whose changes are kept, when it is not primary: role init
// and role secondary, which ends the split-brain its engine remembers so that it may be promoted again.
import type { Logger } from '../common/log.js';
import type { EngineControl } from './engine-control.js';
import { isHastctlFailure } from './hastctl-output.js';
import { runSteps, type TransitionRecord } from './transition.js';

// Recovery asked of a resource this node serves: giving up its own data there would take the storage away.
export class RecoverRefusedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RecoverRefusedError';
  }
}

// Discards this node's copy of `resource` so the peer's becomes the only one; refuses while it is primary here.
export async function recoverDiscardLocal(engine: EngineControl, resource: string, log: Logger): Promise<TransitionRecord> {
  const entry = (await engine.list([resource]))[0];
  if (entry === undefined || isHastctlFailure(entry)) throw new RecoverRefusedError(`the engine does not know resource ${resource}`);
  if (entry.role === 'primary') {
    throw new RecoverRefusedError(
      `${resource} is primary on this node; run the recovery on the node whose changes are to be discarded, ` +
        'or make this node secondary first (carp-hast switch secondary)',
    );
  }
  return runSteps(
    'recover',
    `discarding this node's copy of ${resource} after a split-brain`,
    [
      step(resource, 'role init', () => engine.role('init', [resource])),
      step(resource, 'metadata create', () => engine.create(resource)),
      step(resource, 'role secondary', () => engine.role('secondary', [resource])),
    ],
    { log: log.child({ resource }), signal: new AbortController().signal },
  );
}

// Keeps this node's copy of `resource` after the other node ran the discarding recovery. A primary needs no
// step (its split-brain ends when the recovered peer connects): the record then has none.
export async function recoverKeepLocal(engine: EngineControl, resource: string, log: Logger): Promise<TransitionRecord> {
  const entry = (await engine.list([resource]))[0];
  if (entry === undefined || isHastctlFailure(entry)) throw new RecoverRefusedError(`the engine does not know resource ${resource}`);
  const steps =
    entry.role === 'primary'
      ? []
      : [step(resource, 'role init', () => engine.role('init', [resource])), step(resource, 'role secondary', () => engine.role('secondary', [resource]))];
  return runSteps('recover', `keeping this node's copy of ${resource} after a split-brain`, steps, {
    log: log.child({ resource }),
    signal: new AbortController().signal,
  });
}

function step(resource: string, name: string, run: () => Promise<void>) {
  return {
    name,
    target: resource,
    async run() {
      await run();
      return undefined;
    },
  };
}

// What `carp-hast recover --keep-local` tells the operator.
export function keptMessage(resource: string, record: TransitionRecord): string {
  return record.steps.length === 0
    ? `${resource} is primary here and keeps its data; the split-brain ends when the peer, recovered with --discard-local, connects.`
    : `${resource} keeps this node's data and may be promoted again; the peer must have run --discard-local.`;
}
