import { pendingCommand } from './command.js';

// `carp-hast check-config`: placeholder until the parsers land.
export const checkConfigCommand = pendingCommand({
  name: 'check-config',
  summary: 'check hast.conf and the supervisor configuration and print the effective settings.',
  usage: 'usage: carp-hast check-config [-c hast.conf] [-s carp-hast.toml] [-n node] [--json]\n',
});
