import { ConfigError, type SourcePosition } from './config-error.js';

// The words hastd's token.l turns into keyword tokens; they are lower case and matched exactly.
export const HAST_KEYWORDS = [
  'control',
  'pidfile',
  'listen',
  'replication',
  'checksum',
  'compression',
  'timeout',
  'exec',
  'metaflush',
  'resource',
  'name',
  'local',
  'remote',
  'source',
  'on',
  'off',
  'fullsync',
  'memsync',
  'async',
  'none',
  'crc32',
  'sha256',
  'hole',
  'lzf',
] as const;

// One of the words in HAST_KEYWORDS.
export type HastKeyword = (typeof HAST_KEYWORDS)[number];

// One token of hast.conf with where it starts; `text` is exactly what the file says.
export type HastToken =
  | { kind: 'keyword'; keyword: HastKeyword; text: string; position: SourcePosition }
  | { kind: 'number'; text: string; position: SourcePosition }
  | { kind: 'word'; text: string; position: SourcePosition }
  | { kind: '{' | '}'; text: string; position: SourcePosition };

// token.l's STR character set; a purely numeric run of them is a NUM instead.
const WORD_CHAR = /[a-zA-Z0-9.\-_/:[\]]/;
const ALL_DIGITS = /^[0-9]+$/;
const KEYWORDS: ReadonlySet<string> = new Set(HAST_KEYWORDS);

// Splits hast.conf text into tokens the way token.l does, and rejects any character token.l has no rule for.
//
// Flex picks the longest match and breaks ties by rule order, so a whole run of word characters is one token:
// a keyword if it equals one, a number if it is all digits, otherwise a word. `#` starts a comment that runs to
// the end of the line and may hold any character. hastd's flex scanner echoes characters it has no rule for and
// carries on; we refuse them, since a quote or `;` in hast.conf is always a mistake worth pointing at.
export function tokenizeHastConf(text: string, file: string): HastToken[] {
  const tokens: HastToken[] = [];
  let line = 1;
  let lineStart = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    const position = { file, line, col: i - lineStart + 1 };
    if (c === '\n') {
      line++;
      i++;
      lineStart = i;
    } else if (c === ' ' || c === '\t') {
      i++;
    } else if (c === '#') {
      const end = text.indexOf('\n', i);
      i = end === -1 ? text.length : end;
    } else if (c === '{' || c === '}') {
      tokens.push({ kind: c, text: c, position });
      i++;
    } else if (WORD_CHAR.test(c)) {
      let end = i + 1;
      while (end < text.length && WORD_CHAR.test(text[end] as string)) end++;
      const word = text.slice(i, end);
      if (KEYWORDS.has(word)) tokens.push({ kind: 'keyword', keyword: word as HastKeyword, text: word, position });
      else if (ALL_DIGITS.test(word)) tokens.push({ kind: 'number', text: word, position });
      else tokens.push({ kind: 'word', text: word, position });
      i = end;
    } else {
      throw new ConfigError(
        `unexpected character ${describeCharacter(text.codePointAt(i) as number)}; hast.conf words may contain only ` +
          'letters, digits and . - _ / : [ ] (there is no quoting)',
        position,
      );
    }
  }
  return tokens;
}

// A character for an error message: printable ASCII quoted, control bytes as \xHH, anything else as U+XXXX.
function describeCharacter(codePoint: number): string {
  const hex = codePoint.toString(16).toUpperCase().padStart(2, '0');
  if (codePoint < 0x20 || codePoint === 0x7f) return `'\\x${hex}'`;
  if (codePoint < 0x7f) return `'${String.fromCodePoint(codePoint)}'`;
  return `U+${hex.padStart(4, '0')}`;
}
