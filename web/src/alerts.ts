// The alerts page: the alerting rules of `/api/v1/rules?type=alert`, each with its state and
// its active alerts (state, labels, expanded annotations, active since, value), counted and
// filtered by state as Prometheus's alerts page does. `/api/v1/alerts` gives the number of
// active alerts in the header.

import { getJSON } from './api';
import {
  type AlertInstance,
  type AlertingRule,
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

const STATES = ['inactive', 'pending', 'firing'] as const;

function alertsTable(alerts: AlertInstance[]): HTMLElement {
  const t = el('table', 'results alerts');
  const head = t.createTHead().insertRow();
  for (const h of ['State', 'Labels', 'Annotations', 'Active since', 'Value']) head.append(el('th', undefined, h));
  const body = t.createTBody();
  for (const a of alerts) {
    const tr = body.insertRow();
    tr.className = `alert ${a.state}`;
    tr.insertCell().append(badge(a.state));
    tr.insertCell().append(labelBadges(a.labels));
    tr.insertCell().append(annotationTable(a.annotations));
    const since = tr.insertCell();
    since.textContent = when(a.activeAt);
    if (a.keepFiringSince) since.append(el('div', 'rule-facts', `kept firing since ${when(a.keepFiringSince)}`));
    tr.insertCell().textContent = a.value;
  }
  const scroll = el('div', 'table-scroll');
  scroll.append(t);
  return scroll;
}

function ruleDetails(group: RuleGroup, r: AlertingRule): HTMLElement {
  const d = el('details', `alert-rule ${r.state}`);
  d.dataset.rule = r.name;
  d.dataset.state = r.state;
  d.open = r.state !== 'inactive';
  const alerts = r.alerts ?? [];
  const summary = el('summary');
  summary.append(
    badge(r.state),
    el('strong', 'rule-name', ` ${r.name} `),
    el('span', 'count', `(${alerts.length} active)`),
    el('span', 'group-name', ` ${group.file} > ${group.name}`),
  );
  d.append(summary);
  const def = el('div', 'rule-definition');
  def.append(exprBlock(r.query));
  const facts: string[] = [];
  if (r.duration > 0) facts.push(`for: ${seconds(r.duration)}`);
  if (r.keepFiringFor) facts.push(`keep_firing_for: ${seconds(r.keepFiringFor)}`);
  facts.push(`health: ${r.health}`);
  def.append(el('div', 'rule-facts', facts.join('  ')));
  if (r.lastError) def.append(note(r.lastError, 'message error'));
  if (r.labels && Object.keys(r.labels).length) def.append(labelBadges(r.labels));
  d.append(def);
  d.append(alerts.length ? alertsTable(alerts) : note('No active alerts.'));
  return d;
}

export async function alertsPage(root: HTMLElement) {
  root.replaceChildren(note('Loading…'));
  const [rules, active] = await Promise.all([
    getJSON<{ groups: RuleGroup[] }>('/api/v1/rules?type=alert'),
    getJSON<{ alerts: AlertInstance[] }>('/api/v1/alerts'),
  ]);
  if (!rules) {
    root.replaceChildren(note('This server lists no alerts.'));
    return;
  }
  if (rules.status !== 'success' || !rules.data) {
    root.replaceChildren(note(`Listing the alerting rules failed: ${rules.error ?? 'unknown error'}`, 'message error'));
    return;
  }
  const warnings = (rules.warnings ?? []).map((w) => note(w, 'message warning'));
  const entries: [RuleGroup, AlertingRule][] = rules.data.groups.flatMap((g) =>
    g.rules.filter((r): r is AlertingRule => r.type === 'alerting').map((r): [RuleGroup, AlertingRule] => [g, r]),
  );
  if (!entries.length) {
    root.replaceChildren(...warnings, note('No alerting rules.'));
    return;
  }
  const counts: Record<string, number> = { inactive: 0, pending: 0, firing: 0 };
  for (const [, r] of entries) counts[r.state] = (counts[r.state] ?? 0) + 1;
  const shown = new Set<string>(STATES);
  const list = el('div', 'alert-rules');
  const draw = () => {
    const items = entries.filter(([, r]) => shown.has(r.state)).map(([g, r]) => ruleDetails(g, r));
    list.replaceChildren(...(items.length ? items : [note('No alerting rule in the chosen states.')]));
  };
  const bar = el('div', 'controls alert-filters');
  for (const s of STATES) {
    const label = el('label', `state-filter ${s}`);
    const box = el('input');
    box.type = 'checkbox';
    box.checked = true;
    box.value = s;
    box.addEventListener('change', () => {
      if (box.checked) shown.add(s);
      else shown.delete(s);
      draw();
    });
    label.append(box, ` ${s[0].toUpperCase()}${s.slice(1)} (${counts[s]})`);
    bar.append(label);
  }
  const total = active?.data?.alerts?.length;
  if (total !== undefined) bar.append(el('span', 'stats active-total', `${total} active alert${total === 1 ? '' : 's'}`));
  draw();
  const section = el('section', 'status alerts-page');
  section.append(bar, list);
  root.replaceChildren(...warnings, section);
}
