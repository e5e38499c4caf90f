// Benchmark: the ceiling replication can reach on this machine, without the engine. A sender streams
// requests of a fixed size to a receiver in another Node process over loopback TCP, shaped like HAST's
// traffic (a small header and the payload on one connection, a small reply per request on a second
// connection, a fixed number of requests in flight), with the least JavaScript that can do it.
//
// Usage: node bench/loopback.mjs [--seconds N] [--request KiB] [--depth N] [--dir DIR] [--disk none|remote|both]
//
//   --disk none    TCP only: what loopback TCP between two Node processes carries
//   --disk remote  the receiver also writes each payload to a file in DIR (pwritev of the received chunks)
//   --disk both    the sender writes each payload locally too, in parallel with sending it: the shape of
//                  fullsync with nothing else (no activemap, no range locks, no nv framing)
//
// Prints MiB/s and the CPU seconds each process used per GiB (user + system, all threads).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtemp, open, readFile, rm } from 'node:fs/promises';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';

const MiB = 1024 * 1024;
const CLOCK_TICKS = 100;
const HEADER = 16;
const FILE_SIZE = 1024 * MiB;

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '5' },
    request: { type: 'string', default: '128' },
    depth: { type: 'string', default: '64' },
    dir: { type: 'string', default: tmpdir() },
    disk: { type: 'string', default: 'none' },
    receiver: { type: 'boolean', default: false },
    file: { type: 'string' },
  },
});

async function cpuOf(pid) {
  const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / CLOCK_TICKS;
}

async function zeroFile(path) {
  const handle = await open(path, 'w');
  const zeros = Buffer.alloc(8 * MiB);
  for (let at = 0; at < FILE_SIZE; at += zeros.length) await handle.write(zeros, 0, zeros.length, at);
  return handle;
}

// The receiver: frames `seq:u32 | offset:u64 | length:u32 | payload` on the first connection, 4-byte
// replies (the seq) on the second, once the payload is written (or at once without --file).
async function runReceiver() {
  const handle = values.file ? await open(values.file, 'r+') : undefined;
  const sockets = [];
  const server = createServer((socket) => {
    socket.setNoDelay(true);
    sockets.push(socket);
    if (sockets.length === 2) serve(sockets[0], sockets[1]);
  });
  server.listen(0, '127.0.0.1', () => process.stdout.write(`${server.address().port}\n`));

  function serve(requests, replies) {
    let chunks = [];
    let buffered = 0;
    let header;
    const take = (size) => {
      const parts = [];
      let left = size;
      while (left > 0) {
        const chunk = chunks[0];
        if (chunk.length <= left) {
          parts.push(chunk);
          chunks.shift();
          left -= chunk.length;
        } else {
          parts.push(chunk.subarray(0, left));
          chunks[0] = chunk.subarray(left);
          left = 0;
        }
      }
      buffered -= size;
      return parts;
    };
    const reply = (seq) => {
      const buf = Buffer.allocUnsafe(4);
      buf.writeUInt32LE(seq, 0);
      replies.write(buf);
    };
    requests.on('data', (chunk) => {
      chunks.push(chunk);
      buffered += chunk.length;
      for (;;) {
        if (header === undefined) {
          if (buffered < HEADER) return;
          const bytes = Buffer.concat(take(HEADER));
          header = { seq: bytes.readUInt32LE(0), offset: Number(bytes.readBigUInt64LE(4)), length: bytes.readUInt32LE(12) };
        }
        if (buffered < header.length) return;
        const { seq, offset, length } = header;
        const payload = take(length);
        header = undefined;
        if (handle === undefined) reply(seq);
        else handle.writev(payload, offset).then(() => reply(seq));
      }
    });
  }
}

async function main() {
  const seconds = Number(values.seconds);
  const size = Number(values.request) * 1024;
  const depth = Number(values.depth);
  const dir = await mkdtemp(join(values.dir, 'loopback-bench-'));
  const remoteFile = values.disk === 'none' ? undefined : join(dir, 'remote');
  if (remoteFile) await (await zeroFile(remoteFile)).close();
  const local = values.disk === 'both' ? await zeroFile(join(dir, 'local')) : undefined;
  const child = spawn(process.execPath, [fileURLToPath(import.meta.url), '--receiver', ...(remoteFile ? ['--file', remoteFile] : [])], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const [portLine] = await once(child.stdout, 'data');
  const port = Number(String(portLine).trim());
  const requests = connect(port, '127.0.0.1');
  await once(requests, 'connect');
  const replies = connect(port, '127.0.0.1');
  await once(replies, 'connect');
  requests.setNoDelay(true);

  const payload = Buffer.alloc(size, 0xa5);
  const slots = Math.floor(FILE_SIZE / size);
  let nextSeq = 0;
  let done = 0;
  const waiting = new Map();
  let partial = Buffer.alloc(0);
  replies.on('data', (chunk) => {
    const data = partial.length > 0 ? Buffer.concat([partial, chunk]) : chunk;
    let at = 0;
    for (; at + 4 <= data.length; at += 4) waiting.get(data.readUInt32LE(at))?.();
    partial = data.subarray(at);
  });
  const deadline = performance.now() + seconds * 1000;
  const cpuBefore = [await cpuOf(process.pid), await cpuOf(child.pid)];
  const started = performance.now();

  async function issuer() {
    while (performance.now() < deadline) {
      const seq = nextSeq++;
      const offset = (seq % slots) * size;
      const header = Buffer.allocUnsafe(HEADER);
      header.writeUInt32LE(seq, 0);
      header.writeBigUInt64LE(BigInt(offset), 4);
      header.writeUInt32LE(size, 12);
      const remote = new Promise((resolve) => waiting.set(seq, resolve));
      requests.cork();
      requests.write(header);
      requests.write(payload);
      process.nextTick(() => requests.uncork());
      await Promise.all([remote, local?.write(payload, 0, size, offset)]);
      waiting.delete(seq);
      done++;
    }
  }
  await Promise.all(Array.from({ length: depth }, issuer));
  const elapsed = (performance.now() - started) / 1000;
  const cpuAfter = [await cpuOf(process.pid), await cpuOf(child.pid)];
  const gib = (done * size) / 1024 / MiB;
  const [senderCpu, receiverCpu] = cpuAfter.map((after, i) => (after - cpuBefore[i]) / gib);
  console.log(
    `disk ${values.disk}, ${values.request} KiB requests, ${depth} in flight: ${((done * size) / MiB / elapsed).toFixed(0)} MiB/s, ` +
      `cpu-s/GiB sender ${senderCpu.toFixed(2)} receiver ${receiverCpu.toFixed(2)}`,
  );
  requests.destroy();
  replies.destroy();
  child.kill();
  await local?.close();
  await rm(dir, { recursive: true, force: true });
}

if (values.receiver) await runReceiver();
else await main();
