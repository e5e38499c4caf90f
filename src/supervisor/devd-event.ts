// One line of devd's event stream, read into a typed value: a CARP state change, or something we do not follow.
// The format is the kernel's devctl_notify(): `!system=CARP subsystem=<vhid>@<ifname> type=<STATE>`, plus any
// ` <data>` the kernel appends; attach, detach and nomatch lines start with `+`, `-` and `?` instead of `!`.
import type { CarpVhid } from '../config/supervisor-conf.js';

const CARP_STATES = ['MASTER', 'BACKUP', 'INIT'] as const;

// The states the kernel's carp_set_state() reports (devd.conf(5) documents only MASTER and BACKUP).
export type CarpState = (typeof CARP_STATES)[number];

// A CARP virtual host changed state on this node.
export interface CarpTransition extends CarpVhid {
  state: CarpState;
}

// What a devd line means to the supervisor: a CARP transition, or any other event (link, ACPI, attach, ...).
export type DevdLine = { kind: 'carp'; transition: CarpTransition } | { kind: 'other' };

// How much of a bad line an error message quotes; devd lines are short, garbage may not be.
const QUOTED_LINE_CHARS = 200;

// A line that is not a devd event, or a CARP event without a usable subsystem or type.
export class DevdLineError extends Error {
  readonly line: string;
  readonly reason: string;

  constructor(line: string, reason: string) {
    const shown = line.length > QUOTED_LINE_CHARS ? `${JSON.stringify(line.slice(0, QUOTED_LINE_CHARS))}...` : JSON.stringify(line);
    super(`malformed devd line ${shown}: ${reason}`);
    this.name = 'DevdLineError';
    this.line = line;
    this.reason = reason;
  }
}

// The kernel writes ASCII text; a control character (tab aside, which devd treats as a space) means the stream
// is not devd's.
// eslint-disable-next-line no-control-regex
const CONTROL_CHARACTER = /[\x00-\x08\x0a-\x1f\x7f]/;

// devd's variable names (is_id_char in devd.cc).
const KEY_CHARACTER = /[A-Za-z0-9_-]/;

const SPACE = /[ \t]/;

type Malformed = (reason: string) => DevdLineError;

// The fields the supervisor reads; a line naming one of them twice is ambiguous, so it is refused.
const READ_KEYS = new Set(['system', 'subsystem', 'type']);

// vhid@ifname as carp(4) writes it. IFNAMSIZ is 16 with the terminating NUL.
const SUBSYSTEM_SYNTAX = /^(\d+)@(.*)$/;
const IFNAME_SYNTAX = /^[A-Za-z0-9._-]+$/;
const MAX_IFNAME_CHARS = 15;
const MAX_VHID = 255;

// Reads one devd line (without its newline). Throws DevdLineError for text that is not a devd event and for a
// CARP event whose subsystem or type cannot be read; every other well-formed event is `other`.
export function parseDevdLine(line: string): DevdLine {
  const malformed = (reason: string) => new DevdLineError(line, reason);
  if (line === '') throw malformed('empty line');
  const control = CONTROL_CHARACTER.exec(line);
  if (control !== null) {
    const code = control[0].charCodeAt(0).toString(16).padStart(2, '0');
    throw malformed(`control character 0x${code} at offset ${control.index}`);
  }
  const kind = line[0];
  if (kind === '+' || kind === '-' || kind === '?') return { kind: 'other' };
  if (kind !== '!') throw malformed(`starts with ${JSON.stringify(kind)}, not !, +, - or ?`);

  const variables = readVariables(line.slice(1), malformed);
  const system = variables.get('system');
  if (system === undefined) throw malformed('no system= field');
  if (system !== 'CARP') return { kind: 'other' };
  const subsystem = variables.get('subsystem');
  if (subsystem === undefined) throw malformed('no subsystem= field');
  const type = variables.get('type');
  if (type === undefined) throw malformed('no type= field');
  const state = CARP_STATES.find((known) => known === type);
  if (state === undefined) throw malformed(`type ${JSON.stringify(type)} is not MASTER, BACKUP or INIT`);
  return { kind: 'carp', transition: { ...readSubsystem(subsystem, malformed), state } };
}

// devd's own reading of `key=value key="quoted value" ...` (config::chop_var): it stops at the first word that is
// not a variable, and whatever follows is data devd does not name. Values carry no escapes.
function readVariables(text: string, malformed: Malformed): Map<string, string> {
  const variables = new Map<string, string>();
  let at = 0;
  while (at < text.length) {
    const keyStart = at;
    while (at < text.length && KEY_CHARACTER.test(text[at]!)) at++;
    if (at === keyStart || text[at] !== '=') break;
    const key = text.slice(keyStart, at);
    at++;
    let value: string;
    if (text[at] === '"') {
      const close = text.indexOf('"', at + 1);
      if (close < 0) break;
      value = text.slice(at + 1, close);
      at = close + 1;
    } else {
      const valueStart = at;
      while (at < text.length && !SPACE.test(text[at]!)) at++;
      value = text.slice(valueStart, at);
    }
    if (READ_KEYS.has(key) && variables.has(key)) throw malformed(`${key}= appears twice`);
    variables.set(key, value);
    while (at < text.length && SPACE.test(text[at]!)) at++;
  }
  return variables;
}

function readSubsystem(subsystem: string, malformed: Malformed): CarpVhid {
  const match = SUBSYSTEM_SYNTAX.exec(subsystem);
  if (match === null) throw malformed(`subsystem ${JSON.stringify(subsystem)} is not <vhid>@<interface>`);
  const [, vhidText = '', ifname = ''] = match;
  const vhid = Number(vhidText);
  if (vhid < 1 || vhid > MAX_VHID) throw malformed(`vhid ${vhidText} is not in 1..${MAX_VHID}`);
  if (ifname === '') throw malformed(`subsystem ${JSON.stringify(subsystem)} has no interface name`);
  if (ifname.length > MAX_IFNAME_CHARS) {
    throw malformed(`interface name ${JSON.stringify(ifname)} is longer than ${MAX_IFNAME_CHARS} characters`);
  }
  if (!IFNAME_SYNTAX.test(ifname)) {
    throw malformed(`interface name ${JSON.stringify(ifname)} has characters other than letters, digits, ".", "_" and "-"`);
  }
  return { vhid, interface: ifname };
}
