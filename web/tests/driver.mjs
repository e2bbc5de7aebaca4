// Drives Gauntlet's web UI in the system's headless Chromium and reports what each page shows,
// as JSON on stdout, for tests/web_ui.rs to check against the HTTP API.
//
//   node web/tests/driver.mjs BASE_URL ARTIFACT_DIR STEPS_JSON
//
// STEPS_JSON is a list of steps: { name, path (on BASE_URL, or a whole URL for another
// server), viewport? ({ width, height } in CSS px; 1280x900 if not given), wait (a CSS
// selector), type? (text typed into the editor after it was cleared),
// press? (keys pressed after typing, in order), click? (selectors clicked then, in order),
// waitAfter? (a selector waited for after those) }. Each step opens its page in a fresh tab,
// waits, optionally types and clicks, screenshots to ARTIFACT_DIR/NAME.png and records the
// page's contents.
// Nothing is downloaded: the browser is Debian's chromium at CHROMIUM (default
// /usr/bin/chromium), with a fresh profile directory.

import { mkdtempSync, mkdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const [base, artifacts, stepsJson] = process.argv.slice(2);
if (!base || !artifacts || !stepsJson) {
  console.error('usage: node driver.mjs BASE_URL ARTIFACT_DIR STEPS_JSON');
  process.exit(2);
}
const steps = JSON.parse(stepsJson);
mkdirSync(artifacts, { recursive: true });
const profile = mkdtempSync(join(tmpdir(), 'gauntlet-web-ui-'));
const TIMEOUT_MS = 20000;

/** What a page shows, read from the DOM: each query panel, then the status page. */
function readPage() {
  const text = (root, sel) => [...root.querySelectorAll(sel)].map((e) => e.textContent ?? '');
  const box = (e) => {
    const r = e.getBoundingClientRect();
    return { left: r.left, right: r.right, top: r.top, bottom: r.bottom };
  };
  const panels = [...document.querySelectorAll('section.panel')].map((panel) => {
    const editor = panel.querySelector('.expr .cm-content');
    return {
      editor: editor ? editor.innerText.replace(/\u00a0/g, ' ') : null,
      rows: [...panel.querySelectorAll('table.results tbody tr')].map((tr) =>
        [...tr.querySelectorAll('td')].map((td) => td.textContent ?? ''),
      ),
      errors: text(panel, '.messages .message.error'),
      warnings: text(panel, '.messages .message.warning'),
      infos: text(panel, '.messages .message.info'),
      stats: panel.querySelector('.stats')?.textContent ?? '',
      marks: [...panel.querySelectorAll('.expr .cm-lintRange, .expr .cm-lintPoint')].map((e) => ({
        class: e.className,
        text: e.textContent ?? '',
      })),
      canvases: [...panel.querySelectorAll('.graph canvas')].map((c) => ({
        width: c.width,
        height: c.height,
      })),
      // The legend's first row is the time axis.
      legend: text(panel, '.graph .u-legend .u-series .u-label').slice(1),
      legendValues: text(panel, '.graph .u-legend .u-series .u-value').slice(1),
      // The time axis's labels as drawn: text, centre and width in CSS px.
      ticks: JSON.parse(panel.querySelector('.graph .uplot')?.getAttribute('data-x-ticks') ?? '[]'),
      // The exemplars drawn (CSS px within the plot area) and the plot area's size; the list.
      exemplars: JSON.parse(panel.querySelector('.graph .uplot')?.getAttribute('data-exemplars') ?? '[]'),
      plot: (() => {
        const over = panel.querySelector('.graph .u-over');
        return over ? { width: over.clientWidth, height: over.clientHeight } : null;
      })(),
      exemplarRows: [...panel.querySelectorAll('table.exemplars tbody tr')].map((tr) =>
        [...tr.querySelectorAll('td')].map((td) => td.textContent ?? ''),
      ),
      empty: text(panel, '.empty'),
      window: panel.querySelector('.range-note')?.textContent ?? '',
      inputs: Object.fromEntries(
        ['moment', 'range', 'end', 'step'].map((c) => [c, panel.querySelector(`input.${c}`)?.value ?? '']),
      ),
    };
  });
  return {
    url: location.pathname + location.search,
    title: document.title,
    panels,
    // The first panel's readings, for pages with one.
    ...(panels[0] ?? {}),
    completions: text(document, '.cm-tooltip-autocomplete li .cm-completionLabel'),
    timeline: [...document.querySelectorAll('svg.timeline rect.block')].map((r) => r.getAttribute('data-ulid')),
    // The navigation's links, and the rules and alerts pages' contents.
    nav: text(document, 'header.nav a[data-page]'),
    ruleGroups: [...document.querySelectorAll('section.rule-group')].map((s) => ({
      name: s.dataset.group,
      facts: Object.fromEntries(
        [...s.querySelectorAll('table.group-facts tr')].map((tr) => [
          tr.querySelector('th')?.textContent ?? '',
          tr.querySelector('td')?.textContent ?? '',
        ]),
      ),
      rules: [...s.querySelectorAll('table.rules > tbody > tr')].map((tr) => ({
        name: tr.dataset.rule,
        expr: tr.querySelector('.rule-expr')?.textContent ?? '',
        labels: text(tr, '.label'),
        annotations: [...tr.querySelectorAll('table.annotations tr')].map((r) =>
          [...r.querySelectorAll('th, td')].map((c) => c.textContent ?? ''),
        ),
        health: tr.cells[1].textContent ?? '',
        lastError: tr.cells[2].textContent ?? '',
        lastEvaluation: tr.cells[3].textContent ?? '',
        evaluationTime: tr.cells[4].textContent ?? '',
      })),
    })),
    alertFilters: text(document, '.alert-filters label'),
    alertRules: [...document.querySelectorAll('details.alert-rule')].map((d) => ({
      name: d.dataset.rule,
      state: d.dataset.state,
      open: d.open,
      facts: text(d, '.rule-definition .rule-facts'),
      alerts: [...d.querySelectorAll('table.alerts > tbody > tr')].map((tr) => ({
        state: tr.cells[0].textContent ?? '',
        labels: text(tr.cells[1], '.label'),
        annotations: [...tr.cells[2].querySelectorAll('tr')].map((r) =>
          [...r.querySelectorAll('th, td')].map((c) => c.textContent ?? ''),
        ),
        activeSince: tr.cells[3].textContent ?? '',
        value: tr.cells[4].textContent ?? '',
      })),
    })),
    // Elements that user data would have made had it been taken as markup.
    injected: document.querySelectorAll('.injected').length,
    status: [...document.querySelectorAll('section.status')].map((s) => ({
      id: s.id,
      rows: [...s.querySelectorAll('tr')].map((tr) =>
        [...tr.querySelectorAll('th, td')].map((c) => c.textContent ?? ''),
      ),
      box: box(s),
      // Each table's box: the element holding the table directly, and its scroll extent.
      tables: [...s.querySelectorAll('table')].map((t) => ({
        class: t.className,
        holder: t.parentElement.className,
        holderBox: box(t.parentElement),
        holderScrollWidth: t.parentElement.scrollWidth,
        holderClientWidth: t.parentElement.clientWidth,
        holderOverflowX: getComputedStyle(t.parentElement).overflowX,
      })),
    })),
    // Where the page stands in the window.
    layout: {
      innerWidth: window.innerWidth,
      innerHeight: window.innerHeight,
      scrollX: window.scrollX,
      scrollY: window.scrollY,
      scrollWidth: document.documentElement.scrollWidth,
      clientWidth: document.documentElement.clientWidth,
    },
  };
}

const browser = await chromium.launchPersistentContext(profile, {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1280, height: 900 },
  args: [
    '--headless',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
  ],
});
const report = [];
let failed = false;
try {
  for (const step of steps) {
    const page = await browser.newPage();
    if (step.viewport) await page.setViewportSize(step.viewport);
    // Uncaught exceptions in the page; console errors apart (a refused query logs its 400).
    const pageErrors = [];
    const consoleErrors = [];
    page.on('pageerror', (e) => pageErrors.push(String(e)));
    page.on('console', (m) => {
      if (m.type() === 'error') consoleErrors.push(m.text());
    });
    const entry = { name: step.name };
    try {
      await page.goto(/^https?:/.test(step.path) ? step.path : base + step.path, { timeout: TIMEOUT_MS });
      await page.waitForSelector(step.wait, { timeout: TIMEOUT_MS });
      if (step.type !== undefined) {
        await page.click('.expr .cm-content');
        await page.keyboard.press('Control+A');
        await page.keyboard.press('Delete');
        await page.keyboard.type(step.type, { delay: 20 });
        for (const key of step.press ?? []) await page.keyboard.press(key);
      }
      for (const selector of step.click ?? []) await page.click(selector);
      if (step.waitAfter) await page.waitForSelector(step.waitAfter, { timeout: TIMEOUT_MS });
      // Let the last frame paint before the picture.
      await page.waitForTimeout(200);
      Object.assign(entry, await page.evaluate(readPage));
    } catch (e) {
      entry.failure = String(e);
      failed = true;
    }
    entry.pageErrors = pageErrors;
    entry.consoleErrors = consoleErrors;
    await page.screenshot({ path: join(artifacts, `${step.name}.png`), fullPage: true }).catch(() => {});
    report.push(entry);
    await page.close();
  }
} finally {
  await browser.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(report) + '\n');
process.exit(failed ? 1 : 0);
