import t from 'tap';
import fc from 'fast-check';
import {
  AddressError,
  DEFAULT_HAST_PORT,
  formatTcpAddress,
  parseHastAddress,
  type TcpAddress,
} from '../../src/config/address.js';

function problemOf(text: string): string {
  try {
    parseHastAddress(text);
  } catch (error) {
    if (error instanceof AddressError) return error.problem;
    throw error;
  }
  throw new Error(`${text} was accepted`);
}

t.test('UNIX socket addresses: uds://, unix:// (any case) and bare absolute paths', async (t) => {
  t.same(parseHastAddress('uds:///var/run/hastctl'), { kind: 'uds', path: '/var/run/hastctl' });
  t.same(parseHastAddress('UNIX:///tmp/s'), { kind: 'uds', path: '/tmp/s' });
  t.same(parseHastAddress('Uds://relative/s'), { kind: 'uds', path: 'relative/s' });
  t.same(parseHastAddress('/var/run/hastctl'), { kind: 'uds', path: '/var/run/hastctl' });
  t.same(parseHastAddress(`uds:///${'a'.repeat(102)}`), { kind: 'uds', path: `/${'a'.repeat(102)}` });
});

t.test('TCP addresses in every form proto_tcp.c accepts', async (t) => {
  const cases: Array<[string, TcpAddress]> = [
    ['172.16.0.2', { kind: 'tcp', family: 'any', host: '172.16.0.2', port: 8457 }],
    ['172.16.0.2:7000', { kind: 'tcp', family: 'any', host: '172.16.0.2', port: 7000 }],
    ['hastb', { kind: 'tcp', family: 'any', host: 'hastb', port: 8457 }],
    ['hastb.example.org:1', { kind: 'tcp', family: 'any', host: 'hastb.example.org', port: 1 }],
    ['tcp://hastb:65535', { kind: 'tcp', family: 'any', host: 'hastb', port: 65535 }],
    ['TCP4://0.0.0.0:8457', { kind: 'tcp', family: 4, host: '0.0.0.0', port: 8457 }],
    ['tcp4://hasta', { kind: 'tcp', family: 4, host: 'hasta', port: 8457 }],
    ['tcp6://[::]:8457', { kind: 'tcp', family: 6, host: '::', port: 8457 }],
    ['Tcp6://2001:db8::1', { kind: 'tcp', family: 6, host: '2001:db8::1', port: 8457 }],
    ['2001:db8::1', { kind: 'tcp', family: 'any', host: '2001:db8::1', port: 8457 }],
    ['[2001:db8::1]:9000', { kind: 'tcp', family: 'any', host: '2001:db8::1', port: 9000 }],
    ['::ffff:192.0.2.1', { kind: 'tcp', family: 'any', host: '::ffff:192.0.2.1', port: 8457 }],
    ['[192.0.2.1]:80', { kind: 'tcp', family: 'any', host: '192.0.2.1', port: 80 }],
    ['host_1:008457', { kind: 'tcp', family: 'any', host: 'host_1', port: 8457 }],
  ];
  for (const [text, address] of cases) t.same(parseHastAddress(text), address, text);
  t.equal(DEFAULT_HAST_PORT, 8457);
  t.same(parseHastAddress('192.0.2.1', 0), { kind: 'tcp', family: 'any', host: '192.0.2.1', port: 0 });
});

t.test('addresses hastd cannot use are refused with the reason', async (t) => {
  const cases: Array<[string, string]> = [
    ['tcp://2001:db8::1/64', "'2001:db8::1/64' is not an IPv6 address; hastd takes no prefix length such as /64"],
    ['2001:db8::g', "'2001:db8::g' is not an IPv6 address"],
    ['tcp://', 'the host is empty'],
    ['', 'the host is empty'],
    [':8457', 'the host is empty'],
    ['[]:8457', 'the host is empty'],
    ['hasta:', "the port '' is not a number from 1 to 65535"],
    ['hasta:0', "the port '0' is not a number from 1 to 65535"],
    ['hasta:65536', "the port '65536' is not a number from 1 to 65535"],
    ['hasta:80x', "the port '80x' is not a number from 1 to 65535"],
    ['hasta:99999999999999999999', "the port '99999999999999999999' is not a number from 1 to 65535"],
    ['[::1]', 'a bracketed address must be written [ADDRESS]:PORT'],
    ['[::1:8457', 'a bracketed address must be written [ADDRESS]:PORT'],
    ['[192.0.2.1]', 'a bracketed address must be written [ADDRESS]:PORT'],
    ['tcp4://::1', 'tcp4:// cannot use the IPv6 address ::1'],
    ['tcp4://[2001:db8::1]:8457', 'tcp4:// cannot use the IPv6 address 2001:db8::1'],
    ['tcp6://192.0.2.1', 'tcp6:// cannot use the IPv4 address 192.0.2.1'],
    ['tcp6://192.0.2.1:8457', 'tcp6:// cannot use the IPv4 address 192.0.2.1'],
    ['tcp:///var/run/x', "'/var/run/x' is not a host name or IP address"],
    ['a/b', "'a/b' is not a host name or IP address"],
    ['http://hastb', "unknown protocol 'http://'; use tcp://, tcp4://, tcp6://, uds:// or unix://"],
    ['/var/run/x://y', "unknown protocol '/var/run/x://'; use tcp://, tcp4://, tcp6://, uds:// or unix://"],
    ['uds://', 'the socket path is empty'],
    [`uds:///${'a'.repeat(103)}`, 'the socket path is 104 bytes long; a UNIX socket path takes at most 103'],
    [`/${'a'.repeat(103)}`, 'the socket path is 104 bytes long; a UNIX socket path takes at most 103'],
    [`${'h'.repeat(256)}:1`, 'the host is longer than 255 bytes'],
    ['x'.repeat(1024), 'it is 1024 bytes long; hastd takes at most 1023'],
  ];
  for (const [text, problem] of cases) t.equal(problemOf(text), problem, text);
  t.throws(() => parseHastAddress('hasta:0'), {
    name: 'AddressError',
    message: "invalid address 'hasta:0': the port '0' is not a number from 1 to 65535",
    address: 'hasta:0',
  });
  t.same(parseHastAddress('h'.repeat(255)), { kind: 'tcp', family: 'any', host: 'h'.repeat(255), port: 8457 });
});

t.test('length limits count bytes, and an over-long address is cut short in the message', async (t) => {
  t.same(parseHastAddress(`/${'é'.repeat(51)}`), { kind: 'uds', path: `/${'é'.repeat(51)}` });
  t.equal(problemOf(`/${'é'.repeat(52)}`), 'the socket path is 105 bytes long; a UNIX socket path takes at most 103');
  t.equal(problemOf(`tcp://${'a'.repeat(2000)}`), 'it is 2006 bytes long; hastd takes at most 1023');
  const error = t.throws(() => parseHastAddress(`tcp://${'a'.repeat(2000)}`)) as AddressError;
  t.equal(error.address, `tcp://${'a'.repeat(34)}...`);
  t.equal(problemOf('é'.repeat(512)), 'it is 1024 bytes long; hastd takes at most 1023');
});

t.test('formatTcpAddress writes the canonical form, which parses back to the same address', async (t) => {
  t.equal(formatTcpAddress({ kind: 'tcp', family: 'any', host: 'hastb', port: 8457 }), 'tcp://hastb:8457');
  t.equal(formatTcpAddress({ kind: 'tcp', family: 6, host: '::', port: 8457 }), 'tcp6://[::]:8457');
  t.equal(formatTcpAddress({ kind: 'tcp', family: 4, host: '0.0.0.0', port: 1 }), 'tcp4://0.0.0.0:1');
  const host = fc.oneof(fc.ipV4(), fc.ipV6(), fc.domain());
  const family = fc.constantFrom<TcpAddress['family']>('any', 4, 6);
  fc.assert(
    fc.property(host, family, fc.integer({ min: 1, max: 65535 }), (h, f, port) => {
      const isV6 = h.includes(':');
      const isV4 = /^[0-9.]+$/.test(h);
      fc.pre(!(isV6 && f === 4) && !(isV4 && f === 6));
      const address: TcpAddress = { kind: 'tcp', family: f, host: h, port };
      t.same(parseHastAddress(formatTcpAddress(address)), address);
    }),
    { numRuns: 300 },
  );
});
