import { loadHastConf } from '../config/hast-conf.js';
import { localNodeIdentity } from '../config/node-identity.js';
import {
  checkResourcesAgainstHast,
  defaultSupervisorConfPath,
  loadSupervisorConf,
  type SupervisorConfig,
} from '../config/supervisor-conf.js';

// The supervisor configuration (the default path unless named), checked against the hast.conf it names:
// every [[resource]] must be a HAST resource of this node. Throws ConfigError (exit 78, or 72 unreadable).
export async function loadCheckedSupervisorConf(file?: string): Promise<SupervisorConfig> {
  const config = await loadSupervisorConf(file ?? process.env['CARP_HAST_CONF'] ?? defaultSupervisorConfPath());
  const hast = await loadHastConf(config.engine.hastConf, await localNodeIdentity(config.engine.node));
  checkResourcesAgainstHast(
    config,
    hast.resources.map((r) => r.name),
  );
  return config;
}
