// The documented split-brain recovery on the node whose changes are given up (hastd(8), the Handbook's
// "Recovering from the Split-brain Condition"): role init, fresh metadata, role secondary; the primary then
// copies everything over.
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
  const step = (name: string, run: () => Promise<void>) => ({
    name,
    target: resource,
    async run() {
      await run();
      return undefined;
    },
  });
  return runSteps(
    'recover',
    `discarding this node's copy of ${resource} after a split-brain`,
    [
      step('role init', () => engine.role('init', [resource])),
      step('metadata create', () => engine.create(resource)),
      step('role secondary', () => engine.role('secondary', [resource])),
    ],
    { log: log.child({ resource }), signal: new AbortController().signal },
  );
}
