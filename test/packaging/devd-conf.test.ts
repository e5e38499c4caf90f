import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { actionsFor, readNotifyStatements } from '../fixtures/devd-conf.js';
import { REPO_ROOT } from '../fixtures/stand-ins.js';

const statements = readNotifyStatements(readFileSync(join(REPO_ROOT, 'devd/carp-hast.conf'), 'utf8'));

const PRIMARY = '/usr/local/bin/node /usr/local/bin/carp-hast-switch --no-wait primary';
const SECONDARY = '/usr/local/bin/node /usr/local/bin/carp-hast-switch --no-wait secondary';

t.test('CARP state changes run carp-hast-switch with the matching role', async (t) => {
  for (const subsystem of ['1@em0', '2@vlan50', '1@lagg0.100', '255@igb1']) {
    const carp = (type: string) => actionsFor(statements, `!system=CARP subsystem=${subsystem} type=${type}`);
    t.same(carp('MASTER'), [PRIMARY], `${subsystem} MASTER`);
    t.same(carp('BACKUP'), [SECONDARY], `${subsystem} BACKUP`);
    t.same(carp('INIT'), [SECONDARY], `${subsystem} INIT`);
  }
});

t.test('other events run nothing', async (t) => {
  const lines = [
    '!system=IFNET subsystem=em0 type=LINK_UP',
    '!system=IFNET subsystem=em0 type=LINK_DOWN',
    // The Handbook's rule matched this; since FreeBSD 10 carp is no interface and it never comes.
    '!system=IFNET subsystem=carp0 type=LINK_UP',
    '!system=CARP subsystem=em0 type=MASTER',
    '!system=CARP subsystem=1@em0 type=MASTERED',
    '!system=CARP subsystem=1@em0 type=BACKUP2',
    '!system=CARP subsystem=1@ type=MASTER',
    '!system=CARP subsystem=x@em0 type=MASTER',
    '!system=CARP subsystem=1@em0',
    '!system=ACPI subsystem=ACAD type=NOTIFY notify=0x01',
    '!system=DEVFS subsystem=CDEV type=CREATE cdev=hast/shared',
  ];
  for (const line of lines) t.same(actionsFor(statements, line), [], line);
});

// Both hand the hint over and return at once (--no-wait), and name their programs by absolute path.
t.test('the file holds nothing but the three forwarding statements', async (t) => {
  t.same(
    statements.map((statement) => statement.actions),
    [[PRIMARY], [SECONDARY], [SECONDARY]],
  );
});

t.test('the program the actions run is one the package installs', async (t) => {
  const pkg = JSON.parse(readFileSync(join(REPO_ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  t.equal(pkg.bin['carp-hast-switch'], 'dist/cli/switch-main.js');
});

t.test('the reader matches as devd does', async (t) => {
  const rules = readNotifyStatements(`# comment
notify 0 { match "system" "CARP"; action "low"; };
notify 10 {
	match "system" "CARP";	# trailing comment
	match "type" "MASTER|BACKUP";
	action "high";
};
notify 10 { match "system" "CARP"; match "type" "!INIT"; action "second"; action "two"; };
`);
  // The highest priority wins, the first one in the file on a tie.
  t.same(actionsFor(rules, '!system=CARP subsystem=1@em0 type=MASTER'), ['high']);
  // devd anchors the pattern without grouping it: ^MASTER|BACKUP$ also matches "MASTERX" and "XBACKUP".
  t.same(actionsFor(rules, '!system=CARP subsystem=1@em0 type=MASTERX'), ['high']);
  t.same(actionsFor(rules, '!system=CARP subsystem=1@em0 type=XBACKUP'), ['high']);
  t.same(actionsFor(rules, '!system=CARP subsystem=1@em0 type=BACKUPX'), ['second', 'two']);
  t.same(actionsFor(rules, '!system=CARP subsystem=1@em0 type=INIT'), ['low']);
  // Case-insensitive.
  t.same(actionsFor(rules, '!system=carp subsystem=1@em0 type=init'), ['low']);
  t.same(actionsFor(rules, '!system=IFNET subsystem=em0 type=LINK_UP'), []);
});

t.test('the reader refuses what it does not understand', async (t) => {
  t.throws(() => readNotifyStatements('attach 0 { action "x"; };'), {
    message: "devd.conf:1: unsupported statement 'attach'",
  });
  t.throws(() => readNotifyStatements('notify 0 {\n media-type "ethernet"; };'), {
    message: "devd.conf:2: unsupported 'media-type' in a notify statement",
  });
  t.throws(() => readNotifyStatements('notify 0 { match "system" "$x"; };'), {
    message: 'devd.conf:1: variables in patterns are not supported',
  });
  t.throws(() => readNotifyStatements('notify 0 { action "unterminated; };'), {
    message: `devd.conf:1: cannot read '"unterminated; };'`,
  });
  t.throws(() => readNotifyStatements('notify x { };'), { message: "devd.conf:1: bad priority 'x'" });
  t.throws(() => readNotifyStatements('notify 0 { match system "CARP"; };'), {
    message: "devd.conf:1: expected a quoted string, got 'system'",
  });
  t.throws(() => readNotifyStatements('notify 0 { action "x" };'), { message: "devd.conf:1: expected ';', got '}'" });
  t.throws(() => readNotifyStatements('notify 0 {'), { message: 'devd.conf: unexpected end of file' });
});
