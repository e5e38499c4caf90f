import { EX_CONFIG, EX_OSFILE } from '../common/sysexits.js';
import { ExitError } from '../common/errors.js';

// Where in a configuration file something was found; line and column count from 1.
export interface SourcePosition {
  file: string;
  line: number;
  col: number;
}

// A configuration that cannot be used: printed as `FILE:LINE:COL: message`, exit 78 (72 if unreadable).
export class ConfigError extends ExitError {
  readonly position: SourcePosition | undefined;
  readonly detail: string;

  constructor(detail: string, position?: SourcePosition, options?: ErrorOptions & { unreadable?: boolean }) {
    super(ConfigError.format(detail, position), options?.unreadable ? EX_OSFILE : EX_CONFIG, options);
    this.name = 'ConfigError';
    this.position = position;
    this.detail = detail;
  }

  static format(detail: string, position?: SourcePosition): string {
    if (position === undefined) return detail;
    return `${position.file}:${position.line}:${position.col}: ${detail}`;
  }
}
