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

interface Store {
  name: string;
  healthy: boolean;
  lastError?: string;
  labelSets: Record<string, string>[];
  minTime?: number;
  maxTime?: number;
}

export async function statusPage(root: HTMLElement) {
  root.replaceChildren(note('Loading…'));
  const [build, runtime, flags, stores] = await Promise.all([
    getJSON<Record<string, string>>('/api/v1/status/buildinfo'),
    getJSON<Record<string, unknown>>('/api/v1/status/runtimeinfo'),
    getJSON<Record<string, string>>('/api/v1/status/flags'),
    getJSON<Store[]>('/api/v1/stores'),
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
  if (flags?.data) {
    parts.push(section('Flags', 'flags',
      keyValueTable(Object.entries(flags.data).sort(([a], [b]) => a.localeCompare(b)))));
  }
  if (stores?.data) {
    const t = document.createElement('table');
    t.className = 'results';
    const head = t.createTHead().insertRow();
    for (const h of ['Endpoint', 'Health', 'Label sets', 'Min time', 'Max time', 'Last error']) {
      const th = document.createElement('th');
      th.textContent = h;
      head.append(th);
    }
    const body = t.createTBody();
    for (const s of stores.data) {
      const tr = body.insertRow();
      tr.insertCell().textContent = s.name;
      const health = tr.insertCell();
      health.textContent = s.healthy ? 'UP' : 'DOWN';
      health.className = s.healthy ? 'up' : 'down';
      tr.insertCell().textContent = s.labelSets
        .map((ls) => `{${Object.entries(ls).map(([k, v]) => `${k}=${JSON.stringify(v)}`).join(', ')}}`)
        .join(' ');
      const time = (ms?: number) => (ms === undefined ? '' : new Date(ms).toISOString());
      tr.insertCell().textContent = time(s.minTime);
      tr.insertCell().textContent = time(s.maxTime);
      tr.insertCell().textContent = s.lastError ?? '';
    }
    parts.push(section('Stores', 'stores', stores.data.length ? t : note('No stores.')));
  }
  root.replaceChildren(...parts);
}
