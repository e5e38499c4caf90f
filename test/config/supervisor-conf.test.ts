import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import t from 'tap';
import { ConfigError } from '../../src/config/config-error.js';
import {
  checkResourcesAgainstHast,
  defaultSupervisorConfPath,
  loadSupervisorConf,
  parseSupervisorConf,
  supervisorConfigToJson,
} from '../../src/config/supervisor-conf.js';
import type { ResourceConfig, SupervisorConfig } from '../../src/config/supervisor-conf.js';
import { EX_CONFIG, EX_OSFILE } from '../../src/common/sysexits.js';

const FILE = '/etc/carp-hast.toml';
const EXAMPLE = new URL('../../examples/carp-hast.toml', import.meta.url);

// Lines 1-7; cases below append from line 8 on.
const MINIMAL = `[carp]
vhids = ["1@em0"]

[[resource]]
name = "test"
fstype = "ufs"
mountpoint = "/hast/test"
`;

// Lines 1-4 of a [[service]] table.
const NFSD = '[[service]]\nname = "nfsd"\nstart = ["service", "nfsd", "onestart"]\nstop = ["service", "nfsd", "onestop"]\n';

const MINIMAL_CONFIG: SupervisorConfig = {
  file: FILE,
  engine: {
    kind: 'builtin',
    hastConf: '/etc/hast.conf',
    node: undefined,
    runDir: '/var/run/carp-hast',
    hastd: '/sbin/hastd',
    hastctl: '/sbin/hastctl',
  },
  carp: {
    source: 'devd',
    devdSocket: '/var/run/devd.pipe',
    vhids: [{ vhid: 1, interface: 'em0' }],
    vip: undefined,
    stepDown: undefined,
  },
  supervisor: {
    controlSocket: '/var/run/carp-hast/supervisor.sock',
    minPromoteIntervalMs: 20_000,
    settleMs: 0,
    peerReleaseTimeoutMs: 60_000,
    peerConnectGraceMs: 6_000,
    failback: false,
    onDemoteFailure: 'none',
    healthSchedule: '*/10 * * * * *',
  },
  resources: [
    {
      name: 'test',
      fstype: 'ufs',
      mountpoint: '/hast/test',
      mountOptions: [],
      fsck: 'auto',
      pool: undefined,
      deviceTimeoutMs: 30_000,
      fsckTimeoutMs: 3_600_000,
      mountTimeoutMs: 60_000,
      position: { file: FILE, line: 5, col: 8 },
    },
  ],
  services: [],
};

// Every key set to something other than its default.
const FULL = `[engine]
kind = "freebsd"
hast_conf = "/usr/local/etc/hast.conf"
node = "alpha"
run_dir = "/var/run/ch"
hastd = "/usr/sbin/hastd"
hastctl = "/usr/sbin/hastctl"

[carp]
source = "notify"
devd_socket = "/var/run/devd.seqpacket.pipe"
vhids = ["1@em0", "255@vtnet0.100"]
vip = "fd00::10"
step_down = ["systemctl", "restart", "keepalived"]

[supervisor]
control_socket = "/run/carp-hast.sock"
min_promote_interval = "2m"
settle = "1.5s"
peer_release_timeout = "2m"
peer_connect_grace = "15s"
failback = true
on_demote_failure = "reboot"
health_schedule = "0 * * * * *"

[[resource]]
name = "data"
fstype = "ext4"
mountpoint = "/srv/data"
mount_options = ["noatime", "nodev"]
fsck = "always"
device_timeout = "45s"
fsck_timeout = "2h"
mount_timeout = "250ms"

[[resource]]
name = "tank"
fstype = "zfs"
pool = "tank"

[[resource]]
name = "raw"
fstype = "none"
fsck = "never"

[[service]]
name = "nfsd"
start = ["service", "nfsd", "onestart"]
stop = ["service", "nfsd", "onestop"]
status = ["service", "nfsd", "onestatus"]
timeout = "90s"

[[service]]
name = "samba"
start = ["/usr/local/sbin/smbd", "-D"]
stop = ["pkill", "-x", "smbd"]
`;

const RESOURCE_DEFAULTS: Omit<ResourceConfig, 'name' | 'fstype' | 'position'> = {
  mountpoint: undefined,
  mountOptions: [],
  fsck: 'auto',
  pool: undefined,
  deviceTimeoutMs: 30_000,
  fsckTimeoutMs: 3_600_000,
  mountTimeoutMs: 60_000,
};

const FULL_CONFIG: SupervisorConfig = {
  file: FILE,
  engine: {
    kind: 'freebsd',
    hastConf: '/usr/local/etc/hast.conf',
    node: 'alpha',
    runDir: '/var/run/ch',
    hastd: '/usr/sbin/hastd',
    hastctl: '/usr/sbin/hastctl',
  },
  carp: {
    source: 'notify',
    devdSocket: '/var/run/devd.seqpacket.pipe',
    vhids: [
      { vhid: 1, interface: 'em0' },
      { vhid: 255, interface: 'vtnet0.100' },
    ],
    vip: 'fd00::10',
    stepDown: ['systemctl', 'restart', 'keepalived'],
  },
  supervisor: {
    controlSocket: '/run/carp-hast.sock',
    minPromoteIntervalMs: 120_000,
    settleMs: 1_500,
    peerReleaseTimeoutMs: 120_000,
    peerConnectGraceMs: 15_000,
    failback: true,
    onDemoteFailure: 'reboot',
    healthSchedule: '0 * * * * *',
  },
  resources: [
    {
      name: 'data',
      fstype: 'ext4',
      mountpoint: '/srv/data',
      mountOptions: ['noatime', 'nodev'],
      fsck: 'always',
      pool: undefined,
      deviceTimeoutMs: 45_000,
      fsckTimeoutMs: 7_200_000,
      mountTimeoutMs: 250,
      position: { file: FILE, line: 27, col: 8 },
    },
    { ...RESOURCE_DEFAULTS, name: 'tank', fstype: 'zfs', pool: 'tank', position: { file: FILE, line: 37, col: 8 } },
    { ...RESOURCE_DEFAULTS, name: 'raw', fstype: 'none', fsck: 'never', position: { file: FILE, line: 42, col: 8 } },
  ],
  services: [
    {
      name: 'nfsd',
      start: ['service', 'nfsd', 'onestart'],
      stop: ['service', 'nfsd', 'onestop'],
      status: ['service', 'nfsd', 'onestatus'],
      timeoutMs: 90_000,
      position: { file: FILE, line: 47, col: 8 },
    },
    {
      name: 'samba',
      start: ['/usr/local/sbin/smbd', '-D'],
      stop: ['pkill', '-x', 'smbd'],
      status: undefined,
      timeoutMs: 60_000,
      position: { file: FILE, line: 54, col: 8 },
    },
  ],
};

function thrownBy(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  return undefined;
}

t.test('a minimal file gets every default', async (t) => {
  t.strictSame(parseSupervisorConf(MINIMAL, FILE), MINIMAL_CONFIG);
});

t.test('a file that sets every key gets exactly those values', async (t) => {
  t.strictSame(parseSupervisorConf(FULL, FILE), FULL_CONFIG);
});

t.test("peer_connect_grace defaults to the engine primary's reconnect interval and a second", async (t) => {
  t.equal(parseSupervisorConf(MINIMAL, FILE).supervisor.peerConnectGraceMs, 6_000, 'the built-in engine retries every 5 s');
  const freebsd = parseSupervisorConf(`[engine]\nkind = "freebsd"\n${MINIMAL}`, FILE);
  t.equal(freebsd.supervisor.peerConnectGraceMs, 11_000, "hastd's guard thread checks every 10 s");
  t.equal(parseSupervisorConf(`${MINIMAL}[supervisor]\npeer_connect_grace = "0s"\n`, FILE).supervisor.peerConnectGraceMs, 0);
});

t.test('inline tables and dotted keys mean the same as table headers', async (t) => {
  const inline = `carp.vhids = ["1@em0"]
resource = [{ name = "test", fstype = "ufs", mountpoint = "/hast/test" }]
`;
  const config = parseSupervisorConf(inline, FILE);
  t.strictSame(config, { ...MINIMAL_CONFIG, resources: [{ ...MINIMAL_CONFIG.resources[0], position: { file: FILE, line: 2, col: 22 } }] });
});

t.test('an empty step_down or status means none', async (t) => {
  const text = MINIMAL.replace('vhids = ["1@em0"]\n', 'vhids = ["1@em0"]\nstep_down = []\n') + NFSD + 'status = []\n';
  const config = parseSupervisorConf(text, FILE);
  t.equal(config.carp.stepDown, undefined);
  t.equal(config.services[0]?.status, undefined);
});

t.test('supervisorConfigToJson prints the effective configuration in the file\'s keys', async (t) => {
  t.strictSame(supervisorConfigToJson(parseSupervisorConf(MINIMAL, FILE)), {
    engine: {
      kind: 'builtin',
      hast_conf: '/etc/hast.conf',
      node: '',
      run_dir: '/var/run/carp-hast',
      hastd: '/sbin/hastd',
      hastctl: '/sbin/hastctl',
    },
    carp: { source: 'devd', devd_socket: '/var/run/devd.pipe', vhids: ['1@em0'], vip: '', step_down: [] },
    supervisor: {
      control_socket: '/var/run/carp-hast/supervisor.sock',
      min_promote_interval: '20s',
      settle: '0s',
      peer_release_timeout: '1m',
      peer_connect_grace: '6s',
      failback: false,
      on_demote_failure: 'none',
      health_schedule: '*/10 * * * * *',
    },
    resource: [
      {
        name: 'test',
        fstype: 'ufs',
        mountpoint: '/hast/test',
        mount_options: [],
        fsck: 'auto',
        pool: '',
        device_timeout: '30s',
        fsck_timeout: '1h',
        mount_timeout: '1m',
      },
    ],
    service: [],
  });
  const full = supervisorConfigToJson(parseSupervisorConf(FULL, FILE));
  t.strictSame(full.carp, {
    source: 'notify',
    devd_socket: '/var/run/devd.seqpacket.pipe',
    vhids: ['1@em0', '255@vtnet0.100'],
    vip: 'fd00::10',
    step_down: ['systemctl', 'restart', 'keepalived'],
  });
  t.strictSame(full.supervisor, {
    control_socket: '/run/carp-hast.sock',
    min_promote_interval: '2m',
    settle: '1500ms',
    peer_release_timeout: '2m',
    peer_connect_grace: '15s',
    failback: true,
    on_demote_failure: 'reboot',
    health_schedule: '0 * * * * *',
  });
  t.strictSame(full.resource[1], {
    name: 'tank',
    fstype: 'zfs',
    mountpoint: '',
    mount_options: [],
    fsck: 'auto',
    pool: 'tank',
    device_timeout: '30s',
    fsck_timeout: '1h',
    mount_timeout: '1m',
  });
  t.strictSame(full.service, [
    {
      name: 'nfsd',
      start: ['service', 'nfsd', 'onestart'],
      stop: ['service', 'nfsd', 'onestop'],
      status: ['service', 'nfsd', 'onestatus'],
      timeout: '90s',
    },
    { name: 'samba', start: ['/usr/local/sbin/smbd', '-D'], stop: ['pkill', '-x', 'smbd'], status: [], timeout: '1m' },
  ]);
});

const HINT = '(use a number with ms, s, m or h, e.g. "250ms", "20s", "5m")';
const ENGINE_KEYS = 'known: kind, hast_conf, node, run_dir, hastd, hastctl';
const SUPERVISOR_KEYS =
  'known: control_socket, min_promote_interval, settle, peer_release_timeout, peer_connect_grace, failback, on_demote_failure, health_schedule';
const RESOURCE_KEYS =
  'known: name, fstype, mountpoint, mount_options, fsck, pool, device_timeout, fsck_timeout, mount_timeout';
const TABLES = 'known: engine, carp, supervisor, resource, service';
const VHID_HELP = '(a vhid from 1 to 255, "@", an interface, e.g. "1@em0")';
const FSTYPES = 'one of "ufs", "ext4", "xfs", "zfs", "none"';

// [file text, exact message]
const MALFORMED: [string, string][] = [
  // TOML syntax, with the parser's position
  [`${MINIMAL}[engine\n`, `${FILE}:9:1: invalid TOML: Unterminated table-key`],
  [`${MINIMAL}[engine]\nnode = "alpha\n`, `${FILE}:9:14: invalid TOML: Unterminated string constant`],
  [`${MINIMAL}fstype = "zfs"\n`, `${FILE}:8:1: invalid TOML: Defining a key multiple times is invalid`],
  // unknown tables and keys point at the name
  [`${MINIMAL}[engnie]\nkind = "builtin"\n`, `${FILE}:8:2: unknown table 'engnie' (${TABLES})`],
  [`debug = true\n${MINIMAL}`, `${FILE}:1:1: unknown table 'debug' (${TABLES})`],
  [`${MINIMAL}[engine]\nknd = "freebsd"\n`, `${FILE}:9:1: engine.knd: unknown key (${ENGINE_KEYS})`],
  [`${MINIMAL}[engine]\n"kind" = "freebsd"\n'knd' = 1\n`, `${FILE}:10:1: engine.knd: unknown key (${ENGINE_KEYS})`],
  [`${MINIMAL}[supervisor.x]\ny = 1\n`, `${FILE}:8:13: supervisor.x: unknown key (${SUPERVISOR_KEYS})`],
  [`${MINIMAL}mount_point = "/x"\n`, `${FILE}:8:1: resource.mount_point: unknown key (${RESOURCE_KEYS})`],
  [
    'carp.vhids = ["1@em0"]\nresource = [{ name = "a", fstype = "ufs", mountpoint = "/a", mount_point = "/b" }]\n',
    `${FILE}:2:62: resource.mount_point: unknown key (${RESOURCE_KEYS})`,
  ],
  [`${MINIMAL}[engine]\n__proto__ = { kind = "freebsd" }\n`, `${FILE}:9:1: key '__proto__' is not allowed`],
  // [engine]
  [`${MINIMAL}[engine]\nkind = "linux"\n`, `${FILE}:9:8: engine.kind: expected one of "builtin", "freebsd", got string "linux"`],
  [`${MINIMAL}[engine]\nkind = 1\n`, `${FILE}:9:8: engine.kind: expected one of "builtin", "freebsd", got number 1`],
  [`${MINIMAL}[engine]\nkind = { a = 1 }\n`, `${FILE}:9:8: engine.kind: expected one of "builtin", "freebsd", got table`],
  [`${MINIMAL}[engine]\nhast_conf = "hast.conf"\n`, `${FILE}:9:13: engine.hast_conf: expected an absolute path, got string "hast.conf"`],
  [`${MINIMAL}[engine]\nhastctl = true\n`, `${FILE}:9:11: engine.hastctl: expected an absolute path, got boolean true`],
  [`${MINIMAL}[engine]\nnode = ["a"]\n`, `${FILE}:9:8: engine.node: expected a string, got array`],
  [`engine = "builtin"\n${MINIMAL}`, `${FILE}:1:10: engine: expected a table, got string "builtin"`],
  // [carp]
  [
    MINIMAL.replace('["1@em0"]', '"1@em0"'),
    `${FILE}:2:9: carp.vhids: expected an array of strings, got string "1@em0"`,
  ],
  [
    MINIMAL.replace('["1@em0"]', '["1@em0", 2]'),
    `${FILE}:2:19: carp.vhids[1]: expected a "vhid@interface" string, got number 2`,
  ],
  [MINIMAL.replace('["1@em0"]', '["0@em0"]'), `${FILE}:2:10: carp.vhids[0]: invalid vhid@interface "0@em0" ${VHID_HELP}`],
  [MINIMAL.replace('["1@em0"]', '["256@em0"]'), `${FILE}:2:10: carp.vhids[0]: invalid vhid@interface "256@em0" ${VHID_HELP}`],
  [MINIMAL.replace('["1@em0"]', '["em0"]'), `${FILE}:2:10: carp.vhids[0]: invalid vhid@interface "em0" ${VHID_HELP}`],
  [MINIMAL.replace('["1@em0"]', '["1@"]'), `${FILE}:2:10: carp.vhids[0]: invalid vhid@interface "1@" ${VHID_HELP}`],
  [
    MINIMAL.replace('["1@em0"]', '[]'),
    `${FILE}:2:9: carp.vhids: required when carp.source is "devd": the vhid@interface pairs this node follows, e.g. ["1@em0"]`,
  ],
  [
    MINIMAL.replace('[carp]\nvhids = ["1@em0"]\n', ''),
    `${FILE}:1:1: carp.vhids: required when carp.source is "devd": the vhid@interface pairs this node follows, e.g. ["1@em0"]`,
  ],
  [
    `engine.kind = "builtin"\ncarp.source = "devd"\n${MINIMAL.replace('[carp]\nvhids = ["1@em0"]\n', '')}`,
    `${FILE}:2:1: carp.vhids: required when carp.source is "devd": the vhid@interface pairs this node follows, e.g. ["1@em0"]`,
  ],
  [
    MINIMAL.replace('[carp]\n', '[carp]\nsource = "ifconfig"\n'),
    `${FILE}:2:10: carp.source: expected one of "devd", "notify", got string "ifconfig"`,
  ],
  [
    MINIMAL.replace('[carp]\n', '[carp]\nvip = "10.0.0.300"\n'),
    `${FILE}:2:7: carp.vip: expected an IPv4 or IPv6 address, got string "10.0.0.300"`,
  ],
  [
    MINIMAL.replace('[carp]\n', '[carp]\nvip = 1979-05-27T07:32:00Z\n'),
    `${FILE}:2:7: carp.vip: expected a string, got date-time`,
  ],
  [
    MINIMAL.replace('[carp]\n', '[carp]\nstep_down = "reboot"\n'),
    `${FILE}:2:13: carp.step_down: expected an array of strings, got string "reboot"`,
  ],
  [
    MINIMAL.replace('[carp]\n', '[carp]\nstep_down = ["", "x"]\n'),
    `${FILE}:2:13: carp.step_down: the program (first element) must not be empty`,
  ],
  // [supervisor]
  [
    `${MINIMAL}[supervisor]\nmin_promote_interval = "20 seconds"\n`,
    `${FILE}:9:24: supervisor.min_promote_interval: invalid duration "20 seconds" ${HINT}`,
  ],
  [`${MINIMAL}[supervisor]\nsettle = 5\n`, `${FILE}:9:10: supervisor.settle: expected a duration string such as "20s", got number 5`],
  [`${MINIMAL}[supervisor]\nsettle = 1.5\n`, `${FILE}:9:10: supervisor.settle: expected a duration string such as "20s", got number 1.5`],
  [`${MINIMAL}[supervisor]\nsettle = "-1s"\n`, `${FILE}:9:10: supervisor.settle: invalid duration "-1s": durations cannot be negative`],
  [`${MINIMAL}[supervisor]\nsettle = "200h"\n`, `${FILE}:9:10: supervisor.settle: duration "200h" is too long (at most 168h, a week)`],
  [`${MINIMAL}[supervisor]\npeer_connect_grace = 6\n`, `${FILE}:9:22: supervisor.peer_connect_grace: expected a duration string such as "20s", got number 6`],
  [`${MINIMAL}[supervisor]\nfailback = "yes"\n`, `${FILE}:9:12: supervisor.failback: expected true or false, got string "yes"`],
  [
    `${MINIMAL}[supervisor]\non_demote_failure = "panic"\n`,
    `${FILE}:9:21: supervisor.on_demote_failure: expected one of "none", "reboot", got string "panic"`,
  ],
  [
    `${MINIMAL}[supervisor]\nhealth_schedule = "every 10s"\n`,
    `${FILE}:9:19: supervisor.health_schedule: invalid cron schedule "every 10s" (five fields, or six with seconds first, e.g. "*/10 * * * * *")`,
  ],
  [
    `${MINIMAL}[supervisor]\ncontrol_socket = "supervisor.sock"\n`,
    `${FILE}:9:18: supervisor.control_socket: expected an absolute path, got string "supervisor.sock"`,
  ],
  // [[resource]]
  ['[carp]\nvhids = ["1@em0"]\n', `${FILE}:1:1: resource: at least one [[resource]] is required`],
  ['resource = []\n[carp]\nvhids = ["1@em0"]\n', `${FILE}:1:12: resource: at least one [[resource]] is required`],
  [MINIMAL.replace('[[resource]]', '[resource]'), `${FILE}:4:1: resource: expected [[resource]] tables, got table`],
  [MINIMAL.replace('name = "test"\n', ''), `${FILE}:4:1: resource.name: required key is missing`],
  [MINIMAL.replace('fstype = "ufs"\n', ''), `${FILE}:4:1: resource.fstype: required key is missing`],
  [MINIMAL.replace('"test"', '""'), `${FILE}:5:8: resource.name: must not be empty`],
  [MINIMAL.replace('"ufs"', '"ffs"'), `${FILE}:6:10: resource.fstype: expected ${FSTYPES}, got string "ffs"`],
  [
    MINIMAL.replace('"/hast/test"', '"hast/test"'),
    `${FILE}:7:14: resource.mountpoint: expected an absolute path, got string "hast/test"`,
  ],
  [MINIMAL.replace('mountpoint = "/hast/test"\n', ''), `${FILE}:4:1: resource.mountpoint: required with fstype "ufs"`],
  [
    MINIMAL.replace('fstype = "ufs"\nmountpoint = "/hast/test"\n', 'fstype = "zfs"\n'),
    `${FILE}:4:1: resource.pool: required with fstype "zfs": the pool to import`,
  ],
  [
    MINIMAL.replace('"ufs"', '"zfs"').replace('[[resource]]\n', '[[resource]]\npool = "tank"\n'),
    `${FILE}:8:14: resource.mountpoint: not used with fstype "zfs" (the pool's datasets carry their own mountpoints)`,
  ],
  [MINIMAL.replace('"ufs"', '"none"'), `${FILE}:7:14: resource.mountpoint: not used with fstype "none"`],
  [`${MINIMAL}pool = "tank"\n`, `${FILE}:8:8: resource.pool: only used with fstype "zfs", not "ufs"`],
  [`${MINIMAL}fsck = "yes"\n`, `${FILE}:8:8: resource.fsck: expected one of "auto", "always", "never", got string "yes"`],
  [`${MINIMAL}mount_options = "rw"\n`, `${FILE}:8:17: resource.mount_options: expected an array of strings, got string "rw"`],
  [`${MINIMAL}device_timeout = "30"\n`, `${FILE}:8:18: resource.device_timeout: invalid duration "30" ${HINT}`],
  [
    `${MINIMAL}\n[[resource]]\nname = "test"\nfstype = "ufs"\nmountpoint = "/hast/other"\n`,
    `${FILE}:10:8: resource.name: duplicate "test" (already used by the [[resource]] at line 5)`,
  ],
  [
    `${MINIMAL}\n[[resource]]\nname = "other"\nfstype = "ufs"\nmountpoint = "/hast/test"\n`,
    `${FILE}:12:14: resource.mountpoint: duplicate "/hast/test" (already used by the [[resource]] at line 7)`,
  ],
  // [[service]]
  [`${MINIMAL}[[service]]\nname = "nfsd"\nstop = ["x"]\n`, `${FILE}:8:1: service.start: required key is missing`],
  [
    `${MINIMAL}[[service]]\nname = "nfsd"\nstart = []\nstop = ["x"]\n`,
    `${FILE}:10:9: service.start: expected a command, got an empty array`,
  ],
  [
    `${MINIMAL}[[service]]\nname = "nfsd"\nstart = "service nfsd onestart"\nstop = ["x"]\n`,
    `${FILE}:10:9: service.start: expected a command as an array of strings, e.g. ["service", "nfsd", "onestart"], got string "service nfsd onestart"`,
  ],
  [
    `${MINIMAL}[[service]]\nname = "nfsd"\nstart = ["x"]\nstop = [1]\n`,
    `${FILE}:11:9: service.stop[0]: expected a string, got number 1`,
  ],
  [
    `${MINIMAL}[[service]]\nname = "nfsd"\nstart = [""]\nstop = ["x"]\n`,
    `${FILE}:10:9: service.start: the program (first element) must not be empty`,
  ],
  [`${MINIMAL}${NFSD}timeout = "1 minute"\n`, `${FILE}:12:11: service.timeout: invalid duration "1 minute" ${HINT}`],
  [`${MINIMAL}${NFSD}${NFSD}`, `${FILE}:13:8: service.name: duplicate "nfsd" (already used by the [[service]] at line 9)`],
  [`${MINIMAL}service = { name = "nfsd" }\n`, `${FILE}:8:1: resource.service: unknown key (${RESOURCE_KEYS})`],
  [`service = { name = "nfsd" }\n${MINIMAL}`, `${FILE}:1:11: service: expected [[service]] tables, got table`],
  // several problems: the first one in the file is reported, whatever order the schema checks them in
  [
    `[supervisor]\nsettle = "soon"\n[engine]\nkind = "linux"\n${MINIMAL}`,
    `${FILE}:2:10: supervisor.settle: invalid duration "soon" ${HINT}`,
  ],
];

t.test('malformed files are refused with the key, the value and the line', async (t) => {
  t.ok(MALFORMED.length >= 25);
  for (const [text, message] of MALFORMED) {
    const error = thrownBy(() => parseSupervisorConf(text, FILE));
    t.ok(error instanceof ConfigError, message);
    t.equal((error as Error).message, message);
    t.equal((error as ConfigError).exitCode, EX_CONFIG);
  }
});

t.test('random edits of a valid file either parse or give a ConfigError', async (t) => {
  const lines = FULL.split('\n');
  const tomlValue = fc.oneof(
    fc.string().map((value) => JSON.stringify(value)),
    fc.constantFrom('"20s"', '"-1s"', '"0@em0"', '"zfs"', '""', '[]', '[""]', '{}', 'true', '1.5', '"/x"', '"relative"'),
    fc.integer().map(String),
    fc.array(fc.constantFrom('"a"', '1', '"1@em0"', '[]'), { maxLength: 3 }).map((items) => `[${items.join(', ')}]`),
  );
  const key = fc.constantFrom('name', 'fstype', 'pool', 'vhids', 'kind', 'settle', 'start', 'status', 'x', '__proto__');
  const edit = fc.oneof(
    fc.record({ kind: fc.constant('delete' as const), line: fc.nat() }),
    fc.record({ kind: fc.constant('duplicate' as const), line: fc.nat() }),
    fc.record({ kind: fc.constant('value' as const), line: fc.nat(), value: tomlValue }),
    fc.record({ kind: fc.constant('insert' as const), line: fc.nat(), key, value: tomlValue }),
    fc.record({ kind: fc.constant('character' as const), line: fc.nat(), column: fc.nat(), character: fc.string({ maxLength: 1 }) }),
  );
  fc.assert(
    fc.property(fc.array(edit, { minLength: 1, maxLength: 4 }), (edits) => {
      const edited = [...lines];
      for (const change of edits) {
        const at = change.line % edited.length;
        const line = edited[at] ?? '';
        if (change.kind === 'delete') edited.splice(at, 1);
        if (change.kind === 'duplicate') edited.splice(at, 0, line);
        if (change.kind === 'value') edited[at] = line.replace(/=.*/, `= ${change.value}`);
        if (change.kind === 'insert') edited.splice(at, 0, `${change.key} = ${change.value}`);
        if (change.kind === 'character') {
          const column = change.column % (line.length + 1);
          edited[at] = line.slice(0, column) + change.character + line.slice(column + 1);
        }
      }
      try {
        parseSupervisorConf(edited.join('\n'), FILE);
        return true;
      } catch (error) {
        return error instanceof ConfigError && error.message.startsWith(`${FILE}:`);
      }
    }),
    { numRuns: 3000 },
  );
  t.pass('no other kind of error');
});

t.test('checkResourcesAgainstHast points at a [[resource]] that hast.conf lacks', async (t) => {
  const config = parseSupervisorConf(`${MINIMAL}\n[[resource]]\nname = "foo"\nfstype = "none"\n`, FILE);
  t.doesNotThrow(() => checkResourcesAgainstHast(config, ['foo', 'test']));
  const missing = thrownBy(() => checkResourcesAgainstHast(config, ['test', 'data']));
  t.ok(missing instanceof ConfigError);
  t.equal(
    (missing as Error).message,
    `${FILE}:10:8: resource.name: "foo" is not a resource of /etc/hast.conf (known: test, data)`,
  );
  const none = thrownBy(() => checkResourcesAgainstHast(config, []));
  t.equal((none as Error).message, `${FILE}:5:8: resource.name: "test" is not a resource of /etc/hast.conf (it defines none)`);
});

t.test('defaultSupervisorConfPath follows the platform\'s etc', async (t) => {
  t.equal(defaultSupervisorConfPath('freebsd'), '/usr/local/etc/carp-hast.toml');
  t.equal(defaultSupervisorConfPath('linux'), '/etc/carp-hast.toml');
  t.equal(defaultSupervisorConfPath(), process.platform === 'freebsd' ? '/usr/local/etc/carp-hast.toml' : '/etc/carp-hast.toml');
});

t.test('loadSupervisorConf reads a file, and refuses what cannot be a configuration', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'carp-hast-conf-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));

  const good = join(dir, 'good.toml');
  await writeFile(good, MINIMAL);
  t.strictSame(await loadSupervisorConf(good), { ...MINIMAL_CONFIG, file: good, resources: [{ ...MINIMAL_CONFIG.resources[0], position: { file: good, line: 5, col: 8 } }] });

  const missing = join(dir, 'missing.toml');
  const notFound = await loadSupervisorConf(missing).catch((error: unknown) => error);
  t.ok(notFound instanceof ConfigError);
  t.equal((notFound as ConfigError).message, `cannot read ${missing}`);
  t.equal((notFound as ConfigError).exitCode, EX_OSFILE);
  t.match(((notFound as Error).cause as NodeJS.ErrnoException).code, 'ENOENT');

  const directory = await loadSupervisorConf(dir).catch((error: unknown) => error);
  t.equal((directory as ConfigError).message, `cannot read ${dir}`);
  t.equal((directory as ConfigError).exitCode, EX_OSFILE);

  const huge = join(dir, 'huge.toml');
  await writeFile(huge, `${MINIMAL}#${'x'.repeat(1024 * 1024)}\n`);
  const tooLarge = await loadSupervisorConf(huge).catch((error: unknown) => error);
  t.ok(tooLarge instanceof ConfigError);
  t.equal((tooLarge as ConfigError).message, `${huge}: larger than 1 MiB, too large for a configuration file`);
  t.equal((tooLarge as ConfigError).exitCode, EX_CONFIG);

  const binary = join(dir, 'binary.toml');
  await writeFile(binary, Buffer.from([0x23, 0xff, 0xfe, 0x0a]));
  const notText = await loadSupervisorConf(binary).catch((error: unknown) => error);
  t.equal((notText as ConfigError).message, `${binary}: not UTF-8 text`);
  t.equal((notText as ConfigError).exitCode, EX_CONFIG);

  const invalid = join(dir, 'invalid.toml');
  await writeFile(invalid, MINIMAL.replace('"ufs"', '"ffs"'));
  const refused = await loadSupervisorConf(invalid).catch((error: unknown) => error);
  t.equal((refused as ConfigError).message, `${invalid}:6:10: resource.fstype: expected one of "ufs", "ext4", "xfs", "zfs", "none", got string "ffs"`);
});

t.test('the example file parses, and the defaults it documents are the real ones', async (t) => {
  const text = await readFile(EXAMPLE, 'utf8');
  const example = parseSupervisorConf(text, FILE);
  // The same file with only the keys the example sets to something other than their default.
  const essentials = parseSupervisorConf(
    `${MINIMAL}[[service]]
name = "nfsd"
start = ["service", "nfsd", "onestart"]
stop = ["service", "nfsd", "onestop"]
status = ["service", "nfsd", "onestatus"]
`,
    FILE,
  );
  const withoutPositions = (config: SupervisorConfig) => ({
    ...config,
    resources: config.resources.map(({ position: _position, ...resource }) => resource),
    services: config.services.map(({ position: _position, ...service }) => service),
  });
  t.strictSame(withoutPositions(example), withoutPositions(essentials));

  // Every key is documented, and a key left at its default (which the comparison above proves it is) says
  // which default in the comment above it.
  const setByExample = ['carp.vhids', 'resource.name', 'resource.fstype', 'resource.mountpoint'];
  setByExample.push('service.name', 'service.start', 'service.stop', 'service.status');
  let table = '';
  let comment: string[] = [];
  let keys = 0;
  for (const line of text.split('\n')) {
    const header = /^\[+(\w+)\]+$/.exec(line);
    const keyValue = /^(\w+) = (.*)$/.exec(line);
    if (header) table = header[1] ?? '';
    if (keyValue) {
      const [, key = '', value = ''] = keyValue;
      const documentation = comment.join(' ');
      t.match(documentation, /Default |Required/, `${table}.${key} is documented`);
      if (!setByExample.includes(`${table}.${key}`)) {
        t.ok(documentation.includes(`Default ${value}`), `${table}.${key} documents its default ${value}`);
      }
      keys++;
    }
    comment = line.startsWith('# ') ? [...comment, line.slice(2)] : [];
  }
  t.equal(keys, 33, 'every key of the schema appears in the example');
});
