// Gauntlet's web UI: one page whose path says what it shows.

import './style.css';
import { queryPage } from './query';
import { STATUS_SECTIONS, statusPage } from './status';

const root = document.getElementById('app') as HTMLElement;
const path = window.location.pathname;
const page = path.startsWith('/status') || STATUS_SECTIONS.includes(path.slice(1)) ? 'status' : 'query';
for (const a of document.querySelectorAll<HTMLAnchorElement>('header.nav a[data-page]')) {
  a.classList.toggle('active', a.dataset.page === page);
}
if (page === 'status') {
  document.title = 'Gauntlet · Status';
  void statusPage(root);
} else {
  document.title = 'Gauntlet · Query';
  queryPage(root);
}
