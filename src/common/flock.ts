import fsExt from 'fs-ext';

// Outcome of a non-blocking exclusive flock(2): ours, held by another process, or not supported here.
export type LockOutcome = 'locked' | 'busy' | 'unsupported';

// flock(fd, LOCK_EX | LOCK_NB); other errors reject with the system error.
export async function tryLockExclusive(fd: number): Promise<LockOutcome> {
  try {
    await new Promise<void>((resolve, reject) => {
      fsExt.flock(fd, 'exnb', (error) => (error ? reject(error) : resolve()));
    });
    return 'locked';
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === 'EAGAIN' || code === 'EWOULDBLOCK') return 'busy';
    if (code === 'EOPNOTSUPP' || code === 'ENOTSUP') return 'unsupported';
    throw error;
  }
}
