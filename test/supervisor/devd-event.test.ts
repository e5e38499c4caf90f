import fc from 'fast-check';
import t from 'tap';
import { DevdLineError, parseDevdLine } from '../../src/supervisor/devd-event.js';
import type { CarpState, DevdLine } from '../../src/supervisor/devd-event.js';

function carp(vhid: number, ifname: string, state: CarpState): DevdLine {
  return { kind: 'carp', transition: { vhid, interface: ifname, state } };
}

const OTHER: DevdLine = { kind: 'other' };

const VALID: [string, DevdLine][] = [
  ['!system=CARP subsystem=1@em0 type=MASTER', carp(1, 'em0', 'MASTER')],
  ['!system=CARP subsystem=1@em0 type=BACKUP', carp(1, 'em0', 'BACKUP')],
  ['!system=CARP subsystem=1@em0 type=INIT', carp(1, 'em0', 'INIT')],
  ['!system=CARP subsystem=50@vlan50 type=MASTER', carp(50, 'vlan50', 'MASTER')],
  ['!system=CARP subsystem=2@re0 type=BACKUP', carp(2, 're0', 'BACKUP')],
  ['!system=CARP subsystem=100@lagg0.100 type=MASTER', carp(100, 'lagg0.100', 'MASTER')],
  ['!system=CARP subsystem=255@em1 type=INIT', carp(255, 'em1', 'INIT')],
  ['!system=CARP subsystem=7@my_uplink-0 type=MASTER', carp(7, 'my_uplink-0', 'MASTER')],
  ['!system=CARP subsystem=1@abcdefghijklmno type=MASTER', carp(1, 'abcdefghijklmno', 'MASTER')],
  // Data the kernel may append after the type is accepted and ignored, whatever it looks like.
  ['!system=CARP subsystem=3@em0 type=BACKUP reason=demoted', carp(3, 'em0', 'BACKUP')],
  ['!system=CARP subsystem=3@em0 type=BACKUP some free text', carp(3, 'em0', 'BACKUP')],
  ['!system=CARP subsystem=3@em0 type=BACKUP note="two words"', carp(3, 'em0', 'BACKUP')],
  // devd's own variable syntax: quoted values, any order, tabs and runs of spaces between fields.
  ['!system="CARP" subsystem="4@em0" type="MASTER"', carp(4, 'em0', 'MASTER')],
  ['!type=INIT subsystem=4@em0 system=CARP', carp(4, 'em0', 'INIT')],
  ['!system=CARP\tsubsystem=4@em0   type=MASTER', carp(4, 'em0', 'MASTER')],
  ['!system=CARP subsystem=4@em0 type=MASTER ', carp(4, 'em0', 'MASTER')],
  ['!system=CARP subsystem=04@em0 type=MASTER', carp(4, 'em0', 'MASTER')],
  // Everything else devd reports.
  ['!system=IFNET subsystem=em0 type=LINK_UP', OTHER],
  ['!system=IFNET subsystem=em0 type=LINK_DOWN', OTHER],
  ['!system=IFNET subsystem=vlan50 type=ATTACH', OTHER],
  ['!system=ACPI subsystem=ACAD type=ACPI_NOTIFY notify=0x01', OTHER],
  ['!system=ACPI subsystem=Lid type=ACPI_NOTIFY notify=0x00', OTHER],
  ['!system=DEVFS subsystem=CDEV type=CREATE cdev=da0', OTHER],
  ['!system=ZFS subsystem=ZFS type=sysevent.fs.zfs.config_sync pool_name=tank pool_guid=1234', OTHER],
  ['!system=USB subsystem=INTERFACE type=ATTACH ugen=ugen0.2 vendor=0x0781 product="SanDisk Cruzer"', OTHER],
  // Other systems are not checked beyond the system field: their remaining fields are not ours to judge.
  ['!system=IFNET subsystem= type=', OTHER],
  ['!system=carp subsystem=1@em0 type=MASTER', OTHER],
  ['+uhub0 at bus=0 sernum="" on usbus0', OTHER],
  ['+umass0 at uhub=uhub1 port=2 vendor=0x0781 product=0x5567 on uhub1', OTHER],
  ['-umass0 at uhub=uhub1 port=2 on uhub1', OTHER],
  ['? at port=0x60-0x64 irq=1 on acpi0', OTHER],
  ['+', OTHER],
];

const INVALID: [string, string][] = [
  ['', 'malformed devd line "": empty line'],
  ['system=CARP subsystem=1@em0 type=MASTER', 'malformed devd line "system=CARP subsystem=1@em0 type=MASTER": starts with "s", not !, +, - or ?'],
  [' !system=CARP', 'malformed devd line " !system=CARP": starts with " ", not !, +, - or ?'],
  ['carp: 2@em1: MASTER -> INIT', 'malformed devd line "carp: 2@em1: MASTER -> INIT": starts with "c", not !, +, - or ?'],
  ['\u0000\u0001\u00ff\u0010', 'malformed devd line "\\u0000\\u0001ÿ\\u0010": control character 0x00 at offset 0'],
  ['!system=CARP subsystem=1@em0 type=MASTER\r', 'malformed devd line "!system=CARP subsystem=1@em0 type=MASTER\\r": control character 0x0d at offset 40'],
  ['!system=IFNET\u001bsubsystem=em0', 'malformed devd line "!system=IFNET\\u001bsubsystem=em0": control character 0x1b at offset 13'],
  ['+attach\u007f', 'malformed devd line "+attach\u007f": control character 0x7f at offset 7'],
  ['!', 'malformed devd line "!": no system= field'],
  ['! system=CARP subsystem=1@em0 type=MASTER', 'malformed devd line "! system=CARP subsystem=1@em0 type=MASTER": no system= field'],
  ['!subsystem=1@em0 type=MASTER', 'malformed devd line "!subsystem=1@em0 type=MASTER": no system= field'],
  ['!system="CARP subsystem=1@em0 type=MASTER', 'malformed devd line "!system=\\"CARP subsystem=1@em0 type=MASTER": no system= field'],
  ['!system=CARP', 'malformed devd line "!system=CARP": no subsystem= field'],
  ['!system=CARP type=MASTER', 'malformed devd line "!system=CARP type=MASTER": no subsystem= field'],
  ['!system=CARP subsystem=1@em0', 'malformed devd line "!system=CARP subsystem=1@em0": no type= field'],
  ['!system=CARP subsystem=1@em0 garbage type=MASTER', 'malformed devd line "!system=CARP subsystem=1@em0 garbage type=MASTER": no type= field'],
  ['!system=CARP subsystem=1@em0 type="MASTER', 'malformed devd line "!system=CARP subsystem=1@em0 type=\\"MASTER": no type= field'],
  ['!system=CARP subsystem=1@em0 type=PRIMARY', 'malformed devd line "!system=CARP subsystem=1@em0 type=PRIMARY": type "PRIMARY" is not MASTER, BACKUP or INIT'],
  ['!system=CARP subsystem=1@em0 type=master', 'malformed devd line "!system=CARP subsystem=1@em0 type=master": type "master" is not MASTER, BACKUP or INIT'],
  ['!system=CARP subsystem=1@em0 type=', 'malformed devd line "!system=CARP subsystem=1@em0 type=": type "" is not MASTER, BACKUP or INIT'],
  ['!system=CARP subsystem=em0 type=MASTER', 'malformed devd line "!system=CARP subsystem=em0 type=MASTER": subsystem "em0" is not <vhid>@<interface>'],
  ['!system=CARP subsystem=@em0 type=MASTER', 'malformed devd line "!system=CARP subsystem=@em0 type=MASTER": subsystem "@em0" is not <vhid>@<interface>'],
  ['!system=CARP subsystem=-1@em0 type=MASTER', 'malformed devd line "!system=CARP subsystem=-1@em0 type=MASTER": subsystem "-1@em0" is not <vhid>@<interface>'],
  ['!system=CARP subsystem= type=MASTER', 'malformed devd line "!system=CARP subsystem= type=MASTER": subsystem "" is not <vhid>@<interface>'],
  ['!system=CARP subsystem=0@em0 type=MASTER', 'malformed devd line "!system=CARP subsystem=0@em0 type=MASTER": vhid 0 is not in 1..255'],
  ['!system=CARP subsystem=256@em0 type=MASTER', 'malformed devd line "!system=CARP subsystem=256@em0 type=MASTER": vhid 256 is not in 1..255'],
  ['!system=CARP subsystem=1@ type=MASTER', 'malformed devd line "!system=CARP subsystem=1@ type=MASTER": subsystem "1@" has no interface name'],
  [
    '!system=CARP subsystem=1@abcdefghijklmnop type=MASTER',
    'malformed devd line "!system=CARP subsystem=1@abcdefghijklmnop type=MASTER": interface name "abcdefghijklmnop" is longer than 15 characters',
  ],
  [
    '!system=CARP subsystem=1@em0/1 type=MASTER',
    'malformed devd line "!system=CARP subsystem=1@em0/1 type=MASTER": interface name "em0/1" has characters other than letters, digits, ".", "_" and "-"',
  ],
  [
    '!system=CARP subsystem="1@em 0" type=MASTER',
    'malformed devd line "!system=CARP subsystem=\\"1@em 0\\" type=MASTER": interface name "em 0" has characters other than letters, digits, ".", "_" and "-"',
  ],
  [
    '!system=CARP subsystem=1@em0 type=MASTER type=BACKUP',
    'malformed devd line "!system=CARP subsystem=1@em0 type=MASTER type=BACKUP": type= appears twice',
  ],
  ['!system=IFNET system=CARP', 'malformed devd line "!system=IFNET system=CARP": system= appears twice'],
];

function thrownBy(run: () => unknown): unknown {
  try {
    run();
  } catch (error) {
    return error;
  }
  return undefined;
}

t.test('reads CARP transitions and recognises every other event', async (t) => {
  for (const [line, expected] of VALID) t.same(parseDevdLine(line), expected, line);
});

t.test('refuses what is not a devd line, and CARP lines it cannot act on, naming the line and the reason', async (t) => {
  for (const [line, message] of INVALID) {
    const error = thrownBy(() => parseDevdLine(line));
    t.ok(error instanceof DevdLineError, `${JSON.stringify(line)} throws DevdLineError`);
    t.equal((error as Error).message, message);
    t.equal((error as DevdLineError).line, line);
  }
});

t.test('the error keeps the whole line and its reason, and quotes at most 200 characters of it', async (t) => {
  const line = `!system=CARP subsystem=1@em0 type=${'X'.repeat(8000)}`;
  const error = thrownBy(() => parseDevdLine(line)) as DevdLineError;
  t.equal(error.name, 'DevdLineError');
  t.equal(error.line, line);
  t.equal(error.reason, `type "${'X'.repeat(8000)}" is not MASTER, BACKUP or INIT`);
  t.equal(error.message, `malformed devd line ${JSON.stringify(line.slice(0, 200))}...: ${error.reason}`);
  t.ok(error.message.startsWith(`malformed devd line "!system=CARP subsystem=1@em0 type=XXX`));
});

t.test('property: any string either parses or throws DevdLineError', async (t) => {
  const devdish = fc.oneof(
    fc.string({ unit: 'binary', maxLength: 120 }),
    fc.string({ unit: fc.constantFrom(...'!+-?=@" \tCARPsystemtype01MASTER'.split('')), maxLength: 80 }),
    fc.tuple(fc.constantFrom('!system=CARP ', '!system=IFNET ', '+', '!'), fc.string({ maxLength: 80 })).map(([head, tail]) => head + tail),
  );
  fc.assert(
    fc.property(devdish, (line) => {
      try {
        const parsed = parseDevdLine(line);
        return parsed.kind === 'other' || parsed.kind === 'carp';
      } catch (error) {
        return error instanceof DevdLineError && error.line === line;
      }
    }),
    { numRuns: 5000 },
  );
  t.pass('no other exception');
});

t.test('property: generated CARP lines read back to what was written', async (t) => {
  const ifname = fc.string({ unit: fc.constantFrom(...'abcdefghijklmnopqrstuvwxyzABCXYZ0123456789._-'.split('')), minLength: 1, maxLength: 15 });
  const state = fc.constantFrom<CarpState>('MASTER', 'BACKUP', 'INIT');
  const data = fc.array(
    fc.tuple(fc.stringMatching(/^[a-z_]{1,8}$/).filter((key) => !['system', 'subsystem', 'type'].includes(key)), fc.stringMatching(/^[a-z0-9 ]{0,8}$/)).map(([key, value]) => ` ${key}="${value}"`),
    { maxLength: 3 },
  );
  fc.assert(
    fc.property(fc.integer({ min: 1, max: 255 }), ifname, state, fc.boolean(), data, (vhid, name, type, quoted, extra) => {
      const subsystem = quoted ? `"${vhid}@${name}"` : `${vhid}@${name}`;
      const line = `!system=CARP subsystem=${subsystem} type=${type}${extra.join('')}`;
      const parsed = parseDevdLine(line);
      return parsed.kind === 'carp' && parsed.transition.vhid === vhid && parsed.transition.interface === name && parsed.transition.state === type;
    }),
    { numRuns: 2000 },
  );
  t.pass('round trip holds');
});
