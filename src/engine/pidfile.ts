import { open, readFile, unlink, type FileHandle } from 'node:fs/promises';
import { ExitError } from '../common/errors.js';
import { tryLockExclusive } from '../common/flock.js';
import { EX_OSERR, EX_TEMPFAIL } from '../common/sysexits.js';

// A pid file held with flock(2) for the daemon's lifetime, as pidfile(3) does: the lock, not the file's
// existence, says a daemon runs, so a file left by a crash does not block a restart.
export class Pidfile {
  readonly path: string;
  private readonly handle: FileHandle;

  private constructor(path: string, handle: FileHandle) {
    this.path = path;
    this.handle = handle;
  }

  // Takes the pid file or refuses with hastd's message and exit 75 when a live daemon holds it.
  static async acquire(path: string, program = 'hastd'): Promise<Pidfile> {
    let handle: FileHandle;
    try {
      handle = await open(path, 'a+', 0o600);
    } catch (error) {
      throw new ExitError(`Unable to open pidfile ${path}: ${(error as Error).message}`, EX_OSERR, { cause: error });
    }
    const outcome = await tryLockExclusive(handle.fd).catch(async (error: unknown) => {
      await handle.close();
      throw new ExitError(`Unable to lock pidfile ${path}: ${(error as Error).message}`, EX_OSERR, { cause: error });
    });
    if (outcome === 'busy') {
      await handle.close();
      const pid = (await readFile(path, 'utf8').catch(() => '')).trim() || 'unknown';
      throw new ExitError(`Another ${program} is already running, pidfile: ${path}, pid: ${pid}.`, EX_TEMPFAIL);
    }
    await handle.truncate(0);
    await handle.write(`${process.pid}\n`, 0);
    return new Pidfile(path, handle);
  }

  // Removes the file and drops the lock.
  async release(): Promise<void> {
    await unlink(this.path).catch(() => undefined);
    await this.handle.close();
  }
}
