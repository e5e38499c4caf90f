import { pendingCommand } from './command.js';

// `carp-hast hastctl`: control the replication engine (hastctl(8) compatible).
export const hastctlCommand = pendingCommand({
  name: 'hastctl',
  summary: 'control the replication engine (hastctl(8) compatible).',
  usage: `usage: carp-hast hastctl create [-d] [-c config] [-n node] [-e extentsize] [-k keepdirty]
		[-m mediasize] name ...
       carp-hast hastctl role [-d] [-c config] [-n node] <init | primary | secondary> all | name ...
       carp-hast hastctl list [-d] [-c config] [-n node] [all | name ...]
       carp-hast hastctl status [-d] [-c config] [-n node] [all | name ...]
       carp-hast hastctl dump [-d] [-c config] [-n node] [all | name ...]
`,
});
