import { createLogger } from '../common/log.js';
import { ExitError, UsageError } from '../common/errors.js';
import { EX_UNAVAILABLE } from '../common/sysexits.js';
import { DurationError, parseDuration } from '../config/duration.js';
import type { SupervisorConfig } from '../config/supervisor-conf.js';
import { sendSupervisorRequest, SupervisorUnavailableError } from '../supervisor/control-socket.js';
import { EngineControl } from '../supervisor/engine-control.js';
import { Supervisor, type SwitchOutcome } from '../supervisor/supervisor.js';
import { systemOps } from '../supervisor/system-ops.js';
import { parseCommandArgs } from './args.js';
import type { Command } from './command.js';
import { loadCheckedSupervisorConf } from './supervisor-config.js';

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  'no-wait': { type: 'boolean' },
  timeout: { type: 'string' },
} as const;

// Long enough for an fsck of a large UFS file system; --timeout shortens it.
const DEFAULT_TIMEOUT = '1h';

function usage(name: string): string {
  return `usage: ${name} [-c config] [--no-wait] [--timeout DURATION] primary|secondary

Tells the running supervisor that this node should be primary (CARP MASTER) or secondary (BACKUP) and waits
for the outcome: exit 0 when the node is there, 1 with the reason when not (CARP says otherwise, a step
failed, split-brain). --no-wait hands the request over and returns at once (for devd.conf, ucarp and
keepalived hooks; exit 69 when no supervisor runs). With no supervisor running and without --no-wait the
switch is done here, once, with the same steps (the engine must be running). --timeout bounds the wait
(default ${DEFAULT_TIMEOUT}).
`;
}

// `carp-hast switch` (an operator: asking for primary also lifts the failback guard) and `carp-hast-switch`
// (the Handbook script's drop-in, called by hooks: a CARP hint).
function makeSwitchCommand(name: string, operator: boolean): Command {
  const text = usage(name === 'switch' ? 'carp-hast switch' : name);
  return {
    name,
    ...(name === 'switch' ? {} : { program: name }),
    usage: text,
    async run(args) {
      const { values, positionals } = parseCommandArgs(args, OPTIONS);
      const [role, extra] = positionals;
      if (role !== 'primary' && role !== 'secondary') throw new UsageError(role === undefined ? 'primary or secondary is required' : `expected primary or secondary, not '${role}'`);
      if (extra !== undefined) throw new UsageError(`unexpected argument '${extra}'`);
      const timeoutMs = parseTimeout(values.timeout ?? DEFAULT_TIMEOUT);
      const config = await loadCheckedSupervisorConf(values.config);
      const wait = values['no-wait'] !== true;
      let outcome: SwitchOutcome;
      try {
        const reply = await sendSupervisorRequest(config.supervisor.controlSocket, { op: 'switch', role, operator, wait }, timeoutMs);
        outcome = { ok: reply.ok, message: reply.message };
      } catch (error) {
        if (!(error instanceof SupervisorUnavailableError)) throw error;
        if (!wait) throw new ExitError(`${error.message}; nothing was switched`, EX_UNAVAILABLE);
        outcome = await switchHere(config, role, operator);
      }
      (outcome.ok ? process.stdout : process.stderr).write(`${outcome.message}\n`);
      return outcome.ok ? 0 : 1;
    },
  };
}

function parseTimeout(text: string): number {
  try {
    return parseDuration(text);
  } catch (error) {
    if (error instanceof DurationError) throw new UsageError(`--timeout: ${error.message}`);
    throw error;
  }
}

// No supervisor runs: do the one switch in this process, with the supervisor's own steps.
async function switchHere(config: SupervisorConfig, role: 'primary' | 'secondary', operator: boolean): Promise<SwitchOutcome> {
  const log = createLogger({ name: 'carp-hast', format: 'text' });
  const engineUp = await new EngineControl(config.engine).list().then(
    () => true,
    () => false,
  );
  if (!engineUp) throw new ExitError('no supervisor runs and the engine does not answer hastctl; start one of them first', EX_UNAVAILABLE);
  log.info(`No supervisor answers on ${config.supervisor.controlSocket}; switching to ${role} here.`);
  const supervisor = new Supervisor({ config, ops: systemOps({ config, log }), log });
  return supervisor.requestSwitch(role, { operator, wait: true });
}

// `carp-hast switch primary|secondary`.
export const switchCommand = makeSwitchCommand('switch', true);

// The installed `carp-hast-switch primary|secondary`.
export const hookSwitchCommand = makeSwitchCommand('carp-hast-switch', false);
