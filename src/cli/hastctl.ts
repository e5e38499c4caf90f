import { DEFAULT_HAST_CONF, loadHastConf, type HastConfig, type HastResource } from '../config/hast-conf.js';
import { localNodeIdentity } from '../config/node-identity.js';
import { expandNumber } from '../common/expand-number.js';
import { ExitError, UsageError } from '../common/errors.js';
import { EX_DATAERR } from '../common/sysexits.js';
import { createComponent, readComponentMetadata } from '../engine/component-metadata.js';
import { ALL_RESOURCES, firstResourceError, isFailure, ROLE_CODES } from '../engine/control-protocol.js';
import { sendControlRequest } from '../engine/hastctl-client.js';
import { formatDump, formatList, formatStatus } from '../engine/hastctl-format.js';
import type { HastRole } from '../engine/metadata.js';
import { parseCommandArgs } from './args.js';
import { runCommand, type Command, type CommandOutput } from './command.js';

const USAGE = `usage: carp-hast hastctl create [-d] [-c config] [-n node] [-e extentsize] [-k keepdirty]
		[-m mediasize] name ...
       carp-hast hastctl role [-d] [-c config] [-n node] <init | primary | secondary> all | name ...
       carp-hast hastctl list [-d] [-c config] [-n node] [all | name ...]
       carp-hast hastctl status [-d] [-c config] [-n node] [all | name ...]
       carp-hast hastctl dump [-d] [-c config] [-n node] [all | name ...]
`;

const COMMON_OPTIONS = {
  config: { type: 'string', short: 'c' },
  debug: { type: 'boolean', short: 'd', multiple: true },
  node: { type: 'string', short: 'n' },
} as const;

const CREATE_OPTIONS = {
  ...COMMON_OPTIONS,
  extentsize: { type: 'string', short: 'e' },
  keepdirty: { type: 'string', short: 'k' },
  mediasize: { type: 'string', short: 'm' },
} as const;

// pjdlog's standard-error format, which scripts around hastctl(8) already match on.
function pjdlog(out: CommandOutput, level: 'ERROR' | 'WARNING', resource: string | undefined, message: string): void {
  out.stderr(`[${level}] ${resource === undefined ? '' : `[${resource}] `}${message}\n`);
}

function sizeOption(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const size = expandNumber(value);
  if (size === undefined) throw new UsageError(`Invalid ${name}: ${value}`);
  return size;
}

// Runs `action` for each named resource (or all), printing hastctl-style errors; returns the first non-zero code.
async function forEachResource(
  out: CommandOutput,
  config: HastConfig,
  names: string[],
  action: (resource: HastResource) => Promise<void>,
): Promise<number> {
  const all = names.length === 0 || (names.length === 1 && names[0] === 'all');
  let exitCode = 0;
  for (const name of all ? config.resources.map((r) => r.name) : names) {
    const resource = config.resources.find((r) => r.name === name);
    try {
      if (resource === undefined) throw new ExitError(`Unknown resource ${name}.`, EX_DATAERR);
      await action(resource);
    } catch (error) {
      if (!(error instanceof ExitError)) throw error;
      pjdlog(out, 'ERROR', resource === undefined ? undefined : name, error.message);
      if (exitCode === 0) exitCode = error.exitCode;
    }
  }
  return exitCode;
}

// Runs one exchange with the running engine; a failure to reach it is reported here, as hastctl does, and
// comes back as the exit code.
async function askDaemon<R>(out: CommandOutput, exchange: () => Promise<R>): Promise<R | number> {
  try {
    return await exchange();
  } catch (error) {
    if (!(error instanceof ExitError)) throw error;
    pjdlog(out, 'ERROR', undefined, error.message);
    return error.exitCode;
  }
}

// `role`: prints nothing on success; a resource hastd refused gets a warning, and its error is the exit code.
async function changeRole(out: CommandOutput, config: HastConfig, role: HastRole, names: string[]): Promise<number> {
  const reply = await askDaemon(out, () => sendControlRequest(config.control, { cmd: 'setrole', role, resources: names }));
  if (typeof reply === 'number') return reply;
  for (const entry of reply.resources) {
    if (isFailure(entry)) pjdlog(out, 'WARNING', entry.name, `Received error ${entry.error} from hastd.`);
  }
  return firstResourceError(reply.resources);
}

// `status` and `list`: no names means all.
async function showStatus(
  out: CommandOutput,
  config: HastConfig,
  names: string[],
  format: typeof formatStatus,
): Promise<number> {
  const resources = names.length === 0 ? [ALL_RESOURCES] : names;
  const reply = await askDaemon(out, () => sendControlRequest(config.control, { cmd: 'status', resources }));
  if (typeof reply === 'number') return reply;
  out.stdout(format(reply.resources));
  return firstResourceError(reply.resources);
}

function isRole(word: string | undefined): word is HastRole {
  return word !== undefined && Object.hasOwn(ROLE_CODES, word);
}

async function loadConfig(values: { config?: string; node?: string }): Promise<HastConfig> {
  return loadHastConf(values.config ?? DEFAULT_HAST_CONF, await localNodeIdentity(values.node));
}

// `carp-hast hastctl`: hastctl(8)'s verbs, output and exit codes; -n picks the node by name.
export const hastctlCommand: Command = {
  name: 'hastctl',
  usage: USAGE,
  async run(args, out) {
    const [verb, ...rest] = args;
    switch (verb) {
      case 'create': {
        const { values, positionals } = parseCommandArgs(rest, CREATE_OPTIONS);
        if (positionals.length === 0) throw new UsageError('create needs at least one resource name');
        const options = {
          extentsize: sizeOption(values.extentsize, 'extentsize'),
          keepdirty: sizeOption(values.keepdirty, 'keepdirty'),
          mediasize: sizeOption(values.mediasize, 'mediasize'),
        };
        const config = await loadConfig(values);
        return forEachResource(out, config, positionals, async (resource) => {
          await createComponent(resource, options);
        });
      }
      case 'dump': {
        const { values, positionals } = parseCommandArgs(rest, COMMON_OPTIONS);
        const config = await loadConfig(values);
        return forEachResource(out, config, positionals, async (resource) => {
          out.stdout(formatDump(await readComponentMetadata(resource)));
        });
      }
      case 'role': {
        const { values, positionals } = parseCommandArgs(rest, COMMON_OPTIONS);
        const [role, ...names] = positionals;
        if (!isRole(role)) throw new UsageError('role needs init, primary or secondary, then resource names or all');
        if (names.length === 0) throw new UsageError('role needs at least one resource name (or all)');
        return changeRole(out, await loadConfig(values), role, names);
      }
      case 'list':
      case 'status': {
        const { values, positionals } = parseCommandArgs(rest, COMMON_OPTIONS);
        return showStatus(out, await loadConfig(values), positionals, verb === 'list' ? formatList : formatStatus);
      }
      case undefined:
        throw new UsageError('a verb is required');
      default:
        throw new UsageError(`unknown verb '${verb}'`);
    }
  },
};

// `carp-hast hastctl ARGS` in this process, its text going to `out`: the same output and exit code, usage errors
// included, as the command run on its own, without the cost of starting one.
export function runHastctl(args: string[], out: CommandOutput): Promise<number> {
  return runCommand(hastctlCommand, args, out);
}
