import { spawn } from 'node:child_process';
import { openSync } from 'node:fs';
import { mkdir } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { DEFAULT_HAST_CONF, loadHastConf } from '../config/hast-conf.js';
import { localNodeIdentity } from '../config/node-identity.js';
import { describeError, ExitError } from '../common/errors.js';
import { expandNumber } from '../common/expand-number.js';
import { createLogger, type Logger } from '../common/log.js';
import { EX_OSERR, EX_USAGE } from '../common/sysexits.js';
import { Engine } from '../engine/engine.js';
import { Pidfile } from '../engine/pidfile.js';
import { parseCommandArgs } from './args.js';
import type { Command } from './command.js';
import { serveUntilSignalled } from './signals.js';

const USAGE = `usage: carp-hast hastd [-dFh] [-c config] [-n node] [-P pidfile] [--run-dir DIR] [--log-format text|json]
                      [--no-attach] [--sync-rate RATE]

The built-in HAST engine. -F stays in the foreground and logs to stderr (text lines by default, JSON for a
supervising process); without -F it detaches, logs JSON to <run-dir>/hastd.log and writes the pid file.
-d (repeatable) raises the log level. -n picks hast.conf's 'on' blocks by node name instead of the hostname.
SIGHUP reloads hast.conf (the old configuration stays if the new one is invalid); SIGTERM stops cleanly.
A primary's device is served over NBD at <run-dir>/<name>.nbd and, when run as root on Linux, attached as
/dev/hast/<name>; --no-attach keeps it to NBD. --sync-rate caps each resource's resynchronisation at RATE
bytes per second (e.g. 50M; default: no cap, the sync only steps back while the application is busy).
`;

export const DEFAULT_RUN_DIR = '/var/run/carp-hast';

const OPTIONS = {
  config: { type: 'string', short: 'c' },
  debug: { type: 'boolean', short: 'd', multiple: true },
  foreground: { type: 'boolean', short: 'F' },
  node: { type: 'string', short: 'n' },
  pidfile: { type: 'string', short: 'P' },
  'run-dir': { type: 'string' },
  'log-format': { type: 'string' },
  'no-attach': { type: 'boolean' },
  'sync-rate': { type: 'string' },
} as const;

// `carp-hast hastd`: the built-in replication engine, compatible with hastd(8).
export const hastdCommand: Command = {
  name: 'hastd',
  usage: USAGE,
  async run(args) {
    const { values, positionals } = parseCommandArgs(args, OPTIONS);
    if (positionals.length > 0) throw new ExitError(`unexpected argument '${positionals[0]}'`, EX_USAGE);
    const format = values['log-format'] ?? 'text';
    if (format !== 'text' && format !== 'json') throw new ExitError(`--log-format must be text or json, not '${format}'`, EX_USAGE);
    const runDir = resolve(values['run-dir'] ?? DEFAULT_RUN_DIR);
    const syncRate = values['sync-rate'] === undefined ? undefined : expandNumber(values['sync-rate']);
    if (syncRate === undefined && values['sync-rate'] !== undefined) {
      throw new ExitError(`--sync-rate takes bytes per second (e.g. 50M), not '${values['sync-rate']}'`, EX_USAGE);
    }
    if (!values.foreground) return detach(args, runDir);
    const debug = values.debug?.length ?? 0;
    const log = createLogger({ name: 'hastd', level: debug >= 2 ? 'trace' : debug === 1 ? 'debug' : 'info', format });
    // A relative path would break SIGHUP reloads after a chdir; hastd resolves it with realpath for the same reason.
    const configFile = resolve(values.config ?? DEFAULT_HAST_CONF);
    const identity = await localNodeIdentity(values.node);
    const config = await loadHastConf(configFile, identity);
    const pidfile = values.pidfile === undefined ? undefined : await Pidfile.acquire(values.pidfile);
    let engine: Engine;
    try {
      engine = await Engine.start(config, { log, runDir, attach: !values['no-attach'], syncRate: syncRate || undefined });
    } catch (error) {
      await pidfile?.release();
      throw error;
    }
    const served = serveEngine(engine, log, async () => loadHastConf(configFile, identity), pidfile);
    // Started by detach(): tell the parent we are up, then cut the channel so it can exit.
    if (process.send !== undefined) {
      process.send('ready');
      process.disconnect();
    }
    return served;
  },
};

// Runs the engine until SIGTERM or SIGINT; SIGHUP reloads, keeping the old configuration if the new one fails.
function serveEngine(
  engine: Engine,
  log: Logger,
  loadConfig: () => ReturnType<typeof loadHastConf>,
  pidfile: Pidfile | undefined,
): Promise<number> {
  let reloading = Promise.resolve();
  return serveUntilSignalled(log, {
    reload() {
      reloading = reloading.then(async () => {
        log.info('Reloading configuration...');
        try {
          await engine.reload(await loadConfig());
        } catch (error) {
          log.error(`Configuration not reloaded: ${describeError(error)}`);
        }
      });
    },
    async stop(signal) {
      log.info(`Received ${signal}, exiting.`);
      await reloading;
      await engine.stop();
      await pidfile?.release();
    },
    failureCode: EX_OSERR,
  });
}

async function detach(args: string[], runDir: string): Promise<number> {
  await mkdir(runDir, { recursive: true, mode: 0o755 });
  const logFile = join(runDir, 'hastd.log');
  const output = openSync(logFile, 'a', 0o640);
  const childArgs = [...args, '-F', '--log-format', 'json'];
  if (!args.some((a) => a === '-P' || a.startsWith('--pidfile'))) childArgs.push('-P', join(runDir, 'hastd.pid'));
  const child = spawn(process.execPath, [process.argv[1] ?? '', 'hastd', ...childArgs], {
    detached: true,
    stdio: ['ignore', output, output, 'ipc'],
  });
  const exitCode = await new Promise<number | undefined>((resolveWait) => {
    child.once('message', () => resolveWait(undefined));
    child.once('exit', (code) => resolveWait(code ?? EX_OSERR));
  });
  if (exitCode !== undefined) {
    process.stderr.write(`carp-hast hastd: the engine exited with status ${exitCode}; see ${logFile}\n`);
    return exitCode;
  }
  child.disconnect();
  child.unref();
  return 0;
}
