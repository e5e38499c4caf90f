// The supervisor's configuration file (carp-hast.toml): TOML checked against a schema, every error pointing at
// the line and column it is about.
import { open } from 'node:fs/promises';
import { isIP } from 'node:net';
import cron from 'node-cron';
import { getStaticTOMLValue, ParseError, parseTOML } from 'toml-eslint-parser';
import type { AST } from 'toml-eslint-parser';
import { z } from 'zod';
import { ConfigError } from './config-error.js';
import type { SourcePosition } from './config-error.js';
import { DurationError, formatDuration, parseDuration } from './duration.js';

const ENGINE_KINDS = ['builtin', 'freebsd'] as const;
const CARP_SOURCES = ['devd', 'notify'] as const;
const FS_TYPES = ['ufs', 'ext4', 'xfs', 'zfs', 'none'] as const;
const FSCK_POLICIES = ['auto', 'always', 'never'] as const;
const DEMOTE_FAILURE_ACTIONS = ['none', 'reboot'] as const;

// Which replication engine runs the resources: carp-hast's own, or FreeBSD's hastd.
export type EngineKind = (typeof ENGINE_KINDS)[number];
// Where CARP transitions come from: devd's socket, or `carp-hast-switch` calls from hooks (ucarp, keepalived).
export type CarpSource = (typeof CARP_SOURCES)[number];
// The filesystem on /dev/hast/<name>; "none" leaves the device to a service that uses it raw.
export type FsType = (typeof FS_TYPES)[number];
// When to run fsck before mounting: "auto" preens ufs and ext4 and leaves xfs to its log replay.
export type FsckPolicy = (typeof FSCK_POLICIES)[number];
// What to do when the node cannot let go of a resource after the whole demotion ladder.
export type DemoteFailureAction = (typeof DEMOTE_FAILURE_ACTIONS)[number];

// One CARP virtual host this node follows, as devd names it: `subsystem=<vhid>@<interface>`.
export interface CarpVhid {
  vhid: number;
  interface: string;
}

// [engine]: which replication engine to drive and where its files are.
export interface EngineConfig {
  kind: EngineKind;
  hastConf: string;
  // The built-in engine's node name; undefined matches hast.conf's `on` blocks by hostname, like hastd.
  node: string | undefined;
  runDir: string;
  hastd: string;
  hastctl: string;
}

// [carp]: how the supervisor learns that this node is CARP MASTER, and how it gives MASTER up.
export interface CarpConfig {
  source: CarpSource;
  devdSocket: string;
  vhids: CarpVhid[];
  // Linux: the shared address whose presence on this node means MASTER.
  vip: string | undefined;
  // Linux: the command that makes CARP/VRRP give up MASTER after a failed promotion.
  stepDown: string[] | undefined;
}

// [supervisor]: the daemon's own behaviour.
export interface SupervisorSettings {
  controlSocket: string;
  minPromoteIntervalMs: number;
  settleMs: number;
  // How long a promotion waits for the peer to stop being primary before it gives up.
  peerReleaseTimeoutMs: number;
  // How long a resource must have been secondary before a missing connection means that no primary peer
  // exists: a primary peer connects to a new secondary only at its next reconnect attempt.
  peerConnectGraceMs: number;
  failback: boolean;
  onDemoteFailure: DemoteFailureAction;
  healthSchedule: string;
}

// One [[resource]]: a HAST resource and how its device is checked and mounted on the primary.
export interface ResourceConfig {
  name: string;
  fstype: FsType;
  mountpoint: string | undefined;
  mountOptions: string[];
  fsck: FsckPolicy;
  pool: string | undefined;
  deviceTimeoutMs: number;
  fsckTimeoutMs: number;
  mountTimeoutMs: number;
  // Where the resource's name is written, for errors found later (e.g. against hast.conf).
  position: SourcePosition;
}

// One [[service]]: a program started after the resources are mounted and stopped before they are released.
export interface ServiceConfig {
  name: string;
  start: string[];
  stop: string[];
  status: string[] | undefined;
  timeoutMs: number;
  // Where the service's name is written.
  position: SourcePosition;
}

// The whole supervisor configuration with every default filled in; services keep the file's order.
export interface SupervisorConfig {
  file: string;
  engine: EngineConfig;
  carp: CarpConfig;
  supervisor: SupervisorSettings;
  resources: ResourceConfig[];
  services: ServiceConfig[];
}

// Larger than any real configuration; refusing it keeps a wrong path (a disk image, a log) from being slurped.
const MAX_CONFIG_BYTES = 1024 * 1024;

// Where the supervisor looks for its configuration when not told: ports' etc on FreeBSD, /etc elsewhere.
export function defaultSupervisorConfPath(platform: NodeJS.Platform = process.platform): string {
  return platform === 'freebsd' ? '/usr/local/etc/carp-hast.toml' : '/etc/carp-hast.toml';
}

// Reads the configuration from text; `file` only names it in errors. Throws ConfigError.
export function parseSupervisorConf(text: string, file: string): SupervisorConfig {
  const program = parseTomlProgram(text, file);
  const positions = new TomlPositions(file, program);
  const result = fileSchema.safeParse(getStaticTOMLValue(program));
  if (!result.success) throw firstProblem(result.error.issues, positions);
  const config = toSupervisorConfig(result.data, positions);
  rejectDuplicates(config.resources, 'resource', 'name', (resource) => resource.name, positions);
  rejectDuplicates(config.resources, 'resource', 'mountpoint', (resource) => resource.mountpoint, positions);
  rejectDuplicates(config.services, 'service', 'name', (service) => service.name, positions);
  return config;
}

// Reads and checks the configuration file. Throws ConfigError (unreadable: exit 72; invalid: exit 78).
export async function loadSupervisorConf(file: string): Promise<SupervisorConfig> {
  return parseSupervisorConf(await readConfigText(file), file);
}

// Checks that every [[resource]] names a resource of hast.conf; the error points at the [[resource]]'s name.
export function checkResourcesAgainstHast(config: SupervisorConfig, hastResourceNames: string[]): void {
  for (const resource of config.resources) {
    if (hastResourceNames.includes(resource.name)) continue;
    const known = hastResourceNames.length === 0 ? 'it defines none' : `known: ${hastResourceNames.join(', ')}`;
    throw new ConfigError(
      `resource.name: ${JSON.stringify(resource.name)} is not a resource of ${config.engine.hastConf} (${known})`,
      resource.position,
    );
  }
}

// The effective configuration in the file's own keys and spellings, defaults included, for `check-config`.
export function supervisorConfigToJson(config: SupervisorConfig) {
  const { engine, carp, supervisor } = config;
  return {
    engine: {
      kind: engine.kind,
      hast_conf: engine.hastConf,
      node: engine.node ?? '',
      run_dir: engine.runDir,
      hastd: engine.hastd,
      hastctl: engine.hastctl,
    },
    carp: {
      source: carp.source,
      devd_socket: carp.devdSocket,
      vhids: carp.vhids.map(({ vhid, interface: ifname }) => `${vhid}@${ifname}`),
      vip: carp.vip ?? '',
      step_down: carp.stepDown ?? [],
    },
    supervisor: {
      control_socket: supervisor.controlSocket,
      min_promote_interval: formatDuration(supervisor.minPromoteIntervalMs),
      settle: formatDuration(supervisor.settleMs),
      peer_release_timeout: formatDuration(supervisor.peerReleaseTimeoutMs),
      peer_connect_grace: formatDuration(supervisor.peerConnectGraceMs),
      failback: supervisor.failback,
      on_demote_failure: supervisor.onDemoteFailure,
      health_schedule: supervisor.healthSchedule,
    },
    resource: config.resources.map((resource) => ({
      name: resource.name,
      fstype: resource.fstype,
      mountpoint: resource.mountpoint ?? '',
      mount_options: resource.mountOptions,
      fsck: resource.fsck,
      pool: resource.pool ?? '',
      device_timeout: formatDuration(resource.deviceTimeoutMs),
      fsck_timeout: formatDuration(resource.fsckTimeoutMs),
      mount_timeout: formatDuration(resource.mountTimeoutMs),
    })),
    service: config.services.map((service) => ({
      name: service.name,
      start: service.start,
      stop: service.stop,
      status: service.status ?? [],
      timeout: formatDuration(service.timeoutMs),
    })),
  };
}

// ---- Reading the file -------------------------------------------------------------------------------------

async function readConfigText(file: string): Promise<string> {
  let bytes: Buffer | undefined;
  try {
    bytes = await readUnlessLarger(file, MAX_CONFIG_BYTES);
  } catch (cause) {
    throw new ConfigError(`cannot read ${file}`, undefined, { cause, unreadable: true });
  }
  if (bytes === undefined) throw new ConfigError(`${file}: larger than 1 MiB, too large for a configuration file`);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new ConfigError(`${file}: not UTF-8 text`);
  }
}

// The file's contents, or undefined when it holds more than `limit` bytes.
async function readUnlessLarger(file: string, limit: number): Promise<Buffer | undefined> {
  const handle = await open(file, 'r');
  try {
    const { size } = await handle.stat();
    return size > limit ? undefined : await handle.readFile();
  } finally {
    await handle.close();
  }
}

function parseTomlProgram(text: string, file: string): AST.TOMLProgram {
  try {
    return parseTOML(text);
  } catch (error) {
    if (!(error instanceof ParseError)) throw error;
    throw new ConfigError(`invalid TOML: ${error.message}`, { file, line: error.lineNumber, col: error.column + 1 });
  }
}

// ---- The schema: the file's shape, defaults and per-value rules ----------------------------------------------

// Describes a TOML value in an error: its type, and for a string, number or boolean the value itself.
function describeValue(value: unknown): string {
  if (typeof value === 'string') return `string ${JSON.stringify(value)}`;
  if (typeof value === 'number' || typeof value === 'boolean') return `${typeof value} ${value}`;
  if (value instanceof Date) return 'date-time';
  if (Array.isArray(value)) return 'array';
  return 'table';
}

// The message for a value of the wrong type, or for a key the file must have but does not.
function expected(what: string, whenMissing = 'required key is missing') {
  return (issue: { input?: unknown }) =>
    issue.input === undefined ? whenMissing : `expected ${what}, got ${describeValue(issue.input)}`;
}

// A TOML table with exactly these keys; the message of an unknown key lists the known ones.
function table<Shape extends z.core.$ZodLooseShape>(shape: Shape) {
  return z.strictObject(shape, {
    error: (issue) =>
      issue.code === 'unrecognized_keys' ? `known: ${Object.keys(shape).join(', ')}` : expected('a table')(issue),
  });
}

function oneOf<const Values extends readonly [string, ...string[]]>(values: Values) {
  return z.enum(values, { error: expected(`one of ${values.map((value) => JSON.stringify(value)).join(', ')}`) });
}

const text = z.string({ error: expected('a string') });

const nonEmptyText = text.min(1, 'must not be empty');

const absolutePath = z
  .string({ error: expected('an absolute path') })
  .refine((path) => path.startsWith('/'), {
    error: (issue) => `expected an absolute path, got ${describeValue(issue.input)}`,
  });

const stringArray = z.array(text, { error: expected('an array of strings') });

// A program and its arguments, run without a shell.
const command = z
  .array(text, { error: expected('a command as an array of strings, e.g. ["service", "nfsd", "onestart"]') })
  .min(1, 'expected a command, got an empty array')
  .refine((argv) => argv[0] !== '', 'the program (first element) must not be empty');

// A command that may be left out: [] means none.
const optionalCommand = stringArray
  .refine((argv) => argv.length === 0 || argv[0] !== '', 'the program (first element) must not be empty')
  .default([]);

function duration(defaultText: string) {
  return anyDuration().default(parseDuration(defaultText));
}

function anyDuration() {
  return z
    .string({ error: expected('a duration string such as "20s"') })
    .transform((durationText, context) => {
      try {
        return parseDuration(durationText);
      } catch (error) {
        if (!(error instanceof DurationError)) throw error;
        context.addIssue({ code: 'custom', message: error.message });
        return z.NEVER;
      }
    });
}

// The default peer_connect_grace: a reconnect interval of the engine's primary (hastd's guard thread checks
// every 10 s, the built-in engine retries every 5 s) and a second to spare.
const PEER_CONNECT_GRACE_MS: Record<EngineKind, number> = { freebsd: 11_000, builtin: 6_000 };

// devd's `subsystem=` for CARP: a vhid from 1 to 255, "@", an interface name (at most 15 characters).
const VHID_SYNTAX = /^(\d{1,3})@([A-Za-z0-9_.-]{1,15})$/;

const carpVhid = z
  .string({ error: expected('a "vhid@interface" string') })
  .transform((vhidText, context): CarpVhid => {
    const [, vhid = '0', ifname = ''] = VHID_SYNTAX.exec(vhidText) ?? [];
    if (Number(vhid) < 1 || Number(vhid) > 255) {
      const help = '(a vhid from 1 to 255, "@", an interface, e.g. "1@em0")';
      context.addIssue({ code: 'custom', message: `invalid vhid@interface ${JSON.stringify(vhidText)} ${help}` });
      return z.NEVER;
    }
    return { vhid: Number(vhid), interface: ifname };
  });

const ipAddress = text.refine((address) => address === '' || isIP(address) !== 0, {
  error: (issue) => `expected an IPv4 or IPv6 address, got ${describeValue(issue.input)}`,
});

const CRON_HELP = '(five fields, or six with seconds first, e.g. "*/10 * * * * *")';

const cronSchedule = text.refine((schedule) => cron.validate(schedule), {
  error: (issue) => `invalid cron schedule ${JSON.stringify(issue.input)} ${CRON_HELP}`,
});

const engineTable = table({
  kind: oneOf(ENGINE_KINDS).default('builtin'),
  hast_conf: absolutePath.default('/etc/hast.conf'),
  node: text.default(''),
  run_dir: absolutePath.default('/var/run/carp-hast'),
  hastd: absolutePath.default('/sbin/hastd'),
  hastctl: absolutePath.default('/sbin/hastctl'),
});

const carpTable = table({
  source: oneOf(CARP_SOURCES).default('devd'),
  devd_socket: absolutePath.default('/var/run/devd.pipe'),
  vhids: z.array(carpVhid, { error: expected('an array of strings') }).default([]),
  vip: ipAddress.default(''),
  step_down: optionalCommand,
}).superRefine((carp, context) => {
  if (carp.source === 'devd' && carp.vhids.length === 0) {
    const message = 'required when carp.source is "devd": the vhid@interface pairs this node follows, e.g. ["1@em0"]';
    context.addIssue({ code: 'custom', path: ['vhids'], message });
  }
});

const supervisorTable = table({
  control_socket: absolutePath.default('/var/run/carp-hast/supervisor.sock'),
  min_promote_interval: duration('20s'),
  settle: duration('0s'),
  peer_release_timeout: duration('60s'),
  peer_connect_grace: anyDuration().optional(),
  failback: z.boolean({ error: expected('true or false') }).default(false),
  on_demote_failure: oneOf(DEMOTE_FAILURE_ACTIONS).default('none'),
  health_schedule: cronSchedule.default('*/10 * * * * *'),
});

const resourceTable = table({
  name: nonEmptyText,
  fstype: oneOf(FS_TYPES),
  mountpoint: absolutePath.default(''),
  mount_options: stringArray.default([]),
  fsck: oneOf(FSCK_POLICIES).default('auto'),
  pool: text.default(''),
  device_timeout: duration('30s'),
  fsck_timeout: duration('1h'),
  mount_timeout: duration('60s'),
}).superRefine((resource, context) => {
  const { fstype } = resource;
  const complain = (key: 'pool' | 'mountpoint', message: string) =>
    context.addIssue({ code: 'custom', path: [key], message });
  if (fstype === 'zfs' && resource.pool === '') complain('pool', 'required with fstype "zfs": the pool to import');
  if (fstype !== 'zfs' && resource.pool !== '') complain('pool', `only used with fstype "zfs", not "${fstype}"`);
  const mounted = fstype !== 'zfs' && fstype !== 'none';
  if (mounted && resource.mountpoint === '') complain('mountpoint', `required with fstype "${fstype}"`);
  if (!mounted && resource.mountpoint !== '') {
    const why = fstype === 'zfs' ? ' (the pool\'s datasets carry their own mountpoints)' : '';
    complain('mountpoint', `not used with fstype "${fstype}"${why}`);
  }
});

const serviceTable = table({
  name: nonEmptyText,
  start: command,
  stop: command,
  status: optionalCommand,
  timeout: duration('60s'),
});

// A missing table is an empty one, so its keys' defaults apply (`prefault` runs the default through the schema).
const fileSchema = table({
  engine: engineTable.prefault({}),
  carp: carpTable.prefault({}),
  supervisor: supervisorTable.prefault({}),
  resource: z
    .array(resourceTable, { error: expected('[[resource]] tables', 'at least one [[resource]] is required') })
    .min(1, 'at least one [[resource]] is required'),
  service: z.array(serviceTable, { error: expected('[[service]] tables') }).default([]),
});

type SupervisorFile = z.output<typeof fileSchema>;

function toSupervisorConfig(parsed: SupervisorFile, positions: TomlPositions): SupervisorConfig {
  const { engine, carp, supervisor } = parsed;
  return {
    file: positions.file,
    engine: {
      kind: engine.kind,
      hastConf: engine.hast_conf,
      node: unlessEmpty(engine.node),
      runDir: engine.run_dir,
      hastd: engine.hastd,
      hastctl: engine.hastctl,
    },
    carp: {
      source: carp.source,
      devdSocket: carp.devd_socket,
      vhids: carp.vhids,
      vip: unlessEmpty(carp.vip),
      stepDown: unlessEmpty(carp.step_down),
    },
    supervisor: {
      controlSocket: supervisor.control_socket,
      minPromoteIntervalMs: supervisor.min_promote_interval,
      settleMs: supervisor.settle,
      peerReleaseTimeoutMs: supervisor.peer_release_timeout,
      peerConnectGraceMs: supervisor.peer_connect_grace ?? PEER_CONNECT_GRACE_MS[engine.kind],
      failback: supervisor.failback,
      onDemoteFailure: supervisor.on_demote_failure,
      healthSchedule: supervisor.health_schedule,
    },
    resources: parsed.resource.map((resource, index) => ({
      name: resource.name,
      fstype: resource.fstype,
      mountpoint: unlessEmpty(resource.mountpoint),
      mountOptions: resource.mount_options,
      fsck: resource.fsck,
      pool: unlessEmpty(resource.pool),
      deviceTimeoutMs: resource.device_timeout,
      fsckTimeoutMs: resource.fsck_timeout,
      mountTimeoutMs: resource.mount_timeout,
      position: positions.valuePosition(['resource', index, 'name']),
    })),
    services: parsed.service.map((service, index) => ({
      name: service.name,
      start: service.start,
      stop: service.stop,
      status: unlessEmpty(service.status),
      timeoutMs: service.timeout,
      position: positions.valuePosition(['service', index, 'name']),
    })),
  };
}

// TOML has no null, so the file writes "not set" as "" or []; the typed configuration says undefined.
function unlessEmpty<Value extends string | string[]>(value: Value): Value | undefined {
  return value.length === 0 ? undefined : value;
}

// Two [[resource]] or [[service]] tables with the same value for `key`: the error points at the second.
function rejectDuplicates<Entry>(
  entries: Entry[],
  tableName: 'resource' | 'service',
  key: string,
  valueOf: (entry: Entry) => string | undefined,
  positions: TomlPositions,
): void {
  const firstIndex = new Map<string, number>();
  entries.forEach((entry, index) => {
    const value = valueOf(entry);
    if (value === undefined) return;
    const first = firstIndex.get(value);
    if (first === undefined) {
      firstIndex.set(value, index);
      return;
    }
    const firstLine = positions.valuePosition([tableName, first, key]).line;
    const detail = `duplicate ${JSON.stringify(value)} (already used by the [[${tableName}]] at line ${firstLine})`;
    throw new ConfigError(`${tableName}.${key}: ${detail}`, positions.valuePosition([tableName, index, key]));
  });
}

// ---- Turning schema issues into one error at the right line ------------------------------------------------

type IssuePath = readonly PropertyKey[];

// Of all problems zod found, the one that comes first in the file, so fixing them top to bottom works.
function firstProblem(issues: z.core.$ZodIssue[], positions: TomlPositions): ConfigError {
  const problems = issues.flatMap((issue) => {
    if (issue.code !== 'unrecognized_keys') {
      return [{ detail: `${formatPath(issue.path)}: ${issue.message}`, position: positions.valuePosition(issue.path) }];
    }
    return issue.keys.map((key) => ({
      detail:
        issue.path.length === 0
          ? `unknown table '${key}' (${issue.message})`
          : `${formatPath([...issue.path, key])}: unknown key (${issue.message})`,
      position: positions.keyPosition([...issue.path, key]),
    }));
  });
  // zod reports at least one issue whenever parsing fails, so there is always a first.
  const first = problems.reduce((earliest, problem) =>
    isBefore(problem.position, earliest.position) ? problem : earliest,
  );
  return new ConfigError(first.detail, first.position);
}

function isBefore(a: SourcePosition, b: SourcePosition): boolean {
  return a.line < b.line || (a.line === b.line && a.col < b.col);
}

// `resource.mountpoint`, `carp.vhids[1]`: array-of-tables indexes are left out, since the line shows which table.
function formatPath(path: IssuePath): string {
  return path
    .map((segment, index) => {
      if (typeof segment !== 'number') return `${index === 0 ? '' : '.'}${String(segment)}`;
      return index === path.length - 1 ? `[${segment}]` : '';
    })
    .join('');
}

// ---- Where each key and value sits in the file -------------------------------------------------------------

interface Located {
  key?: AST.Position;
  value?: AST.Position;
  table?: AST.Position;
}

// Positions of the keys, values and table headers of a parsed TOML file, looked up by key path.
class TomlPositions {
  private readonly byPath = new Map<string, Located>();

  constructor(
    readonly file: string,
    program: AST.TOMLProgram,
  ) {
    for (const node of program.body[0].body) {
      if (node.type === 'TOMLKeyValue') {
        this.recordKeyValue(node, []);
        continue;
      }
      this.recordTableHeader(node);
      for (const keyValue of node.body) this.recordKeyValue(keyValue, node.resolvedKey);
    }
  }

  // Where the value at `path` is written; for a missing key, the header (or key) of the nearest table that is.
  valuePosition(path: IssuePath): SourcePosition {
    for (let depth = path.length; depth >= 0; depth--) {
      const located = this.byPath.get(pathId(path.slice(0, depth)));
      const position = located?.value ?? located?.table ?? located?.key;
      if (position !== undefined) return this.sourcePosition(position);
    }
    return { file: this.file, line: 1, col: 1 };
  }

  // Where the key at `path` is written.
  keyPosition(path: IssuePath): SourcePosition {
    const key = this.byPath.get(pathId(path))?.key;
    return key === undefined ? this.valuePosition(path) : this.sourcePosition(key);
  }

  private sourcePosition(position: AST.Position): SourcePosition {
    return { file: this.file, line: position.line, col: position.column + 1 };
  }

  private entry(path: IssuePath): Located {
    const id = pathId(path);
    let located = this.byPath.get(id);
    if (located === undefined) {
      located = {};
      this.byPath.set(id, located);
    }
    return located;
  }

  // `[a.b]` or `[[a.b]]`: each name in the header is where that table's key is written. The resolved key also
  // holds array-of-tables indexes, which the header does not spell.
  private recordTableHeader(table: AST.TOMLTable): void {
    const names = table.key.keys;
    let next = 0;
    table.resolvedKey.forEach((segment, depth) => {
      if (typeof segment === 'number') return;
      const name = names[next++];
      if (name !== undefined) this.recordKey(table.resolvedKey.slice(0, depth + 1), name);
    });
    this.entry(table.resolvedKey).table ??= table.loc.start;
  }

  private recordKeyValue(keyValue: AST.TOMLKeyValue, base: IssuePath): void {
    let path = base;
    for (const name of keyValue.key.keys) {
      path = [...path, keyName(name)];
      this.recordKey(path, name);
    }
    this.recordValue(keyValue.value, path);
  }

  private recordKey(path: IssuePath, name: AST.TOMLBare | AST.TOMLQuoted): void {
    // getStaticTOMLValue assigns keys to plain objects, where `__proto__` would replace the prototype
    // and smuggle in values no key check sees.
    if (keyName(name) === '__proto__') {
      throw new ConfigError("key '__proto__' is not allowed", this.sourcePosition(name.loc.start));
    }
    this.entry(path).key ??= name.loc.start;
  }

  private recordValue(value: AST.TOMLContentNode, path: IssuePath): void {
    this.entry(path).value = value.loc.start;
    if (value.type === 'TOMLArray') {
      value.elements.forEach((element, index) => this.recordValue(element, [...path, index]));
    }
    if (value.type === 'TOMLInlineTable') {
      for (const keyValue of value.body) this.recordKeyValue(keyValue, path);
    }
  }
}

function keyName(name: AST.TOMLBare | AST.TOMLQuoted): string {
  return name.type === 'TOMLBare' ? name.name : name.value;
}

function pathId(path: IssuePath): string {
  return JSON.stringify(path.map(String));
}
