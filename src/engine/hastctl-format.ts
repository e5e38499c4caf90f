// hastctl(8)'s output formats (sbin/hastctl/hastctl.c), reproduced exactly because scripts parse them.

import { humanizeBytes } from '../common/humanize.js';
import type { HastMetadata } from './metadata.js';

// `hastctl dump` for one resource (dump_one()), newline-terminated.
export function formatDump(md: HastMetadata): string {
  return [
    `resource: ${md.resource}`,
    `    datasize: ${md.datasize} (${humanizeBytes(md.datasize)})`,
    `    extentsize: ${md.extentsize} (${humanizeBytes(md.extentsize)})`,
    `    keepdirty: ${md.keepdirty}`,
    `    localoff: ${md.localoff}`,
    `    resuid: ${md.resuid}`,
    `    localcnt: ${md.localcnt}`,
    `    remotecnt: ${md.remotecnt}`,
    `    prevrole: ${md.prevrole}`,
    '',
  ].join('\n');
}
