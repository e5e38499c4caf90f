import t from 'tap';
import fc from 'fast-check';
import { createServer, connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { joinBytes } from '../../src/engine/bytes.js';
import { Nv } from '../../src/engine/nv.js';
import {
  encodePacket,
  PacketConnection,
  PacketDecoder,
  ProtocolError,
  ConnectionClosedError,
} from '../../src/engine/hast-proto.js';

function request(seq: bigint): Nv {
  return new Nv().addUint8('cmd', 2).addUint64('seq', seq).addUint64('offset', 4096n).addUint64('length', 8n);
}

t.test('a packet is header, nv and payload, with the payload length in the nv', async (t) => {
  const data = Buffer.from('abcdefgh');
  const [head, body, payload, ...rest] = encodePacket(new Nv().addUint8('cmd', 4), data);
  t.equal(head!.length, 5);
  t.equal(head!.readUInt8(0), 2, 'version');
  t.equal(head!.readUInt32LE(1), body!.length, 'nv size');
  t.equal(payload, data, 'the payload is sent uncopied');
  t.same(rest, []);
  const decoded = new PacketDecoder().push(Buffer.concat([head!, body!, payload!]));
  t.equal(decoded.length, 1);
  t.equal(decoded[0]!.nv.getUint8('cmd'), 4);
  t.equal(decoded[0]!.nv.getUint32('size'), 8);
  t.equal(decoded[0]!.payload!.toString(), 'abcdefgh');
  t.equal(encodePacket(new Nv().addUint8('cmd', 5), undefined, 1)[0]!.readUInt8(0), 1, 'version 1 on request');
});

t.test('packets split at every byte boundary decode the same', async (t) => {
  const stream = Buffer.concat([
    ...encodePacket(request(1n), Buffer.alloc(8, 1)),
    ...encodePacket(request(2n)),
    ...encodePacket(request(3n), Buffer.alloc(8, 3)),
  ]);
  const decoder = new PacketDecoder();
  const packets = [];
  for (let i = 0; i < stream.length; i++) packets.push(...decoder.push(stream.subarray(i, i + 1)));
  t.same(
    packets.map((p) => [p.nv.getUint64('seq'), p.payload && joinBytes(p.payload)[0]]),
    [
      [1n, 1],
      [2n, undefined],
      [3n, 3],
    ],
  );
  t.equal(decoder.bufferedBytes, 0);
});

t.test('a payload split across socket chunks comes out as views of those chunks, not a copy', async (t) => {
  const [head, body, data] = encodePacket(request(1n), Buffer.from('abcdefgh'));
  const first = Buffer.concat([head!, body!, data!.subarray(0, 3)]);
  const second = Buffer.from(data!.subarray(3));
  const decoder = new PacketDecoder();
  t.same(decoder.push(first), []);
  const [packet] = decoder.push(second);
  const payload = packet!.payload as readonly Buffer[];
  t.equal(payload.length, 2);
  t.equal(joinBytes(payload).toString(), 'abcdefgh');
  second[0] = 0x58;
  t.equal(payload[1]![0], 0x58, 'the second part is a view of the second chunk');
  t.equal(payload[0]!.buffer, first.buffer, 'the first part is a view of the first chunk');
});

t.test('framing violations are protocol errors', async (t) => {
  const header = (version: number, size: number) => {
    const b = Buffer.alloc(5);
    b.writeUInt8(version, 0);
    b.writeUInt32LE(size, 1);
    return b;
  };
  t.throws(() => new PacketDecoder().push(header(3, 8)), new ProtocolError('Unsupported protocol version 3 in packet header.'));
  t.throws(() => new PacketDecoder().push(header(0, 8)), ProtocolError);
  t.throws(
    () => new PacketDecoder().push(header(2, 0xffffffff)),
    new ProtocolError('Packet header announces 4294967295 bytes of nv data (limit 65536).'),
  );
  t.throws(() => new PacketDecoder().push(Buffer.concat([header(2, 8), Buffer.alloc(8, 0xff)])), /^Invalid nv data in packet/);
  const huge = Buffer.concat(encodePacket(new Nv().addUint32('size', 1 << 30)));
  t.throws(() => new PacketDecoder({ maxNvSize: 1024, maxPayloadSize: 1 << 20 }).push(huge), /1073741824-byte payload \(limit 1048576\)/);
});

t.test('random bytes only ever give packets or a ProtocolError', async () => {
  fc.assert(
    fc.property(fc.array(fc.uint8Array({ maxLength: 64 }), { maxLength: 8 }), (chunks) => {
      const decoder = new PacketDecoder({ maxNvSize: 4096, maxPayloadSize: 4096 });
      try {
        for (const chunk of chunks) decoder.push(Buffer.from(chunk));
      } catch (error) {
        if (!(error instanceof ProtocolError)) throw error;
      }
    }),
    { numRuns: 5000 },
  );
});

async function socketPair(): Promise<[Socket, Socket, () => void]> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const accepted = once(server, 'connection');
  const client = connect(port, '127.0.0.1');
  const [serverSide] = (await accepted) as [Socket];
  return [client, serverSide, () => server.close()];
}

t.test('a connection sends and receives packets in order over TCP', async (t) => {
  const [a, b, stop] = await socketPair();
  t.teardown(stop);
  const left = new PacketConnection(a);
  const right = new PacketConnection(b);
  for (let seq = 1n; seq <= 200n; seq++) left.send(request(seq), Buffer.alloc(8, Number(seq & 0xffn)));
  for (let seq = 1n; seq <= 200n; seq++) {
    const packet = await right.receive(5000);
    t.equal(packet.nv.getUint64('seq'), seq);
    if (packet.payload === undefined || joinBytes(packet.payload)[0] !== Number(seq & 0xffn)) t.fail(`payload of ${seq}`);
  }
  right.close();
  await t.rejects(left.receive(5000), ConnectionClosedError);
  t.throws(() => left.send(request(1n)), ConnectionClosedError);
});

t.test('receive times out and garbage closes the connection', async (t) => {
  const [a, b, stop] = await socketPair();
  t.teardown(stop);
  const right = new PacketConnection(b);
  await t.rejects(right.receive(50), new ConnectionClosedError('No packet received within 0.05 s.'));
  a.write(Buffer.from([9, 0, 0, 0, 0]));
  await t.rejects(right.receive(5000), ProtocolError);
  t.equal(right.closed, true);
  a.destroy();
});

t.test('a header announcing an empty nv is refused, not a crash', async (t) => {
  const header = Buffer.from([2, 0, 0, 0, 0]);
  // An empty nv has no fields, so no payload size: the packet decodes to an empty list.
  const packets = new PacketDecoder().push(header);
  t.equal(packets.length, 1);
  t.equal(packets[0]!.payload, undefined);
  t.equal(packets[0]!.nv.getUint8('cmd'), undefined);
});
