import t from 'tap';
import { formatDump } from '../../src/engine/hastctl-format.js';
import { layoutForCreate } from '../../src/engine/metadata.js';

t.test('formatDump prints hastctl dump for a freshly created 1 GiB file', async (t) => {
  // `hastctl create` on a 1073741824-byte file (512-byte sectors, 2 MiB extents, keepdirty 64): the map
  // covers 1073741824 - 4096 bytes = 512 extents = 64 bytes, one 512-byte sector; so the data starts at
  // 4096 + 512 = 4608 and is 1073741824 - 4608 = 1073737216 bytes, which humanize_number shows as 1.0G.
  const metadata = layoutForCreate({
    mediasize: 1073741824n,
    extentsize: 2097152,
    keepdirty: 64,
    sectorsize: 512,
    resource: 'shared',
  });
  t.equal(
    formatDump(metadata),
    'resource: shared\n' +
      '    datasize: 1073737216 (1.0GB)\n' +
      '    extentsize: 2097152 (2.0MB)\n' +
      '    keepdirty: 64\n' +
      '    localoff: 4608\n' +
      '    resuid: 0\n' +
      '    localcnt: 0\n' +
      '    remotecnt: 0\n' +
      '    prevrole: init\n',
  );
});

t.test('formatDump prints 64-bit counters in full', async (t) => {
  const text = formatDump({
    resource: 'data',
    datasize: 134217728n,
    extentsize: 65536,
    keepdirty: 8,
    localoff: 8192n,
    resuid: 18446744073709551615n,
    localcnt: 12n,
    remotecnt: 9007199254740993n,
    prevrole: 'secondary',
  });
  t.equal(
    text,
    [
      'resource: data',
      '    datasize: 134217728 (128MB)',
      '    extentsize: 65536 (64KB)',
      '    keepdirty: 8',
      '    localoff: 8192',
      '    resuid: 18446744073709551615',
      '    localcnt: 12',
      '    remotecnt: 9007199254740993',
      '    prevrole: secondary',
      '',
    ].join('\n'),
  );
});
