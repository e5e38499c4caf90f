import { pendingCommand } from './command.js';

// `carp-hast status`: show CARP state, roles, resources and recent transitions.
export const statusCommand = pendingCommand({
  name: 'status',
  summary: 'show CARP state, roles, resources and recent transitions.',
  usage: `usage: carp-hast status [-c config] [--json]
`,
});
