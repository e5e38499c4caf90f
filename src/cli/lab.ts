import { pendingCommand } from './command.js';

// `carp-hast lab`: run a two-node cluster on this machine and fail it over.
export const labCommand = pendingCommand({
  name: 'lab',
  usage: `usage: carp-hast lab
`,
});
