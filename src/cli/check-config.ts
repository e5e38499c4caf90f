import { DEFAULT_HAST_CONF, hastConfigToJson, loadHastConf, type HastConfig } from '../config/hast-conf.js';
import { localNodeIdentity, type NodeIdentity } from '../config/node-identity.js';
import {
  checkResourcesAgainstHast,
  loadSupervisorConf,
  supervisorConfigToJson,
  type SupervisorConfig,
} from '../config/supervisor-conf.js';
import { parseCommandArgs } from './args.js';
import type { Command } from './command.js';

const USAGE = `usage: carp-hast check-config [-c hast.conf] [-s carp-hast.toml] [-n node] [--json]

Parses hast.conf (default ${DEFAULT_HAST_CONF}) and, with -s, the supervisor configuration, then
prints the effective configuration for this node. With -s and without -c, hast.conf is the one
the supervisor configuration names (engine.hast_conf), and its engine.node picks the node
unless -n is given. Exit 0 when both are valid, 78 with the error otherwise.
`;

// `carp-hast check-config`: validates the configuration files and shows what this node will use.
export const checkConfigCommand: Command = {
  name: 'check-config',
  usage: USAGE,
  async run(args) {
    const { values } = parseCommandArgs(
      args,
      {
        config: { type: 'string', short: 'c' },
        supervisor: { type: 'string', short: 's' },
        node: { type: 'string', short: 'n' },
        json: { type: 'boolean' },
      },
      false,
    );
    const supervisor = values.supervisor === undefined ? undefined : await loadSupervisorConf(values.supervisor);
    const hastFile = values.config ?? supervisor?.engine.hastConf ?? DEFAULT_HAST_CONF;
    const nodeName = values.node ?? (supervisor?.engine.node || undefined);
    const identity = await localNodeIdentity(nodeName);
    const hast = await loadHastConf(hastFile, identity);
    if (supervisor !== undefined) {
      checkResourcesAgainstHast(
        supervisor,
        hast.resources.map((r) => r.name),
      );
    }
    process.stdout.write(values.json ? renderJson(hast, supervisor) : renderText(hast, supervisor, identity));
    return 0;
  },
};

function renderJson(hast: HastConfig, supervisor: SupervisorConfig | undefined): string {
  const body =
    supervisor === undefined
      ? hastConfigToJson(hast)
      : { hast: hastConfigToJson(hast), supervisor: supervisorConfigToJson(supervisor) };
  return `${JSON.stringify(body, null, 2)}\n`;
}

// The effective settings written back in each file's own syntax, so an admin can compare them with what they wrote.
function renderText(hast: HastConfig, supervisor: SupervisorConfig | undefined, identity: NodeIdentity): string {
  const node = identity.nodeName ?? identity.hostname;
  const lines = [`# ${hast.file}: effective configuration for node ${node}`, `control ${hast.control}`];
  lines.push(`pidfile ${hast.pidfile}`);
  for (const address of hast.listen) lines.push(`listen ${address}`);
  for (const r of hast.resources) {
    lines.push('', `resource ${r.name} {`);
    lines.push(`\tname ${r.provname}`, `\tlocal ${r.local}`, `\tremote ${r.remote}`);
    if (r.source !== null) lines.push(`\tsource ${r.source}`);
    lines.push(`\treplication ${r.replication}`, `\tchecksum ${r.checksum}`, `\tcompression ${r.compression}`);
    lines.push(`\ttimeout ${r.timeout}`);
    if (r.exec !== null) lines.push(`\texec ${r.exec}`);
    lines.push(`\tmetaflush ${r.metaflush ? 'on' : 'off'}`, '}');
  }
  if (supervisor !== undefined) {
    lines.push('', `# ${supervisor.file}: effective configuration`);
    lines.push(...renderToml(supervisorConfigToJson(supervisor) as Record<string, unknown>));
  }
  return `${lines.join('\n').trimEnd()}\n`;
}

// Tables, arrays of tables and scalar keys; JSON's string, number, boolean and array syntax is also TOML's.
function renderToml(document: Record<string, unknown>): string[] {
  const lines: string[] = [];
  for (const [table, value] of Object.entries(document)) {
    const tables = Array.isArray(value) ? value : [value];
    const header = Array.isArray(value) ? `[[${table}]]` : `[${table}]`;
    for (const entry of tables) {
      lines.push(header);
      for (const [key, v] of Object.entries(entry as Record<string, unknown>)) lines.push(`${key} = ${JSON.stringify(v)}`);
      lines.push('');
    }
  }
  return lines;
}
