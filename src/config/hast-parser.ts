import { ConfigError, type SourcePosition } from './config-error.js';
import { tokenizeHastConf, type HastKeyword, type HastToken } from './hast-lexer.js';

// How a write is acknowledged: after both disks, after the peer's memory, or after the local disk only.
export type ReplicationMode = 'fullsync' | 'memsync' | 'async';
// The hash sent with each data block between the nodes.
export type ChecksumAlgorithm = 'none' | 'crc32' | 'sha256';
// How data blocks are compressed between the nodes.
export type CompressionAlgorithm = 'none' | 'hole' | 'lzf';

// The value type of each setting keyword; the others (resource, on) open blocks.
export interface HastSettingValues {
  control: string;
  pidfile: string;
  listen: string;
  replication: ReplicationMode;
  checksum: ChecksumAlgorithm;
  compression: CompressionAlgorithm;
  timeout: number;
  exec: string;
  metaflush: boolean;
  name: string;
  local: string;
  remote: string;
  source: string;
}

// A keyword that takes one value.
export type HastSettingKeyword = keyof HastSettingValues;

// One `keyword value` statement: where the keyword is and where its value is.
export type HastSetting = {
  [K in HastSettingKeyword]: {
    keyword: K;
    value: HastSettingValues[K];
    position: SourcePosition;
    valuePosition: SourcePosition;
  };
}[HastSettingKeyword];

// An `on NODE { ... }` block, at the top level or inside a resource.
export interface HastNodeBlock {
  node: string;
  position: SourcePosition;
  settings: HastSetting[];
}

// A `resource NAME { ... }` section.
export interface HastResourceBlock {
  name: string;
  position: SourcePosition;
  settings: HastSetting[];
  nodes: HastNodeBlock[];
}

// hast.conf as written, in file order, before any node is chosen or default applied.
export interface HastConfSyntax {
  settings: HastSetting[];
  nodes: HastNodeBlock[];
  resources: HastResourceBlock[];
}

// The four places a statement can stand in (the grammar has no deeper levels).
type Place = 'global' | 'node' | 'resource' | 'resourceNode';

const PLACE_NAMES: Record<Place, string> = {
  global: 'the global section',
  node: "a top-level 'on' block",
  resource: 'a resource section',
  resourceNode: "an 'on' block inside a resource",
};

// hast.conf(5)'s table of where each keyword is legal.
const ALLOWED_PLACES: Partial<Record<HastKeyword, readonly Place[]>> = {
  control: ['global', 'node'],
  pidfile: ['global', 'node'],
  listen: ['global', 'node'],
  replication: ['global', 'resource'],
  checksum: ['global', 'resource'],
  compression: ['global', 'resource'],
  timeout: ['global', 'resource'],
  exec: ['global', 'resource'],
  metaflush: ['global', 'resource', 'resourceNode'],
  name: ['resource', 'resourceNode'],
  local: ['resource', 'resourceNode'],
  remote: ['resourceNode'],
  source: ['resourceNode'],
  resource: ['global'],
  on: ['global', 'resource'],
};

// The keywords each enumerated setting accepts, in the order hast.conf(5) lists them.
const CHOICES = {
  replication: ['fullsync', 'memsync', 'async'],
  checksum: ['none', 'crc32', 'sha256'],
  compression: ['none', 'hole', 'lzf'],
  metaflush: ['on', 'off'],
} as const satisfies Partial<Record<HastSettingKeyword, readonly HastKeyword[]>>;

// What a string-valued keyword wants, for "needs a ..." messages.
const STRING_VALUES = {
  control: 'an address',
  pidfile: 'a path',
  listen: 'an address',
  exec: 'a path',
  name: 'a provider name',
  local: 'a path',
  remote: "an address or 'none'",
  source: 'an address',
} as const satisfies Partial<Record<HastSettingKeyword, string>>;

// timeout is a C int in hastd; a larger number would overflow atoi().
const MAX_TIMEOUT = 2 ** 31 - 1;

// Parses hast.conf text into its syntax tree; any deviation from the hast.conf(5) grammar is a ConfigError.
//
// The grammar has exactly three levels (global, resource, `on` inside a resource), so the parser is one function
// per level rather than a general recursive one: an extra `{` is a syntax error at once, however deep it goes.
export function parseHastConfSyntax(text: string, file: string): HastConfSyntax {
  return new Parser(tokenizeHastConf(text, file), endOfText(text, file)).parseFile();
}

// A cursor over the tokens with one method per level of the grammar.
class Parser {
  private next = 0;

  constructor(
    private readonly tokens: readonly HastToken[],
    private readonly end: SourcePosition,
  ) {}

  parseFile(): HastConfSyntax {
    const syntax: HastConfSyntax = { settings: [], nodes: [], resources: [] };
    for (let token = this.take(); token !== undefined; token = this.take()) {
      const keyword = this.statementKeyword(token, 'global');
      if (keyword === 'resource') syntax.resources.push(this.parseResource(token));
      else if (keyword === 'on') syntax.nodes.push(this.parseNode(token, 'node'));
      else addSetting(syntax.settings, this.parseSetting(keyword, token), 'global');
    }
    return syntax;
  }

  private parseResource(keyword: HastToken): HastResourceBlock {
    const name = this.expectName(keyword);
    const block = { what: `resource ${name}`, open: this.expectOpen(`resource ${name}`) };
    const resource: HastResourceBlock = { name, position: keyword.position, settings: [], nodes: [] };
    for (let token = this.takeInside(block); token.kind !== '}'; token = this.takeInside(block)) {
      const statement = this.statementKeyword(token, 'resource');
      if (statement === 'on') resource.nodes.push(this.parseNode(token, 'resourceNode'));
      else addSetting(resource.settings, this.parseSetting(statement, token), 'resource');
    }
    return resource;
  }

  private parseNode(keyword: HastToken, place: 'node' | 'resourceNode'): HastNodeBlock {
    const node = this.expectName(keyword);
    const block = { what: `on ${node}`, open: this.expectOpen(`on ${node}`) };
    const nodeBlock: HastNodeBlock = { node, position: keyword.position, settings: [] };
    for (let token = this.takeInside(block); token.kind !== '}'; token = this.takeInside(block)) {
      addSetting(nodeBlock.settings, this.parseSetting(this.statementKeyword(token, place), token), place);
    }
    return nodeBlock;
  }

  // The keyword starting a statement at `place`, or an error saying why the token cannot start one there.
  // The overloads restate ALLOWED_PLACES for the type checker: only the global section holds `resource`, and
  // only the global and resource sections hold `on`.
  private statementKeyword(token: HastToken, place: 'global'): HastSettingKeyword | 'resource' | 'on';
  private statementKeyword(token: HastToken, place: 'resource'): HastSettingKeyword | 'on';
  private statementKeyword(token: HastToken, place: 'node' | 'resourceNode'): HastSettingKeyword;
  private statementKeyword(token: HastToken, place: Place): HastSettingKeyword | 'resource' | 'on' {
    const where = PLACE_NAMES[place];
    switch (token.kind) {
      case 'word':
        throw new ConfigError(`unknown keyword '${token.text}' in ${where}`, token.position);
      case 'number':
        throw new ConfigError(`unexpected number ${token.text} in ${where}; expected a keyword`, token.position);
      case '{':
        throw new ConfigError(
          `unexpected '{' in ${where}; blocks open only after 'resource NAME' or 'on NODE'`,
          token.position,
        );
      case '}':
        throw new ConfigError("unexpected '}': no block is open", token.position);
    }
    const allowed = ALLOWED_PLACES[token.keyword];
    if (allowed === undefined) {
      throw new ConfigError(
        `unexpected '${token.keyword}' in ${where}; it is a value, not a statement keyword`,
        token.position,
      );
    }
    if (!allowed.includes(place)) {
      const belongs = allowed.map((p) => placeName(p, place));
      throw new ConfigError(
        `'${token.keyword}' is not allowed in ${where}; it belongs in ${listOf(belongs, 'or')}`,
        token.position,
      );
    }
    return token.keyword as HastSettingKeyword | 'resource' | 'on';
  }

  private parseSetting(keyword: HastSettingKeyword, token: HastToken): HastSetting {
    const value = this.take();
    const position = token.position;
    if (keyword === 'timeout') {
      if (value?.kind !== 'number') throw this.wrongValue(keyword, 'a number of seconds', value);
      const seconds = Number(value.text);
      // hastd's message for `timeout 0` (a NUM cannot be negative: `-1` is a word).
      if (seconds === 0) throw new ConfigError('Negative or zero timeout.', position);
      if (seconds > MAX_TIMEOUT) {
        throw new ConfigError(`timeout ${value.text} is too large; the largest is ${MAX_TIMEOUT}`, value.position);
      }
      return { keyword, value: seconds, position, valuePosition: value.position };
    }
    if (keyword === 'replication' || keyword === 'checksum' || keyword === 'compression' || keyword === 'metaflush') {
      const choices: readonly HastKeyword[] = CHOICES[keyword];
      if (value?.kind !== 'keyword' || !choices.includes(value.keyword)) {
        throw this.wrongValue(keyword, `one of ${listOf(choices, 'or')}`, value);
      }
      const valuePosition = value.position;
      if (keyword === 'metaflush') return { keyword, value: value.keyword === 'on', position, valuePosition };
      return { keyword, value: value.keyword, position, valuePosition } as HastSetting;
    }
    if (keyword === 'remote' && value?.kind === 'keyword' && value.keyword === 'none') {
      return { keyword, value: 'none', position, valuePosition: value.position };
    }
    if (value?.kind !== 'word') throw this.wrongValue(keyword, STRING_VALUES[keyword], value);
    return { keyword, value: value.text, position, valuePosition: value.position };
  }

  private expectName(keyword: HastToken): string {
    const name = this.take();
    if (name?.kind === 'word') return name.text;
    const what = keyword.text === 'on' ? 'a node name' : 'a name';
    if (name?.kind === 'number') {
      throw new ConfigError(
        `'${keyword.text}' needs ${what}; found the number ${name.text} (an all-digit word is a number to hastd, ` +
          'never a name)',
        name.position,
      );
    }
    throw this.wrongValue(keyword.text, what, name);
  }

  private expectOpen(header: string): SourcePosition {
    const open = this.take();
    if (open?.kind === '{') return open.position;
    if (open === undefined) throw new ConfigError(`unexpected end of file: expected '{' after '${header}'`, this.end);
    throw new ConfigError(`expected '{' after '${header}'; found ${describeToken(open)}`, open.position);
  }

  private wrongValue(keyword: string, wanted: string, found: HastToken | undefined): ConfigError {
    if (found === undefined) return new ConfigError(`unexpected end of file: '${keyword}' needs ${wanted}`, this.end);
    return new ConfigError(`'${keyword}' needs ${wanted}; found ${describeToken(found)}`, found.position);
  }

  private take(): HastToken | undefined {
    return this.tokens[this.next++];
  }

  // The next token inside a block; the file ending first is reported with where the block opened.
  private takeInside(block: { what: string; open: SourcePosition }): HastToken {
    const token = this.take();
    if (token !== undefined) return token;
    const { line, col } = block.open;
    throw new ConfigError(
      `unexpected end of file: the '{' of '${block.what}' at ${line}:${col} is never closed`,
      this.end,
    );
  }
}

// Adds a setting to its block. A keyword given twice in one block is refused (listen excepted, it adds up):
// hastd silently keeps the last one, which hides the mistake of a half-edited block.
function addSetting(settings: HastSetting[], setting: HastSetting, place: Place): void {
  const earlier = settings.find((s) => s.keyword === setting.keyword);
  if (earlier !== undefined && setting.keyword !== 'listen') {
    const { line, col } = earlier.position;
    throw new ConfigError(
      `'${setting.keyword}' is given twice in ${PLACE_NAMES[place]} (first at ${line}:${col}); ` +
        'hastd would silently use the last one',
      setting.position,
    );
  }
  settings.push(setting);
}

// Inside a resource, "an 'on' block" can only mean one of this resource's, so the short name reads better.
function placeName(place: Place, from: Place): string {
  if (place === 'resourceNode' && from === 'resource') return "an 'on' block";
  return PLACE_NAMES[place];
}

function describeToken(token: HastToken): string {
  if (token.kind === 'keyword') return `the keyword '${token.text}'`;
  if (token.kind === 'number') return `the number ${token.text}`;
  return `'${token.text}'`;
}

function listOf(items: readonly string[], conjunction: string): string {
  if (items.length === 1) return items[0] as string;
  return `${items.slice(0, -1).join(', ')} ${conjunction} ${items[items.length - 1]}`;
}

// Where an unexpected end of file is reported: just past the last character.
function endOfText(text: string, file: string): SourcePosition {
  const lineStart = text.lastIndexOf('\n') + 1;
  return { file, line: text.split('\n').length, col: text.length - lineStart + 1 };
}
