import t from 'tap';
import { ConfigError } from '../../src/config/config-error.js';
import { HAST_KEYWORDS, tokenizeHastConf } from '../../src/config/hast-lexer.js';

const WORD_RULE = '; hast.conf words may contain only letters, digits and . - _ / : [ ] (there is no quoting)';

function thrownBy(fn: () => unknown): ConfigError {
  try {
    fn();
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error('expected a ConfigError');
}

// kind:text@line:col, compact enough to compare whole token streams.
function lex(text: string): string[] {
  return tokenizeHastConf(text, 'hast.conf').map((t) => `${t.kind}:${t.text}@${t.position.line}:${t.position.col}`);
}

t.test('splits words, numbers, keywords and braces and records line and column', async (t) => {
  const text = 'resource shared {\n\ton hasta {\t# primary\n\t\tlocal /dev/ada0p1\n\t\tremote tcp4://[::1]:8457\n\t}\n\ttimeout 30\n}\n';
  t.same(lex(text), [
    'keyword:resource@1:1',
    'word:shared@1:10',
    '{:{@1:17',
    'keyword:on@2:2',
    'word:hasta@2:5',
    '{:{@2:11',
    'keyword:local@3:3',
    'word:/dev/ada0p1@3:9',
    'keyword:remote@4:3',
    'word:tcp4://[::1]:8457@4:10',
    '}:}@5:2',
    'keyword:timeout@6:2',
    'number:30@6:10',
    '}:}@7:1',
  ]);
});

t.test('every hast.conf keyword is a keyword token on its own', async (t) => {
  t.equal(HAST_KEYWORDS.length, 24);
  for (const keyword of HAST_KEYWORDS) {
    const [token] = tokenizeHastConf(keyword, 'f');
    t.same(token, { kind: 'keyword', keyword, text: keyword, position: { file: 'f', line: 1, col: 1 } });
  }
});

t.test('the longest run of word characters decides, as in flex', async (t) => {
  t.same(lex('resources online Local on-off 0x10 1.5 -5 007 a_b'), [
    'word:resources@1:1',
    'word:online@1:11',
    'word:Local@1:18',
    'word:on-off@1:24',
    'word:0x10@1:31',
    'word:1.5@1:36',
    'word:-5@1:40',
    'number:007@1:43',
    'word:a_b@1:47',
  ]);
});

t.test('braces need no spaces around them', async (t) => {
  t.same(lex('on a{listen b}'), ['keyword:on@1:1', 'word:a@1:4', '{:{@1:5', 'keyword:listen@1:6', 'word:b@1:13', '}:}@1:14']);
});

t.test('a comment runs from # to the end of the line and may hold any character', async (t) => {
  t.same(lex('# "quoted"; é \u0000 @=,\nlocal /a# trailing {\n#\nname b'), [
    'keyword:local@2:1',
    'word:/a@2:7',
    'keyword:name@4:1',
    'word:b@4:6',
  ]);
  t.same(lex('# no newline at the end'), []);
  t.same(lex(''), []);
});

t.test('a character outside the word set is an error naming it and where it is', async (t) => {
  const cases: Array<[string, string]> = [
    ['listen "x"', `hast.conf:1:8: unexpected character '"'`],
    ["name 'x'", `hast.conf:1:6: unexpected character '''`],
    ['local /a;', `hast.conf:1:9: unexpected character ';'`],
    ['remote root@host', `hast.conf:1:12: unexpected character '@'`],
    ['timeout=20', `hast.conf:1:8: unexpected character '='`],
    ['listen a,b', `hast.conf:1:9: unexpected character ','`],
    ['\n\n  \u0000', `hast.conf:3:3: unexpected character '\\x00'`],
    ['local /a\r\n', `hast.conf:1:9: unexpected character '\\x0D'`],
    ['\u007f', `hast.conf:1:1: unexpected character '\\x7F'`],
    ['\fon', `hast.conf:1:1: unexpected character '\\x0C'`],
    ['local /caf\u00e9', `hast.conf:1:11: unexpected character U+00E9`],
    ['\ufeffcontrol /x', `hast.conf:1:1: unexpected character U+FEFF`],
    ['name \u{1F600}', `hast.conf:1:6: unexpected character U+1F600`],
    ['local /a%b', `hast.conf:1:9: unexpected character '%'`],
  ];
  for (const [text, message] of cases) {
    const error = thrownBy(() => tokenizeHastConf(text, 'hast.conf'));
    t.equal(error.message, `${message}${WORD_RULE}`, JSON.stringify(text));
    t.equal(error.exitCode, 78);
  }
});

t.test('a megabyte of words is tokenized in linear time', async (t) => {
  const text = 'listen tcp://a.example:8457\n'.repeat(40_000);
  const started = performance.now();
  t.equal(tokenizeHastConf(text, 'big').length, 80_000);
  t.ok(performance.now() - started < 2000);
});
