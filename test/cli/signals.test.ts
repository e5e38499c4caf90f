import t from 'tap';
import { setTimeout as sleep } from 'node:timers/promises';
import { serveUntilSignalled } from '../../src/cli/signals.js';
import { memoryLogger } from '../fixtures/memory-log.js';

async function until(condition: () => boolean, what: string): Promise<void> {
  for (const deadline = Date.now() + 10_000; !condition(); await sleep(10)) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
  }
}

// Real signals to this test process: a SIGHUP nobody handles would end it, and the test with it.
t.test('SIGHUP reloads; SIGTERM stops once; a SIGHUP while stopping is ignored, not fatal', async (t) => {
  const { log, messages } = memoryLogger();
  let reloads = 0;
  let stops = 0;
  let finishStop: (() => void) | undefined;
  const exit = serveUntilSignalled(log, {
    reload: () => reloads++,
    stop: () => {
      stops++;
      return new Promise<void>((resolve) => (finishStop = resolve));
    },
    failureCode: 70,
  });
  process.kill(process.pid, 'SIGHUP');
  await until(() => reloads === 1, 'the reload');
  process.kill(process.pid, 'SIGTERM');
  await until(() => finishStop !== undefined, 'the stop');
  process.kill(process.pid, 'SIGHUP');
  process.kill(process.pid, 'SIGTERM');
  await until(() => messages().includes('Ignoring SIGHUP while stopping.'), 'the SIGHUP to be seen');
  t.equal(reloads, 1, 'no reload while stopping');
  t.equal(stops, 1, 'a second SIGTERM does not stop again');
  finishStop?.();
  t.equal(await exit, 0);
});
