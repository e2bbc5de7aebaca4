// Gauntlet's HTTP API as Prometheus defines it: the answer envelope and the result types.

export type Labels = Record<string, string>;
export type SamplePair = [number, string];

/** A native histogram as the API encodes it. */
export interface Histogram {
  count: string;
  sum: string;
  buckets?: [number, string, string, string][];
}
export type HistogramPair = [number, Histogram];

export interface InstantSeries {
  metric: Labels;
  value?: SamplePair;
  histogram?: HistogramPair;
}

export interface RangeSeries {
  metric: Labels;
  values?: SamplePair[];
  histograms?: HistogramPair[];
}

/** One exemplar: its own labels (a trace ID, say), value and time (Unix seconds). */
export interface Exemplar {
  labels: Labels;
  value: string;
  timestamp: number;
}

/** The exemplars of one series, as `/api/v1/query_exemplars` answers them. */
export interface ExemplarSeries {
  seriesLabels: Labels;
  exemplars: Exemplar[];
}

export type QueryData =
  | { resultType: 'vector'; result: InstantSeries[]; stats?: QueryStats }
  | { resultType: 'matrix'; result: RangeSeries[]; stats?: QueryStats }
  | { resultType: 'scalar'; result: SamplePair; stats?: QueryStats }
  | { resultType: 'string'; result: SamplePair; stats?: QueryStats };

/** Query statistics, under `data` when the server is asked for them (`stats=all`). */
export interface QueryStats {
  samples?: { totalQueryableSamples?: number; peakSamples?: number };
  timings?: Record<string, number>;
}

export interface Answer<T> {
  status: 'success' | 'error';
  data?: T;
  errorType?: string;
  error?: string;
  warnings?: string[];
  infos?: string[];
}

/** What one request gave back: the answer (or the failure) and how long it took, ms. */
export interface Outcome<T> {
  answer: Answer<T>;
  elapsedMs: number;
}

/** Calls `path` with form-encoded `params` by POST, as Prometheus's UI does. */
export async function call<T>(path: string, params: Record<string, string>): Promise<Outcome<T>> {
  const started = performance.now();
  let answer: Answer<T>;
  try {
    const res = await fetch(path, {
      method: 'POST',
      headers: { 'Content-Type': 'application/x-www-form-urlencoded' },
      body: new URLSearchParams(params).toString(),
    });
    const text = await res.text();
    try {
      answer = JSON.parse(text) as Answer<T>;
    } catch {
      answer = {
        status: 'error',
        errorType: `HTTP ${res.status}`,
        error: text.trim() || res.statusText,
      };
    }
  } catch (e) {
    answer = { status: 'error', errorType: 'network', error: String(e) };
  }
  return { answer, elapsedMs: performance.now() - started };
}

/** A GET of a JSON endpoint; null when the server does not serve it. */
export async function getJSON<T>(path: string): Promise<Answer<T> | null> {
  try {
    const res = await fetch(path);
    if (res.status === 404) {
      return null;
    }
    return (await res.json()) as Answer<T>;
  } catch {
    return null;
  }
}

/** `name{a="b", c="d"}` as Prometheus prints a series. */
export function formatSeries(metric: Labels): string {
  const name = metric.__name__ ?? '';
  const pairs = Object.keys(metric)
    .filter((k) => k !== '__name__')
    .sort()
    .map((k) => `${k}=${JSON.stringify(metric[k])}`);
  if (pairs.length === 0) {
    return name === '' ? '{}' : name;
  }
  return `${name}{${pairs.join(', ')}}`;
}
