import { ExitError, UsageError } from '../common/errors.js';
import { EX_SOFTWARE, EX_UNAVAILABLE } from '../common/sysexits.js';
import { sendSupervisorRequest, SupervisorUnavailableError } from '../supervisor/control-socket.js';
import { formatStatusReport, type StatusReport } from '../supervisor/status-report.js';
import { parseCommandArgs } from './args.js';
import type { Command } from './command.js';
import { loadCheckedSupervisorConf } from './supervisor-config.js';

const USAGE = `usage: carp-hast status [-c config] [--json]

Shows what the running supervisor knows: CARP state, the wanted and the actual role, each resource (engine
role and status, dirty bytes, device, mount), the services, the last transitions with the duration of each
step, and warnings (split-brain, degraded, refused promotion, failed demotion) in plain words. --json prints
the same as one JSON object for scripts. Exit 69 when no supervisor runs.
`;

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  json: { type: 'boolean' },
} as const;

// A status request answers at once; a supervisor that takes longer is stuck, and saying so is the answer.
const STATUS_TIMEOUT_MS = 10_000;

// `carp-hast status`: show CARP state, roles, resources and recent transitions.
export const statusCommand: Command = {
  name: 'status',
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, OPTIONS);
    if (positionals.length > 0) throw new UsageError(`unexpected argument '${positionals[0]}'`);
    const config = await loadCheckedSupervisorConf(values.config);
    const reply = await sendSupervisorRequest(config.supervisor.controlSocket, { op: 'status' }, STATUS_TIMEOUT_MS).catch((error: unknown) => {
      if (error instanceof SupervisorUnavailableError) throw new ExitError(error.message, EX_UNAVAILABLE);
      throw error;
    });
    // The supervisor answers ok:false only when building its report failed; there is nothing to show then.
    if (!reply.ok) throw new ExitError(`the supervisor on ${config.supervisor.controlSocket} could not report its status: ${reply.message}`, EX_SOFTWARE);
    const report = reply.data as StatusReport;
    process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : formatStatusReport(report));
    return 0;
  },
};
