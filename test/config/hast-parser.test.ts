import t from 'tap';
import { ConfigError } from '../../src/config/config-error.js';
import { parseHastConfSyntax } from '../../src/config/hast-parser.js';

function errorOf(text: string): string {
  try {
    parseHastConfSyntax(text, 'hast.conf');
  } catch (error) {
    if (error instanceof ConfigError) return error.message;
    throw error;
  }
  throw new Error(`accepted: ${text}`);
}

const at = (line: number, col: number) => ({ file: 'hast.conf', line, col });

t.test('builds the syntax tree with typed values and positions', async (t) => {
  const text = [
    'replication fullsync',
    'on hasta { control /var/run/a listen 10.0.0.1 listen 10.0.0.3 }',
    'resource shared {',
    '  timeout 40 metaflush off name disk',
    '  on hasta { local /dev/ada1 remote none source 10.0.0.1 }',
    '}',
    'checksum sha256',
  ].join('\n');
  t.same(parseHastConfSyntax(text, 'hast.conf'), {
    settings: [
      { keyword: 'replication', value: 'fullsync', position: at(1, 1), valuePosition: at(1, 13) },
      { keyword: 'checksum', value: 'sha256', position: at(7, 1), valuePosition: at(7, 10) },
    ],
    nodes: [
      {
        node: 'hasta',
        position: at(2, 1),
        settings: [
          { keyword: 'control', value: '/var/run/a', position: at(2, 12), valuePosition: at(2, 20) },
          { keyword: 'listen', value: '10.0.0.1', position: at(2, 31), valuePosition: at(2, 38) },
          { keyword: 'listen', value: '10.0.0.3', position: at(2, 47), valuePosition: at(2, 54) },
        ],
      },
    ],
    resources: [
      {
        name: 'shared',
        position: at(3, 1),
        settings: [
          { keyword: 'timeout', value: 40, position: at(4, 3), valuePosition: at(4, 11) },
          { keyword: 'metaflush', value: false, position: at(4, 14), valuePosition: at(4, 24) },
          { keyword: 'name', value: 'disk', position: at(4, 28), valuePosition: at(4, 33) },
        ],
        nodes: [
          {
            node: 'hasta',
            position: at(5, 3),
            settings: [
              { keyword: 'local', value: '/dev/ada1', position: at(5, 14), valuePosition: at(5, 20) },
              { keyword: 'remote', value: 'none', position: at(5, 30), valuePosition: at(5, 37) },
              { keyword: 'source', value: '10.0.0.1', position: at(5, 42), valuePosition: at(5, 49) },
            ],
          },
        ],
      },
    ],
  });
});

t.test('every value of every enumerated keyword', async (t) => {
  const values = (text: string) => parseHastConfSyntax(text, 'f').settings.map((s) => s.value);
  t.same(values('replication fullsync').concat(values('replication memsync'), values('replication async')), [
    'fullsync',
    'memsync',
    'async',
  ]);
  t.same(values('checksum none').concat(values('checksum crc32'), values('checksum sha256')), ['none', 'crc32', 'sha256']);
  t.same(values('compression none').concat(values('compression hole'), values('compression lzf')), ['none', 'hole', 'lzf']);
  t.same(values('metaflush on').concat(values('metaflush off')), [true, false]);
  t.same(values('timeout 1').concat(values('timeout 2147483647'), values('timeout 0030')), [1, 2147483647, 30]);
});

// hast.conf(5): where each keyword may stand, and the sample statement used to try it everywhere.
const PLACEMENT: Array<[string, string, string[]]> = [
  ['control', 'control /x', ['global', 'node']],
  ['pidfile', 'pidfile /x', ['global', 'node']],
  ['listen', 'listen a', ['global', 'node']],
  ['replication', 'replication async', ['global', 'resource']],
  ['checksum', 'checksum crc32', ['global', 'resource']],
  ['compression', 'compression lzf', ['global', 'resource']],
  ['timeout', 'timeout 5', ['global', 'resource']],
  ['exec', 'exec /x', ['global', 'resource']],
  ['metaflush', 'metaflush off', ['global', 'resource', 'resourceNode']],
  ['name', 'name p', ['resource', 'resourceNode']],
  ['local', 'local /a', ['resource', 'resourceNode']],
  ['remote', 'remote none', ['resourceNode']],
  ['source', 'source s', ['resourceNode']],
  ['resource', 'resource x { }', ['global']],
  ['on', 'on m { }', ['global', 'resource']],
];
const PLACES: Record<string, [string, string]> = {
  global: ['', 'the global section'],
  node: ['on n { ', "a top-level 'on' block"],
  resource: ['resource r { ', 'a resource section'],
  resourceNode: ['resource r { on n { ', "an 'on' block inside a resource"],
};
const BELONGS: Record<string, string> = {
  control: "the global section or a top-level 'on' block",
  pidfile: "the global section or a top-level 'on' block",
  listen: "the global section or a top-level 'on' block",
  replication: 'the global section or a resource section',
  checksum: 'the global section or a resource section',
  compression: 'the global section or a resource section',
  timeout: 'the global section or a resource section',
  exec: 'the global section or a resource section',
  metaflush: "the global section, a resource section or an 'on' block inside a resource",
  name: "a resource section or an 'on' block inside a resource",
  local: "a resource section or an 'on' block inside a resource",
  remote: "an 'on' block inside a resource",
  source: "an 'on' block inside a resource",
  resource: 'the global section',
  on: 'the global section or a resource section',
};

t.test("each keyword is accepted where hast.conf(5)'s table allows it and refused elsewhere", async (t) => {
  for (const [keyword, statement, allowed] of PLACEMENT) {
    for (const [place, [prefix, placeName]] of Object.entries(PLACES)) {
      // Inside a resource the message says just "an 'on' block"; asserted below.
      if (place === 'resource' && (keyword === 'remote' || keyword === 'source')) continue;
      const text = `${prefix}${statement}${' }'.repeat(prefix.split('{').length - 1)}`;
      if (allowed.includes(place)) {
        t.doesNotThrow(() => parseHastConfSyntax(text, 'hast.conf'), text);
      } else {
        t.equal(
          errorOf(text),
          `hast.conf:1:${prefix.length + 1}: '${keyword}' is not allowed in ${placeName}; it belongs in ${BELONGS[keyword]}`,
          text,
        );
      }
    }
  }
  t.equal(
    errorOf('resource r {\n  remote 10.0.0.2\n}'),
    "hast.conf:2:3: 'remote' is not allowed in a resource section; it belongs in an 'on' block",
  );
  t.equal(
    errorOf('resource r { source a }'),
    "hast.conf:1:14: 'source' is not allowed in a resource section; it belongs in an 'on' block",
  );
});

t.test('a keyword twice in one block is refused; listen adds up', async (t) => {
  t.equal(
    errorOf('resource r {\n local /a\n local /b\n}'),
    "hast.conf:3:2: 'local' is given twice in a resource section (first at 2:2); hastd would silently use the last one",
  );
  t.equal(
    errorOf('timeout 5\ntimeout 6'),
    "hast.conf:2:1: 'timeout' is given twice in the global section (first at 1:1); hastd would silently use the last one",
  );
  t.equal(
    errorOf('on a { control /a control /b }'),
    "hast.conf:1:19: 'control' is given twice in a top-level 'on' block (first at 1:8); hastd would silently use the last one",
  );
  t.equal(
    errorOf('resource r { on a { remote none remote b } }'),
    "hast.conf:1:33: 'remote' is given twice in an 'on' block inside a resource (first at 1:21); hastd would silently use the last one",
  );
  const syntax = parseHastConfSyntax('listen a listen b\non x { listen c listen d }\nresource r { local /a on x { local /b } }', 'f');
  t.same(
    syntax.settings.map((s) => s.value),
    ['a', 'b'],
  );
  t.same(
    syntax.nodes[0]?.settings.map((s) => s.value),
    ['c', 'd'],
  );
});

t.test('the end of the file inside a statement or block names what is missing', async (t) => {
  t.equal(errorOf('resource'), "hast.conf:1:9: unexpected end of file: 'resource' needs a name");
  t.equal(errorOf('on'), "hast.conf:1:3: unexpected end of file: 'on' needs a node name");
  t.equal(errorOf('resource r\n'), "hast.conf:2:1: unexpected end of file: expected '{' after 'resource r'");
  t.equal(errorOf('listen'), "hast.conf:1:7: unexpected end of file: 'listen' needs an address");
  t.equal(errorOf('metaflush # on'), "hast.conf:1:15: unexpected end of file: 'metaflush' needs one of on or off");
  t.equal(
    errorOf('resource r {\n  on a {\n    local /a\n'),
    "hast.conf:4:1: unexpected end of file: the '{' of 'on a' at 2:8 is never closed",
  );
  t.equal(errorOf('resource r {'), "hast.conf:1:13: unexpected end of file: the '{' of 'resource r' at 1:12 is never closed");
  t.equal(errorOf('on a {\n'), "hast.conf:2:1: unexpected end of file: the '{' of 'on a' at 1:6 is never closed");
});

t.test('stray braces, numbers and value keywords where a statement should start', async (t) => {
  t.equal(errorOf('}'), "hast.conf:1:1: unexpected '}': no block is open");
  t.equal(errorOf('resource r { on a { remote none } } }'), "hast.conf:1:37: unexpected '}': no block is open");
  t.equal(errorOf('{ }'), "hast.conf:1:1: unexpected '{' in the global section; blocks open only after 'resource NAME' or 'on NODE'");
  t.equal(
    errorOf('resource r { { } }'),
    "hast.conf:1:14: unexpected '{' in a resource section; blocks open only after 'resource NAME' or 'on NODE'",
  );
  t.equal(errorOf('20'), 'hast.conf:1:1: unexpected number 20 in the global section; expected a keyword');
  t.equal(errorOf('on a { fullsync }'), "hast.conf:1:8: unexpected 'fullsync' in a top-level 'on' block; it is a value, not a statement keyword");
  t.equal(errorOf('resource r { Local /a }'), "hast.conf:1:14: unknown keyword 'Local' in a resource section");
  t.equal(errorOf('resource r {} {'), "hast.conf:1:15: unexpected '{' in the global section; blocks open only after 'resource NAME' or 'on NODE'");
});

t.test('names and values of the wrong kind', async (t) => {
  t.equal(
    errorOf('resource 1 { }'),
    "hast.conf:1:10: 'resource' needs a name; found the number 1 (an all-digit word is a number to hastd, never a name)",
  );
  t.equal(
    errorOf('resource r { on 2 { } }'),
    "hast.conf:1:17: 'on' needs a node name; found the number 2 (an all-digit word is a number to hastd, never a name)",
  );
  t.equal(errorOf('on none { }'), "hast.conf:1:4: 'on' needs a node name; found the keyword 'none'");
  t.equal(errorOf('resource { }'), "hast.conf:1:10: 'resource' needs a name; found '{'");
  t.equal(errorOf('resource r on a { }'), "hast.conf:1:12: expected '{' after 'resource r'; found the keyword 'on'");
  t.equal(errorOf('on a b { }'), "hast.conf:1:6: expected '{' after 'on a'; found 'b'");
  t.equal(errorOf('replication fast'), "hast.conf:1:13: 'replication' needs one of fullsync, memsync or async; found 'fast'");
  t.equal(errorOf('checksum md5'), "hast.conf:1:10: 'checksum' needs one of none, crc32 or sha256; found 'md5'");
  t.equal(errorOf('compression hole2'), "hast.conf:1:13: 'compression' needs one of none, hole or lzf; found 'hole2'");
  t.equal(errorOf('compression crc32'), "hast.conf:1:13: 'compression' needs one of none, hole or lzf; found the keyword 'crc32'");
  t.equal(errorOf('metaflush 1'), "hast.conf:1:11: 'metaflush' needs one of on or off; found the number 1");
  t.equal(errorOf('timeout -1'), "hast.conf:1:9: 'timeout' needs a number of seconds; found '-1'");
  t.equal(errorOf('timeout none'), "hast.conf:1:9: 'timeout' needs a number of seconds; found the keyword 'none'");
  t.equal(errorOf('timeout 0'), 'hast.conf:1:1: Negative or zero timeout.');
  t.equal(errorOf('timeout 2147483648'), 'hast.conf:1:9: timeout 2147483648 is too large; the largest is 2147483647');
  t.equal(errorOf('control }'), "hast.conf:1:9: 'control' needs an address; found '}'");
  t.equal(errorOf('exec 5'), "hast.conf:1:6: 'exec' needs a path; found the number 5");
  t.equal(errorOf('resource r { name on }'), "hast.conf:1:19: 'name' needs a provider name; found the keyword 'on'");
  t.equal(errorOf('resource r { on a { remote off } }'), "hast.conf:1:28: 'remote' needs an address or 'none'; found the keyword 'off'");
  t.equal(errorOf('resource r { on a { local 1 } }'), "hast.conf:1:27: 'local' needs a path; found the number 1");
});

t.test('nesting 10,000 braces deep fails at the first extra brace, at once', async (t) => {
  const started = performance.now();
  t.equal(
    errorOf('{'.repeat(10_000)),
    "hast.conf:1:1: unexpected '{' in the global section; blocks open only after 'resource NAME' or 'on NODE'",
  );
  t.equal(
    errorOf(`resource r { on a ${'{'.repeat(10_000)}`),
    "hast.conf:1:20: unexpected '{' in an 'on' block inside a resource; blocks open only after 'resource NAME' or 'on NODE'",
  );
  t.equal(errorOf(`${'}'.repeat(10_000)}`), "hast.conf:1:1: unexpected '}': no block is open");
  t.ok(performance.now() - started < 1000);
});
