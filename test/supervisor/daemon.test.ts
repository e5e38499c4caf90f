import t from 'tap';
import { join } from 'node:path';
import { parseSupervisorConf } from '../../src/config/supervisor-conf.js';
import { sendSupervisorRequest } from '../../src/supervisor/control-socket.js';
import { SupervisorDaemon } from '../../src/supervisor/daemon.js';
import { CLI_DIR } from '../fixtures/cli.js';
import { hastctl, MiB, pairLayout, startDaemon, waitFor, type PairLayout } from '../fixtures/engine-pair.js';
import { memoryLogger } from '../fixtures/memory-log.js';

const CLI = [process.execPath, `${CLI_DIR}main.js`];

// Node b's supervisor configuration for the pair: no CARP reading (notify), one raw resource.
function nodeBConf(layout: PairLayout, supervisorExtra = ''): string {
  return `[engine]
hast_conf = "${layout.conf}"
node = "b"
run_dir = "${join(layout.dir, 'run-b')}"
[carp]
source = "notify"
[supervisor]
control_socket = "${join(layout.dir, 'sup-b.sock')}"
${supervisorExtra}
[[resource]]
name = "test"
fstype = "none"
`;
}

t.test('an engine that already runs is adopted, driven through hastctl, and left running at stop; a reload names what needs a restart', async (t) => {
  const layout = await pairLayout(t, 'memsync', 8 * MiB);
  t.equal((await hastctl(layout, 'b', 'create', '-e', '1M', 'test')).exitCode, 0);
  const engine = await startDaemon(t, layout, 'b');
  const controlSocket = join(layout.dir, 'sup-b.sock');
  const text = nodeBConf(layout);
  const config = parseSupervisorConf(text, join(layout.dir, 'carp-hast.toml'));
  const { log, messages } = memoryLogger();
  const daemon = await SupervisorDaemon.start({ config, log, cli: CLI });
  t.teardown(() => daemon.stop());
  t.ok(messages().includes('The engine is already running; supervising it through hastctl without restarting it.'));
  t.match(daemon.status().engine, { kind: 'builtin', running: true, pid: undefined, restarts: 0 });

  // Nothing reads CARP here (notify, no vip): a carp-hast-switch hint is the wish.
  const reply = await sendSupervisorRequest(controlSocket, { op: 'switch', role: 'secondary', operator: false, wait: true }, 60_000);
  t.strictSame(reply, { ok: true, message: 'This node is secondary.' });
  t.match((await hastctl(layout, 'b', 'status', 'test')).stdout, /^test\t-\s+secondary /m);
  const status = await sendSupervisorRequest(controlSocket, { op: 'status' }, 10_000);
  t.match(status.data, { actual: 'secondary', carp: { state: 'unknown' }, transitions: [{ direction: 'demote', outcome: 'done' }] });

  // SIGHUP: the node operations keep the CARP settings they were made with, and the log says so.
  daemon.reload(parseSupervisorConf(text.replace('source = "notify"', 'source = "notify"\nvip = "192.0.2.10"'), config.file));
  t.ok(messages().includes('These settings take effect after a restart: carp.vip.'));
  t.ok(messages().includes('Configuration reloaded.'));

  await daemon.stop();
  await waitFor('the control socket to go', async () => (await sendSupervisorRequest(controlSocket, { op: 'status' }, 1000).catch(() => undefined)) === undefined);
  t.equal(engine.process.exitCode, null, 'the adopted engine still runs');
  t.equal((await hastctl(layout, 'b', 'status', 'test')).exitCode, 0);
});

t.test('an adopted engine that stops answering is replaced by one of the supervisor\'s own', async (t) => {
  const layout = await pairLayout(t, 'memsync', 8 * MiB);
  t.equal((await hastctl(layout, 'b', 'create', '-e', '1M', 'test')).exitCode, 0);
  const engine = await startDaemon(t, layout, 'b');
  const config = parseSupervisorConf(nodeBConf(layout, 'health_schedule = "* * * * * *"'), join(layout.dir, 'carp-hast.toml'));
  const { log, messages } = memoryLogger();
  const daemon = await SupervisorDaemon.start({ config, log, cli: CLI });
  t.teardown(() => daemon.stop());
  t.match(daemon.status().engine, { running: true, pid: undefined });
  engine.process.kill('SIGKILL');
  await engine.process;
  await waitFor('a health check without an answer', () => daemon.status().engine.running === false, 30_000);
  t.ok(daemon.status().warnings.includes('The engine this supervisor adopted did not answer the last health check.'));
  await waitFor('an engine of its own', () => daemon.status().engine.pid !== undefined, 30_000);
  t.ok(messages().includes('The engine this supervisor adopted no longer answers; starting one of its own.'));
  await waitFor('the new engine to answer', async () => (await hastctl(layout, 'b', 'status', 'test')).exitCode === 0, 30_000);
  t.match(daemon.status().engine, { running: true, restarts: 0 });
});
