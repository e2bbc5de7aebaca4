// What the rules and alerts pages share: the types of `/api/v1/rules` and `/api/v1/alerts` as
// Prometheus's JSON has them, and the pieces both draw. Every text goes in through
// `textContent`: rule names, expressions, label values and annotations are the users' data
// and never become markup.

import { formatDuration } from './time';

export type LabelMap = Record<string, string>;

/** One active alert of an alerting rule. */
export interface AlertInstance {
  labels: LabelMap;
  annotations: LabelMap;
  state: 'pending' | 'firing' | 'inactive';
  activeAt: string;
  keepFiringSince?: string;
  value: string;
}

interface RuleCommon {
  name: string;
  query: string;
  labels?: LabelMap;
  health: 'ok' | 'err' | 'unknown';
  lastError?: string;
  /** Seconds the last evaluation took. */
  evaluationTime: number;
  lastEvaluation: string;
}

export interface AlertingRule extends RuleCommon {
  type: 'alerting';
  state: 'inactive' | 'pending' | 'firing';
  /** `for`, seconds. */
  duration: number;
  /** `keep_firing_for`, seconds. */
  keepFiringFor?: number;
  annotations?: LabelMap;
  alerts?: AlertInstance[] | null;
}

export interface RecordingRule extends RuleCommon {
  type: 'recording';
}

export type Rule = AlertingRule | RecordingRule;

export interface RuleGroup {
  name: string;
  file: string;
  rules: Rule[];
  /** Seconds. */
  interval: number;
  limit?: number;
  /** Seconds the group's last evaluation took. */
  evaluationTime: number;
  lastEvaluation: string;
  partialResponseStrategy?: string;
}

export function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className?: string,
  text?: string,
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  if (className) e.className = className;
  if (text !== undefined) e.textContent = text;
  return e;
}

export function note(text: string, className = 'empty'): HTMLElement {
  return el('p', className, text);
}

/** Labels as one badge each (`name="value"`), in name order. */
export function labelBadges(labels: LabelMap | undefined): HTMLElement {
  const box = el('span', 'labels');
  for (const name of Object.keys(labels ?? {}).sort()) {
    box.append(el('span', 'label', `${name}=${JSON.stringify(labels?.[name] ?? '')}`));
  }
  return box;
}

/** Annotations as a name/value table; values keep their line breaks. */
export function annotationTable(annotations: LabelMap | undefined): HTMLElement {
  const t = el('table', 'annotations');
  for (const name of Object.keys(annotations ?? {}).sort()) {
    const tr = t.insertRow();
    tr.append(el('th', undefined, name));
    tr.insertCell().textContent = annotations?.[name] ?? '';
  }
  return t;
}

/** Go's zero time, what the API gives for "never". */
function never(t: string | undefined): boolean {
  return !t || t.startsWith('0001-01-01');
}

/** An RFC 3339 time as `2026-01-02 03:04:05 (12s ago)`, or `never`. */
export function when(t: string | undefined): string {
  if (never(t)) return 'never';
  const ms = Date.parse(t as string);
  if (Number.isNaN(ms)) return t as string;
  const ago = Date.now() - ms;
  const stamp = new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
  return ago >= 0 ? `${stamp} (${formatDuration(Math.max(Math.round(ago / 1000), 0) * 1000)} ago)` : stamp;
}

/** Seconds as the pages print a duration: `1m30s`, or ms below a second (`12.3ms`). */
export function seconds(s: number | undefined): string {
  if (s === undefined || !Number.isFinite(s)) return '';
  if (s < 1) return `${(s * 1000).toFixed(3).replace(/\.?0+$/, '')}ms`;
  return formatDuration(Math.round(s * 1000));
}

/** A state or health word in its colour (`firing`, `err`, …). */
export function badge(word: string): HTMLElement {
  return el('span', `badge ${word}`, word);
}

/** The `<pre>` that shows a rule's expression. */
export function exprBlock(query: string): HTMLElement {
  return el('pre', 'rule-expr', query);
}
