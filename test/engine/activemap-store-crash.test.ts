import t from 'tap';
import { spawn } from 'node:child_process';
import type { ChildProcessByStdio } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import type { Readable, Writable } from 'node:stream';
import { activemapOndiskSize, isExtentMarked } from '../../src/engine/activemap.js';

// Small extents, many of them and a short LRU, so that nearly every write moves the LRU and rewrites the map.
const EXTENTSIZE = 64 * 1024;
const NEXTENTS = 200;
const DATASIZE = EXTENTSIZE * NEXTENTS;
const KEEPDIRTY = 8;
const INFLIGHT = 16;
const MAP_OFFSET = 4096;
const MAP_SIZE = activemapOndiskSize(DATASIZE, EXTENTSIZE, 512);
const DATA_OFFSET = MAP_OFFSET + MAP_SIZE;
const RUNS = 50;
const ZERO_EXTENT = Buffer.alloc(EXTENTSIZE);

const CHILD = fileURLToPath(new URL('../fixtures/activemap-crash-child.mjs', import.meta.url));
// Without tap's coverage hooks: a SIGKILLed child never writes coverage, and the hooks slow its start.
const CHILD_ENV = Object.fromEntries(Object.entries(process.env).filter(([name]) => name !== 'NODE_OPTIONS'));

// What one killed run left behind.
interface Outcome {
  started: number;
  inFlight: number;
  // Extents whose two copies differ: the kill landed between the local and the mirror write.
  diverged: number;
  // Extents written to but no longer marked: the map was really cleared, not just left all set.
  cleared: number;
  violations: string[];
}

// Checks the crash-safety rule on the files a killed child left: an extent that is not marked on disk must be
// identical on both nodes, and every write the child had started must have its extents marked.
function judge(stdout: string, local: Buffer, mirror: Buffer): Outcome {
  const image = local.subarray(MAP_OFFSET, MAP_OFFSET + MAP_SIZE);
  const inFlight = new Map<number, { offset: number; length: number }>();
  let started = 0;
  for (const line of stdout.split('\n')) {
    const [event, id, offset, length] = line.split(' ');
    if (event === 'start') {
      started++;
      inFlight.set(Number(id), { offset: Number(offset), length: Number(length) });
    } else if (event === 'done') {
      inFlight.delete(Number(id));
    }
  }
  const violations: string[] = [];
  let diverged = 0;
  let cleared = 0;
  for (let extent = 0; extent < NEXTENTS; extent++) {
    const start = DATA_OFFSET + extent * EXTENTSIZE;
    const ours = local.subarray(start, start + EXTENTSIZE);
    const theirs = mirror.subarray(start, start + EXTENTSIZE);
    const differs = !ours.equals(theirs);
    if (differs) diverged++;
    if (isExtentMarked(image, extent)) continue;
    if (differs) violations.push(`extent ${extent} differs between the nodes but is not marked`);
    else if (!ours.equals(ZERO_EXTENT)) cleared++;
  }
  for (const [id, { offset, length }] of inFlight) {
    const first = Math.floor(offset / EXTENTSIZE);
    const last = Math.floor((offset + length - 1) / EXTENTSIZE);
    for (let extent = first; extent <= last; extent++) {
      if (!isExtentMarked(image, extent)) {
        violations.push(`write ${id} at ${offset}+${length} was in flight but extent ${extent} is not marked`);
      }
    }
  }
  return { started, inFlight: inFlight.size, diverged, cleared, violations };
}

// A child started on fresh zeroed components, waiting for the word to start writing.
interface Launched {
  child: ChildProcessByStdio<Writable, Readable, Readable>;
  local: string;
  mirror: string;
  ready: Promise<void>;
  exited: Promise<unknown[]>;
  stdout(): string;
  stderr(): string;
}

async function launch(dir: string, run: number, unordered: boolean): Promise<Launched> {
  const local = join(dir, `local-${run}`);
  const mirror = join(dir, `mirror-${run}`);
  for (const file of [local, mirror]) {
    await writeFile(file, '');
    await truncate(file, DATA_OFFSET + DATASIZE);
  }
  const config = {
    local, mirror, datasize: DATASIZE, extentsize: EXTENTSIZE, keepdirty: KEEPDIRTY,
    mapOffset: MAP_OFFSET, dataOffset: DATA_OFFSET, inflight: INFLIGHT, unordered,
  };
  const child = spawn(process.execPath, [CHILD, JSON.stringify(config)], { stdio: 'pipe', env: CHILD_ENV });
  let stdout = '';
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = once(child, 'exit');
  const ready = new Promise<void>((resolve, reject) => {
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      stdout += chunk;
      if (stdout.startsWith('ready\n')) resolve();
    });
    child.once('exit', (code) => reject(new Error(`crash child exited with ${code} before the kill: ${stderr}`)));
  });
  ready.catch(() => undefined);
  return { child, local, mirror, ready, exited, stdout: () => stdout, stderr: () => stderr };
}

// Lets a launched child write, SIGKILLs it after 20-300 ms, and judges what it left.
async function crash(launched: Launched): Promise<Outcome> {
  const { child, local, mirror } = launched;
  await launched.ready;
  child.stdin.write('go\n');
  await sleep(20 + Math.random() * 280);
  child.kill('SIGKILL');
  const [, signal] = await launched.exited;
  if (signal !== 'SIGKILL') throw new Error(`crash child ended on its own: ${launched.stderr()}`);
  const outcome = judge(launched.stdout(), await readFile(local), await readFile(mirror));
  await rm(local);
  await rm(mirror);
  return outcome;
}

t.test(`SIGKILL at a random moment leaves every extent that may differ marked (${RUNS} kills)`, async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'activemap-crash-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const totals = { started: 0, inFlight: 0, diverged: 0, cleared: 0 };
  // The next child starts (Node and the engine take a few hundred ms to load) while the current one writes.
  let next = await launch(dir, 1, false);
  t.teardown(() => next.child.kill('SIGKILL'));
  for (let run = 1; run <= RUNS; run++) {
    const current = next;
    if (run < RUNS) next = await launch(dir, run + 1, false);
    const outcome = await crash(current);
    t.same(outcome.violations, [], `run ${run}: ${outcome.started} writes, ${outcome.inFlight} in flight at the kill`);
    totals.started += outcome.started;
    totals.inFlight += outcome.inFlight;
    totals.diverged += outcome.diverged;
    totals.cleared += outcome.cleared;
  }
  t.ok(totals.started > RUNS * 10, `the children wrote (${totals.started} writes)`);
  t.ok(totals.inFlight > 0, `kills landed with writes in flight (${totals.inFlight})`);
  t.ok(totals.diverged > 0, `kills landed between the two copies of a write (${totals.diverged} extents)`);
  t.ok(totals.cleared > 0, `written extents were cleared again, so the map is not merely all set (${totals.cleared})`);
});

t.test('the check catches an engine that issues data writes before their map mark is on disk', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'activemap-crash-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const violations: string[] = [];
  for (let run = 1; run <= 10 && violations.length === 0; run++) {
    violations.push(...(await crash(await launch(dir, run, true))).violations);
  }
  t.ok(violations.length > 0, `the broken child was caught: ${violations[0]}`);
});
