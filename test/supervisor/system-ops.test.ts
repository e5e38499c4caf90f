import t, { type Test } from 'tap';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseSupervisorConf } from '../../src/config/supervisor-conf.js';
import { parseHastctlList } from '../../src/supervisor/hastctl-output.js';
import { engineResourceState, systemOps } from '../../src/supervisor/system-ops.js';
import { listBlock } from '../fixtures/listed-node.js';
import { memoryLogger } from '../fixtures/memory-log.js';

// A block with 4 MiB dirty, so the tests see the amount carried through.
function dirtyBlock(name: string, role: string, status: string, splitBrainLine = ''): string {
  return listBlock(name, role, status, { dirty: 4194304, splitBrainLine });
}

const SPLIT_BRAIN_LINE = '  split-brain: local changes: 12582912 (12MB), peer changes: 3145728 (3.0MB)\n';
const PEER_UNKNOWN_LINE = '  split-brain: local changes: 2097152 (2.0MB), peer changes: unknown\n';

function entry(text: string) {
  const [first] = parseHastctlList(text);
  if (first === undefined) throw new Error('no entry in the list text');
  return first;
}

t.test('our engine says split-brain in its status, with what each node changed', async (t) => {
  t.strictSame(engineResourceState(entry(dirtyBlock('test', 'primary', 'split-brain', SPLIT_BRAIN_LINE))), {
    name: 'test',
    role: 'primary',
    status: 'split-brain',
    dirty: 4194304,
    splitBrain: true,
    localChanges: 12582912,
    peerChanges: 3145728,
  });
  t.strictSame(engineResourceState(entry(dirtyBlock('test', 'secondary', 'split-brain', PEER_UNKNOWN_LINE))), {
    name: 'test',
    role: 'secondary',
    status: 'split-brain',
    dirty: 4194304,
    splitBrain: true,
    localChanges: 2097152,
  });
  t.strictSame(
    engineResourceState(entry(dirtyBlock('test', 'secondary', 'split-brain'))),
    { name: 'test', role: 'secondary', status: 'split-brain', dirty: 4194304, splitBrain: true },
    'the status alone is enough',
  );
});

t.test('FreeBSD\'s hastd says it only in its log: the logged set decides, without amounts', async (t) => {
  const logged = new Set(['test']);
  t.strictSame(engineResourceState(entry(dirtyBlock('test', 'primary', 'degraded')), logged), {
    name: 'test',
    role: 'primary',
    status: 'degraded',
    dirty: 4194304,
    splitBrain: true,
  });
  t.equal(engineResourceState(entry(dirtyBlock('other', 'primary', 'degraded')), logged).splitBrain, false);
  t.equal(engineResourceState(entry(dirtyBlock('test', 'primary', 'degraded'))).splitBrain, false);
  t.strictSame(engineResourceState({ name: 'gone', error: 1 }, logged), {
    name: 'gone',
    role: 'unknown',
    status: undefined,
    dirty: 0,
    splitBrain: false,
    error: 'hastctl error 1',
  });
});

// A hastctl (FreeBSD's, or `carp-hast` for ours) that prints what the test last put in a file.
function standInHastctl(t: Test) {
  const dir = mkdtempSync(join(tmpdir(), 'system-ops-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const output = join(dir, 'list.txt');
  const program = join(dir, 'hastctl');
  writeFileSync(program, `#!/bin/sh\ncat ${output}\n`);
  chmodSync(program, 0o755);
  return { program, print: (text: string) => writeFileSync(output, text) };
}

function config(kind: 'builtin' | 'freebsd', hastctl: string) {
  return parseSupervisorConf(
    `[engine]\nkind = "${kind}"\nhastctl = "${hastctl}"\n[carp]\nvhids = ["1@em0"]\n[[resource]]\nname = "test"\nfstype = "none"\n`,
    '/etc/carp-hast.toml',
  );
}

t.test('systemOps with our engine: hastctl decides, the log set is not read', async (t) => {
  const hastctl = standInHastctl(t);
  const logged = new Set(['test']);
  const ops = systemOps({ config: config('builtin', '/sbin/hastctl'), log: memoryLogger().log, cli: [hastctl.program], splitBrain: logged });
  hastctl.print(dirtyBlock('test', 'primary', 'degraded'));
  t.match(await ops.engineResources(), [{ name: 'test', status: 'degraded', splitBrain: false }], 'a log line does not make it split-brain');
  hastctl.print(dirtyBlock('test', 'secondary', 'split-brain', PEER_UNKNOWN_LINE));
  t.strictSame(await ops.engineResources(), [
    { name: 'test', role: 'secondary', status: 'split-brain', dirty: 4194304, splitBrain: true, localChanges: 2097152 },
  ]);
});

t.test('systemOps with FreeBSD\'s hastd: the log set, until the worker is seen complete', async (t) => {
  const hastctl = standInHastctl(t);
  const logged = new Set<string>();
  const ops = systemOps({ config: config('freebsd', hastctl.program), log: memoryLogger().log, splitBrain: logged });
  hastctl.print(dirtyBlock('test', 'primary', 'degraded'));
  t.match(await ops.engineResources(), [{ splitBrain: false }]);
  logged.add('test');
  t.match(await ops.engineResources(), [{ name: 'test', status: 'degraded', splitBrain: true }]);
  t.match(await ops.engineResources(), [{ splitBrain: true }], 'it stays while the worker is not complete');
  hastctl.print(dirtyBlock('test', 'primary', 'complete'));
  t.match(await ops.engineResources(), [{ status: 'complete', splitBrain: false }]);
  t.equal(logged.has('test'), false, 'a complete worker takes it out of the set');
  hastctl.print(dirtyBlock('test', 'primary', 'degraded'));
  t.match(await ops.engineResources(), [{ splitBrain: false }]);
});
