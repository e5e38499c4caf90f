import { DEFAULT_HAST_CONF, loadHastConf, type HastConfig, type HastResource } from '../config/hast-conf.js';
import { localNodeIdentity } from '../config/node-identity.js';
import { expandNumber } from '../common/expand-number.js';
import { ExitError, NotImplementedError, UsageError } from '../common/errors.js';
import { EX_DATAERR } from '../common/sysexits.js';
import { createComponent, readComponentMetadata } from '../engine/component-metadata.js';
import { formatDump } from '../engine/hastctl-format.js';
import { parseCommandArgs } from './args.js';
import type { Command } from './command.js';

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
  help: { type: 'boolean', short: 'h' },
} as const;

const CREATE_OPTIONS = {
  ...COMMON_OPTIONS,
  extentsize: { type: 'string', short: 'e' },
  keepdirty: { type: 'string', short: 'k' },
  mediasize: { type: 'string', short: 'm' },
} as const;

// pjdlog's standard-error format, which scripts around hastctl(8) already match on.
function logError(resource: string | undefined, message: string): void {
  process.stderr.write(`[ERROR] ${resource === undefined ? '' : `[${resource}] `}${message}\n`);
}

function sizeOption(value: string | undefined, name: string): number | undefined {
  if (value === undefined) return undefined;
  const size = expandNumber(value);
  if (size === undefined) throw new UsageError(`Invalid ${name}: ${value}`);
  return size;
}

// Runs `action` for each named resource (or all), printing hastctl-style errors; returns the first non-zero code.
async function forEachResource(
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
      logError(resource === undefined ? undefined : name, error.message);
      if (exitCode === 0) exitCode = error.exitCode;
    }
  }
  return exitCode;
}

function printUsage(): number {
  process.stdout.write(USAGE);
  return 0;
}

async function loadConfig(values: { config?: string; node?: string }): Promise<HastConfig> {
  return loadHastConf(values.config ?? DEFAULT_HAST_CONF, await localNodeIdentity(values.node));
}

// `carp-hast hastctl`: hastctl(8)'s verbs, output and exit codes; -n picks the node by name.
export const hastctlCommand: Command = {
  name: 'hastctl',
  summary: 'control the replication engine (hastctl(8) compatible).',
  usage: USAGE,
  async run(args) {
    const [verb, ...rest] = args;
    if (verb === '-h' || verb === '--help') return printUsage();
    switch (verb) {
      case 'create': {
        const { values, positionals } = parseCommandArgs(rest, CREATE_OPTIONS);
        if (values.help) return printUsage();
        if (positionals.length === 0) throw new UsageError('create needs at least one resource name');
        const options = {
          extentsize: sizeOption(values.extentsize, 'extentsize'),
          keepdirty: sizeOption(values.keepdirty, 'keepdirty'),
          mediasize: sizeOption(values.mediasize, 'mediasize'),
        };
        const config = await loadConfig(values);
        return forEachResource(config, positionals, async (resource) => {
          await createComponent(resource, options);
        });
      }
      case 'dump': {
        const { values, positionals } = parseCommandArgs(rest, COMMON_OPTIONS);
        if (values.help) return printUsage();
        const config = await loadConfig(values);
        return forEachResource(config, positionals, async (resource) => {
          process.stdout.write(formatDump(await readComponentMetadata(resource)));
        });
      }
      case 'role':
      case 'list':
      case 'status':
        throw new NotImplementedError(`hastctl ${verb} (it needs the engine daemon)`);
      case undefined:
        throw new UsageError('a verb is required');
      default:
        throw new UsageError(`unknown verb '${verb}'`);
    }
  },
};
