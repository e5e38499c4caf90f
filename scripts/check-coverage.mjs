#!/usr/bin/env node
// Per-directory coverage floors on top of tap's global ones: tap only knows one threshold for the whole tree.
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';

const FLOORS = { 'src/config/': { lines: 90, branches: 90 } };

const summary = JSON.parse(readFileSync('.tap/report/coverage-summary.json', 'utf8'));
let failed = false;
for (const [prefix, floor] of Object.entries(FLOORS)) {
  const totals = { lines: [0, 0], branches: [0, 0] };
  for (const [file, entry] of Object.entries(summary)) {
    if (file === 'total' || !relative(process.cwd(), file).startsWith(prefix)) continue;
    for (const kind of Object.keys(totals)) {
      totals[kind][0] += entry[kind].covered;
      totals[kind][1] += entry[kind].total;
    }
  }
  for (const [kind, [covered, total]] of Object.entries(totals)) {
    const pct = total === 0 ? 100 : (100 * covered) / total;
    const ok = pct >= floor[kind];
    failed ||= !ok;
    console.log(`${ok ? 'ok' : 'FAIL'}: ${prefix} ${kind} coverage ${pct.toFixed(2)}% (floor ${floor[kind]}%)`);
  }
}
process.exit(failed ? 1 : 0);
