#!/usr/bin/env node
import { runCommand } from './command.js';
import { switchCommand } from './switch.js';

// `carp-hast-switch primary|secondary`: the drop-in for the Handbook script, same arguments.
process.exitCode = await runCommand(switchCommand, process.argv.slice(2));
