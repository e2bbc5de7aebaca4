// Range query results drawn with uPlot: one line per series on the query's step grid, stacked
// or not, with a legend naming each series by its labels.

import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import { type ExemplarSeries, type RangeSeries, formatSeries } from './api';
import { type DrawnTick, timeAxis, valueAxis } from './axis';
import { formatTime } from './time';

const COLORS = [
  '#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd',
  '#8c564b', '#e377c2', '#7f7f7f', '#bcbd22', '#17becf',
];

export interface GraphRange {
  startMs: number;
  endMs: number;
  stepMs: number;
}

/** Values of `s` on the grid, null where it has none; a native histogram counts as its count. */
function alignedValues(s: RangeSeries, r: GraphRange, points: number): (number | null)[] {
  const ys: (number | null)[] = new Array(points).fill(null);
  const put = (t: number, v: number) => {
    const i = Math.round((t * 1000 - r.startMs) / r.stepMs);
    if (i >= 0 && i < points) {
      ys[i] = v;
    }
  };
  for (const [t, v] of s.values ?? []) {
    put(t, parseFloat(v));
  }
  for (const [t, h] of s.histograms ?? []) {
    put(t, parseFloat(h.count));
  }
  return ys;
}

/** An exemplar where the graph draws it: time (s), value, and its labels with its series'. */
interface DrawnExemplar {
  t: number;
  v: number;
  labels: string;
  series: string;
}

/** Draws `series` into `parent`, replacing what was there, with each of `exemplars` as a
 * diamond at its time and value; returns the plot to destroy later. */
export function drawGraph(
  parent: HTMLElement,
  series: RangeSeries[],
  r: GraphRange,
  stacked: boolean,
  exemplars: ExemplarSeries[] = [],
): uPlot {
  parent.replaceChildren();
  const points = Math.floor((r.endMs - r.startMs) / r.stepMs) + 1;
  const xs = Array.from({ length: points }, (_, i) => (r.startMs + i * r.stepMs) / 1000);
  const raw = series.map((s) => alignedValues(s, r, points));
  let shown = raw;
  if (stacked) {
    const sums = new Array(points).fill(0);
    shown = raw.map((ys) =>
      ys.map((y, i) => {
        if (y === null || !Number.isFinite(y)) {
          return null;
        }
        sums[i] += y;
        return sums[i];
      }),
    );
  }
  // What the legend shows away from the cursor: each series' last value on the grid.
  const lastValues = raw.map((ys) => {
    for (let i = ys.length - 1; i >= 0; i--) {
      if (ys[i] !== null) return ys[i];
    }
    return null;
  });
  const marks: DrawnExemplar[] = exemplars.flatMap((s) =>
    s.exemplars
      .map((e) => ({
        t: e.timestamp,
        v: parseFloat(e.value),
        labels: formatSeries(e.labels),
        series: formatSeries(s.seriesLabels),
      }))
      .filter((e) => Number.isFinite(e.v) && e.t * 1000 >= r.startMs && e.t * 1000 <= r.endMs),
  );
  const width = Math.max(parent.clientWidth, 400);
  const { axis: xAxis, draw: drawnAxis } = timeAxis((u: uPlot, ticks: DrawnTick[]) => {
    // The time axis is drawn on the canvas; its labels and where they stand are kept on the
    // plot's element too, for whoever reads the page without the picture.
    u.root.dataset.xTicks = JSON.stringify(ticks);
  });
  const opts: uPlot.Options = {
    width,
    height: 360,
    cursor: { drag: { x: true, y: false } },
    scales: { x: { time: true } },
    // The page reads and writes times in UTC; the axis and the legend say them the same way.
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), 'Etc/UTC'),
    axes: [xAxis, valueAxis()],
    hooks: { draw: [drawnAxis, (u: uPlot) => drawExemplars(u, marks)] },
    legend: { show: true, live: true },
    series: [
      {
        value: (_u: uPlot, v: number | null) => (v === null ? '' : `${formatTime(v * 1000)} UTC`),
      },
      ...series.map((s, i) => {
        const color = COLORS[i % COLORS.length];
        const histogram = (s.histograms?.length ?? 0) > 0 && (s.values?.length ?? 0) === 0;
        return {
          label: formatSeries(s.metric) + (histogram ? ' (histogram count)' : ''),
          stroke: color,
          width: 1.5,
          fill: stacked ? color + '55' : undefined,
          spanGaps: false,
          points: { show: points < 60 },
          // The legend shows each series' own value, stacked or not: the one under the
          // cursor, or else the last one.
          value: (_u: uPlot, _v: number | null, sidx: number, didx: number | null) => {
            const y = didx === null ? lastValues[sidx - 1] : raw[sidx - 1][didx];
            return y === null ? '' : String(y);
          },
        } as uPlot.Series;
      }),
    ],
  };
  if (marks.length > 0) {
    // The value scale takes in the exemplars too, so none is drawn outside the plot.
    const lo = Math.min(...marks.map((m) => m.v));
    const hi = Math.max(...marks.map((m) => m.v));
    opts.scales = {
      ...opts.scales,
      y: {
        range: (_u: uPlot, min: number | null, max: number | null) =>
          uPlot.rangeNum(Math.min(min ?? lo, lo), Math.max(max ?? hi, hi), 0.1, true),
      },
    };
  }
  if (stacked && series.length > 1) {
    // Each stacked area fills down to the one below it, not to zero.
    opts.bands = series.slice(1).map((_, i) => ({ series: [i + 2, i + 1] as [number, number] }));
  }
  return new uPlot(opts, [xs, ...shown] as uPlot.AlignedData, parent);
}

/** Draws each exemplar as a small diamond over the lines, and keeps where each stands (CSS px
 * within the plot area) on the plot's element for whoever reads the page without the picture. */
function drawExemplars(u: uPlot, marks: DrawnExemplar[]) {
  const ctx = u.ctx;
  const ratio = window.devicePixelRatio || 1;
  const drawn = marks.map((m) => {
    const x = u.valToPos(m.t, 'x', true);
    const y = u.valToPos(m.v, 'y', true);
    ctx.save();
    ctx.fillStyle = '#d6336c';
    ctx.strokeStyle = '#fff';
    ctx.lineWidth = ratio;
    const d = 5 * ratio;
    ctx.beginPath();
    ctx.moveTo(x, y - d);
    ctx.lineTo(x + d, y);
    ctx.lineTo(x, y + d);
    ctx.lineTo(x - d, y);
    ctx.closePath();
    ctx.fill();
    ctx.stroke();
    ctx.restore();
    return { ...m, x: u.valToPos(m.t, 'x'), y: u.valToPos(m.v, 'y') };
  });
  u.root.dataset.exemplars = JSON.stringify(drawn);
}
