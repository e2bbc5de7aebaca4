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
  s.append(h, ...body);
  return s;
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
  const t = document.createElement('table');
  t.className = 'results blocks';
  const head = t.createTHead().insertRow();
  const columns = ['ULID', 'From', 'To', 'Duration', 'Level', 'Resolution', 'Source', 'Series',
    'Samples', 'Chunks', 'Size', 'External labels'];
  for (const h of columns) {
    const th = document.createElement('th');
    th.textContent = h;
    head.append(th);
  }
  const body = t.createTBody();
  for (const b of [...blocks].sort((p, q) => p.minTime - q.minTime || p.ulid.localeCompare(q.ulid))) {
    const tr = body.insertRow();
    const size = (b.thanos?.files ?? []).reduce((n, f) => n + (f.size_bytes ?? 0), 0);
    const cells = [
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
    ];
    for (const c of cells) tr.insertCell().textContent = c;
  }
  return t;
}

export async function statusPage(root: HTMLElement) {
  root.replaceChildren(note('Loading…'));
  const [build, runtime, flags, stores, blocks] = await Promise.all([
    getJSON<Record<string, string>>('/api/v1/status/buildinfo'),
    getJSON<Record<string, unknown>>('/api/v1/status/runtimeinfo'),
    getJSON<Record<string, string>>('/api/v1/status/flags'),
    getJSON<Record<string, Store[]>>('/api/v1/stores'),
    getJSON<{ blocks: BlockMeta[] }>('/api/v1/blocks'),
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
  if (blocks?.data) {
    const list = blocks.data.blocks;
    parts.push(section('Blocks', 'blocks', ...(list.length
      ? [timeline(list), blocksTable(list)]
      : [note('No blocks in the bucket yet.')])));
  }
  if (flags?.data) {
    parts.push(section('Flags', 'flags',
      keyValueTable(Object.entries(flags.data).sort(([a], [b]) => a.localeCompare(b)))));
  }
  root.replaceChildren(...parts);
  // `/flags`, `/stores` and `/blocks` open the status page at their section.
  const section_id = window.location.pathname.slice(1);
  if (section_id === 'flags' || section_id === 'stores' || section_id === 'blocks') {
    document.getElementById(section_id)?.scrollIntoView();
  }
}
