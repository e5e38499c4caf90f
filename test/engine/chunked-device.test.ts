import t from 'tap';
import { joinBytes } from '../../src/engine/bytes.js';
import { BlockIoError, type BlockDevice } from '../../src/engine/block-device.js';
import { ChunkedDevice, NBD_MAX_REQUEST } from '../../src/engine/chunked-device.js';

// A memory device that refuses requests over 128 KiB, as a primary does, and records what it was asked.
function smallRequestDevice(size: number) {
  const data = Buffer.alloc(size);
  const calls: string[] = [];
  const maxRequest = 128 * 1024;
  const check = (what: string, length: number) => {
    calls.push(`${what} ${length}`);
    if (length > maxRequest) throw new BlockIoError('EINVAL', `${what} of ${length} bytes is too large`);
  };
  const device: BlockDevice = {
    size,
    blockSize: 512,
    maxRequest,
    async read(offset, length) {
      check('read', length);
      return Buffer.from(data.subarray(offset, offset + length));
    },
    async write(offset, bytes, options) {
      const buf = joinBytes(bytes);
      check(options?.fua ? 'write+fua' : 'write', buf.length);
      buf.copy(data, offset);
    },
    async flush() {
      calls.push('flush');
    },
    async trim(offset, length) {
      calls.push(`trim ${length}`);
      data.fill(0, offset, offset + length);
    },
  };
  return { device, data, calls };
}

t.test('large requests are split into pieces the device takes, small ones pass through', async (t) => {
  const { device, data, calls } = smallRequestDevice(4 * 1024 * 1024);
  const chunked = new ChunkedDevice(device);
  t.equal(chunked.maxRequest, NBD_MAX_REQUEST);
  t.equal(chunked.size, device.size);
  const payload = Buffer.alloc(300 * 1024);
  for (let i = 0; i < payload.length; i++) payload[i] = (i * 7) & 0xff;
  await chunked.write(4096, payload, { fua: true });
  t.same(calls, ['write 131072', 'write 131072', 'write 45056', 'flush'], 'three pieces, then a flush for FUA');
  t.ok(data.subarray(4096, 4096 + payload.length).equals(payload));
  calls.length = 0;
  t.ok((await chunked.read(4096, payload.length)).equals(payload));
  t.same(calls, ['read 131072', 'read 131072', 'read 45056']);
  calls.length = 0;
  await chunked.write(0, Buffer.alloc(4096), { fua: true });
  await chunked.read(0, 4096);
  await chunked.flush();
  await chunked.trim(0, 1024 * 1024);
  t.same(calls, ['write+fua 4096', 'read 4096', 'flush', 'trim 1048576']);
});

t.test('a write given as socket chunks is split into pieces without gathering it', async (t) => {
  const { device, data, calls } = smallRequestDevice(4 * 1024 * 1024);
  const seen: Array<readonly Buffer[] | Buffer> = [];
  const recording: BlockDevice = {
    ...device,
    write: (offset, bytes, options) => {
      seen.push(bytes);
      return device.write(offset, bytes, options);
    },
  };
  // 200 KiB in 64 KiB chunks and a tail, as a socket delivers it.
  const chunks = [0, 1, 2, 3].map((i) => Buffer.alloc(i < 3 ? 64 * 1024 : 8 * 1024, i + 1));
  await new ChunkedDevice(recording).write(8192, chunks);
  t.same(calls, ['write 131072', 'write 73728']);
  t.ok(data.subarray(8192, 8192 + 200 * 1024).equals(Buffer.concat(chunks)));
  const first = seen[0] as readonly Buffer[];
  t.equal(first.length, 2, 'the first piece is two whole chunks');
  t.equal(first[0], chunks[0], 'passed on, not copied');
});

t.test('a failed piece fails the whole request', async (t) => {
  const { device } = smallRequestDevice(1024 * 1024);
  const failing: BlockDevice = { ...device, write: async () => Promise.reject(new BlockIoError('EIO', 'disk on fire')) };
  await t.rejects(new ChunkedDevice(failing).write(0, Buffer.alloc(256 * 1024)), { code: 'EIO' });
});
