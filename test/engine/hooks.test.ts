import t from 'tap';
import { chmodSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { HookRunner } from '../../src/engine/hooks.js';
import { memoryLogger } from '../fixtures/memory-log.js';

function script(dir: string, name: string, body: string): string {
  const path = join(dir, name);
  writeFileSync(path, `#!/bin/sh\n${body}\n`);
  chmodSync(path, 0o755);
  return path;
}

t.test('a hook gets its arguments verbatim, without a shell', async (t) => {
  const dir = t.testdir();
  const out = join(dir, 'args');
  const hook = script(dir, 'hook', `for a in "$@"; do echo "$a" >> ${out}; done`);
  const { log, messages } = memoryLogger();
  const runner = new HookRunner(log);
  runner.run(hook, ['role', 'test; rm -rf /', 'init', 'primary']);
  await runner.settled();
  t.equal(readFileSync(out, 'utf8'), 'role\ntest; rm -rf /\ninit\nprimary\n');
  t.match(messages().at(-1), /^Hook exited gracefully \(pid=\d+, cmd=\[.*\/hook role test; rm -rf \/ init primary\]\)\.$/);
});

t.test('no exec configured runs nothing', async (t) => {
  const { log, records } = memoryLogger();
  const runner = new HookRunner(log);
  runner.run(null, ['connect', 'test']);
  runner.run('', ['connect', 'test']);
  await runner.settled();
  t.same(records, []);
});

t.test('a failing hook is logged with its exit code and output', async (t) => {
  const dir = t.testdir();
  const hook = script(dir, 'hook', 'echo "cannot reach nfsd" >&2; exit 3');
  const { log, records } = memoryLogger();
  const runner = new HookRunner(log);
  runner.run(hook, ['disconnect', 'test']);
  await runner.settled();
  const last = records.at(-1)!;
  t.equal(last['level'], 50);
  t.match(last['msg'], /^Hook exited ungracefully \(pid=\d+, exitcode=3, cmd=\[.*\/hook disconnect test\]\)\.$/);
  t.equal(last['output'], 'cannot reach nfsd');
});

t.test('a killed hook is reported with the signal', async (t) => {
  const dir = t.testdir();
  const hook = script(dir, 'hook', 'kill -KILL $$');
  const { log, messages } = memoryLogger();
  const runner = new HookRunner(log);
  runner.run(hook, ['syncdone', 'test']);
  await runner.settled();
  t.match(messages().at(-1), /^Hook was killed \(pid=\d+, signal=SIGKILL, cmd=\[.*\/hook syncdone test\]\)\.$/);
});

t.test('a long-running hook is reported, never killed', async (t) => {
  const dir = t.testdir();
  const hook = script(dir, 'hook', 'sleep 0.5; echo done');
  const { log, messages } = memoryLogger();
  const runner = new HookRunner(log, 100);
  runner.run(hook, ['syncstart', 'test']);
  await runner.settled();
  const reports = messages().filter((m) => m.startsWith('Hook is running for'));
  t.ok(reports.length >= 2, `reported ${reports.length} times`);
  t.match(messages().at(-1), /^Hook exited gracefully/);
});

t.test('a hook that cannot be executed is logged, not thrown', async (t) => {
  const { log, messages } = memoryLogger();
  const runner = new HookRunner(log);
  runner.run('/nonexistent/hook', ['connect', 'test']);
  await runner.settled();
  t.equal(messages().at(-1), 'Unable to execute hook (cmd=[/nonexistent/hook connect test]).');
});
