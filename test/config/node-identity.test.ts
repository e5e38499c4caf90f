import t from 'tap';
import { chmod, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { hostname, tmpdir } from 'node:os';
import { join } from 'node:path';
import { localNodeIdentity } from '../../src/config/node-identity.js';

t.test('on Linux: host name, /etc/machine-id as the UUID, no host id', { skip: process.platform === 'linux' ? false : 'reads /etc/machine-id, which only Linux has' }, async (t) => {
  const machineId = await readFile('/etc/machine-id', 'utf8').then(
    (text) => text.trim() || null,
    () => null,
  );
  t.same(await localNodeIdentity(), { hostname: hostname(), hostuuid: machineId, hostid: null, nodeName: null });
  t.same(await localNodeIdentity('hastb'), { hostname: hostname(), hostuuid: machineId, hostid: null, nodeName: 'hastb' });
});

// FreeBSD is imitated: process.platform says freebsd and a `sysctl` script on PATH answers like the real one.
t.test('on FreeBSD: kern.hostuuid and kern.hostid from sysctl', async (t) => {
  const bin = await mkdtemp(join(tmpdir(), 'fake-sysctl-'));
  const platform = Object.getOwnPropertyDescriptor(process, 'platform') as PropertyDescriptor;
  const { PATH } = process.env;
  t.teardown(async () => {
    Object.defineProperty(process, 'platform', platform);
    process.env.PATH = PATH;
    delete process.env.FAKE_UUID;
    delete process.env.FAKE_HOSTID;
    await rm(bin, { recursive: true });
  });
  await writeFile(
    join(bin, 'sysctl'),
    '#!/bin/sh\n[ "$1" = -n ] || exit 64\ncase "$2" in\nkern.hostuuid) echo "$FAKE_UUID" ;;\nkern.hostid) echo "$FAKE_HOSTID" ;;\n*) exit 1 ;;\nesac\n',
  );
  await chmod(join(bin, 'sysctl'), 0o755);
  process.env.PATH = `${bin}:${PATH}`;
  Object.defineProperty(process, 'platform', { value: 'freebsd' });

  process.env.FAKE_UUID = '7B8D2C1A-0E3F-11EF-9A5B-0800270A1B2C';
  process.env.FAKE_HOSTID = '3735928559';
  t.same(await localNodeIdentity(), {
    hostname: hostname(),
    hostuuid: '7B8D2C1A-0E3F-11EF-9A5B-0800270A1B2C',
    hostid: 3735928559,
    nodeName: null,
  });

  process.env.FAKE_UUID = '';
  process.env.FAKE_HOSTID = '0';
  t.same(await localNodeIdentity('hasta'), { hostname: hostname(), hostuuid: null, hostid: 0, nodeName: 'hasta' });

  process.env.FAKE_HOSTID = 'unknown oid';
  await t.rejects(localNodeIdentity(), { message: "sysctl kern.hostid printed 'unknown oid', not a host id" });
});
