import { chmod, lstat, unlink } from 'node:fs/promises';
import { createConnection, type Server } from 'node:net';

// Removes a unix socket file left by a server that is gone, so a new one can listen. When something still
// answers on it, throws what `inUse()` makes; anything that is not a socket is left alone (listen() then fails
// with EADDRINUSE, naming the path). `what` names the socket in error messages ("NBD socket").
export async function removeStaleSocket(path: string, what: string, inUse: () => Error): Promise<void> {
  try {
    if (!(await lstat(path)).isSocket()) return;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw new Error(`checking ${what} ${path}`, { cause: error });
  }
  if (await answers(path)) throw inUse();
  await unlink(path).catch((error: unknown) => {
    throw new Error(`removing stale ${what} ${path}`, { cause: error });
  });
}

function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const probe = createConnection(path);
    probe.once('connect', () => {
      probe.destroy();
      resolve(true);
    });
    probe.once('error', () => resolve(false));
  });
}

// Makes `server` listen on `path` for root only (mode 0600), first removing a socket file a dead server left
// (a live one is refused with what `inUse()` makes). On failure the server is closed again.
export async function listenPrivate(server: Server, path: string, what: string, inUse: () => Error): Promise<void> {
  await removeStaleSocket(path, what, inUse);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(path, () => {
      server.off('error', reject);
      resolve();
    });
  }).catch((error: unknown) => {
    throw new Error(`listening on ${what} ${path}`, { cause: error });
  });
  try {
    await chmod(path, 0o600);
  } catch (error) {
    await new Promise((resolve) => server.close(resolve));
    throw new Error(`setting the mode of ${what} ${path}`, { cause: error });
  }
}
