// Gauntlet's web UI: one page whose path says what it shows.

import './style.css';
import { getJSON } from './api';
import { alertsPage } from './alerts';
import { queryPage } from './query';
import { rulesPage } from './rules';
import { STATUS_SECTIONS, statusPage } from './status';

type Page = 'query' | 'status' | 'rules' | 'alerts';

const root = document.getElementById('app') as HTMLElement;
const path = window.location.pathname;

/** The page a path names; `/` is the query page, or the alerts page on a server without one. */
function pageOf(path: string): Page | null {
  if (path === '/rules') return 'rules';
  if (path === '/alerts') return 'alerts';
  if (path.startsWith('/status') || STATUS_SECTIONS.includes(path.slice(1))) return 'status';
  if (path === '/') return null;
  return 'query';
}

function show(page: Page) {
  for (const a of document.querySelectorAll<HTMLAnchorElement>('header.nav a[data-page]')) {
    a.classList.toggle('active', a.dataset.page === page);
  }
  const titles: Record<Page, string> = { query: 'Query', status: 'Status', rules: 'Rules', alerts: 'Alerts' };
  document.title = `Gauntlet · ${titles[page]}`;
  if (page === 'status') void statusPage(root);
  else if (page === 'rules') void rulesPage(root);
  else if (page === 'alerts') void alertsPage(root);
  else queryPage(root);
}

// A ruler serves the rules and alerts pages but has no query API and no status endpoints:
// their links go, and its `/` shows the alerts.
const served = getJSON<Record<string, string>>('/api/v1/status/buildinfo').then((b) => b !== null);
void served.then((hasQuery) => {
  if (hasQuery) return;
  for (const a of document.querySelectorAll<HTMLAnchorElement>('header.nav a[data-page]')) {
    if (a.dataset.page === 'query' || a.dataset.page === 'status') a.remove();
  }
  document.querySelector<HTMLAnchorElement>('header.nav a.brand')?.setAttribute('href', '/alerts');
});
const named = pageOf(path);
if (named) show(named);
else void served.then((hasQuery) => show(hasQuery ? 'query' : 'alerts'));
