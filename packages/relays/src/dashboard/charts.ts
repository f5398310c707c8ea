import { html, type Html } from './html.ts';
import { hourMs, type Sample } from './sampler.ts';

export const chartWidth = 600;
export const chartHeight = 120;

/** The two charts of the overview. */
export type ChartName = 'throughput' | 'lag';

interface Series {
  readonly label: string;
  readonly value: (sample: Sample) => number | null;
}

const rate = (value: number) => `${value.toFixed(1)}/s`;

const charts: Record<ChartName, { readonly caption: string; readonly series: readonly Series[]; readonly format: (value: number) => string }> = {
  throughput: {
    caption: 'Throughput over the last hour, events per second: published (solid line) and delivered by the relays (dashed line)',
    series: [
      { label: 'published', value: (s) => s.published },
      { label: 'delivered', value: (s) => s.delivered },
    ],
    format: rate,
  },
  lag: {
    caption: 'Lag over the last hour: events behind, every relay together',
    series: [{ label: 'behind', value: (s) => s.lag }],
    format: (value) => `${Math.round(value)} event${Math.round(value) === 1 ? '' : 's'}`,
  },
};

/** A chart drawn: one polyline's points per series, the scale's top, and the chart in words. */
export interface ChartData {
  readonly lines: readonly string[];
  readonly max: string;
  readonly summary: string;
}

/**
 * A chart's lines over the last hour (x: time, y: value scaled to the largest of every series),
 * with its text alternative: the latest and the highest value of each series. Drawn on the server
 * only, so that the page and its live updates draw it the same way.
 */
export function chartData(name: ChartName, samples: readonly Sample[], now = Date.now()): ChartData {
  const { series, format } = charts[name];
  const values = series.map((s) => samples.map((sample) => ({ at: sample.at, value: s.value(sample) })).filter((p): p is { at: number; value: number } => p.value !== null));
  const max = Math.max(1, ...values.flat().map((p) => p.value));
  const x = (at: number) => (((at - (now - hourMs)) / hourMs) * chartWidth).toFixed(1);
  const y = (value: number) => (chartHeight - 10 - (value / max) * (chartHeight - 20)).toFixed(1);
  const lines = values.map((points) => points.map((p) => `${x(p.at)},${y(p.value)}`).join(' '));
  if (values.every((points) => points.length === 0)) return { lines, max: format(max), summary: 'Nothing measured yet.' };
  const describe = (pick: (points: { value: number }[]) => number) =>
    series.map((s, i) => (values[i]!.length === 0 ? `${s.label}: not yet` : `${format(pick(values[i]!))} ${s.label}`)).join(', ');
  return {
    lines,
    max: format(max),
    summary: `Latest: ${describe((points) => points.at(-1)!.value)}. Highest in the hour: ${describe((points) => Math.max(...points.map((p) => p.value)))}.`,
  };
}

/** The chart as inline SVG in a figure, its caption and text alternative beside it. */
export function chartFigure(name: ChartName, data: ChartData): Html {
  return html`<figure class="chart" data-chart="${name}"><figcaption id="${name}-caption">${charts[name].caption}</figcaption>
<svg viewBox="0 0 ${chartWidth} ${chartHeight + 14}" role="img" aria-labelledby="${name}-caption" aria-describedby="${name}-summary"><line x1="0" y1="${chartHeight - 10}" x2="${chartWidth}" y2="${chartHeight - 10}"/><text x="4" y="12" data-chart-max>${data.max}</text><text x="4" y="${chartHeight + 8}">1 hour ago</text><text x="${chartWidth - 4}" y="${chartHeight + 8}" text-anchor="end">now</text>${data.lines.map((points, i) => html`<polyline class="series-${i}" data-series="${i}" points="${points}"/>`)}</svg>
<p id="${name}-summary" data-chart-summary>${data.summary}</p></figure>`;
}
