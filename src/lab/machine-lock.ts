// /dev/hast/<name> is one name for the whole machine, so everything that runs two nodes on one machine and
// attaches devices (the lab, its benchmark, the root tests) takes turns through this lock.
import { closeSync, openSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import { tryLockExclusive } from '../common/flock.js';

const LOCK_FILE = '/tmp/carp-hast-dev-hast.lock';

// Waits for the machine's /dev/hast and resolves to the function that lets it go.
export async function lockHastDevices(timeoutMs = 600_000): Promise<() => void> {
  const fd = openSync(LOCK_FILE, 'a');
  const deadline = Date.now() + timeoutMs;
  while ((await tryLockExclusive(fd)) !== 'locked') {
    if (Date.now() > deadline) {
      closeSync(fd);
      throw new Error(`/dev/hast stayed in use by another lab or test (${LOCK_FILE}) for ${timeoutMs / 1000} s`);
    }
    await sleep(200);
  }
  // Closing the descriptor releases the lock.
  return () => closeSync(fd);
}
