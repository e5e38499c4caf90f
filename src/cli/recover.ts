import { createInterface } from 'node:readline/promises';
import { createLogger } from '../common/log.js';
import { ExitError, UsageError } from '../common/errors.js';
import { EX_TEMPFAIL, EX_UNAVAILABLE } from '../common/sysexits.js';
import { sendSupervisorRequest, SupervisorUnavailableError } from '../supervisor/control-socket.js';
import { EngineControl, EngineControlError } from '../supervisor/engine-control.js';
import { keptMessage, recoverDiscardLocal, recoverKeepLocal, RecoverRefusedError } from '../supervisor/recover.js';
import { parseCommandArgs } from './args.js';
import type { Command } from './command.js';
import { loadCheckedSupervisorConf } from './supervisor-config.js';

const USAGE = `usage: carp-hast recover [-c config] [--yes] <resource> --discard-local | --keep-local

Recovers <resource> from a split-brain. carp-hast status says how much each node changed while apart.
  --discard-local  on the node whose changes are to be lost: throws away THIS node's copy (role init, fresh
                   metadata with hastctl create, role secondary); the peer, as primary, sends a full copy.
  --keep-local     on the node whose changes are kept, after the other node ran --discard-local: a
                   secondary here forgets the split-brain (role init, role secondary) so that it may be
                   promoted again; a primary needs nothing and says so.
Asks for confirmation unless --yes is given. Goes through the running supervisor when there is one, so it
does not fight the recovery.
`;

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  'discard-local': { type: 'boolean' },
  'keep-local': { type: 'boolean' },
  yes: { type: 'boolean' },
} as const;

// The recovery waits for a running transition first; a full fsck can take long.
const RECOVER_TIMEOUT_MS = 60 * 60_000;

// `carp-hast recover <res> --discard-local`: the split-brain procedure on this node.
export const recoverCommand: Command = {
  name: 'recover',
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, OPTIONS);
    const [resource, extra] = positionals;
    if (resource === undefined) throw new UsageError('the resource to recover is required');
    if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
    const keep = values['keep-local'] === true ? 'local' : 'peer';
    if ((values['discard-local'] === true) === (keep === 'local')) {
      throw new UsageError('say which copy goes: --discard-local (this node\'s) or --keep-local (the peer\'s, already discarded there)');
    }
    const config = await loadCheckedSupervisorConf(values.config);
    if (!config.resources.some((r) => r.name === resource)) {
      throw new UsageError(`'${resource}' is not a resource of ${config.file} (known: ${config.resources.map((r) => r.name).join(', ')})`);
    }
    if (values.yes !== true && !(await confirm(resource, keep))) {
      process.stderr.write('Nothing done.\n');
      return 1;
    }
    try {
      const reply = await sendSupervisorRequest(config.supervisor.controlSocket, { op: 'recover', resource, keep }, RECOVER_TIMEOUT_MS);
      (reply.ok ? process.stdout : process.stderr).write(`${reply.message}\n`);
      return reply.ok ? 0 : 1;
    } catch (error) {
      if (!(error instanceof SupervisorUnavailableError)) throw error;
    }
    const log = createLogger({ name: 'carp-hast', format: 'text' });
    try {
      const engine = new EngineControl(config.engine);
      const record = keep === 'local' ? await recoverKeepLocal(engine, resource, log) : await recoverDiscardLocal(engine, resource, log);
      if (record.outcome !== 'done') throw new ExitError(`recovery of ${resource} failed: ${record.error}`, EX_TEMPFAIL);
      if (keep === 'local') {
        process.stdout.write(`${keptMessage(resource, record)}\n`);
        return 0;
      }
    } catch (error) {
      if (error instanceof RecoverRefusedError) throw new ExitError(error.message, 1);
      // Only the first look at the engine throws this; a failing step is in the record instead.
      if (error instanceof EngineControlError) {
        throw new ExitError('no supervisor runs and the engine does not answer hastctl', EX_UNAVAILABLE, { cause: error });
      }
      throw error;
    }
    process.stdout.write(`${resource} is secondary with fresh metadata; the peer will send it a full copy.\n`);
    return 0;
  },
};

async function confirm(resource: string, keep: 'peer' | 'local'): Promise<boolean> {
  const prompt = createInterface({ input: process.stdin, output: process.stderr });
  // Input that ends before an answer (no terminal, stdin from /dev/null) declines; the question alone would
  // never settle and the process would exit 0 having done nothing.
  const ended = new Promise<string>((resolve) => prompt.once('close', () => resolve('')));
  try {
    const answer = await Promise.race([
      prompt.question(
        keep === 'peer'
          ? `This discards this node's copy of ${resource}; the peer's becomes the only one. Type the resource name to go on: `
          : `This keeps this node's copy of ${resource}; the peer's changes must already be discarded there. Type the resource name to go on: `,
      ),
      ended,
    ]);
    return answer.trim() === resource;
  } finally {
    prompt.close();
  }
}
