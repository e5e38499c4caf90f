import t from 'tap';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { REPO_ROOT } from '../fixtures/stand-ins.js';

const UNIT = readFileSync(join(REPO_ROOT, 'systemd/carp-hast.service'), 'utf8');

// The unit's settings as section -> key -> values (a key may repeat); comments and blank lines dropped.
function readUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const header = /^\[(\w+)\]$/.exec(line);
    if (header !== null) {
      current = new Map();
      sections.set(header[1] ?? '', current);
      continue;
    }
    const equals = line.indexOf('=');
    if (current === undefined || equals <= 0) throw new Error(`carp-hast.service: cannot read '${line}'`);
    const key = line.slice(0, equals);
    current.set(key, [...(current.get(key) ?? []), line.slice(equals + 1)]);
  }
  return sections;
}

const unit = readUnit(UNIT);
const setting = (section: string, key: string) => unit.get(section)?.get(key);

t.test('runs the supervisor in the foreground, checked before it starts', async (t) => {
  t.same(setting('Service', 'Type'), ['simple']);
  t.same(setting('Service', 'ExecStartPre'), ['/usr/bin/carp-hast check-config -s /etc/carp-hast.toml']);
  t.same(setting('Service', 'ExecStart'), ['/usr/bin/carp-hast supervise -c /etc/carp-hast.toml --log-format text']);
  t.same(setting('Service', 'ExecReload'), ['/bin/kill -HUP $MAINPID']);
  t.same(setting('Install', 'WantedBy'), ['multi-user.target']);
});

t.test('stops by letting the supervisor release the storage first', async (t) => {
  t.same(setting('Service', 'KillMode'), ['mixed']);
  t.same(setting('Service', 'TimeoutStopSec'), ['5min']);
  t.same(setting('Unit', 'After'), ['network-online.target keepalived.service']);
});

t.test('restarts after a crash, not after a configuration error', async (t) => {
  t.same(setting('Service', 'Restart'), ['on-failure']);
  t.same(setting('Service', 'RestartSec'), ['5']);
  t.same(setting('Service', 'RestartPreventExitStatus'), ['64 78']);
});

const analyze = await execa('systemd-analyze', ['--version'], { reject: false });

t.test(
  'systemd-analyze verify accepts the unit',
  { skip: analyze.exitCode === 0 ? false : 'systemd-analyze is not installed' },
  async (t) => {
    // verify insists that the programs exist: point the unit at a stand-in for carp-hast.
    const dir = t.testdir({ 'carp-hast': '#!/bin/sh\nexit 0\n' });
    chmodSync(join(dir, 'carp-hast'), 0o755);
    const copy = join(dir, 'carp-hast.service');
    writeFileSync(copy, UNIT.replaceAll('/usr/bin/carp-hast', join(dir, 'carp-hast')));
    const run = await execa('systemd-analyze', ['verify', copy], { reject: false });
    t.equal(run.stderr, '');
    t.equal(run.exitCode, 0);
  },
);
