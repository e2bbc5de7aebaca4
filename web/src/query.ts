// The query page: panels, each an expression and either a table of the instant query's answer
// or a graph of the range query's, with the answer's stats, errors, warnings and infos. The
// page's URL holds every panel in the parameters Prometheus's own links use (`g0.expr`,
// `g0.tab`, `g0.range_input`, …, `g1.expr`, …), so a link from either opens here.

import type uPlot from 'uplot';
import {
  type Answer,
  type ExemplarSeries,
  type Histogram,
  type InstantSeries,
  type Outcome,
  type QueryData,
  type RangeSeries,
  call,
  formatSeries,
} from './api';
import { createEditor, type Editor } from './editor';
import { type GraphRange, drawGraph } from './graph';
import { formatDuration, formatTime, parseDuration, parseTime } from './time';

type Tab = 'table' | 'graph';

/** The page's settings, as read from and written to the URL. */
interface PanelState {
  expr: string;
  tab: Tab;
  range: string;
  end: string;
  moment: string;
  step: string;
  stacked: boolean;
  exemplars: boolean;
}

function readPanel(params: URLSearchParams, i: number): PanelState {
  const get = (name: string) => params.get(`g${i}.${name}`);
  const tab = get('tab');
  return {
    expr: get('expr') ?? '',
    // Prometheus's links say 0 for the graph and 1 for the table.
    tab: tab === '0' || tab === 'graph' ? 'graph' : 'table',
    range: get('range_input') ?? '1h',
    end: get('end_input') ?? '',
    moment: get('moment_input') ?? '',
    step: get('step_input') ?? '',
    stacked: get('stacked') === '1',
    // Prometheus's name for the graph's exemplars switch.
    exemplars: get('show_exemplars') === '1',
  };
}

/** The panels a URL names (`g0.…`, `g1.…`, in order of their numbers); one empty panel if none. */
function readPanels(params: URLSearchParams): PanelState[] {
  const numbers = new Set<number>();
  for (const key of params.keys()) {
    const m = /^g(\d+)\./.exec(key);
    if (m) numbers.add(parseInt(m[1], 10));
  }
  const sorted = [...numbers].sort((a, b) => a - b);
  return sorted.length === 0 ? [readPanel(params, 0)] : sorted.map((i) => readPanel(params, i));
}

function writePanels(panels: PanelState[]) {
  const p = new URLSearchParams();
  panels.forEach((s, i) => {
    const set = (name: string, value: string) => p.set(`g${i}.${name}`, value);
    set('expr', s.expr);
    set('tab', s.tab === 'graph' ? '0' : '1');
    set('range_input', s.range);
    if (s.end !== '') set('end_input', s.end);
    if (s.moment !== '') set('moment_input', s.moment);
    if (s.step !== '') set('step_input', s.step);
    if (s.stacked) set('stacked', '1');
    if (s.exemplars) set('show_exemplars', '1');
  });
  const path = window.location.pathname === '/graph' ? '/graph' : '/query';
  history.replaceState(null, '', `${path}?${p.toString()}`);
}

function el<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  attrs: Record<string, string> = {},
  ...children: (Node | string)[]
): HTMLElementTagNameMap[K] {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    e.setAttribute(k, v);
  }
  e.append(...children);
  return e;
}

export function queryPage(root: HTMLElement) {
  const panels: { state: PanelState; element: HTMLElement }[] = [];
  const list = el('div', { class: 'panels' });
  const addButton = el('button', { class: 'add-panel' }, 'Add panel');
  root.replaceChildren(list, addButton);
  const save = () => writePanels(panels.map((p) => p.state));
  const add = (state: PanelState, focus: boolean) => {
    const entry = { state, element: el('section', { class: 'panel' }) };
    panels.push(entry);
    list.append(entry.element);
    const remove = () => {
      panels.splice(panels.indexOf(entry), 1);
      entry.element.remove();
      save();
    };
    queryPanel(entry.element, state, save, remove, focus);
  };
  readPanels(new URLSearchParams(window.location.search)).forEach((s, i) => add(s, i === 0));
  addButton.onclick = () => {
    add(readPanel(new URLSearchParams(), 0), true);
    save();
  };
}

/** One panel in `root`, showing and changing `state`; `save` writes the URL after a change. */
function queryPanel(
  root: HTMLElement,
  state: PanelState,
  save: () => void,
  remove: () => void,
  focus: boolean,
) {
  let plot: uPlot | null = null;

  const editorBox = el('div', { class: 'editor expr' });
  const runButton = el('button', { class: 'primary execute' }, 'Execute');
  const formatButton = el('button', { class: 'format', title: 'Format expression' }, 'Format');
  const removeButton = el('button', { class: 'remove', title: 'Remove this panel' }, '×');
  const tableTab = el('button', { class: 'tab tab-table' }, 'Table');
  const graphTab = el('button', { class: 'tab tab-graph' }, 'Graph');
  const moment = el('input', { class: 'moment', placeholder: 'evaluation time (now)', size: '22' });
  moment.value = state.moment;
  const range = el('input', { class: 'range', size: '6' });
  range.value = state.range;
  const end = el('input', { class: 'end', placeholder: 'end (now)', size: '22' });
  end.value = state.end;
  const step = el('input', { class: 'step', placeholder: 'res. (s)', size: '8' });
  step.value = state.step;
  const stacked = el('input', { class: 'stacked', type: 'checkbox' });
  stacked.checked = state.stacked;
  const showExemplars = el('input', { class: 'show-exemplars', type: 'checkbox' });
  showExemplars.checked = state.exemplars;
  const tableControls = el('div', { class: 'controls table-controls' }, 'Evaluation time ', moment);
  const shorter = el('button', { class: 'shorter', title: 'Shorter range' }, '−');
  const longer = el('button', { class: 'longer', title: 'Longer range' }, '+');
  const earlier = el('button', { class: 'earlier', title: 'Move back by the range' }, '«');
  const later = el('button', { class: 'later', title: 'Move forward by the range' }, '»');
  const graphControls = el(
    'div',
    { class: 'controls graph-controls' },
    'Range ', shorter, range, longer, ' End ', earlier, end, later, ' Resolution ', step, ' ',
    el('label', {}, stacked, ' stacked'),
    ' ',
    el('label', {}, showExemplars, ' exemplars'),
  );
  const messages = el('div', { class: 'messages' });
  const stats = el('div', { class: 'stats' });
  const output = el('div', { class: 'output' });

  root.replaceChildren(
    el('div', { class: 'expr-row' }, editorBox, formatButton, runButton, removeButton),
    el('div', { class: 'tabs' }, tableTab, graphTab),
    tableControls, graphControls, messages, stats, output,
  );
  removeButton.onclick = () => {
    plot?.destroy();
    remove();
  };

  const editor: Editor = createEditor(editorBox, state.expr, () => void execute());

  const showTab = () => {
    tableTab.classList.toggle('active', state.tab === 'table');
    graphTab.classList.toggle('active', state.tab === 'graph');
    tableControls.hidden = state.tab !== 'table';
    graphControls.hidden = state.tab !== 'graph';
  };
  tableTab.onclick = () => { state.tab = 'table'; showTab(); void execute(); };
  graphTab.onclick = () => { state.tab = 'graph'; showTab(); void execute(); };
  runButton.onclick = () => void execute();
  formatButton.onclick = () => void format();
  stacked.onchange = () => void execute();
  showExemplars.onchange = () => void execute();
  // The range steps through round durations; the end moves by one range, and past now it
  // follows now again.
  const stepRange = (dir: 1 | -1) => {
    const current = parseDuration(range.value) ?? 3600 * 1000;
    const next = dir > 0
      ? RANGE_STEPS.find((r) => r > current) ?? current
      : [...RANGE_STEPS].reverse().find((r) => r < current) ?? current;
    range.value = formatDuration(next);
    void execute();
  };
  const moveEnd = (dir: 1 | -1) => {
    const rangeMs = parseDuration(range.value) ?? 3600 * 1000;
    const at = (parseTime(end.value) ?? Date.now()) + dir * rangeMs;
    end.value = at >= Date.now() ? '' : formatTime(at);
    void execute();
  };
  shorter.onclick = () => stepRange(-1);
  longer.onclick = () => stepRange(1);
  earlier.onclick = () => moveEnd(-1);
  later.onclick = () => moveEnd(1);
  for (const input of [moment, range, end, step]) {
    input.onkeydown = (e) => { if (e.key === 'Enter') void execute(); };
  }
  showTab();

  function showMessages(answer: Answer<unknown>) {
    const items: { text: string; severity: 'error' | 'warning' | 'info' }[] = [];
    if (answer.status === 'error') {
      items.push({ text: answer.error ?? 'unknown error', severity: 'error' });
    }
    for (const w of answer.warnings ?? []) items.push({ text: w, severity: 'warning' });
    for (const i of answer.infos ?? []) items.push({ text: i, severity: 'info' });
    messages.replaceChildren(
      ...items.map((m) => {
        const kind = m.severity === 'error' && answer.errorType ? `${answer.errorType}: ` : '';
        return el('div', { class: `message ${m.severity}` }, `${kind}${m.text}`);
      }),
    );
    editor.mark(items);
  }

  function showStats(o: Outcome<QueryData>, extra: string) {
    const parts: string[] = [];
    const data = o.answer.data;
    if (data && (data.resultType === 'vector' || data.resultType === 'matrix')) {
      parts.push(`Series: ${data.result.length}`);
    }
    const samples = data?.stats?.samples?.totalQueryableSamples;
    if (samples !== undefined) parts.push(`Samples: ${samples}`);
    parts.push(`Load time: ${Math.round(o.elapsedMs)} ms`);
    if (extra) parts.push(extra);
    stats.textContent = parts.join(' · ');
  }

  function fail(text: string) {
    showMessages({ status: 'error', errorType: 'bad input', error: text });
    stats.textContent = '';
    output.replaceChildren();
  }

  // The server's multi-line form of the expression (as Prometheus's UI formats it) replaces
  // the text; an expression that does not parse keeps its text and shows the error.
  async function format() {
    const o = await call<string>('/api/v1/format_query', { query: editor.value() });
    if (o.answer.status === 'success' && typeof o.answer.data === 'string') {
      editor.set(o.answer.data);
      state.expr = o.answer.data;
      save();
      messages.replaceChildren();
      editor.mark([]);
    } else {
      showMessages(o.answer);
    }
  }

  // Only the latest run draws: an answer that arrives after a newer run started is dropped.
  let runs = 0;

  async function execute() {
    const run = ++runs;
    state.expr = editor.value();
    state.moment = moment.value.trim();
    state.range = range.value.trim();
    state.end = end.value.trim();
    state.step = step.value.trim();
    state.stacked = stacked.checked;
    state.exemplars = showExemplars.checked;
    save();
    plot?.destroy();
    plot = null;
    if (state.expr.trim() === '') {
      messages.replaceChildren();
      stats.textContent = '';
      output.replaceChildren();
      return;
    }
    output.replaceChildren(el('div', { class: 'loading' }, 'Loading…'));
    if (state.tab === 'table') {
      const at = parseTime(state.moment);
      if (at === null) return fail(`cannot read the evaluation time ${JSON.stringify(state.moment)}`);
      const o = await call<QueryData>('/api/v1/query', {
        query: state.expr,
        time: (at / 1000).toString(),
        stats: 'all',
      });
      if (run !== runs) return;
      showMessages(o.answer);
      showStats(o, '');
      output.replaceChildren(o.answer.data ? table(o.answer.data) : '');
    } else {
      const rangeMs = parseDuration(state.range);
      if (rangeMs === null) return fail(`cannot read the range ${JSON.stringify(state.range)}`);
      const endMs = parseTime(state.end);
      if (endMs === null) return fail(`cannot read the end time ${JSON.stringify(state.end)}`);
      let stepMs = state.step === '' ? null : parseDuration(state.step);
      if (state.step !== '' && stepMs === null) {
        return fail(`cannot read the resolution ${JSON.stringify(state.step)}`);
      }
      // Prometheus's UI asks for about 250 points when no resolution is given.
      stepMs ??= Math.max(Math.floor(rangeMs / 250 / 1000), 1) * 1000;
      const startMs = endMs - rangeMs;
      const o = await call<QueryData>('/api/v1/query_range', {
        query: state.expr,
        start: (startMs / 1000).toString(),
        end: (endMs / 1000).toString(),
        step: (stepMs / 1000).toString(),
        stats: 'all',
      });
      if (run !== runs) return;
      showMessages(o.answer);
      showStats(o, `Resolution: ${formatDuration(stepMs)}`);
      const data = o.answer.data;
      if (data?.resultType === 'matrix') {
        const box = el('div', { class: 'graph' });
        output.replaceChildren(
          el('div', { class: 'range-note' }, `${formatTime(startMs)} to ${formatTime(endMs)} UTC`),
          box,
        );
        if (data.result.length === 0) {
          box.append(el('div', { class: 'empty' }, 'Empty query result'));
        } else {
          if (data.result.length > MAX_GRAPHED) {
            output.prepend(el('div', { class: 'message warning' },
              `Drawing the first ${MAX_GRAPHED} of ${data.result.length} series; narrow the query to see the rest.`));
          }
          const window = { startMs, endMs, stepMs };
          const exemplars = state.exemplars ? await fetchExemplars(state.expr, window) : [];
          if (run !== runs) return;
          plot = drawGraph(box, data.result.slice(0, MAX_GRAPHED), window, state.stacked, exemplars);
          if (state.exemplars) output.append(exemplarList(exemplars));
        }
      } else {
        output.replaceChildren();
      }
    }
  }

  if (state.expr !== '') {
    void execute();
  } else if (focus) {
    editor.view.focus();
  }
}

/** The ranges the − and + buttons step through, ms. */
const RANGE_STEPS = [
  '1m', '5m', '15m', '30m', '1h', '2h', '6h', '12h', '1d', '2d', '1w', '2w', '4w', '8w', '26w', '1y',
].map((d) => parseDuration(d) as number);

/** Most rows a table shows and series a graph draws: more would stall the browser. */
const MAX_ROWS = 10000;
const MAX_GRAPHED = 1000;

/** The exemplars of the series `expr` selects over the graph's window; none when the call fails
 * (the graph is still drawn; the list says why). */
async function fetchExemplars(expr: string, r: GraphRange): Promise<ExemplarSeries[]> {
  const o = await call<ExemplarSeries[]>('/api/v1/query_exemplars', {
    query: expr,
    start: (r.startMs / 1000).toString(),
    end: (r.endMs / 1000).toString(),
  });
  return o.answer.status === 'success' ? (o.answer.data ?? []) : [];
}

/** The exemplars drawn on the graph as a list: time, value, their series and own labels. */
function exemplarList(series: ExemplarSeries[]): HTMLElement {
  const rows = series.flatMap((s) =>
    s.exemplars.map((e) =>
      el('tr', {},
        el('td', {}, `${formatTime(e.timestamp * 1000)} UTC`),
        el('td', {}, e.value),
        el('td', {}, formatSeries(s.seriesLabels)),
        el('td', { class: 'exemplar-labels' }, formatSeries(e.labels)),
      ),
    ),
  );
  const summary = el('summary', {}, `${rows.length} exemplar${rows.length === 1 ? '' : 's'}`);
  if (rows.length === 0) return el('details', { class: 'exemplars' }, summary);
  return el('details', { class: 'exemplars' }, summary,
    el('table', { class: 'exemplars' },
      el('thead', {}, el('tr', {}, el('th', {}, 'time'), el('th', {}, 'value'), el('th', {}, 'series'), el('th', {}, 'exemplar'))),
      el('tbody', {}, ...rows),
    ),
  );
}

/** An instant query's answer as rows of series labels and value. */
function table(data: QueryData): HTMLElement {
  const rows: [string, string | Node][] = [];
  switch (data.resultType) {
    case 'vector':
      for (const s of data.result) rows.push([formatSeries(s.metric), instantValue(s)]);
      break;
    case 'matrix':
      for (const s of data.result) rows.push([formatSeries(s.metric), rangeValues(s)]);
      break;
    case 'scalar':
    case 'string':
      rows.push([data.resultType, data.result[1]]);
      break;
  }
  if (rows.length === 0) {
    return el('div', { class: 'empty' }, 'Empty query result');
  }
  const body = el('tbody');
  for (const [series, value] of rows.slice(0, MAX_ROWS)) {
    body.append(el('tr', {}, el('td', { class: 'series' }, series), el('td', { class: 'value' }, value)));
  }
  const t = el('table', { class: 'results' },
    el('thead', {}, el('tr', {}, el('th', {}, 'Series'), el('th', {}, 'Value'))), body);
  if (rows.length <= MAX_ROWS) {
    return t;
  }
  return el('div', {},
    el('div', { class: 'message warning' },
      `Showing the first ${MAX_ROWS} of ${rows.length} series; narrow the query to see the rest.`),
    t);
}

/** A bucket's bounds as an interval: which ends are open is the API's boundary rule. */
function bucketRange([rule, lower, upper]: [number, string, string, string]): string {
  const left = rule === 1 || rule === 3 ? '[' : '(';
  const right = rule === 0 || rule === 3 ? ']' : ')';
  return `${left}${lower}, ${upper}${right}`;
}

/** A native histogram: its count and sum, with its buckets one click away. */
function histogramValue(h: Histogram): HTMLElement {
  const buckets = h.buckets ?? [];
  const list = el('table', { class: 'buckets' });
  for (const b of buckets) {
    list.append(el('tr', {}, el('td', {}, bucketRange(b)), el('td', {}, b[3])));
  }
  return el('details', { class: 'histogram' },
    el('summary', {}, `histogram: count ${h.count}, sum ${h.sum}, ${buckets.length} buckets`),
    list);
}

function instantValue(s: InstantSeries): string | Node {
  if (s.value) return s.value[1];
  if (s.histogram) return histogramValue(s.histogram[1]);
  return '';
}

function rangeValues(s: RangeSeries): string {
  const lines = (s.values ?? []).map(([t, v]) => `${v} @${t}`);
  for (const [t, h] of s.histograms ?? []) {
    lines.push(`histogram: count ${h.count}, sum ${h.sum} @${t}`);
  }
  return lines.join('\n');
}
