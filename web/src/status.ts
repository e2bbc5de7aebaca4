// The status page: build and runtime information, the flags the server runs with, and the
// stores a querier reads from with their health and label sets, each from its JSON endpoint.

import { getJSON } from './api';

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

export async function statusPage(root: HTMLElement) {
  root.replaceChildren(note('Loading…'));
  const [build, runtime, flags, stores] = await Promise.all([
    getJSON<Record<string, string>>('/api/v1/status/buildinfo'),
    getJSON<Record<string, unknown>>('/api/v1/status/runtimeinfo'),
    getJSON<Record<string, string>>('/api/v1/status/flags'),
    getJSON<Record<string, Store[]>>('/api/v1/stores'),
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
  if (flags?.data) {
    parts.push(section('Flags', 'flags',
      keyValueTable(Object.entries(flags.data).sort(([a], [b]) => a.localeCompare(b)))));
  }
  root.replaceChildren(...parts);
  // `/flags` and `/stores` open the status page at their section.
  const section_id = window.location.pathname.slice(1);
  if (section_id === 'flags' || section_id === 'stores') {
    document.getElementById(section_id)?.scrollIntoView();
  }
}
