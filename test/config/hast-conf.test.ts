import t from 'tap';
import fc from 'fast-check';
import { execa } from 'execa';
import { chmod, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConfigError } from '../../src/config/config-error.js';
import {
  DEFAULT_HAST_CONF,
  HAST_DEFAULTS,
  hastConfigToJson,
  loadHastConf,
  parseHastConf,
  type HastConfig,
} from '../../src/config/hast-conf.js';
import type { NodeIdentity } from '../../src/config/node-identity.js';
import { CLI_DIR } from '../fixtures/cli.js';

const UUID = '5e4e3a2c-8c63-11ef-b864-0242ac120002';
// hasta as FreeBSD would describe it: a dotted host name, a host UUID and a host id.
const HASTA: NodeIdentity = { hostname: 'hasta.example.org', hostuuid: UUID, hostid: 3735928559, nodeName: null };
const HASTB: NodeIdentity = { hostname: 'hastb', hostuuid: null, hostid: null, nodeName: null };

function node(fields: Partial<NodeIdentity>): NodeIdentity {
  return { hostname: 'elsewhere', hostuuid: null, hostid: null, nodeName: null, ...fields };
}

function errorOf(text: string, identity: NodeIdentity = HASTA): ConfigError {
  try {
    parseHastConf(text, 'hast.conf', identity);
  } catch (error) {
    if (error instanceof ConfigError) return error;
    throw error;
  }
  throw new Error(`accepted: ${text}`);
}

// The FreeBSD Handbook's two-node example (section "Synchronization and Replication Modes").
const HANDBOOK = `resource test {
	on hasta {
		local /dev/ad6
		remote 172.16.0.2
	}
	on hastb {
		local /dev/ad6
		remote 172.16.0.1
	}
}
`;

const HAST_DEFAULTS_CONFIG = {
  control: 'uds:///var/run/hastctl',
  pidfile: '/var/run/hastd.pid',
  listen: ['tcp4://0.0.0.0:8457', 'tcp6://[::]:8457'],
};

const DEFAULT_RESOURCE = {
  source: null,
  replication: 'memsync',
  checksum: 'none',
  compression: 'hole',
  timeout: 20,
  exec: null,
  metaflush: true,
} as const;

t.test('the Handbook example on each node, whichever way the node is recognised', async (t) => {
  const resource = (remote: string) => ({
    name: 'test',
    provname: 'test',
    local: '/dev/ad6',
    remote,
    ...DEFAULT_RESOURCE,
    position: { file: '/etc/hast.conf', line: 1, col: 1 },
  });
  const onHasta = [resource('172.16.0.2')];
  const onHastb = [resource('172.16.0.1')];
  const cases: Array<[string, NodeIdentity, typeof onHasta]> = [
    ['exact host name', node({ hostname: 'hasta' }), onHasta],
    ['host name up to the first dot', node({ hostname: 'hasta.example.org' }), onHasta],
    ['exact host name of the peer', node({ hostname: 'hastb' }), onHastb],
    ['node name, whatever the host is called', node({ hostname: 'hasta', nodeName: 'hastb' }), onHastb],
  ];
  for (const [how, identity, resources] of cases) {
    const config = parseHastConf(HANDBOOK, '/etc/hast.conf', identity);
    t.same(config, { file: '/etc/hast.conf', ...HAST_DEFAULTS_CONFIG, resources }, how);
  }
  const byUuid = HANDBOOK.replace('on hasta', `on ${UUID.toUpperCase()}`);
  t.same(parseHastConf(byUuid, 'f', node({ hostuuid: UUID })).resources[0]?.remote, '172.16.0.2', 'host UUID, any case');
  const byHostid = HANDBOOK.replace('on hastb', 'on hostid3735928559');
  t.same(parseHastConf(byHostid, 'f', node({ hostid: 3735928559 })).resources[0]?.remote, '172.16.0.1', 'hostid<N>');
  t.equal(
    errorOf(HANDBOOK, node({ hostname: 'hastb.example.org', nodeName: 'hastc' })).message,
    'hast.conf:1:1: No resource test configuration for this node (acceptable node names: hastc).',
    'a node name replaces host name matching',
  );
  t.equal(
    errorOf(HANDBOOK, node({ hostname: 'hasta2' })).message,
    'hast.conf:1:1: No resource test configuration for this node (acceptable node names: hasta2).',
  );
  t.equal(
    errorOf(HANDBOOK, node({ hostname: 'hastab.example.org', hostuuid: 'U', hostid: 7 })).message,
    'hast.conf:1:1: No resource test configuration for this node (acceptable node names: hastab, hastab.example.org, U, hostid7).',
  );
});

t.test('the exported defaults are hastd’s', async (t) => {
  t.equal(DEFAULT_HAST_CONF, '/etc/hast.conf');
  t.same(HAST_DEFAULTS, {
    ...HAST_DEFAULTS_CONFIG,
    replication: 'memsync',
    checksum: 'none',
    compression: 'hole',
    timeout: 20,
    metaflush: true,
  });
});

// In the style of hast.conf(5)'s EXAMPLES, with a setting at every level.
const FULL = `# Global section
control uds:///var/run/hastctl.global
listen tcp4://0.0.0.0:7771
replication fullsync
timeout 30
exec /usr/local/sbin/hast-hook
checksum crc32

on hasta {
	listen tcp6://[2001:db8::1]:7772
	control /var/run/hastctl.a
}
on hastb {
	listen tcp6://[2001:db8::2]:7772
	pidfile /var/run/hastd-b.pid
}

resource shared {
	local /dev/da0
	replication async
	compression lzf
	metaflush off
	name shareddisk

	on hasta {
		remote tcp4://10.0.0.2
		name shared-a
	}
	on hastb {
		remote tcp4://10.0.0.1
		metaflush on
		source tcp4://10.0.0.2
	}
}

resource tank {
	timeout 5
	exec /usr/local/sbin/tank-hook
	on hasta {
		local /dev/mirror/tanka
		source tcp4://10.0.0.1
		remote none
	}
	on hastb {
		local /dev/mirror/tankb
		remote 10.0.0.1:7771
	}
}

listen tcp4://127.0.0.1:7771
compression none
metaflush on
`;

t.test('global, per-node and per-resource settings give each node its effective values', async (t) => {
  const position = (line: number) => ({ file: 'hast.conf', line, col: 1 });
  t.same(parseHastConf(FULL, 'hast.conf', HASTA), {
    file: 'hast.conf',
    control: '/var/run/hastctl.a',
    pidfile: '/var/run/hastd.pid',
    listen: ['tcp4://0.0.0.0:7771', 'tcp6://[2001:db8::1]:7772', 'tcp4://127.0.0.1:7771'],
    resources: [
      {
        name: 'shared',
        provname: 'shared-a',
        local: '/dev/da0',
        remote: 'tcp4://10.0.0.2',
        source: null,
        replication: 'async',
        checksum: 'crc32',
        compression: 'lzf',
        timeout: 30,
        exec: '/usr/local/sbin/hast-hook',
        metaflush: false,
        position: position(18),
      },
      {
        name: 'tank',
        provname: 'tank',
        local: '/dev/mirror/tanka',
        remote: 'none',
        source: 'tcp4://10.0.0.1',
        replication: 'fullsync',
        checksum: 'crc32',
        compression: 'none',
        timeout: 5,
        exec: '/usr/local/sbin/tank-hook',
        metaflush: true,
        position: position(36),
      },
    ],
  });
  t.same(parseHastConf(FULL, 'hast.conf', HASTB), {
    file: 'hast.conf',
    control: 'uds:///var/run/hastctl.global',
    pidfile: '/var/run/hastd-b.pid',
    listen: ['tcp4://0.0.0.0:7771', 'tcp6://[2001:db8::2]:7772', 'tcp4://127.0.0.1:7771'],
    resources: [
      {
        name: 'shared',
        provname: 'shareddisk',
        local: '/dev/da0',
        remote: 'tcp4://10.0.0.1',
        source: 'tcp4://10.0.0.2',
        replication: 'async',
        checksum: 'crc32',
        compression: 'lzf',
        timeout: 30,
        exec: '/usr/local/sbin/hast-hook',
        metaflush: true,
        position: position(18),
      },
      {
        name: 'tank',
        provname: 'tank',
        local: '/dev/mirror/tankb',
        remote: '10.0.0.1:7771',
        source: null,
        replication: 'fullsync',
        checksum: 'crc32',
        compression: 'none',
        timeout: 5,
        exec: '/usr/local/sbin/tank-hook',
        metaflush: true,
        position: position(36),
      },
    ],
  });
});

t.test('listen: defaults only when no line applies to this node; node lines alone replace them', async (t) => {
  const text = `on hastb { listen 10.0.0.2 }\non hasta { listen 10.0.0.1\nlisten [::1]:8457 }\n${HANDBOOK}`;
  t.same(parseHastConf(text, 'f', HASTA).listen, ['10.0.0.1', '[::1]:8457']);
  t.same(parseHastConf(text, 'f', node({ hostname: 'hastb' })).listen, ['10.0.0.2']);
  t.same(parseHastConf(HANDBOOK, 'f', HASTB).listen, HAST_DEFAULTS.listen);
  t.same(parseHastConf('listen c on hasta { listen b listen a } listen d', 'f', HASTA).listen, ['c', 'b', 'a', 'd']);
  t.same(parseHastConf('', 'f', HASTA), { file: 'f', ...HAST_DEFAULTS_CONFIG, resources: [] });
  // Two top-level blocks can match one node; like hastd, the later one's control wins and listens add up.
  const twice = `on hasta { control /a listen a }\non ${UUID} { control /b listen b }`;
  t.same(parseHastConf(twice, 'f', HASTA), { file: 'f', control: '/b', pidfile: '/var/run/hastd.pid', listen: ['a', 'b'], resources: [] });
});

t.test('a resource-level local and name apply when the node block leaves them out', async (t) => {
  const text = 'resource r { local /dev/x name p on hasta { remote a } on hastb { remote b local /dev/y name q } }';
  const [a] = parseHastConf(text, 'f', HASTA).resources;
  const [b] = parseHastConf(text, 'f', HASTB).resources;
  t.same([a?.local, a?.provname, b?.local, b?.provname], ['/dev/x', 'p', '/dev/y', 'q']);
});

t.test('hastConfigToJson gives exactly the check-config JSON', async (t) => {
  const json = hastConfigToJson(parseHastConf(FULL, 'hast.conf', HASTB));
  t.equal(
    JSON.stringify(json),
    JSON.stringify({
      control: 'uds:///var/run/hastctl.global',
      pidfile: '/var/run/hastd-b.pid',
      listen: ['tcp4://0.0.0.0:7771', 'tcp6://[2001:db8::2]:7772', 'tcp4://127.0.0.1:7771'],
      resources: {
        shared: {
          name: 'shareddisk',
          local: '/dev/da0',
          remote: 'tcp4://10.0.0.1',
          source: 'tcp4://10.0.0.2',
          replication: 'async',
          checksum: 'crc32',
          compression: 'lzf',
          timeout: 30,
          exec: '/usr/local/sbin/hast-hook',
          metaflush: true,
        },
        tank: {
          name: 'tank',
          local: '/dev/mirror/tankb',
          remote: '10.0.0.1:7771',
          source: null,
          replication: 'fullsync',
          checksum: 'crc32',
          compression: 'none',
          timeout: 5,
          exec: '/usr/local/sbin/tank-hook',
          metaflush: true,
        },
      },
    }),
  );
  const odd = hastConfigToJson(parseHastConf(HANDBOOK.replace('test', '__proto__'), 'f', HASTB));
  t.equal(Object.getPrototypeOf(odd.resources), Object.prototype);
  t.same(Object.keys(odd.resources), ['__proto__']);
  t.match(JSON.stringify(odd), /"resources":\{"__proto__":\{"name":"__proto__","local":"\/dev\/ad6","remote":"172.16.0.1",/);
});

const WORD_RULE = '; hast.conf words may contain only letters, digits and . - _ / : [ ] (there is no quoting)';
// A valid pair of node blocks, so the error under test is the only one.
const OK = 'on hasta { local /dev/ada0 remote 10.0.0.2 } on hastb { local /dev/ada0 remote 10.0.0.1 }';

// [what is wrong, hast.conf text, the complete error message]
const MALFORMED: Array<[string, string, string]> = [
  ['garbage bytes', 'resource r {\n\u0001\u0002\u0003', `hast.conf:2:1: unexpected character '\\x01'${WORD_RULE}`],
  ['a NUL byte', 'control /var/run/hastctl\u0000', `hast.conf:1:25: unexpected character '\\x00'${WORD_RULE}`],
  ['a quote', 'resource "r" {', `hast.conf:1:10: unexpected character '"'${WORD_RULE}`],
  ['a semicolon', 'timeout 20;', `hast.conf:1:11: unexpected character ';'${WORD_RULE}`],
  ['non-ASCII in a name', 'resource r { on hästa { } }', `hast.conf:1:18: unexpected character U+00E4${WORD_RULE}`],
  ['an equals sign', 'timeout=20', `hast.conf:1:8: unexpected character '='${WORD_RULE}`],
  ['a truncated file', 'resource r {', "hast.conf:1:13: unexpected end of file: the '{' of 'resource r' at 1:12 is never closed"],
  [
    'a file ending inside an on block',
    'resource r {\n\ton hasta {\n\t\tlocal /dev/ada0\n',
    "hast.conf:4:1: unexpected end of file: the '{' of 'on hasta' at 2:11 is never closed",
  ],
  ['a file ending after a keyword', 'resource r { on hasta { local', "hast.conf:1:30: unexpected end of file: 'local' needs a path"],
  [
    '10,000 nested braces',
    '{'.repeat(10_000),
    "hast.conf:1:1: unexpected '{' in the global section; blocks open only after 'resource NAME' or 'on NODE'",
  ],
  [
    '10,000 nested braces in a resource',
    `resource r {\n${'{'.repeat(10_000)}`,
    "hast.conf:2:1: unexpected '{' in a resource section; blocks open only after 'resource NAME' or 'on NODE'",
  ],
  ['an unbalanced closing brace', `resource r { ${OK} }\n}`, "hast.conf:2:1: unexpected '}': no block is open"],
  [
    'a numeric resource name',
    'resource 1 { }',
    "hast.conf:1:10: 'resource' needs a name; found the number 1 (an all-digit word is a number to hastd, never a name)",
  ],
  [
    'a numeric node name',
    'resource r { on 42 { } }',
    "hast.conf:1:17: 'on' needs a node name; found the number 42 (an all-digit word is a number to hastd, never a name)",
  ],
  ['a missing value', 'resource r { on hasta { local } }', "hast.conf:1:31: 'local' needs a path; found '}'"],
  ['a missing brace', 'resource r on hasta { }', "hast.conf:1:12: expected '{' after 'resource r'; found the keyword 'on'"],
  [
    'an unknown keyword in a resource',
    `resource r { device /dev/ada0 ${OK} }`,
    "hast.conf:1:14: unknown keyword 'device' in a resource section",
  ],
  ['an unknown keyword at the top', 'include /etc/hast.d', "hast.conf:1:1: unknown keyword 'include' in the global section"],
  [
    'a value keyword as a statement',
    'memsync',
    "hast.conf:1:1: unexpected 'memsync' in the global section; it is a value, not a statement keyword",
  ],
  [
    'remote in the global section',
    'remote 10.0.0.2',
    "hast.conf:1:1: 'remote' is not allowed in the global section; it belongs in an 'on' block inside a resource",
  ],
  [
    'name in the global section',
    'name disk',
    "hast.conf:1:1: 'name' is not allowed in the global section; it belongs in a resource section or an 'on' block inside a resource",
  ],
  [
    'replication in a top-level on block',
    'on hasta { replication async }',
    "hast.conf:1:12: 'replication' is not allowed in a top-level 'on' block; it belongs in the global section or a resource section",
  ],
  [
    'local in a top-level on block',
    'on hasta { local /dev/ada0 }',
    "hast.conf:1:12: 'local' is not allowed in a top-level 'on' block; it belongs in a resource section or an 'on' block inside a resource",
  ],
  [
    'metaflush in a top-level on block',
    'on hasta { metaflush off }',
    "hast.conf:1:12: 'metaflush' is not allowed in a top-level 'on' block; it belongs in the global section, a resource section or an 'on' block inside a resource",
  ],
  [
    'remote in a resource section',
    `resource r {\n\tremote 10.0.0.2\n\t${OK}\n}`,
    "hast.conf:2:2: 'remote' is not allowed in a resource section; it belongs in an 'on' block",
  ],
  [
    'control in a resource section',
    `resource r { control /tmp/s ${OK} }`,
    "hast.conf:1:14: 'control' is not allowed in a resource section; it belongs in the global section or a top-level 'on' block",
  ],
  [
    'listen in a resource section',
    `resource r { listen 0.0.0.0 ${OK} }`,
    "hast.conf:1:14: 'listen' is not allowed in a resource section; it belongs in the global section or a top-level 'on' block",
  ],
  [
    'replication in a resource on block',
    'resource r { on hasta { replication async } }',
    "hast.conf:1:25: 'replication' is not allowed in an 'on' block inside a resource; it belongs in the global section or a resource section",
  ],
  [
    'timeout in a resource on block',
    'resource r { on hasta { timeout 5 } }',
    "hast.conf:1:25: 'timeout' is not allowed in an 'on' block inside a resource; it belongs in the global section or a resource section",
  ],
  [
    'exec in a resource on block',
    'resource r { on hasta { exec /x } }',
    "hast.conf:1:25: 'exec' is not allowed in an 'on' block inside a resource; it belongs in the global section or a resource section",
  ],
  [
    'a resource inside a resource',
    'resource r { resource s { } }',
    "hast.conf:1:14: 'resource' is not allowed in a resource section; it belongs in the global section",
  ],
  [
    'an on block inside an on block',
    'on hasta { on hastb { } }',
    "hast.conf:1:12: 'on' is not allowed in a top-level 'on' block; it belongs in the global section or a resource section",
  ],
  ['replication fast', 'replication fast', "hast.conf:1:13: 'replication' needs one of fullsync, memsync or async; found 'fast'"],
  ['checksum md5', 'resource r { checksum md5 }', "hast.conf:1:23: 'checksum' needs one of none, crc32 or sha256; found 'md5'"],
  ['compression gzip', 'compression gzip', "hast.conf:1:13: 'compression' needs one of none, hole or lzf; found 'gzip'"],
  ['metaflush yes', 'metaflush yes', "hast.conf:1:11: 'metaflush' needs one of on or off; found 'yes'"],
  ['timeout 0', 'resource r {\n\ttimeout 0\n}', 'hast.conf:2:2: Negative or zero timeout.'],
  ['timeout -5', 'timeout -5', "hast.conf:1:9: 'timeout' needs a number of seconds; found '-5'"],
  ['a timeout beyond a C int', 'timeout 99999999999', 'hast.conf:1:9: timeout 99999999999 is too large; the largest is 2147483647'],
  [
    'a keyword twice in one block',
    'resource r {\n\ton hasta {\n\t\tlocal /dev/ada0\n\t\tlocal /dev/ada1\n\t}\n}',
    "hast.conf:4:3: 'local' is given twice in an 'on' block inside a resource (first at 3:3); hastd would silently use the last one",
  ],
  ['a duplicate resource', `resource r { ${OK} }\nresource r { ${OK} }`, 'hast.conf:2:1: Resource r configured more than once.'],
  [
    'two on blocks for one node',
    'resource r {\n\ton hasta { local /a remote b }\n\ton hastb { local /a remote a }\n\ton hastb { local /a remote a }\n}',
    "hast.conf:4:2: Node hastb has more than one 'on' block in resource r (first at 3:2).",
  ],
  [
    'two on blocks matching this node under different names',
    'resource r {\n\ton hasta { remote b }\n\ton hostid3735928559 { local /a }\n}',
    "hast.conf:3:2: Both 'on hasta' (at 2:2) and 'on hostid3735928559' in resource r match this node.",
  ],
  [
    'no on block for this node',
    'resource r {\n\ton hastb { local /a remote a }\n\ton hastc { local /a remote a }\n}',
    `hast.conf:1:1: No resource r configuration for this node (acceptable node names: hasta, hasta.example.org, ${UUID}, hostid3735928559).`,
  ],
  ['no remote for this node', 'resource r {\n\tlocal /dev/ada0\n\ton hasta { }\n}', 'hast.conf:1:1: Remote address not configured for resource r.'],
  [
    'no local for this node',
    'resource r {\n\ton hasta { remote 10.0.0.2 }\n\ton hastb { local /a remote a }\n}',
    'hast.conf:1:1: Path to local component not configured for resource r.',
  ],
  [
    "hast.conf(5)'s own listen example with a prefix length",
    'on hasta {\n\tlisten tcp://2001:db8::1/64\n}',
    "hast.conf:2:2: invalid listen address 'tcp://2001:db8::1/64': '2001:db8::1/64' is not an IPv6 address; hastd takes no prefix length such as /64",
  ],
  [
    'listen on a UNIX socket',
    'listen /var/run/hastd.sock',
    "hast.conf:1:1: listen must be a TCP address such as tcp://192.0.2.1:8457; found the UNIX socket '/var/run/hastd.sock'",
  ],
  [
    'control over TCP',
    'control tcp://127.0.0.1:7000',
    "hast.conf:1:1: control must be a UNIX socket address such as uds:///var/run/hastctl; found 'tcp://127.0.0.1:7000'",
  ],
  ['control with an empty path', 'control uds://', "hast.conf:1:1: invalid control address 'uds://': the socket path is empty"],
  [
    'remote on a UNIX socket',
    'resource r { on hasta { local /a remote uds:///tmp/x } }',
    "hast.conf:1:34: remote must be a TCP address such as tcp://192.0.2.1:8457; found the UNIX socket 'uds:///tmp/x'",
  ],
  [
    'source with a bad port',
    'resource r { on hasta { local /a remote a source 10.0.0.1:99999 } }',
    "hast.conf:1:43: invalid source address '10.0.0.1:99999': the port '99999' is not a number from 1 to 65535",
  ],
  [
    'tcp4 with an IPv6 address',
    'resource r { on hasta { local /a remote tcp4://[2001:db8::2]:8457 } }',
    "hast.conf:1:34: invalid remote address 'tcp4://[2001:db8::2]:8457': tcp4:// cannot use the IPv6 address 2001:db8::2",
  ],
  [
    'a remote with an empty host',
    'resource r { on hasta { local /a remote tcp://:8457 } }',
    "hast.conf:1:34: invalid remote address 'tcp://:8457': the host is empty",
  ],
  [
    'an unknown protocol',
    'listen udp://0.0.0.0:8457',
    "hast.conf:1:1: invalid listen address 'udp://0.0.0.0:8457': unknown protocol 'udp://'; use tcp://, tcp4://, tcp6://, uds:// or unix://",
  ],
  [
    'a relative exec path',
    'exec hast-hook.sh',
    "hast.conf:1:1: exec must be an absolute path (hastd runs it without a shell or PATH); found 'hast-hook.sh'",
  ],
  ['a resource name over NAME_MAX', `resource ${'r'.repeat(255)} { }`, 'hast.conf:1:1: Resource name is too long (255 bytes; at most 254).'],
  ['a provider name over NAME_MAX', `resource r { name ${'p'.repeat(255)} }`, 'hast.conf:1:14: name argument is too long (255 bytes; at most 254).'],
  [
    'a local path over PATH_MAX',
    `resource r { on hasta { local /${'d'.repeat(1023)} remote a } }`,
    'hast.conf:1:25: local argument is too long (1024 bytes; at most 1023).',
  ],
  ['a pidfile path over PATH_MAX', `pidfile /${'p'.repeat(1023)}`, 'hast.conf:1:1: pidfile argument is too long (1024 bytes; at most 1023).'],
  [
    'a remote address over 1023 bytes',
    `resource r { on hasta { local /a remote ${'h'.repeat(1024)} } }`,
    `hast.conf:1:34: invalid remote address '${'h'.repeat(40)}...': it is 1024 bytes long; hastd takes at most 1023`,
  ],
  [
    "a bad address in the peer's block",
    'resource r {\n\ton hasta { local /a remote 10.0.0.2 }\n\ton hastb { local /a remote 10.0.0.1:0 }\n}',
    "hast.conf:3:22: invalid remote address '10.0.0.1:0': the port '0' is not a number from 1 to 65535",
  ],
  [
    "a syntax error in the peer's block",
    'resource r {\n\ton hasta { local /a remote 10.0.0.2 }\n\ton hastb { local /a remote 10.0.0.1 checksum none }\n}',
    "hast.conf:3:38: 'checksum' is not allowed in an 'on' block inside a resource; it belongs in the global section or a resource section",
  ],
  [
    "a bad listen address in the peer's top-level block",
    'on hastb { listen 10.0.0.2:http }',
    "hast.conf:1:12: invalid listen address '10.0.0.2:http': the port 'http' is not a number from 1 to 65535",
  ],
];

t.test(`${MALFORMED.length} malformed configurations, each with its exact message and place`, async (t) => {
  t.ok(MALFORMED.length >= 40);
  for (const [what, text, message] of MALFORMED) {
    const error = errorOf(text);
    t.equal(error.message, message, what);
    t.equal(error.exitCode, 78, what);
  }
});

t.test('loadHastConf reads a file', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'hast-conf-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const file = join(dir, 'hast.conf');

  await t.test('a valid file, UTF-8 in comments included', async (t) => {
    await writeFile(file, `# Ünïcödé comments are fine\n${HANDBOOK}`);
    const config = await loadHastConf(file, HASTB);
    t.equal(config.file, file);
    t.same(config.resources.map((r) => [r.name, r.remote, r.position.line]), [['test', '172.16.0.1', 2]]);
  });

  // The ConfigError loading `path` fails with, as [message, exit code].
  const failure = async (path: string): Promise<[string, number]> => {
    const error = await loadHastConf(path, HASTA).then(
      () => new Error(`${path} was accepted`),
      (e: unknown) => e,
    );
    if (!(error instanceof ConfigError)) throw error;
    return [error.message, error.exitCode];
  };

  await t.test('a missing file is unreadable: exit 72', async (t) => {
    const missing = join(dir, 'nope.conf');
    t.same(await failure(missing), [`cannot read ${missing}: ENOENT: no such file or directory`, 72]);
  });

  await t.test('a directory is unreadable: exit 72', async (t) => {
    t.same(await failure(dir), [`cannot read ${dir}: EISDIR: illegal operation on a directory`, 72]);
  });

  // Root may search any directory, so as root the check runs as user nobody, through the built command line.
  await t.test('a file in a directory we may not search is unreadable: exit 72', async (t) => {
    const base = await mkdtemp(join(tmpdir(), 'hast-conf-eacces-'));
    t.teardown(() => rm(base, { recursive: true, force: true }));
    await chmod(base, 0o755);
    const closed = join(base, 'closed');
    await mkdir(closed);
    await writeFile(join(closed, 'hast.conf'), HANDBOOK);
    await chmod(closed, 0);
    t.teardown(() => chmod(closed, 0o755));
    const message = `cannot read ${closed}/hast.conf: EACCES: permission denied`;
    if (process.getuid?.() !== 0) {
      t.same(await failure(join(closed, 'hast.conf')), [message, 72]);
      return;
    }
    // setpriv (util-linux) drops to nobody. tap adds coverage hooks to every child's environment, and they
    // write under .tap/, which nobody may not: `env -i` starts this child with a bare one, unmeasured.
    const r = await execa(
      'env',
      ['-i', `PATH=${process.env['PATH'] ?? '/usr/bin:/bin'}`, 'setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
        process.execPath, `${CLI_DIR}main.js`, 'check-config', '-c', join(closed, 'hast.conf'), '-n', 'hasta'],
      { reject: false },
    );
    t.equal(r.exitCode, 72);
    t.equal(r.stderr, `carp-hast check-config: ${message}`);
  });

  await t.test('a 10 MB file is refused at once, not parsed', async (t) => {
    const big = join(dir, 'big.conf');
    await writeFile(big, Buffer.alloc(10 * 1024 * 1024, '{'));
    const started = performance.now();
    t.same(await failure(big), [`${big} is larger than 1 MiB; a hast.conf is a few kilobytes, so this cannot be one`, 78]);
    t.ok(performance.now() - started < 1000);
  });

  await t.test('exactly 1 MiB is still read', async (t) => {
    const edge = join(dir, 'edge.conf');
    const text = `${HANDBOOK}#`;
    await writeFile(edge, text.padEnd(1024 * 1024, 'x'));
    t.equal((await loadHastConf(edge, HASTA)).resources.length, 1);
  });

  await t.test('a byte that is not UTF-8 is reported where it is', async (t) => {
    const latin1 = join(dir, 'latin1.conf');
    await writeFile(latin1, Buffer.concat([Buffer.from('resource r {\n  # café '), Buffer.from([0xe9, 0x0a])]));
    t.same(await failure(latin1), [`${latin1}:2:10: the file is not UTF-8 text: byte 0xE9 does not start a valid character`, 78]);
  });

  await t.test('the UTF-8 check agrees with a strict decoder on random bytes', async (t) => {
    const strict = new TextDecoder('utf-8', { fatal: true });
    const sample = join(dir, 'sample.conf');
    const bytes = fc.uint8Array({ maxLength: 12 }).map((b) => Buffer.concat([Buffer.from('#'), b]));
    const encoded = fc.string({ unit: 'binary', maxLength: 6 }).map((s) => Buffer.from(`#${s}`));
    await fc.assert(
      fc.asyncProperty(fc.oneof(bytes, encoded), async (content) => {
        await writeFile(sample, content);
        const valid = (() => {
          try {
            strict.decode(content);
            return true;
          } catch {
            return false;
          }
        })();
        const error = await loadHastConf(sample, HASTA).then(() => undefined, (e: unknown) => e as Error);
        const rejected = error?.message.includes('is not UTF-8 text') ?? false;
        // Valid text may still fail later (a newline, then a character the lexer refuses); only the UTF-8 verdict counts.
        return valid ? !rejected : rejected;
      }),
      { numRuns: 400 },
    );
    t.pass('agrees');
  });
});

// Valid configurations the random mutations start from.
const SEEDS = [HANDBOOK, FULL, `listen 0.0.0.0\n${HANDBOOK.replace('test', 'r2')}on hasta { control /x }\n`];
const INSERTS = ['{', '}', '#', '\n', ' ', '"', ';', '\u0000', 'on ', 'resource ', 'remote ', 'none ', '1 ', 'local /x '];

type Mutation =
  | { op: 'insert'; at: number; text: string }
  | { op: 'delete'; at: number; length: number }
  | { op: 'replace'; at: number; code: number }
  | { op: 'swap'; a: number; b: number }
  | { op: 'truncate'; at: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({
    op: fc.constant('insert' as const),
    at: fc.nat(),
    text: fc.oneof(fc.constantFrom(...INSERTS), fc.string({ unit: 'binary', maxLength: 4 })),
  }),
  fc.record({ op: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 30 }) }),
  fc.record({ op: fc.constant('replace' as const), at: fc.nat(), code: fc.integer({ min: 0, max: 255 }) }),
  fc.record({ op: fc.constant('swap' as const), a: fc.nat(), b: fc.nat() }),
  fc.record({ op: fc.constant('truncate' as const), at: fc.nat() }),
);

function mutate(text: string, m: Mutation): string {
  const at = (n: number) => n % (text.length + 1);
  switch (m.op) {
    case 'insert':
      return text.slice(0, at(m.at)) + m.text + text.slice(at(m.at));
    case 'delete':
      return text.slice(0, at(m.at)) + text.slice(at(m.at) + m.length);
    case 'replace':
      return text.slice(0, at(m.at)) + String.fromCharCode(m.code) + text.slice(at(m.at) + 1);
    case 'truncate':
      return text.slice(0, at(m.at));
    case 'swap': {
      const words = text.split(/(\s+)/);
      const [i, j] = [m.a % words.length, m.b % words.length];
      [words[i], words[j]] = [words[j] as string, words[i] as string];
      return words.join('');
    }
  }
}

t.test('random damage to valid files gives a config or a ConfigError with a place, never anything else', async (t) => {
  const started = performance.now();
  let accepted = 0;
  fc.assert(
    fc.property(fc.constantFrom(...SEEDS), fc.array(mutation, { minLength: 1, maxLength: 4 }), (seed, mutations) => {
      const text = mutations.reduce(mutate, seed);
      let config: HastConfig;
      try {
        config = parseHastConf(text, 'm.conf', HASTA);
      } catch (error) {
        if (!(error instanceof ConfigError) || error.position === undefined) throw error;
        const lines = text.split('\n');
        const { line, col } = error.position;
        return error.message.startsWith(`m.conf:${line}:${col}: `) && line <= lines.length && col <= (lines[line - 1] as string).length + 1;
      }
      accepted++;
      return Array.isArray(config.listen) && config.resources.every((r) => r.local !== '' && r.remote !== '');
    }),
    { numRuns: 3000 },
  );
  t.ok(accepted > 0, `${accepted} mutated files were still valid`);
  t.ok(performance.now() - started < 30_000);
});
