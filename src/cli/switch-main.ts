#!/usr/bin/env node
import { runCommand } from './command.js';
import { hookSwitchCommand } from './switch.js';

// `carp-hast-switch primary|secondary`: the drop-in for the Handbook script, same arguments.
process.exitCode = await runCommand(hookSwitchCommand, process.argv.slice(2));
