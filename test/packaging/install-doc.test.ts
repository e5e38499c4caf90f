import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { REPO_ROOT } from '../fixtures/stand-ins.js';

const INSTALL = readFileSync(join(REPO_ROOT, 'docs/install.md'), 'utf8');

// The files docs/install.md copies out of the installed package ($P is its directory).
const copied = [...new Set([...INSTALL.matchAll(/\$P\/([\w./-]+)/g)].map((match) => match[1] ?? ''))].sort();

t.test('the install guide copies the files a user installs', async (t) => {
  for (const file of [
    'devd/carp-hast.conf',
    'rc.d/carp_hast',
    'scripts/carp-hast-switch',
    'systemd/carp-hast.service',
    'examples/keepalived/keepalived-notify.sh',
  ]) {
    t.ok(copied.includes(file), file);
  }
});

t.test('every file the install guide copies is in the npm package', async (t) => {
  const pack = await execa('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {
    cwd: REPO_ROOT,
    timeout: 120_000,
  });
  const [manifest] = JSON.parse(pack.stdout) as { files: { path: string }[] }[];
  const packed = new Set(manifest?.files.map((file) => file.path));
  for (const file of copied) t.ok(packed.has(file), `${file} is packed`);
});
