// The status page: build and runtime information, the stores a querier reads from with their
// health and label sets, the blocks of the bucket (a table and a time line), and the flags the
// server runs with, each from its JSON endpoint.

import { getJSON } from './api';
import { formatDuration } from './time';

function section(title: string, id: string, ...body: (Node | string)[]): HTMLElement {
  const s = document.createElement('section');
  s.className = 'status';
  s.id = id;
  const h = document.createElement('h2');
  h.textContent = title;
  // A table wider than the section scrolls sideways in a box of the section's width, so
  // that neither the section nor the page grows past the window.
  s.append(h, ...body.map((b) => (b instanceof HTMLTableElement ? scrolling(b) : b)));
  return s;
}

function scrolling(table: HTMLTableElement): HTMLElement {
  const box = document.createElement('div');
  box.className = 'table-scroll';
  box.append(table);
  return box;
}

function keyValueTable(entries: [string, string][]): HTMLElement {
  const t = document.createElement('table');
  t.className = 'kv';
  for (const [k, v] of entries) {
    const tr = t.insertRow();
    const th = document.createElement('th');
    th.textContent = k;
    tr.append(th);
    tr.insertCell().textContent = v;
  }
  return t;
}

function note(text: string): HTMLElement {
  const p = document.createElement('p');
  p.className = 'empty';
  p.textContent = text;
  return p;
}

/** One StoreAPI endpoint as `/api/v1/stores` lists it (grouped by component). */
interface Store {
  name: string;
  lastError: string | null;
  labelSets: Record<string, string>[];
  minTime: number;
  maxTime: number;
}

/** A store's time bound in ms; the extremes of a 64-bit integer mean unbounded. */
function bound(ms: number): string {
  if (!Number.isFinite(ms) || Math.abs(ms) >= 8.64e15) {
    return ms < 0 ? '−∞' : '+∞';
  }
  return new Date(ms).toISOString();
}

function storesTable(groups: Record<string, Store[]>): HTMLElement {
  const t = document.createElement('table');
  t.className = 'results';
  const head = t.createTHead().insertRow();
  for (const h of ['Component', 'Endpoint', 'Health', 'Label sets', 'Min time', 'Max time', 'Last error']) {
    const th = document.createElement('th');
    th.textContent = h;
    head.append(th);
  }
  const body = t.createTBody();
  for (const [component, stores] of Object.entries(groups)) {
    for (const s of stores) {
      const tr = body.insertRow();
      tr.insertCell().textContent = component;
      tr.insertCell().textContent = s.name;
      const health = tr.insertCell();
      const up = s.lastError === null || s.lastError === undefined;
      health.textContent = up ? 'UP' : 'DOWN';
      health.className = up ? 'up' : 'down';
      tr.insertCell().textContent = s.labelSets
        .map((ls) => `{${Object.entries(ls).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ')}}`)
        .join(' ');
      // A store with no data yet says its range is empty (min above max).
      const empty = s.minTime > s.maxTime;
      tr.insertCell().textContent = !up ? '' : empty ? 'no data' : bound(s.minTime);
      tr.insertCell().textContent = !up ? '' : empty ? 'no data' : bound(s.maxTime);
      tr.insertCell().textContent = s.lastError ?? '';
    }
  }
  return t;
}

/** A block's `meta.json`, the fields the page shows. */
interface BlockMeta {
  ulid: string;
  minTime: number;
  maxTime: number;
  stats?: { numSamples?: number; numSeries?: number; numChunks?: number };
  compaction?: { level?: number };
  thanos?: {
    labels?: Record<string, string>;
    downsample?: { resolution?: number };
    source?: string;
    files?: { rel_path: string; size_bytes?: number }[];
  };
  /** Gauntlet's view of the block: served here or not, and where it stands. */
  gauntlet?: {
    served: boolean;
    compaction: string;
    downsampling: string;
    deletionMarkTime: number | null;
    pastRetention: boolean;
    /** Bytes: the sizes meta.json lists, or else what the bucket holds for the block. */
    sizeBytes?: number;
  };
}

/** One receive tenant as `/api/v1/status/tenants` lists it. */
interface Tenant {
  name: string;
  externalLabels: Record<string, string>;
  series: number;
  minTime: number | null;
  maxTime: number | null;
  samplesAppended: number;
  outOfOrderSamplesAppended: number;
  samplesRefused: number;
  ingestRate: number | null;
  headBytes: number;
  localBlocks: number;
  shippedBlocks: number;
}

/** The compactor's progress, `/api/v1/status/compactor`. */
interface Compactor {
  phase: string;
  passStartTime: number | null;
  groupsTotal: number;
  groupsDone: number;
  merging: { group: string; blocks: string[] }[];
  downsampling: string | null;
  todo: {
    computedAt: number | null;
    compactions: number;
    compactionBlocks: number;
    downsampleBlocks: number;
    retentionBlocks: number;
  };
  lastPass: {
    startTime: number;
    endTime: number;
    error: string | null;
    compacted: string[];
    downsampled: string[];
    markedForDeletion: string[];
    deleted: string[];
    halted: { group: string; reason: string }[];
    failures: string[];
  } | null;
}

function resultsTable(columns: string[], rows: string[][], className = 'results'): HTMLElement {
  const t = document.createElement('table');
  t.className = className;
  const head = t.createTHead().insertRow();
  for (const h of columns) {
    const th = document.createElement('th');
    th.textContent = h;
    head.append(th);
  }
  const body = t.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    for (const c of row) tr.insertCell().textContent = c;
  }
  return t;
}

const time = (ms: number | null) => (ms === null ? '' : new Date(ms).toISOString());

function tenantsTable(tenants: Tenant[]): HTMLElement {
  const rows = [...tenants]
    .sort((a, b) => a.name.localeCompare(b.name))
    .map((t) => [
      t.name,
      String(t.series),
      t.ingestRate === null ? 'measuring…' : `${t.ingestRate.toFixed(1)}/s`,
      String(t.samplesAppended),
      String(t.outOfOrderSamplesAppended),
      String(t.samplesRefused),
      time(t.minTime),
      time(t.maxTime),
      formatBytes(t.headBytes),
      String(t.localBlocks),
      String(t.shippedBlocks),
      formatLabels(t.externalLabels),
    ]);
  return resultsTable(['Tenant', 'Active series', 'Ingest rate', 'Samples appended',
    'Out of order', 'Refused', 'Head from', 'Head to', 'Head memory', 'Local blocks',
    'Shipped blocks', 'External labels'], rows, 'results tenants');
}

function compactorPart(c: Compactor): HTMLElement[] {
  const state: [string, string][] = [
    ['Step', c.phase],
    ['Pass started', time(c.passStartTime)],
    ['Groups done', c.groupsTotal ? `${c.groupsDone} of ${c.groupsTotal}` : ''],
    ['Merging', c.merging.map((m) => `${m.group}: ${m.blocks.join(', ')}`).join('; ')],
    ['Downsampling', c.downsampling ?? ''],
    ['Compactions left', String(c.todo.compactions)],
    ['Blocks due for compaction', String(c.todo.compactionBlocks)],
    ['Blocks due for downsampling', String(c.todo.downsampleBlocks)],
    ['Blocks past retention', String(c.todo.retentionBlocks)],
    ['Planned at', time(c.todo.computedAt)],
  ];
  const parts = [keyValueTable(state)];
  const l = c.lastPass;
  if (l) {
    const last: [string, string][] = [
      ['Last pass', `${time(l.startTime)} – ${time(l.endTime)} (${formatDuration(l.endTime - l.startTime)})`],
      ['Compacted into', l.compacted.join(', ') || 'nothing'],
      ['Downsampled into', l.downsampled.join(', ') || 'nothing'],
      ['Marked for deletion', l.markedForDeletion.join(', ') || 'nothing'],
      ['Deleted', l.deleted.join(', ') || 'nothing'],
      ['Halted groups', l.halted.map((h) => `${h.group}: ${h.reason}`).join('; ') || 'none'],
      ['Failures', [l.error, ...l.failures].filter((x) => x).join('; ') || 'none'],
    ];
    parts.push(keyValueTable(last));
  } else {
    parts.push(note('No pass has finished yet.'));
  }
  return parts;
}

function formatLabels(ls: Record<string, string> | undefined): string {
  return `{${Object.entries(ls ?? {}).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ')}}`;
}

function formatBytes(n: number): string {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(1)} ${units[i]}`;
}

const resolutionName = (ms: number | undefined) =>
  !ms ? 'raw' : ms === 300000 ? '5m' : ms === 3600000 ? '1h' : `${ms} ms`;

/** The blocks on a time line, one lane per external label set and resolution. */
function timeline(blocks: BlockMeta[]): SVGSVGElement {
  const ns = 'http://www.w3.org/2000/svg';
  const lanes = new Map<string, BlockMeta[]>();
  for (const b of blocks) {
    const key = `${formatLabels(b.thanos?.labels)} ${resolutionName(b.thanos?.downsample?.resolution)}`;
    lanes.set(key, [...(lanes.get(key) ?? []), b]);
  }
  const from = Math.min(...blocks.map((b) => b.minTime));
  const to = Math.max(...blocks.map((b) => b.maxTime));
  const width = 1000;
  const left = 260;
  const laneHeight = 26;
  const height = lanes.size * laneHeight + 24;
  const x = (t: number) => left + ((t - from) / Math.max(to - from, 1)) * (width - left - 10);
  const svg = document.createElementNS(ns, 'svg');
  svg.setAttribute('class', 'timeline');
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.setAttribute('width', '100%');
  const add = (tag: string, attrs: Record<string, string | number>, text?: string) => {
    const e = document.createElementNS(ns, tag);
    for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
    if (text !== undefined) e.textContent = text;
    svg.append(e);
    return e;
  };
  const colors = ['#4e79a7', '#f28e2b', '#59a14f', '#e15759', '#76b7b2', '#edc948'];
  [...lanes.entries()].forEach(([key, lane], i) => {
    const y = i * laneHeight + 4;
    add('text', { x: 4, y: y + 16, class: 'lane' }, key);
    for (const b of lane) {
      const level = b.compaction?.level ?? 1;
      const rect = add('rect', {
        x: x(b.minTime),
        y,
        width: Math.max(x(b.maxTime) - x(b.minTime) - 1, 1),
        height: laneHeight - 6,
        fill: colors[(level - 1) % colors.length],
        class: 'block',
        'data-ulid': b.ulid,
      });
      const title = document.createElementNS(ns, 'title');
      title.textContent = `${b.ulid} level ${level}: ${new Date(b.minTime).toISOString()} – ${new Date(b.maxTime).toISOString()}`;
      rect.append(title);
    }
  });
  const axisY = lanes.size * laneHeight + 18;
  add('text', { x: left, y: axisY, class: 'axis' }, new Date(from).toISOString());
  add('text', { x: width - 10, y: axisY, class: 'axis', 'text-anchor': 'end' }, new Date(to).toISOString());
  return svg;
}

function blocksTable(blocks: BlockMeta[]): HTMLElement {
  const columns = ['ULID', 'From', 'To', 'Duration', 'Level', 'Resolution', 'Source', 'Series',
    'Samples', 'Chunks', 'Size', 'External labels', 'Served', 'Compaction', 'Downsampling'];
  const rows = [...blocks]
    .sort((p, q) => p.minTime - q.minTime || p.ulid.localeCompare(q.ulid))
    .map((b) => {
      const listed = (b.thanos?.files ?? []).reduce((n, f) => n + (f.size_bytes ?? 0), 0);
      const size = listed > 0 ? listed : (b.gauntlet?.sizeBytes ?? 0);
      return [
        b.ulid,
        new Date(b.minTime).toISOString(),
        new Date(b.maxTime).toISOString(),
        formatDuration(b.maxTime - b.minTime),
        String(b.compaction?.level ?? ''),
        resolutionName(b.thanos?.downsample?.resolution),
        b.thanos?.source ?? '',
        String(b.stats?.numSeries ?? ''),
        String(b.stats?.numSamples ?? ''),
        String(b.stats?.numChunks ?? ''),
        size > 0 ? formatBytes(size) : '',
        formatLabels(b.thanos?.labels),
        b.gauntlet ? (b.gauntlet.served ? 'yes' : 'no') : '',
        b.gauntlet?.compaction ?? '',
        (b.gauntlet?.downsampling ?? '') + (b.gauntlet?.pastRetention ? ' (past retention)' : ''),
      ];
    });
  return resultsTable(columns, rows, 'results blocks');
}

/** The paths that show one section of the status page alone. */
export const STATUS_SECTIONS = ['flags', 'stores', 'blocks', 'tenants', 'compactor'];

/** Links to the pages of single sections, at the top of the whole status page. */
function sectionLinks(shown: HTMLElement[]): HTMLElement {
  const nav = document.createElement('nav');
  nav.className = 'sections';
  for (const s of shown) {
    if (!STATUS_SECTIONS.includes(s.id)) continue;
    const a = document.createElement('a');
    a.href = `/${s.id}`;
    a.textContent = s.querySelector('h2')?.textContent ?? s.id;
    nav.append(a);
  }
  return nav;
}

export async function statusPage(root: HTMLElement) {
  root.replaceChildren(note('Loading…'));
  const [build, runtime, flags, stores, blocks, tenants, compactor] = await Promise.all([
    getJSON<Record<string, string>>('/api/v1/status/buildinfo'),
    getJSON<Record<string, unknown>>('/api/v1/status/runtimeinfo'),
    getJSON<Record<string, string>>('/api/v1/status/flags'),
    getJSON<Record<string, Store[]>>('/api/v1/stores'),
    getJSON<{ blocks: BlockMeta[]; err: string | null }>('/api/v1/blocks'),
    getJSON<{ tenants: Tenant[] }>('/api/v1/status/tenants'),
    getJSON<Compactor>('/api/v1/status/compactor'),
  ]);
  const parts: HTMLElement[] = [];
  parts.push(
    section('Build information', 'buildinfo',
      build?.data ? keyValueTable(Object.entries(build.data)) : note('Not served here.')),
  );
  if (runtime?.data) {
    parts.push(section('Runtime information', 'runtimeinfo',
      keyValueTable(Object.entries(runtime.data).map(([k, v]) => [k, String(v)]))));
  }
  if (stores?.data) {
    const any = Object.values(stores.data).some((list) => list.length > 0);
    parts.push(section('Stores', 'stores', any ? storesTable(stores.data) : note('No stores.')));
  }
  if (tenants?.data) {
    const list = tenants.data.tenants;
    parts.push(section('Receive tenants', 'tenants',
      list.length ? tenantsTable(list) : note('No tenant has written yet.')));
  }
  if (compactor?.data) {
    parts.push(section('Compactor', 'compactor', ...compactorPart(compactor.data)));
  }
  if (blocks?.data) {
    const list = blocks.data.blocks;
    const err = blocks.data.err ? [note(`Listing the bucket failed: ${blocks.data.err}`)] : [];
    parts.push(section('Blocks', 'blocks', ...err, ...(list.length
      ? [timeline(list), blocksTable(list)]
      : [note('No blocks in the bucket yet.')])));
  }
  if (flags?.data) {
    parts.push(section('Flags', 'flags',
      keyValueTable(Object.entries(flags.data).sort(([a], [b]) => a.localeCompare(b)))));
  }
  // `/flags`, `/stores`, `/blocks`, `/tenants` and `/compactor` show their section alone, at
  // the top of the page. Scrolling the whole page down to the section once it is drawn would
  // move the view after the page loaded: whoever looks (or a screenshot taken then) finds
  // the top of the page, or a blank band where it was not painted yet.
  const only = window.location.pathname.slice(1);
  if (STATUS_SECTIONS.includes(only)) {
    const shown = parts.filter((p) => p.id === only);
    root.replaceChildren(...(shown.length ? shown : [note(`This server has no ${only} to show.`)]));
  } else {
    root.replaceChildren(sectionLinks(parts), ...parts);
  }
}
