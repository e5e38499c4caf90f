// What `carp-hast status` shows: the supervisor's view turned into one report, printed for people or as JSON.
import { humanizeBytes } from '../common/humanize.js';
import type { EngineResourceState } from './node-ops.js';
import { assess, isCompletePrimary, isCompleteSecondary } from './reconcile.js';
import type { SupervisorView } from './supervisor.js';
import type { TransitionRecord } from './transition.js';

// How many transitions the text report lists (JSON has them all).
const SHOWN_TRANSITIONS = 5;

// The status report, also the shape of `carp-hast status --json`.
export interface StatusReport {
  node: string;
  pid: number;
  startedAt: string;
  // When carp, actual and resources were read: a report taken while a reconcile runs shows the reading before it.
  observedAt: string | undefined;
  carp: { state: string; detail: string } | { error: string } | undefined;
  wanted: { role: string; why: string } | undefined;
  actual: string;
  decision: string | undefined;
  running: SupervisorView['running'];
  engine: { kind: string; pid: number | undefined; running: boolean; restarts: number };
  resources: {
    name: string;
    role: string;
    status: string;
    dirty: number;
    // Both nodes wrote while apart; the warnings say how to recover.
    splitBrain: boolean;
    // With splitBrain, the bytes this node and the peer changed since they parted; null when unknown (always
    // with FreeBSD's hastd, which reports split-brain only in its log).
    localChanges: number | null;
    peerChanges: number | null;
    device: string;
    mounted: string;
  }[];
  services: { name: string; status: string }[];
  transitions: TransitionRecord[];
  warnings: string[];
}

// Builds the report from the supervisor's view and what the daemon knows about itself.
export function buildStatusReport(
  view: SupervisorView,
  self: { node: string; pid: number; startedAt: string; engine: StatusReport['engine'] },
): StatusReport {
  const snapshot = view.snapshot;
  const assessment = snapshot === undefined ? undefined : assess(snapshot);
  let actual = 'unknown (not read yet)';
  if (assessment !== undefined) {
    if (isCompletePrimary(assessment)) actual = 'primary';
    else if (isCompleteSecondary(assessment)) actual = 'secondary';
    else {
      // What is stale, what it still holds and what a primary would lack; a role gap is in both lists.
      const gaps = new Set([...assessment.stale, ...assessment.secondaryGaps, ...assessment.primaryGaps]);
      actual = `in between: ${[...gaps].join(', ')}`;
    }
  }
  let carp: StatusReport['carp'];
  if (snapshot?.carp !== undefined) carp = { state: snapshot.carp.state, detail: snapshot.carp.detail };
  else if (snapshot?.carpError !== undefined) carp = { error: snapshot.carpError };
  else if (snapshot !== undefined) carp = { state: 'unknown', detail: 'not readable on this node (no vhids or vip); following carp-hast-switch' };
  return {
    ...self,
    observedAt: view.observedAt,
    carp,
    wanted: view.wanted,
    actual,
    decision: view.decision === undefined ? undefined : `${view.decision.action}: ${view.decision.reason}`,
    running: view.running,
    resources: (snapshot?.resources ?? []).map((r) => ({
      name: r.name,
      role: r.engine?.role ?? 'unknown',
      status: resourceStatus(r.engine),
      dirty: r.engine?.dirty ?? 0,
      splitBrain: r.engine?.splitBrain ?? false,
      localChanges: r.engine?.localChanges ?? null,
      peerChanges: r.engine?.peerChanges ?? null,
      device: r.device ?? '-',
      mounted: r.pool !== undefined ? (r.poolImported ? `pool ${r.pool}` : '-') : (r.mountpoint !== undefined && r.mountedFrom !== undefined ? r.mountpoint : '-'),
    })),
    services: (snapshot?.services ?? []).map((s) => ({
      name: s.name,
      status: s.error !== undefined ? 'unknown' : s.running === undefined ? 'not checked' : s.running ? 'running' : 'stopped',
    })),
    transitions: view.history,
    warnings: view.warnings,
  };
}

// The Status column: the engine's, except that split-brain is shown however the supervisor learned of it.
function resourceStatus(engine: EngineResourceState | undefined): string {
  if (engine?.error !== undefined) return `error: ${engine.error}`;
  if (engine?.splitBrain === true) return 'split-brain';
  return engine?.status ?? '-';
}

// The report as text for a person.
export function formatStatusReport(report: StatusReport): string {
  const lines: string[] = [];
  lines.push(`carp-hast supervisor on ${report.node} (pid ${report.pid}, up since ${report.startedAt})`);
  let carp = 'not read yet';
  if (report.carp !== undefined) carp = 'error' in report.carp ? `unreadable: ${report.carp.error}` : report.carp.detail;
  lines.push(`  CARP:     ${carp}`);
  lines.push(`  wanted:   ${report.wanted === undefined ? 'unknown' : `${report.wanted.role} (${report.wanted.why})`}`);
  lines.push(`  actual:   ${report.actual}`);
  const engine = report.engine;
  // An engine the supervisor adopted (it was running before) has no child pid here.
  let engineState = 'not running';
  if (engine.running) engineState = engine.pid === undefined ? 'running' : `running, pid ${engine.pid}`;
  lines.push(`  engine:   ${engine.kind}, ${engineState}, ${engine.restarts} restart${engine.restarts === 1 ? '' : 's'}`);
  if (report.running !== undefined) {
    lines.push(`  now:      ${report.running.direction} since ${report.running.startedAt}: ${report.running.reason}`);
  }
  lines.push('');
  lines.push(...table(['Resource', 'Role', 'Status', 'Dirty', 'Device', 'Mounted'], report.resources.map((r) => [
    r.name, r.role, r.status, humanizeBytes(r.dirty), r.device, r.mounted,
  ])));
  if (report.services.length > 0) {
    lines.push('');
    lines.push(...table(['Service', 'Status'], report.services.map((s) => [s.name, s.status])));
  }
  if (report.transitions.length > 0) {
    lines.push('', 'Last transitions:');
    for (const t of report.transitions.slice(0, SHOWN_TRANSITIONS)) lines.push(...formatTransition(t));
  }
  if (report.warnings.length > 0) {
    lines.push('', 'Warnings:');
    for (const warning of report.warnings) lines.push(`  ! ${warning}`);
  }
  return `${lines.join('\n')}\n`;
}

function formatTransition(t: TransitionRecord): string[] {
  const head = `  ${t.startedAt}  ${t.direction} ${t.outcome} in ${t.durationMs} ms: ${t.reason}`;
  const steps = t.steps.map((s) => {
    const detail = s.detail === undefined ? '' : ` (${s.detail})`;
    const failed = s.outcome === 'done' ? '' : ` ${s.outcome.toUpperCase()}`;
    return `      ${s.name} ${s.target}: ${s.durationMs} ms${failed}${detail}`;
  });
  return [head, ...steps, ...(t.error !== undefined && t.steps.length === 0 ? [`      ${t.error}`] : [])];
}

function table(header: string[], rows: string[][]): string[] {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => (row[i] ?? '').length)));
  const line = (cells: string[]) => `  ${cells.map((c, i) => c.padEnd(widths[i] ?? 0)).join('  ')}`.trimEnd();
  return [line(header), ...rows.map(line)];
}
