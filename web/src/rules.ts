// The rules page: every rule group from `/api/v1/rules` (name, file, interval, last
// evaluation and how long it took), each rule with its expression, labels, annotations,
// health, last error and last evaluation; filtered by a name and by health.

import { getJSON } from './api';
import {
  type Rule,
  type RuleGroup,
  annotationTable,
  badge,
  el,
  exprBlock,
  labelBadges,
  note,
  seconds,
  when,
} from './ruleview';

const HEALTHS = ['ok', 'err', 'unknown'] as const;

/** What the filters ask for: a name part (of a group or rule, case-insensitive), healths. */
interface Filter {
  text: string;
  health: Set<string>;
}

function ruleCell(r: Rule): HTMLElement {
  const td = el('td', 'rule');
  const head = el('div', 'rule-name');
  head.append(el('span', 'kind', r.type === 'alerting' ? 'alert: ' : 'record: '), el('strong', undefined, r.name));
  td.append(head, exprBlock(r.query));
  if (r.type === 'alerting') {
    const facts: string[] = [];
    if (r.duration > 0) facts.push(`for: ${seconds(r.duration)}`);
    if (r.keepFiringFor) facts.push(`keep_firing_for: ${seconds(r.keepFiringFor)}`);
    if (facts.length) td.append(el('div', 'rule-facts', facts.join('  ')));
  }
  if (r.labels && Object.keys(r.labels).length) td.append(labelBadges(r.labels));
  if (r.type === 'alerting' && r.annotations && Object.keys(r.annotations).length) {
    td.append(annotationTable(r.annotations));
  }
  return td;
}

function groupSection(g: RuleGroup, rules: Rule[]): HTMLElement {
  const s = el('section', 'status rule-group');
  s.dataset.group = g.name;
  s.append(el('h2', undefined, g.name));
  const facts = el('table', 'kv group-facts');
  const rows: [string, string][] = [
    ['File', g.file],
    ['Interval', seconds(g.interval)],
    ['Last evaluation', when(g.lastEvaluation)],
    ['Evaluation time', seconds(g.evaluationTime)],
  ];
  if (g.limit) rows.push(['Limit', String(g.limit)]);
  if (g.partialResponseStrategy) rows.push(['Partial response', g.partialResponseStrategy]);
  for (const [k, v] of rows) {
    const tr = facts.insertRow();
    tr.append(el('th', undefined, k));
    tr.insertCell().textContent = v;
  }
  const t = el('table', 'results rules');
  const head = t.createTHead().insertRow();
  for (const h of ['Rule', 'Health', 'Last error', 'Last evaluation', 'Evaluation time']) {
    head.append(el('th', undefined, h));
  }
  const body = t.createTBody();
  for (const r of rules) {
    const tr = body.insertRow();
    tr.dataset.rule = r.name;
    tr.append(ruleCell(r));
    tr.insertCell().append(badge(r.health));
    tr.insertCell().textContent = r.lastError ?? '';
    tr.lastElementChild?.classList.add('last-error');
    tr.insertCell().textContent = when(r.lastEvaluation);
    tr.insertCell().textContent = seconds(r.evaluationTime);
  }
  const scroll = el('div', 'table-scroll');
  scroll.append(t);
  s.append(facts, scroll);
  return s;
}

/** The groups with the rules that pass `f`; a group whose own name matches keeps all of its
 * rules that pass the health filter. */
function filtered(groups: RuleGroup[], f: Filter): [RuleGroup, Rule[]][] {
  const text = f.text.trim().toLowerCase();
  const out: [RuleGroup, Rule[]][] = [];
  for (const g of groups) {
    const groupHit = text === '' || g.name.toLowerCase().includes(text);
    const rules = g.rules.filter(
      (r) => f.health.has(r.health) && (groupHit || r.name.toLowerCase().includes(text)),
    );
    if (rules.length) out.push([g, rules]);
  }
  return out;
}

function filterBar(f: Filter, onChange: () => void, counts: Record<string, number>): HTMLElement {
  const bar = el('div', 'controls rule-filters');
  const input = el('input', 'rule-search');
  input.type = 'search';
  input.placeholder = 'Filter by group or rule name';
  input.value = f.text;
  input.addEventListener('input', () => {
    f.text = input.value;
    onChange();
  });
  bar.append(input);
  for (const h of HEALTHS) {
    const label = el('label', 'health-filter');
    const box = el('input');
    box.type = 'checkbox';
    box.checked = f.health.has(h);
    box.value = h;
    box.addEventListener('change', () => {
      if (box.checked) f.health.add(h);
      else f.health.delete(h);
      onChange();
    });
    label.append(box, ` ${h} (${counts[h] ?? 0})`);
    bar.append(label);
  }
  return bar;
}

export async function rulesPage(root: HTMLElement) {
  root.replaceChildren(note('Loading…'));
  const answer = await getJSON<{ groups: RuleGroup[] }>('/api/v1/rules');
  if (!answer) {
    root.replaceChildren(note('This server lists no rules.'));
    return;
  }
  if (answer.status !== 'success' || !answer.data) {
    root.replaceChildren(note(`Listing the rules failed: ${answer.error ?? 'unknown error'}`, 'message error'));
    return;
  }
  const groups = answer.data.groups;
  const warnings = (answer.warnings ?? []).map((w) => note(w, 'message warning'));
  if (!groups.length) {
    root.replaceChildren(...warnings, note('No rule groups.'));
    return;
  }
  const counts: Record<string, number> = {};
  for (const r of groups.flatMap((g) => g.rules)) counts[r.health] = (counts[r.health] ?? 0) + 1;
  const params = new URLSearchParams(window.location.search);
  const f: Filter = {
    text: params.get('search') ?? '',
    health: new Set(params.getAll('health').length ? params.getAll('health') : HEALTHS),
  };
  const list = el('div', 'rule-groups');
  const draw = () => {
    const shown = filtered(groups, f);
    list.replaceChildren(
      ...(shown.length ? shown.map(([g, rules]) => groupSection(g, rules)) : [note('No rule matches the filter.')]),
    );
  };
  draw();
  root.replaceChildren(...warnings, filterBar(f, draw, counts), list);
}
