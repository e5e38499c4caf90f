import t from 'tap';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { parseHastConf } from '../../src/config/hast-conf.js';
import { checkResourcesAgainstHast, parseSupervisorConf } from '../../src/config/supervisor-conf.js';
import { runCli } from '../fixtures/cli.js';
import { REPO_ROOT } from '../fixtures/stand-ins.js';

// Every supervisor configuration under examples/, each with the hast.conf it manages beside it.
const configs = readdirSync(join(REPO_ROOT, 'examples'), { recursive: true, encoding: 'utf8' })
  .filter((file) => file === 'carp-hast.toml' || file.endsWith('/carp-hast.toml'))
  .map((file) => join('examples', file))
  .sort();

// The node names of a hast.conf's `on` blocks; every example is one file shared by two nodes.
function nodeNames(hastText: string): string[] {
  return [...new Set([...hastText.matchAll(/^\s*on\s+(\S+)\s*\{/gm)].map((match) => match[1] ?? ''))];
}

t.test('the examples are found', async (t) => {
  t.same(configs, [
    'examples/carp-hast.toml',
    'examples/linux-ext4-nfs/carp-hast.toml',
    'examples/ufs-nfs/carp-hast.toml',
    'examples/zfs-samba/carp-hast.toml',
  ]);
});

for (const config of configs) {
  const hastFile = join(dirname(config), 'hast.conf');

  t.test(`${config} fits the hast.conf beside it on both nodes`, async (t) => {
    const supervisor = parseSupervisorConf(readFileSync(join(REPO_ROOT, config), 'utf8'), config);
    t.ok(existsSync(join(REPO_ROOT, hastFile)), `${hastFile} exists`);
    const hastText = readFileSync(join(REPO_ROOT, hastFile), 'utf8');
    const nodes = nodeNames(hastText);
    t.equal(nodes.length, 2, `two nodes in ${hastFile}: ${nodes.join(', ')}`);
    for (const node of nodes) {
      const identity = { hostname: 'somewhere.else', hostuuid: null, hostid: null, nodeName: node };
      const hast = parseHastConf(hastText, hastFile, identity);
      const names = hast.resources.map((resource) => resource.name);
      t.doesNotThrow(() => checkResourcesAgainstHast(supervisor, names), node);
    }
  });

  t.test(`${config}: carp-hast check-config accepts it`, async (t) => {
    const node = nodeNames(readFileSync(join(REPO_ROOT, hastFile), 'utf8'))[0] ?? '';
    const args = ['check-config', '-c', join(REPO_ROOT, hastFile), '-s', join(REPO_ROOT, config), '-n', node];
    const run = await runCli(args);
    t.equal(run.stderr, '');
    t.equal(run.exitCode, 0);
  });
}

t.test('the examples that hear CARP only from hooks name the address that shows this node is MASTER', async (t) => {
  const fromHooks = configs
    .map((config) => ({ config, text: readFileSync(join(REPO_ROOT, config), 'utf8') }))
    .map(({ config, text }) => ({ config, carp: parseSupervisorConf(text, config).carp }))
    .filter(({ carp }) => carp.source === 'notify');
  t.not(fromHooks.length, 0);
  // Without carp.vip a Linux node has no ground truth to check a hook's word against.
  for (const { config, carp } of fromHooks) t.not(carp.vip, undefined, config);
});
