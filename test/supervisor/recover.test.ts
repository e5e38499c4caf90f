import t from 'tap';
import { join } from 'node:path';
import type { EngineConfig } from '../../src/config/supervisor-conf.js';
import { EngineControl, EngineControlError } from '../../src/supervisor/engine-control.js';
import { isHastctlFailure } from '../../src/supervisor/hastctl-output.js';
import { keptMessage, recoverDiscardLocal, recoverKeepLocal, RecoverRefusedError } from '../../src/supervisor/recover.js';
import { CMD } from '../../src/engine/nbd-protocol.js';
import { CLI_DIR } from '../fixtures/cli.js';
import { hastctl, MiB, pairLayout, startDaemon, waitFor, type PairLayout } from '../fixtures/engine-pair.js';
import { memoryLogger } from '../fixtures/memory-log.js';
import { encodeRequest, RawNbdClient } from '../fixtures/nbd-raw-client.js';

// The built CLI (npm test builds it first): under test, EngineControl's default main.js path does not exist.
const CLI = [process.execPath, join(CLI_DIR, 'main.js')];

function engineOf(layout: PairLayout, node: 'a' | 'b'): EngineControl {
  const engine: EngineConfig = { kind: 'builtin', hastConf: layout.conf, node, runDir: join(layout.dir, `run-${node}`), hastd: '', hastctl: '' };
  return new EngineControl(engine, { cli: CLI });
}

async function roleOf(control: EngineControl): Promise<string | undefined> {
  const [entry] = await control.list(['test']);
  return entry === undefined || isHastctlFailure(entry) ? undefined : entry.role;
}

// The counters `hastctl dump` shows for node's component.
async function dumped(layout: PairLayout, node: 'a' | 'b'): Promise<Record<string, string>> {
  const dump = await hastctl(layout, node, 'dump', 'test');
  if (dump.exitCode !== 0) throw new Error(`hastctl dump failed: ${dump.stderr}`);
  const fields = dump.stdout.split('\n').flatMap((line) => {
    const match = /^ {4}(\w+): (\S+)/.exec(line);
    return match?.[1] !== undefined && match[2] !== undefined ? [[match[1], match[2]] as const] : [];
  });
  return Object.fromEntries(fields);
}

t.test('refused while this node is primary; nothing is changed', async (t) => {
  const layout = await pairLayout(t, 'memsync', 8 * MiB);
  t.equal((await hastctl(layout, 'a', 'create', 'test')).exitCode, 0);
  await startDaemon(t, layout, 'a');
  const control = engineOf(layout, 'a');
  await control.role('primary', ['test']);
  const { log, messages } = memoryLogger();
  const error = await t.rejects(recoverDiscardLocal(control, 'test', log), {
    name: 'RecoverRefusedError',
    message:
      'test is primary on this node; run the recovery on the node whose changes are to be discarded, ' +
      'or make this node secondary first (carp-hast switch secondary)',
  });
  t.type(error, RecoverRefusedError);
  t.equal(await roleOf(control), 'primary');
  t.same(messages(), [], 'no step started');
});

t.test('a resource the engine does not know is refused; an engine that does not answer is an engine error', async (t) => {
  const layout = await pairLayout(t, 'memsync', 8 * MiB);
  const control = engineOf(layout, 'a');
  const { log } = memoryLogger();
  const down = await t.rejects(recoverDiscardLocal(control, 'test', log), { message: "reading the engine's list" });
  t.type(down, EngineControlError);

  t.equal((await hastctl(layout, 'a', 'create', 'test')).exitCode, 0);
  await startDaemon(t, layout, 'a');
  const unknown = await t.rejects(recoverDiscardLocal(control, 'nope', log), { message: 'the engine does not know resource nope' });
  t.type(unknown, RecoverRefusedError);
});

t.test('on a secondary: role init, fresh metadata, role secondary', async (t) => {
  const layout = await pairLayout(t, 'fullsync', 8 * MiB);
  for (const node of ['a', 'b'] as const) t.equal((await hastctl(layout, node, 'create', 'test')).exitCode, 0);
  const fresh = await dumped(layout, 'b');
  t.same(fresh, { ...fresh, resuid: '0', localcnt: '0', remotecnt: '0', prevrole: 'init' }, 'what hastctl create writes');
  const a = await startDaemon(t, layout, 'a');
  await startDaemon(t, layout, 'b');
  const peer = engineOf(layout, 'a');
  const node = engineOf(layout, 'b');
  await peer.role('secondary', ['test']);
  await node.role('primary', ['test']);
  await waitFor('the pair to synchronise', async () => {
    const [entry] = await node.list(['test']);
    return entry !== undefined && !isHastctlFailure(entry) && entry.status === 'complete';
  });
  // The peer goes away and b writes alone: b's changes are the ones to discard later.
  a.process.kill('SIGKILL');
  await a.process;
  const client = await RawNbdClient.attached(join(layout.dir, 'run-b', 'test.nbd'), 'test');
  client.write(Buffer.concat([encodeRequest({ type: CMD.WRITE, handle: 1n, offset: 0, length: 4096 }), Buffer.alloc(4096, 0x5a)]));
  t.same(await client.reply(), { handle: 1n, error: 0, data: Buffer.alloc(0) });
  client.destroy();
  await node.role('secondary', ['test']);
  const diverged = await dumped(layout, 'b');
  t.not(diverged['resuid'], '0', 'the pair has its resuid');
  t.equal(diverged['localcnt'], '1', 'b counted the write its peer missed');

  const { log, messages } = memoryLogger();
  const record = await recoverDiscardLocal(node, 'test', log);
  t.equal(record.direction, 'recover');
  t.equal(record.outcome, 'done');
  t.equal(record.reason, "discarding this node's copy of test after a split-brain");
  t.same(
    record.steps.map((s) => [s.name, s.target, s.outcome]),
    [
      ['role init', 'test', 'done'],
      ['metadata create', 'test', 'done'],
      ['role secondary', 'test', 'done'],
    ],
  );
  t.equal(await roleOf(node), 'secondary');
  t.same(await dumped(layout, 'b'), fresh, 'the metadata is as hastctl create wrote it');
  t.match(messages(), [
    "Recovery started: discarding this node's copy of test after a split-brain.",
    'Starting role init of test.',
    'Finished role init of test.',
    'Starting metadata create of test.',
    'Finished metadata create of test.',
    'Starting role secondary of test.',
    'Finished role secondary of test.',
    /^Recovery finished in \d+ ms\.$/,
  ]);

  // b now holds a fresh copy; a keeping its data resets only the split-brain memory of a secondary, and
  // changes nothing on a primary.
  await startDaemon(t, layout, 'a');
  await peer.role('secondary', ['test']);
  const kept = await recoverKeepLocal(peer, 'test', log);
  t.same(kept.steps.map((s) => [s.name, s.outcome]), [['role init', 'done'], ['role secondary', 'done']]);
  t.equal(keptMessage('test', kept), 'test keeps this node\'s data and may be promoted again; the peer must have run --discard-local.');
  await peer.role('primary', ['test']);
  const primary = await recoverKeepLocal(peer, 'test', log);
  t.same(primary.steps, [], 'nothing to do on a primary');
  t.equal(await roleOf(peer), 'primary');
  t.match(keptMessage('test', primary), /^test is primary here and keeps its data/);
  await t.rejects(recoverKeepLocal(peer, 'nope', log), { message: 'the engine does not know resource nope' });
});
