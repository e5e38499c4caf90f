import t from 'tap';
import {
  SPLIT_BRAIN_ERRMSG,
  answerMessage,
  decideSync,
  helloMessage,
  openingMessage,
  parseAnswer,
  parseHello,
  parseOpening,
  parseTokenAnswer,
  refusalMessage,
  splitBrainRefusal,
  tokenMessage,
} from '../../src/engine/handshake.js';
import { joinBytes } from '../../src/engine/bytes.js';
import { Nv } from '../../src/engine/nv.js';
import { encodePayload } from '../../src/engine/payload-codec.js';

const TOKEN = Buffer.alloc(16, 0xab);

t.test('the opening message names the resource and protocol version 2', async (t) => {
  const nv = openingMessage('shared');
  t.equal(nv.getString('resource'), 'shared');
  t.equal(nv.getUint8('version'), 2);
  t.same(parseOpening(nv, '10.0.0.1'), { resource: 'shared', version: 2, token: undefined });
  t.same(parseOpening(new Nv().addString('resource', 'r'), '10.0.0.1'), { resource: 'r', version: 1, token: undefined }, 'no version is 1');
  t.equal(parseOpening(new Nv(), '10.0.0.1'), "No 'resource' field in the header received from 10.0.0.1.");
  const badToken = new Nv().addString('resource', 'r').addUint8Array('token', new Uint8Array(3));
  t.equal(parseOpening(badToken, '10.0.0.1'), 'Received token of invalid size from 10.0.0.1 (expected 16, got 3).');
});

t.test('the token answer and refusals', async (t) => {
  t.same(parseTokenAnswer(tokenMessage(2, TOKEN), 'peer'), { kind: 'token', version: 2, token: TOKEN });
  t.same(parseTokenAnswer(new Nv().addUint8Array('token', TOKEN), 'peer'), { kind: 'token', version: 1, token: TOKEN }, 'a v1 peer sends no version');
  t.same(parseTokenAnswer(refusalMessage('Resource not configured.'), 'peer'), { kind: 'refused', errmsg: 'Resource not configured.', wait: false });
  t.same(parseTokenAnswer(refusalMessage('Remote node acts as primary for the resource and not as secondary.', true), 'peer'), {
    kind: 'refused',
    errmsg: 'Remote node acts as primary for the resource and not as secondary.',
    wait: true,
  });
  t.same(parseTokenAnswer(new Nv().addUint8('version', 3), 'peer'), { kind: 'invalid', reason: 'Invalid version received (3).' });
  t.same(parseTokenAnswer(new Nv().addUint8('version', 2), 'peer'), { kind: 'invalid', reason: "Handshake header from peer has no 'token' field." });
  t.same(parseTokenAnswer(new Nv().addUint8Array('token', new Uint8Array(4)), 'peer'), {
    kind: 'invalid',
    reason: "Handshake header from peer contains 'token' of wrong size (got 4, expected 16).",
  });
});

t.test('the hello carries the counters, and virgin only when set', async (t) => {
  const hello = { resuid: 77n, localcnt: 3n, remotecnt: 2n, virgin: true };
  const nv = helloMessage('shared', TOKEN, hello);
  t.equal(nv.getString('resource'), 'shared');
  t.same(Buffer.from(nv.getUint8Array('token')!), TOKEN);
  t.equal(nv.getInt8('virgin'), 1);
  t.same(parseHello(nv), hello);
  t.same(parseHello(helloMessage('shared', TOKEN, { ...hello, virgin: false })), { ...hello, virgin: false });
  t.same(parseHello(new Nv()), { resuid: 0n, localcnt: 0n, remotecnt: 0n, virgin: false }, 'missing counters read as 0');
});

t.test('the secondary decides as hastd does (secondary.c init_remote table)', async (t) => {
  const decide = (s: [number, number], p: [number, number]) =>
    decideSync(
      { resuid: 5n, localcnt: BigInt(s[0]), remotecnt: BigInt(s[1]) },
      { resuid: 5n, localcnt: BigInt(p[0]), remotecnt: BigInt(p[1]), virgin: false },
    );
  const full = (p: [number, number]) =>
    `This should never happen, asking for full synchronization (primary(local=${p[0]}, remote=${p[1]}), secondary(local=3, remote=3)).`;
  t.same(decide([3, 3], [2, 2]), { kind: 'sync', syncsrc: 'secondary', map: 'full', warning: full([2, 2]) });
  t.same(decide([3, 3], [2, 3]), { kind: 'sync', syncsrc: 'primary', map: 'full', warning: full([2, 3]) });
  t.same(decide([3, 3], [2, 4]), { kind: 'sync', syncsrc: 'primary', map: 'full', warning: full([2, 4]) });
  t.same(decide([3, 3], [3, 2]), { kind: 'sync', syncsrc: 'secondary', map: 'ondisk' }, 'primary out of date');
  t.same(decide([3, 3], [3, 3]), { kind: 'sync', syncsrc: 'primary', map: 'ondisk' }, 'in sync: regular sync just in case');
  t.same(decide([3, 3], [3, 4]), { kind: 'sync', syncsrc: 'primary', map: 'full', warning: full([3, 4]) });
  t.same(decide([3, 3], [4, 2]), { kind: 'refuse', errmsg: SPLIT_BRAIN_ERRMSG, splitBrain: true });
  t.same(decide([3, 3], [4, 3]), { kind: 'sync', syncsrc: 'primary', map: 'ondisk' }, 'secondary out of date');
  t.same(decide([3, 3], [4, 4]), { kind: 'sync', syncsrc: 'primary', map: 'full', warning: full([4, 4]) });
});

t.test('a fresh secondary adopts the resuid; a foreign one is refused', async (t) => {
  const fresh = { resuid: 0n, localcnt: 0n, remotecnt: 0n };
  t.same(decideSync(fresh, { resuid: 9n, localcnt: 0n, remotecnt: 0n, virgin: true }), { kind: 'adopt', resuid: 9n, map: 'none' });
  t.same(decideSync(fresh, { resuid: 9n, localcnt: 2n, remotecnt: 1n, virgin: false }), { kind: 'adopt', resuid: 9n, map: 'full' });
  t.same(decideSync({ resuid: 8n, localcnt: 0n, remotecnt: 0n }, { resuid: 9n, localcnt: 0n, remotecnt: 0n, virgin: false }), {
    kind: 'refuse',
    errmsg: 'Resource unique ID mismatch (primary=9, secondary=8).',
    splitBrain: false,
  });
});

t.test('the answer round-trips and is checked against this node', async (t) => {
  const map = Buffer.alloc(512, 1);
  const nv = answerMessage({ datasize: 1000n, extentsize: 4096, localcnt: 2n, remotecnt: 1n, virgin: true, syncsrc: 'secondary', mapsize: 512 });
  t.equal(nv.getInt64('datasize'), 1000n, 'datasize is an int64');
  t.equal(nv.getInt32('extentsize'), 4096, 'extentsize is an int32');
  t.equal(nv.getUint8('syncsrc'), 2);
  t.equal(nv.getUint32('mapsize'), 512);
  const local = { datasize: 1000n, extentsize: 4096 };
  t.same(parseAnswer({ version: 2, nv, payload: map }, local), {
    kind: 'accepted',
    answer: { datasize: 1000n, extentsize: 4096, localcnt: 2n, remotecnt: 1n, virgin: true, syncsrc: 'secondary', map },
  });
  const noMap = answerMessage({ datasize: 1000n, extentsize: 4096, localcnt: 0n, remotecnt: 0n, virgin: false, syncsrc: undefined, mapsize: 0 });
  t.match(parseAnswer({ version: 2, nv: noMap, payload: undefined }, local), { kind: 'accepted', answer: { map: undefined, syncsrc: undefined, virgin: false } });
  t.same(parseAnswer({ version: 2, nv, payload: map }, { datasize: 2000n, extentsize: 4096 }), {
    kind: 'invalid',
    reason: 'Data size differs between nodes (local=2000, remote=1000).',
  });
  t.same(parseAnswer({ version: 2, nv, payload: map }, { datasize: 1000n, extentsize: 8192 }), {
    kind: 'invalid',
    reason: 'Extent size differs between nodes (local=8192, remote=4096).',
  });
  t.same(parseAnswer({ version: 2, nv, payload: Buffer.alloc(10) }, local), { kind: 'invalid', reason: 'Remote activemap has 10 bytes, not the announced 512.' });
  t.same(parseAnswer({ version: 2, nv: refusalMessage(SPLIT_BRAIN_ERRMSG), payload: undefined }, local), {
    kind: 'refused',
    errmsg: SPLIT_BRAIN_ERRMSG,
    splitBrain: true,
  });
  t.same(parseAnswer({ version: 2, nv: splitBrainRefusal(3 * 1024 * 1024), payload: undefined }, local), {
    kind: 'refused',
    errmsg: SPLIT_BRAIN_ERRMSG,
    splitBrain: true,
    peerDirty: 3 * 1024 * 1024,
  });
  t.same(parseAnswer({ version: 2, nv: refusalMessage('Resource unique ID mismatch (primary=1, secondary=2).'), payload: undefined }, local), {
    kind: 'refused',
    errmsg: 'Resource unique ID mismatch (primary=1, secondary=2).',
    splitBrain: false,
  });
});

t.test('an activemap sent with compression and a checksum, as hastd sends it, is decoded', async (t) => {
  const local = { datasize: 1000n, extentsize: 4096 };
  const answer = () => answerMessage({ datasize: 1000n, extentsize: 4096, localcnt: 0n, remotecnt: 0n, virgin: false, syncsrc: 'primary', mapsize: 512 });
  const clean = answer();
  const sent = encodePayload(clean, Buffer.alloc(512), { checksum: 'crc32', compression: 'hole' });
  t.equal(clean.getString('compression'), 'hole');
  t.match(parseAnswer({ version: 2, nv: clean, payload: sent }, local), { kind: 'accepted', answer: { map: Buffer.alloc(512) } });
  const corrupt = answer();
  const bytes = Buffer.from(joinBytes(encodePayload(corrupt, Buffer.alloc(512, 0x0f), { checksum: 'sha256', compression: 'none' })));
  bytes.writeUInt8(bytes.readUInt8(7) ^ 1, 7);
  t.same(parseAnswer({ version: 2, nv: corrupt, payload: bytes }, local), { kind: 'invalid', reason: 'Unable to receive remote activemap: Hash mismatch.' });
});

t.test("the hello carries the primary's dirty bytes for a split-brain report", async (t) => {
  const nv = helloMessage('r0', Buffer.alloc(16), { resuid: 5n, localcnt: 2n, remotecnt: 1n, virgin: false, dirty: 65536 });
  t.same(parseHello(nv), { resuid: 5n, localcnt: 2n, remotecnt: 1n, virgin: false, dirty: 65536 });
  t.equal(parseHello(helloMessage('r0', Buffer.alloc(16), { resuid: 5n, localcnt: 2n, remotecnt: 1n, virgin: false })).dirty, undefined);
});
