import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import type { Test } from 'tap';
import type { ServiceConfig } from '../../src/config/supervisor-conf.js';
import { ServiceError, serviceRunning, startService, stopService } from '../../src/supervisor/services.js';
import { memoryLogger } from '../fixtures/memory-log.js';

// A service made of shell scripts in one directory ($dir in a script): start leaves a sleeper running and its
// pid in $dir/pid, stop kills it, status looks for it.
async function scriptedService(t: Test, scripts: Partial<Record<'start' | 'stop' | 'status', string>> = {}) {
  const dir = await mkdtemp(join(tmpdir(), 'services-'));
  const pidFile = join(dir, 'pid');
  const bodies = {
    start: 'sleep 600 >/dev/null 2>&1 &\necho $! > "$dir/pid"',
    stop: 'kill "$(cat "$dir/pid")" && rm "$dir/pid"',
    status: '[ -f "$dir/pid" ] && kill -0 "$(cat "$dir/pid")"',
    ...scripts,
  };
  for (const [name, body] of Object.entries(bodies)) {
    await writeFile(join(dir, `${name}.sh`), `#!/bin/sh\ndir=$(dirname "$0")\n${body}\n`);
    await chmod(join(dir, `${name}.sh`), 0o755);
  }
  t.teardown(async () => {
    const pid = await readFile(pidFile, 'utf8').catch(() => undefined);
    if (pid !== undefined) process.kill(Number(pid), 'SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });
  const service: ServiceConfig = {
    name: 'nfsd',
    start: [join(dir, 'start.sh')],
    stop: [join(dir, 'stop.sh')],
    status: [join(dir, 'status.sh')],
    timeoutMs: 10_000,
    position: { file: 'carp-hast.toml', line: 1, col: 1 },
  };
  return { dir, pidFile, service };
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

t.test('start, status and stop drive a real service', async (t) => {
  const { pidFile, service } = await scriptedService(t);
  const { log, records } = memoryLogger();
  t.equal(await serviceRunning(service, { log }), false);
  const started = await startService(service, { log });
  t.ok(started.durationMs >= 0);
  const pid = Number(await readFile(pidFile, 'utf8'));
  t.ok(alive(pid), 'the sleeper runs');
  t.equal(await serviceRunning(service, { log }), true);
  await stopService(service, { log });
  t.equal(await serviceRunning(service, { log }), false);
  t.same(
    records.map((r) => [r['level'], r['service'], r['msg']]),
    [
      [20, 'nfsd', 'Service nfsd is not running.'],
      [30, 'nfsd', 'Starting service nfsd.'],
      [30, 'nfsd', 'Service nfsd started.'],
      [20, 'nfsd', 'Service nfsd is running.'],
      [30, 'nfsd', 'Stopping service nfsd.'],
      [30, 'nfsd', 'Service nfsd stopped.'],
      [20, 'nfsd', 'Service nfsd is not running.'],
    ],
  );
  t.same(records[1]?.['argv'], service.start);
  t.type(records[2]?.['durationMs'], 'number');
});

t.test('a start that fails is a ServiceError with the script output', async (t) => {
  const { service } = await scriptedService(t, { start: 'echo "nfsd: port 2049 already in use" >&2\nexit 1' });
  const { log, records } = memoryLogger();
  const error = await startService(service, { log }).catch((e: unknown) => e);
  t.ok(error instanceof ServiceError);
  const e = error as ServiceError;
  t.equal(e.service, 'nfsd');
  t.equal(e.action, 'start');
  t.equal(e.output, 'nfsd: port 2049 already in use');
  t.equal(e.message, `start of service nfsd failed: ${service.start[0]}: exited with status 1: nfsd: port 2049 already in use`);
  t.equal(records.at(-1)?.['msg'], `${e.message}.`);
  t.equal(records.at(-1)?.['level'], 50);
});

t.test('a stop that hangs is killed at the timeout and reported', async (t) => {
  const { dir, service } = await scriptedService(t, { stop: 'echo $$ > "$dir/stop.pid"\nexec sleep 30' });
  const started = performance.now();
  const error = await stopService({ ...service, timeoutMs: 1_000 }, { log: memoryLogger().log }).catch((e: unknown) => e);
  t.ok(performance.now() - started < 5_000, 'did not wait for the script');
  t.ok(error instanceof ServiceError);
  t.equal((error as ServiceError).action, 'stop');
  t.equal((error as Error).message, `stop of service nfsd failed: ${service.stop[0]}: timed out after 1000 ms`);
  const pid = Number(await readFile(join(dir, 'stop.pid'), 'utf8'));
  t.notOk(alive(pid), 'the stop script was killed');
});

t.test('a service without a status command cannot tell', async (t) => {
  const { service } = await scriptedService(t);
  const { log, records } = memoryLogger();
  t.equal(await serviceRunning({ ...service, status: undefined }, { log }), undefined);
  t.same(records, []);
});

t.test('a status command that cannot run or hangs is a ServiceError, not "stopped"', async (t) => {
  const { service } = await scriptedService(t, { status: 'exec sleep 30' });
  const { log } = memoryLogger();
  const hung = await serviceRunning({ ...service, timeoutMs: 200 }, { log }).catch((e: unknown) => e);
  t.ok(hung instanceof ServiceError);
  t.equal((hung as ServiceError).action, 'status');
  t.match((hung as Error).message, /^status of service nfsd failed: .*status\.sh: timed out after 200 ms$/);
  const missing = await serviceRunning({ ...service, status: ['/nonexistent/status'] }, { log }).catch((e: unknown) => e);
  t.ok(missing instanceof ServiceError);
  t.match((missing as Error).message, /^status of service nfsd failed: \/nonexistent\/status: .*ENOENT/);
});

t.test('an aborted signal stops before the command runs', async (t) => {
  const { pidFile, service } = await scriptedService(t);
  const reason = new Error('BACKUP arrived');
  const { log } = memoryLogger();
  t.equal(await startService(service, { log, signal: AbortSignal.abort(reason) }).catch((e: unknown) => e), reason);
  t.equal(await serviceRunning(service, { log, signal: AbortSignal.abort(reason) }).catch((e: unknown) => e), reason);
  await t.rejects(readFile(pidFile), { code: 'ENOENT' }, 'start.sh did not run');
});
