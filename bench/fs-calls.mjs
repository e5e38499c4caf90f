// The cost of one positional write through node:fs: 4 KiB random writes, 32 in flight, to a 256 MiB file,
// through the callback call (fs.write on a descriptor) and through a FileHandle's promise call, interleaved.
// It backs LocalComponent's choice of callback calls (docs/performance.md, "NBD export against nbdkit").
//
// Usage: node bench/fs-calls.mjs [--dir DIR] [--writes N] [--rounds N]
import { closeSync, openSync, write } from 'node:fs';
import { mkdtemp, open, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: tmpdir() },
    writes: { type: 'string', default: '200000' },
    rounds: { type: 'string', default: '2' },
  },
});
const WRITES = Number(values.writes);
const IN_FLIGHT = 32;
const SIZE = 256 * 1024 * 1024;
const BLOCK = 4096;
const data = Buffer.alloc(BLOCK, 3);
const randomOffset = () => Math.floor(Math.random() * (SIZE / BLOCK)) * BLOCK;

// Writes per second with `IN_FLIGHT` writers each issuing its next write when its last one completes.
async function rate(writeOne) {
  let issued = 0;
  const started = performance.now();
  const writer = async () => {
    while (issued < WRITES) {
      issued++;
      await writeOne(randomOffset());
    }
  };
  await Promise.all(Array.from({ length: IN_FLIGHT }, writer));
  return WRITES / ((performance.now() - started) / 1000);
}

const dir = await mkdtemp(join(values.dir, 'fs-calls-'));
const path = join(dir, 'file.img');
await writeFile(path, '');
await truncate(path, SIZE);
try {
  for (let round = 1; round <= Number(values.rounds); round++) {
    const fd = openSync(path, 'r+');
    const callback = await rate(
      (at) => new Promise((resolve, reject) => write(fd, data, 0, BLOCK, at, (error) => (error ? reject(error) : resolve()))),
    );
    closeSync(fd);
    const handle = await open(path, 'r+');
    const promise = await rate((at) => handle.write(data, 0, BLOCK, at));
    await handle.close();
    console.log(
      `round ${round}: fs.write callback ${callback.toFixed(0)} writes/s, FileHandle.write ${promise.toFixed(0)} writes/s, ` +
        `ratio ${(callback / promise).toFixed(2)}`,
    );
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
