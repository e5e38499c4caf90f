import t from 'tap';
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { REPO_ROOT } from '../fixtures/stand-ins.js';

// Every /bin/sh script a user installs: rc.d, scripts/ and the examples' hooks.
const scripts = ['rc.d', 'scripts', 'examples']
  .flatMap((dir) => readdirSync(join(REPO_ROOT, dir), { recursive: true, encoding: 'utf8' }).map((f) => join(dir, f)))
  .filter((file) => statSync(join(REPO_ROOT, file)).isFile())
  .filter((file) => readFileSync(join(REPO_ROOT, file), 'utf8').startsWith('#!/bin/sh\n'))
  .sort();

const shellcheck = await execa('shellcheck', ['--version'], { reject: false });

t.test('the scripts are found', async (t) => {
  for (const expected of [
    'examples/keepalived/keepalived-notify.sh',
    'examples/ucarp/vip-down.sh',
    'examples/ucarp/vip-up.sh',
    'rc.d/carp_hast',
    'scripts/carp-hast-switch',
  ]) {
    t.ok(scripts.includes(expected), expected);
  }
});

t.test('every script parses with sh -n', async (t) => {
  for (const script of scripts) {
    const run = await execa('sh', ['-n', join(REPO_ROOT, script)], { reject: false });
    t.equal(run.exitCode, 0, script);
    t.equal(run.stderr, '', script);
  }
});

t.test('every script is executable, so callers can run it by path', async (t) => {
  for (const script of scripts) t.equal(statSync(join(REPO_ROOT, script)).mode & 0o111, 0o111, script);
});

const noShellcheck = shellcheck.exitCode === 0 ? false : 'shellcheck is not installed';

t.test('shellcheck finds no warnings', { skip: noShellcheck }, async (t) => {
  for (const script of scripts) {
    // rc.subr reads the rc script's variables (SC2034) and is not there to follow (SC1091).
    const excluded = script.startsWith('rc.d/') ? ['-e', 'SC2034,SC1091'] : [];
    const args = ['-s', 'sh', '-S', 'warning', ...excluded, join(REPO_ROOT, script)];
    const run = await execa('shellcheck', args, { reject: false });
    t.equal(run.stdout, '', script);
    t.equal(run.exitCode, 0, script);
  }
});
