// hastctl(8)'s `status` and `list` output read back into values. The supervisor drives both engines through
// the hastctl command line, so this text is its only view of an engine. Formats (sbin/hastctl/hastctl.c):
// - `status`, FreeBSD 10 on and our engine: a header, then `<name>\t<status %-9s><role %-15s><localpath>\t
//   <remoteaddr>` per resource, or `<name>\tERR<n>`.
// - `list` (and `status` before FreeBSD 10, which had no `list`): a `<name>:` line, then `  key: value` fields and
//   `    key: value` statistics; `  error: <n>` for a failed resource. `local errors` came with `list`;
//   `workerpid` and `queues` came later still, and `workerpid` is printed only when a worker runs.
// - Our engine's additions: status `split-brain`, and in `list` a `split-brain:` line after `dirty:` saying what
//   each node changed since the two parted. FreeBSD's hastd reports split-brain only in its log.
import type { ReplicationMode } from '../config/hast-conf.js';
import type { HastRole } from '../engine/metadata.js';

const ROLES: readonly HastRole[] = ['init', 'primary', 'secondary'];
const WORKER_STATES = ['complete', 'degraded', 'split-brain'] as const;
const REPLICATION_MODES: readonly ReplicationMode[] = ['fullsync', 'memsync', 'async'];

// What a running worker says of its link to the peer: complete when both connections are up; split-brain (our
// engine only) when the last handshake was refused because both nodes wrote while apart.
export type HastWorkerState = (typeof WORKER_STATES)[number];

// hastctl output that does not read as hastctl's format; names the line (1-based) and quotes it.
export class HastctlOutputError extends Error {
  readonly line: number;

  constructor(line: number, text: string, problem: string) {
    super(`hastctl output line ${line}: ${problem}: ${JSON.stringify(text)}`);
    this.name = 'HastctlOutputError';
    this.line = line;
  }
}

// A resource hastd could not report on: `ERR<n>` in status, `error: <n>` in list (1: hastd does not know it).
export interface HastctlFailure {
  name: string;
  error: number;
}

// One resource as `hastctl status` shows it.
export interface HastStatus {
  name: string;
  role: HastRole;
  // undefined ("-") when no worker answered: role init, or a secondary that no primary has reached yet.
  status: HastWorkerState | undefined;
  localpath: string;
  remoteaddr: string;
}

// A line of `hastctl status`: a resource, or a resource hastd could not report on.
export type HastStatusEntry = HastStatus | HastctlFailure;

// Per-resource counters. Counters are uint64 in hastd; numbers lose exactness only past 2^53, which is fine for
// health reports.
export interface HastStatistics {
  reads: number;
  writes: number;
  deletes: number;
  flushes: number;
  activemapUpdates: number;
  // undefined on releases that do not print the line.
  localErrors: { read: number; write: number; delete: number; flush: number } | undefined;
  queues: { local: number; send: number; recv: number; done: number; idle: number } | undefined;
}

// Bytes of the extents each node changed since the two parted (our engine's `split-brain:` line); `peer` is
// undefined when the peer did not say.
export interface HastSplitBrainChanges {
  local: number;
  peer: number | undefined;
}

// One resource as `hastctl list` shows it. Without a worker the sizes and counters read 0.
export interface HastList extends HastStatus {
  provname: string;
  extentsize: number;
  keepdirty: number;
  sourceaddr: string | undefined;
  // The negotiated mode while a worker runs.
  replication: ReplicationMode;
  // undefined when no worker runs, and on releases that do not print it.
  workerpid: number | undefined;
  // Bytes in extents marked dirty, i.e. what a resynchronisation would copy; 0 on a secondary.
  dirty: number;
  // Set with status split-brain, by our engine only.
  splitBrain: HastSplitBrainChanges | undefined;
  statistics: HastStatistics;
}

// A block of `hastctl list`: a resource, or a resource hastd could not report on.
export type HastListEntry = HastList | HastctlFailure;

// True for an entry that carries hastd's error instead of a report.
export function isHastctlFailure(entry: HastStatusEntry | HastListEntry): entry is HastctlFailure {
  return 'error' in entry;
}

const STATUS_HEADER = 'Name\tStatus\t Role\t\tComponents';
const STATUS_ROW = /^([^\t]+)\t(.*)$/;
const STATUS_FIELDS = /^(\S+) +(\S+) +([^\t]*)\t(.*)$/;
const FAILURE = /^ERR(\d+)$/;

// Reads `hastctl status`: the table of current releases and our engine, or the blocks of releases before
// FreeBSD 10. Throws HastctlOutputError for a line that breaks the format.
export function parseHastctlStatus(text: string): HastStatusEntry[] {
  const lines = text.split('\n');
  const header = lines.indexOf(STATUS_HEADER);
  if (header === -1) return parseHastctlList(text).map(statusOfListEntry);
  const entries: HastStatusEntry[] = [];
  lines.forEach((line, index) => {
    const row = index > header ? STATUS_ROW.exec(line) : null;
    if (row === null) return;
    const [, name = '', rest = ''] = row;
    const failure = FAILURE.exec(rest);
    if (failure !== null) {
      entries.push({ name, error: Number(failure[1]) });
      return;
    }
    const source = new SourceLine(index + 1, line);
    const fields = STATUS_FIELDS.exec(rest);
    if (fields === null) throw source.error('expected "<name>\\t<status> <role> <localpath>\\t<remoteaddr>"');
    const [, status = '', role = '', localpath = '', remoteaddr = ''] = fields;
    entries.push({
      name,
      status: status === '-' ? undefined : source.expectOneOf('status', status, WORKER_STATES),
      role: source.expectOneOf('role', role, ROLES),
      localpath,
      remoteaddr,
    });
  });
  return entries;
}

function statusOfListEntry(entry: HastListEntry): HastStatusEntry {
  if (isHastctlFailure(entry)) return entry;
  const { name, role, status, localpath, remoteaddr } = entry;
  return { name, role, status, localpath, remoteaddr };
}

const BLOCK_HEADER = /^(\S+):$/;
// Fields are indented two spaces, statistics four; no key appears at both levels, so one map holds a block.
const FIELD = /^ {2}(?: {2})?([a-z][a-z -]*):(?: (.*))?$/;

// Reads `hastctl list` (or the `status` of releases before FreeBSD 10). Lines that are neither a resource nor
// a field are skipped, as are fields this parser does not know. Throws HastctlOutputError for a bad value or a
// block without a field every release prints.
export function parseHastctlList(text: string): HastListEntry[] {
  const blocks: Block[] = [];
  text.split('\n').forEach((line, index) => {
    const header = BLOCK_HEADER.exec(line);
    if (header !== null) {
      blocks.push(new Block(header[1] ?? '', new SourceLine(index + 1, line)));
      return;
    }
    const field = FIELD.exec(line);
    if (field !== null) blocks.at(-1)?.add(new FieldLine(index + 1, line, field[1] ?? '', field[2] ?? ''));
  });
  return blocks.map(listEntryOfBlock);
}

function listEntryOfBlock(block: Block): HastListEntry {
  const error = block.optional('error');
  if (error !== undefined) return { name: block.name, error: error.count() };
  const count = (key: string) => block.field(key).count();
  const localErrors = block.optional('local errors');
  const queues = block.optional('queues');
  return {
    name: block.name,
    role: block.field('role').oneOf(ROLES),
    status: block.optional('status')?.oneOf(WORKER_STATES),
    provname: block.field('provname').value,
    localpath: block.field('localpath').value,
    extentsize: block.field('extentsize').size(),
    keepdirty: count('keepdirty'),
    remoteaddr: block.field('remoteaddr').value,
    sourceaddr: block.optional('sourceaddr')?.value,
    replication: block.field('replication').oneOf(REPLICATION_MODES),
    workerpid: block.optional('workerpid')?.count(),
    dirty: block.field('dirty').size(),
    splitBrain: block.optional('split-brain')?.splitBrainChanges(),
    statistics: {
      reads: count('reads'),
      writes: count('writes'),
      deletes: count('deletes'),
      flushes: count('flushes'),
      activemapUpdates: count('activemap updates'),
      localErrors: localErrors?.counters(['read', 'write', 'delete', 'flush']),
      queues: queues?.counters(['local', 'send', 'recv', 'done', 'idle']),
    },
  };
}

// One resource's lines of `hastctl list`.
class Block {
  private readonly fields = new Map<string, FieldLine>();

  constructor(
    readonly name: string,
    private readonly header: SourceLine,
  ) {}

  add(field: FieldLine): void {
    this.fields.set(field.key, field);
  }

  optional(key: string): FieldLine | undefined {
    return this.fields.get(key);
  }

  // A field every release prints; its absence means the output is not hastctl's (or was cut short).
  field(key: string): FieldLine {
    const field = this.fields.get(key);
    if (field === undefined) throw this.header.error(`resource ${this.name} has no "${key}" line`);
    return field;
  }
}

// A line of the output, for errors that name it.
class SourceLine {
  constructor(
    readonly line: number,
    readonly text: string,
  ) {}

  error(problem: string): HastctlOutputError {
    return new HastctlOutputError(this.line, this.text, problem);
  }

  expectOneOf<const Value extends string>(what: string, value: string, values: readonly Value[]): Value {
    const known = values.find((candidate) => candidate === value);
    if (known === undefined) throw this.error(`unknown ${what} "${value}" (known: ${values.join(', ')})`);
    return known;
  }
}

const COUNT = /^\d+$/;
// `2097152 (2.0MB)`: the exact byte count, then humanize_number's rounding of it.
const SIZE = /^(\d+) \([^)]*\)$/;
const COUNTER = /^([a-z]+): (\d+)$/;
// `local changes: 12582912 (12MB), peer changes: 3145728 (3.0MB)`, or `peer changes: unknown`.
const SPLIT_BRAIN = /^local changes: (\d+) \([^)]*\), peer changes: (?:(\d+) \([^)]*\)|unknown)$/;

// A `key: value` line of `hastctl list`.
class FieldLine extends SourceLine {
  constructor(
    line: number,
    text: string,
    readonly key: string,
    readonly value: string,
  ) {
    super(line, text);
  }

  count(): number {
    if (!COUNT.test(this.value)) throw this.error(`${this.key} is not a number`);
    return Number(this.value);
  }

  size(): number {
    const match = SIZE.exec(this.value);
    if (match === null) throw this.error(`${this.key} is not "<bytes> (<size>)"`);
    return Number(match[1]);
  }

  splitBrainChanges(): HastSplitBrainChanges {
    const match = SPLIT_BRAIN.exec(this.value);
    if (match === null) {
      throw this.error(`${this.key} is not "local changes: <bytes> (<size>), peer changes: <bytes> (<size>)|unknown"`);
    }
    return { local: Number(match[1]), peer: match[2] === undefined ? undefined : Number(match[2]) };
  }

  oneOf<const Value extends string>(values: readonly Value[]): Value {
    return this.expectOneOf(this.key, this.value, values);
  }

  // `read: 0, write: 0, ...`: exactly these counters in this order.
  counters<const Name extends string>(names: readonly Name[]): Record<Name, number> {
    const pairs = this.value.split(', ').map((pair) => COUNTER.exec(pair));
    if (pairs.length !== names.length || names.some((name, index) => pairs[index]?.[1] !== name)) {
      throw this.error(`${this.key} is not "${names.map((name) => `${name}: <n>`).join(', ')}"`);
    }
    return Object.fromEntries(names.map((name, index) => [name, Number(pairs[index]?.[2])])) as Record<Name, number>;
  }
}
