import { pendingCommand } from './command.js';

// `carp-hast switch`: asks the supervisor to make this node primary or secondary.
export const switchCommand = pendingCommand({
  name: 'switch',
  summary: 'ask the supervisor to make this node primary or secondary.',
  usage: `usage: carp-hast switch primary|secondary
`,
});
