import { resolve } from 'node:path';
import { describeError, ExitError } from '../common/errors.js';
import { createLogger, type Logger } from '../common/log.js';
import { EX_SOFTWARE, EX_USAGE } from '../common/sysexits.js';
import { SupervisorDaemon } from '../supervisor/daemon.js';
import { parseCommandArgs } from './args.js';
import type { Command } from './command.js';
import { serveUntilSignalled } from './signals.js';
import { loadCheckedSupervisorConf } from './supervisor-config.js';

const USAGE = `usage: carp-hast supervise [-d] [-c config] [--log-format text|json]

The failover supervisor, in the foreground (daemon(8) or systemd keep it running). It starts the replication
engine as its child, follows CARP through devd's socket (or carp-hast-switch calls) and reconciles the node
with what CARP says: promote (engine role, /dev/hast, fsck, mount, services) or demote (the reverse).
-c names the configuration (default /usr/local/etc/carp-hast.toml on FreeBSD, /etc/carp-hast.toml elsewhere);
-d (repeatable) raises the log level; logs go to stderr as JSON lines (--log-format text for people and syslog).
SIGHUP re-reads the configuration; SIGTERM lets go of the storage (services, mounts, role secondary) and exits.
`;

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  debug: { type: 'boolean', short: 'd', multiple: true },
  'log-format': { type: 'string' },
} as const;

// `carp-hast supervise`: run the failover supervisor daemon.
export const superviseCommand: Command = {
  name: 'supervise',
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, OPTIONS);
    if (positionals.length > 0) throw new ExitError(`unexpected argument '${positionals[0]}'`, EX_USAGE);
    const format = values['log-format'] ?? 'json';
    if (format !== 'text' && format !== 'json') throw new ExitError(`--log-format must be text or json, not '${format}'`, EX_USAGE);
    const debug = values.debug?.length ?? 0;
    const log = createLogger({ name: 'carp-hast', level: debug >= 2 ? 'trace' : debug === 1 ? 'debug' : 'info', format });
    const configFile = values.config === undefined ? undefined : resolve(values.config);
    const config = await loadCheckedSupervisorConf(configFile);
    const daemon = await SupervisorDaemon.start({ config, log });
    return superviseUntilSignalled(daemon, log, () => loadCheckedSupervisorConf(configFile));
  },
};

// Supervises until SIGTERM or SIGINT, which let go of the storage; SIGHUP re-reads the configuration.
function superviseUntilSignalled(daemon: SupervisorDaemon, log: Logger, load: typeof loadCheckedSupervisorConf): Promise<number> {
  return serveUntilSignalled(log, {
    reload() {
      load().then(
        (config) => daemon.reload(config),
        (error: unknown) => log.error(`Configuration not reloaded, keeping the old one: ${describeError(error)}`),
      );
    },
    async stop(signal) {
      log.info(`Received ${signal}; letting go of the storage and exiting.`);
      await daemon.stop();
    },
    failureCode: EX_SOFTWARE,
  });
}
