import { pendingCommand } from './command.js';

// `carp-hast hastd`: the built-in HAST replication engine (hastd(8) compatible).
export const hastdCommand = pendingCommand({
  name: 'hastd',
  summary: 'the built-in HAST replication engine (hastd(8) compatible).',
  usage: `usage: carp-hast hastd [-dFh] [-c config] [-n node] [-P pidfile] [--run-dir DIR]
`,
});
