import { pendingCommand } from './command.js';

// `carp-hast supervise`: run the failover supervisor daemon.
export const superviseCommand = pendingCommand({
  name: 'supervise',
  summary: 'run the failover supervisor daemon.',
  usage: `usage: carp-hast supervise [-c config]
`,
});
