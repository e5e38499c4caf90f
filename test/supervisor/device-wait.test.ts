import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import t from 'tap';
import type { Test } from 'tap';
import { DeviceTimeoutError, waitForDevice } from '../../src/supervisor/device-wait.js';
import { memoryLogger } from '../fixtures/memory-log.js';

async function tempDir(t: Test): Promise<string> {
  const dir = await mkdtemp(join(tmpdir(), 'device-wait-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

t.test('a device that appears later, in a directory created later, ends the wait', async (t) => {
  const dir = await tempDir(t);
  const device = join(dir, 'hast', 'test');
  const { log, records } = memoryLogger();
  // No recheck before the timeout: only the watch can end this wait.
  const waiting = waitForDevice(device, { timeoutMs: 30_000, recheckMs: 600_000, log });
  await sleep(100);
  await mkdir(join(dir, 'hast'));
  await sleep(50);
  await writeFile(device, '');
  const waited = await waiting;
  t.ok(waited >= 100, `waited ${waited} ms, at least until the device was made`);
  t.same(
    records.map((r) => [r['msg'], r['step']]),
    [
      [`Waiting for ${device}.`, 'wait-device'],
      [`${device} is there.`, 'wait-device'],
    ],
  );
  t.equal(records[1]?.['durationMs'], waited);
});

t.test('a device that is already there is found at once', async (t) => {
  const dir = await tempDir(t);
  await writeFile(join(dir, 'test'), '');
  const started = performance.now();
  const waited = await waitForDevice(join(dir, 'test'), { timeoutMs: 30_000, recheckMs: 600_000, log: memoryLogger().log });
  t.ok(waited <= performance.now() - started, `waited ${waited} ms`);
  t.ok(waited < 5_000, 'found long before the first recheck (600 s) or the timeout (30 s)');
});

t.test('a device that never appears is a DeviceTimeoutError after the timeout', async (t) => {
  const dir = await tempDir(t);
  const device = join(dir, 'hast', 'test');
  const started = performance.now();
  const error = await waitForDevice(device, { timeoutMs: 300, log: memoryLogger().log }).catch((e: unknown) => e);
  t.ok(error instanceof DeviceTimeoutError);
  t.equal((error as Error).message, `${device} did not appear within 0.3 s`);
  t.equal((error as DeviceTimeoutError).path, device);
  t.ok(performance.now() - started >= 290);
});

t.test('the timeout message speaks in seconds', async (t) => {
  t.equal(new DeviceTimeoutError('/dev/hast/test', 30_000).message, '/dev/hast/test did not appear within 30 s');
});

t.test('an abort ends the wait with the signal reason', async (t) => {
  const dir = await tempDir(t);
  const controller = new AbortController();
  const waiting = waitForDevice(join(dir, 'test'), { timeoutMs: 10_000, signal: controller.signal, log: memoryLogger().log });
  await sleep(100);
  const reason = new Error('BACKUP arrived');
  controller.abort(reason);
  t.equal(await waiting.catch((e: unknown) => e), reason);
});

t.test('an already aborted signal refuses to start', async (t) => {
  const reason = new Error('superseded');
  const { log, records } = memoryLogger();
  const error = await waitForDevice('/nonexistent/x', { timeoutMs: 10_000, signal: AbortSignal.abort(reason), log }).catch(
    (e: unknown) => e,
  );
  t.equal(error, reason);
  t.same(records, []);
});

t.test('the watcher is closed when the wait ends', async (t) => {
  const dir = await tempDir(t);
  const activeWatches = () =>
    (process as unknown as { getActiveResourcesInfo(): string[] }).getActiveResourcesInfo().filter((h) => h === 'FSEventWrap');
  t.same(activeWatches(), []);
  await t.rejects(waitForDevice(join(dir, 'test'), { timeoutMs: 100, log: memoryLogger().log }), DeviceTimeoutError);
  // fs.watch handles are released on the next turn of the loop after close.
  await sleep(20);
  t.same(activeWatches(), []);
});
