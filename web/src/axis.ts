// The graph's time axis, as Prometheus's graph draws it: ticks one "nice" step apart (1, 2, 5,
// 10, 15, 30 s; 1, 2, 5, 10, 15, 30 min; 1, 2, 3, 6, 12 h; 1, 2, 7 d, …), the smallest step
// that keeps labels far enough apart for their measured width, and each label written for its
// step (HH:MM for minute and hour steps, the date where a day begins). Times are UTC, as the
// page's inputs are.

import type uPlot from 'uplot';

/** Font of the axis labels; the spacing is measured in it. */
export const AXIS_FONT = '12px system-ui, -apple-system, "Segoe UI", Roboto, sans-serif';

/** The fewest CSS px between two ticks, however narrow their labels are. */
const MIN_SPACING_PX = 80;

/** Free CSS px between two labels beside their own width. */
const LABEL_GAP_PX = 24;

const MINUTE = 60;
const HOUR = 3600;
const DAY = 86400;

/** The steps a tick may take, in seconds, smallest first. */
export const TIME_STEPS = [
  1, 2, 5, 10, 15, 30,
  MINUTE, 2 * MINUTE, 5 * MINUTE, 10 * MINUTE, 15 * MINUTE, 30 * MINUTE,
  HOUR, 2 * HOUR, 3 * HOUR, 6 * HOUR, 12 * HOUR,
  DAY, 2 * DAY, 7 * DAY, 14 * DAY, 30 * DAY, 91 * DAY, 182 * DAY, 365 * DAY,
];

const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

const pad = (n: number) => String(n).padStart(2, '0');

/** The label of the tick at `t` (Unix seconds) on an axis `step` seconds apart. */
export function tickLabel(t: number, step: number): string {
  const d = new Date(t * 1000);
  const date = `${MONTHS[d.getUTCMonth()]} ${d.getUTCDate()}`;
  if (step >= DAY || t % DAY === 0) {
    return date;
  }
  const hm = `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}`;
  return step < MINUTE ? `${hm}:${pad(d.getUTCSeconds())}` : hm;
}

/** Tick times (Unix seconds) in [min, max], on whole multiples of `step` since the epoch. */
export function tickTimes(min: number, max: number, step: number): number[] {
  const ticks = [];
  for (let t = Math.ceil(min / step) * step; t <= max; t += step) {
    ticks.push(t);
  }
  return ticks;
}

let measurer: CanvasRenderingContext2D | null = null;

/** Width of `text` in the axis font, CSS px. */
export function labelWidth(text: string): number {
  measurer ??= document.createElement('canvas').getContext('2d');
  if (!measurer) {
    // No 2D context (a canvas-less environment): assume 7 px a character.
    return text.length * 7;
  }
  measurer.font = AXIS_FONT;
  return measurer.measureText(text).width;
}

/** The fewest CSS px between ticks: the widest label (one with seconds) and a gap. */
function minSpacing(): number {
  return Math.max(MIN_SPACING_PX, Math.ceil(labelWidth('00:00:00')) + LABEL_GAP_PX);
}

/** One label as drawn: its text, its centre and its width, CSS px from the plot's left edge. */
export interface DrawnTick {
  label: string;
  center: number;
  width: number;
}

/**
 * The x axis options for a time scale in Unix seconds. uPlot picks the smallest of
 * `TIME_STEPS` whose ticks are at least `minSpacing()` apart on the plot's width; `drawn`
 * is called after each draw with the labels as they stand.
 */
export function timeAxis(drawn: (u: uPlot, ticks: DrawnTick[]) => void): {
  axis: uPlot.Axis;
  draw: (u: uPlot) => void;
} {
  let last: { splits: number[]; labels: string[] } = { splits: [], labels: [] };
  const axis: uPlot.Axis = {
    font: AXIS_FONT,
    space: () => minSpacing(),
    incrs: TIME_STEPS,
    splits: (_u, _i, min, max, step) => tickTimes(min, max, step),
    values: (_u, splits, _i, _space, step) => {
      const labels = splits.map((t) => tickLabel(t, step));
      last = { splits, labels };
      return labels;
    },
  };
  const draw = (u: uPlot) =>
    drawn(
      u,
      last.splits.map((t, i) => ({
        label: last.labels[i],
        center: u.valToPos(t, 'x'),
        width: labelWidth(last.labels[i]),
      })),
    );
  return { axis, draw };
}

/** The y axis options: as wide as its widest label, so that no label is cut at the left. */
export function valueAxis(): uPlot.Axis {
  return {
    font: AXIS_FONT,
    size: (_u, values) =>
      Math.max(40, ...(values ?? []).map((v) => Math.ceil(labelWidth(String(v))) + LABEL_GAP_PX)),
  };
}
