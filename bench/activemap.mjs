// Benchmark: what the activemap costs random 4 KiB writes as the writes spread over more extents.
//
// Usage: npm run build && node bench/activemap.mjs [--dir DIR] [--writes N] [--inflight N] [--metaflush on|off]
//
// For N = 8, 16, ... 4096 extents (2 MiB each, keepdirty 64, hastd's defaults) it issues the same seeded
// random sequence of 4 KiB writes twice on a fresh sparse file: once through ActivemapStore (the map written,
// and flushed with metaflush on, before a write to an extent not marked on disk) and once straight to the
// same kind of component without a map. It prints map writes per data write and the rate with the map
// relative to the rate without. DIR should be on the disk you care about (default: the OS temp directory).
import { mkdtemp, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { Activemap, activemapOndiskSize } from '../dist/engine/activemap.js';
import { ActivemapStore } from '../dist/engine/activemap-store.js';
import { LocalComponent } from '../dist/engine/local-component.js';

const EXTENTSIZE = 2 * 1024 * 1024;
const KEEPDIRTY = 64;
const BLOCK = 4096;
const MAP_OFFSET = 4096;
const EXTENT_COUNTS = [8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096];

const { values } = parseArgs({
  options: {
    dir: { type: 'string', default: tmpdir() },
    writes: { type: 'string', default: '20000' },
    inflight: { type: 'string', default: '32' },
    metaflush: { type: 'string', default: 'on' },
  },
});
const writes = Number(values.writes);
const inflight = Number(values.inflight);
const metaflush = values.metaflush === 'on';

// A small seeded generator (mulberry32), so both runs of one N write exactly the same offsets.
function randomSequence(seed) {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let x = state;
    x = Math.imul(x ^ (x >>> 15), x | 1);
    x ^= x + Math.imul(x ^ (x >>> 7), x | 61);
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

function offsets(nextents) {
  const random = randomSequence(nextents);
  const blocksPerExtent = EXTENTSIZE / BLOCK;
  return Array.from({ length: writes }, () => {
    const extent = Math.floor(random() * nextents);
    return extent * EXTENTSIZE + Math.floor(random() * blocksPerExtent) * BLOCK;
  });
}

async function freshComponent(dir, datasize, dataOffset) {
  const path = join(dir, 'component');
  await rm(path, { force: true });
  await writeFile(path, '');
  await truncate(path, dataOffset + datasize);
  return LocalComponent.open(path);
}

// Writes every offset with `inflight` writers; returns writes per second.
async function run(list, writeOne) {
  const data = Buffer.alloc(BLOCK, 0x5a);
  let next = 0;
  const started = performance.now();
  const writer = async () => {
    while (next < list.length) await writeOne(data, list[next++]);
  };
  await Promise.all(Array.from({ length: inflight }, writer));
  return list.length / ((performance.now() - started) / 1000);
}

async function measure(dir, nextents) {
  const datasize = nextents * EXTENTSIZE;
  const dataOffset = MAP_OFFSET + activemapOndiskSize(datasize, EXTENTSIZE, 512);
  const list = offsets(nextents);

  const plain = await freshComponent(dir, datasize, dataOffset);
  const plainRate = await run(list, (data, offset) => plain.write(data, dataOffset + offset));
  await plain.close();

  const component = await freshComponent(dir, datasize, dataOffset);
  const sectorsize = component.sectorsize;
  const map = new Activemap({ datasize, extentsize: EXTENTSIZE, keepdirty: KEEPDIRTY, sectorsize });
  const store = new ActivemapStore(map, component, { mapOffset: MAP_OFFSET, metaflush });
  const mapRate = await run(list, async (data, offset) => {
    await store.beforeWrite(offset, data.length);
    await component.write(data, dataOffset + offset);
    await store.afterWrite(offset, data.length);
  });
  await component.close();
  return { nextents, mapWrites: store.mapWrites, mapRate, plainRate };
}

const dir = await mkdtemp(join(values.dir, 'activemap-bench-'));
try {
  console.log(
    `# ${writes} random ${BLOCK}-byte writes, ${inflight} in flight, extentsize ${EXTENTSIZE}, keepdirty ` +
      `${KEEPDIRTY}, metaflush ${metaflush ? 'on' : 'off'}, in ${values.dir}, node ${process.version}`,
  );
  console.log('extents  map-writes  map/data  with-map(w/s)  no-map(w/s)  relative');
  for (const nextents of EXTENT_COUNTS) {
    const r = await measure(dir, nextents);
    const columns = [
      String(r.nextents).padStart(7),
      String(r.mapWrites).padStart(10),
      (r.mapWrites / writes).toFixed(4).padStart(8),
      r.mapRate.toFixed(0).padStart(13),
      r.plainRate.toFixed(0).padStart(11),
      (r.mapRate / r.plainRate).toFixed(3).padStart(8),
    ];
    console.log(columns.join('  '));
  }
} finally {
  await rm(dir, { recursive: true, force: true });
}
