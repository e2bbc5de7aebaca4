// Durations and times as the query page reads and writes them.

const UNITS: [string, number][] = [
  ['y', 365 * 24 * 3600 * 1000],
  ['w', 7 * 24 * 3600 * 1000],
  ['d', 24 * 3600 * 1000],
  ['h', 3600 * 1000],
  ['m', 60 * 1000],
  ['s', 1000],
  ['ms', 1],
];

/** A Prometheus duration (`1h30m`, `5m`, `250ms`) in ms; null when it is not one. */
export function parseDuration(text: string): number | null {
  const s = text.trim();
  if (s === '') {
    return null;
  }
  if (/^\d+(\.\d+)?$/.test(s)) {
    return Math.round(parseFloat(s) * 1000);
  }
  const re = /(\d+)(ms|y|w|d|h|m|s)/y;
  let total = 0;
  let at = 0;
  while (at < s.length) {
    re.lastIndex = at;
    const m = re.exec(s);
    if (m === null) {
      return null;
    }
    const unit = UNITS.find(([u]) => u === m[2]);
    total += parseInt(m[1], 10) * (unit ? unit[1] : 0);
    at = re.lastIndex;
  }
  return total > 0 ? total : null;
}

/** ms as the shortest Prometheus duration (`1h`, `1d2h`, `90s` → `1m30s`). */
export function formatDuration(ms: number): string {
  if (ms <= 0) {
    return '0s';
  }
  let rest = ms;
  let out = '';
  for (const [unit, size] of UNITS) {
    if (rest >= size) {
      const n = Math.floor(rest / size);
      out += `${n}${unit}`;
      rest -= n * size;
    }
  }
  return out;
}

/**
 * A time typed by a person, in ms: RFC 3339, `YYYY-MM-DD HH:MM[:SS]` in UTC, or Unix seconds.
 * Empty means now; null when it is none of these.
 */
export function parseTime(text: string): number | null {
  const s = text.trim();
  if (s === '') {
    return Date.now();
  }
  if (/^\d+(\.\d+)?$/.test(s)) {
    return Math.round(parseFloat(s) * 1000);
  }
  const plain = /^(\d{4}-\d{2}-\d{2})[ T](\d{2}:\d{2}(:\d{2}(\.\d+)?)?)$/.exec(s);
  const t = Date.parse(plain ? `${plain[1]}T${plain[2]}Z` : s);
  return Number.isNaN(t) ? null : t;
}

/** ms as `YYYY-MM-DD HH:MM:SS` in UTC. */
export function formatTime(ms: number): string {
  return new Date(ms).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
}
