import { pendingCommand } from './command.js';

// `carp-hast recover`: recover a resource from split-brain by discarding local changes.
export const recoverCommand = pendingCommand({
  name: 'recover',
  summary: 'recover a resource from split-brain by discarding local changes.',
  usage: `usage: carp-hast recover <resource> --discard-local [--yes] [-c config]
`,
});
