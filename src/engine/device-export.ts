import { join } from 'node:path';
import { describeError } from '../common/errors.js';
import type { Logger } from '../common/log.js';
import type { BlockDevice } from './block-device.js';
import { ChunkedDevice } from './chunked-device.js';
import { HastDevice } from './hast-device.js';
import { NbdServer } from './nbd-server.js';

// How the engine exports a primary's device: always over NBD, and as /dev/hast/<name> where it can.
export interface ExportPolicy {
  runDir: string;
  // Why /dev/hast/<name> cannot be made here, or undefined when it can.
  attachUnavailable: string | undefined;
}

// A primary resource's device made reachable: the NBD socket `<run-dir>/<name>.nbd` (any NBD client: qemu-io,
// nbdcopy, fio) and, when root on Linux, /dev/hast/<name>. Both exist only while the resource is primary.
export class DeviceExport {
  readonly socketPath: string;
  readonly hastDevice: HastDevice | undefined;
  private readonly server: NbdServer;

  private constructor(socketPath: string, server: NbdServer, hastDevice: HastDevice | undefined) {
    this.socketPath = socketPath;
    this.server = server;
    this.hastDevice = hastDevice;
  }

  // Serves `device` as export `name` (also the default export) and attaches it if the policy allows.
  static async start(name: string, device: BlockDevice, policy: ExportPolicy, log: Logger): Promise<DeviceExport> {
    const socketPath = join(policy.runDir, `${name}.nbd`);
    const entry = { name, device: new ChunkedDevice(device), description: `HAST resource ${name}` };
    const server = await NbdServer.listen(socketPath, (wanted) => (wanted === name || wanted === '' ? entry : undefined), log, {
      defaultExport: name,
      listExports: () => [entry],
    });
    log.info(`Serving NBD export ${name} on ${socketPath}.`);
    if (policy.attachUnavailable !== undefined) return new DeviceExport(socketPath, server, undefined);
    try {
      const hastDevice = await HastDevice.attach({ name, socket: socketPath, runDir: policy.runDir, log });
      return new DeviceExport(socketPath, server, hastDevice);
    } catch (error) {
      log.error(`Unable to create /dev/hast/${name}; the NBD export still serves: ${describeError(error)}`);
      return new DeviceExport(socketPath, server, undefined);
    }
  }

  // Removes /dev/hast/<name>, then closes the NBD socket once requests in flight are answered.
  async close(): Promise<void> {
    await this.hastDevice?.detach();
    await this.server.close();
  }
}
