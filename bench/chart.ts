/** One line of a panel: resumption rate (0..100) over seconds since the first rotation began. */
export interface Series {
  label: string;
  points: { t: number; rate: number }[];
  /** Seconds after the first rotation began at which the last one ended. */
  rotationsEndAt: number;
}

export interface Panel {
  title: string;
  series: Series[];
}

const COLORS = ['#1a7f37', '#d1590f', '#6f42c1', '#0969da'];
const WIDTH = 760;
const PANEL_HEIGHT = 230;
const MARGIN = { left: 64, right: 16, top: 34, bottom: 64 };

const escape = (text: string): string => text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');

/**
 * Resumption rate over time, one panel per fleet, one line per strategy, with a bar under the
 * plot for the span in which each strategy's rotations ran: a plain SVG that GitHub and
 * browsers show as it is.
 */
export function renderChart(panels: Panel[], bucket: string): string {
  const legendHeight = 28;
  const height = legendHeight + panels.length * PANEL_HEIGHT;
  const labels = [...new Set(panels.flatMap((panel) => panel.series.map((series) => series.label)))];
  const color = (label: string): string => COLORS[labels.indexOf(label) % COLORS.length] as string;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
  ];
  let legendX = MARGIN.left;
  for (const label of labels) {
    parts.push(`<line x1="${legendX}" y1="16" x2="${legendX + 24}" y2="16" stroke="${color(label)}" stroke-width="3"/>`);
    parts.push(`<text x="${legendX + 30}" y="20">${escape(label)}</text>`);
    legendX += 30 + label.length * 7 + 24;
  }
  panels.forEach((panel, index) => {
    const top = legendHeight + index * PANEL_HEIGHT;
    const plotTop = top + MARGIN.top;
    const plotHeight = PANEL_HEIGHT - MARGIN.top - MARGIN.bottom;
    const plotWidth = WIDTH - MARGIN.left - MARGIN.right;
    const times = panel.series.flatMap((series) => series.points.map((point) => point.t));
    const minT = Math.min(0, ...times);
    const maxT = Math.max(1, ...times);
    const x = (t: number): number => MARGIN.left + ((t - minT) / (maxT - minT)) * plotWidth;
    const y = (rate: number): number => plotTop + (1 - rate / 100) * plotHeight;
    parts.push(`<text x="${MARGIN.left}" y="${top + 22}" font-weight="bold">${escape(panel.title)}</text>`);
    parts.push(`<text x="${MARGIN.left - 6}" y="${plotTop + plotHeight + 30}" text-anchor="end" fill="#666">rotating</text>`);
    panel.series.forEach((series, row) => {
      const barY = plotTop + plotHeight + 22 + row * 5;
      parts.push(`<rect x="${x(0).toFixed(1)}" y="${barY}" width="${(x(series.rotationsEndAt) - x(0)).toFixed(1)}" height="3" fill="${color(series.label)}"/>`);
    });
    for (const rate of [0, 25, 50, 75, 100]) {
      parts.push(`<line x1="${MARGIN.left}" y1="${y(rate).toFixed(1)}" x2="${WIDTH - MARGIN.right}" y2="${y(rate).toFixed(1)}" stroke="#ddd"/>`);
      parts.push(`<text x="${MARGIN.left - 6}" y="${(y(rate) + 4).toFixed(1)}" text-anchor="end">${rate}%</text>`);
    }
    const step = maxT - minT > 40 ? 10 : 5;
    for (let t = Math.ceil(minT / step) * step; t <= maxT; t += step) {
      parts.push(`<text x="${x(t).toFixed(1)}" y="${plotTop + plotHeight + 16}" text-anchor="middle">${t}s</text>`);
    }
    parts.push(
      `<text x="${MARGIN.left + plotWidth / 2}" y="${plotTop + plotHeight + 56}" text-anchor="middle" fill="#666">seconds since the first rotation began; resumed / resumption attempts per ${bucket}</text>`,
    );
    for (const series of panel.series) {
      const path = series.points.map((point) => `${x(point.t).toFixed(1)},${y(point.rate).toFixed(1)}`).join(' ');
      parts.push(`<polyline fill="none" stroke="${color(series.label)}" stroke-width="2" points="${path}"/>`);
    }
  });
  parts.push('</svg>');
  return `${parts.join('\n')}\n`;
}

export interface BarGroup {
  label: string;
  /** One value per series, in the order of `series`. */
  values: number[];
}

/**
 * Grouped bars (one group per label, one bar per series) with horizontal reference lines, such
 * as a time limit: a plain SVG like the one above.
 */
export function renderBars(title: string, unit: string, series: string[], groups: BarGroup[], references: { value: number; label: string }[] = []): string {
  const height = 320;
  const plot = { left: MARGIN.left, right: WIDTH - MARGIN.right, top: MARGIN.top + 24, bottom: height - 48 };
  const top = Math.max(...groups.flatMap((group) => group.values), ...references.map((reference) => reference.value)) * 1.1;
  const y = (value: number): number => plot.bottom - ((plot.bottom - plot.top) * value) / top;
  const groupWidth = (plot.right - plot.left) / groups.length;
  const barWidth = (groupWidth * 0.7) / series.length;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${WIDTH}" height="${height}" viewBox="0 0 ${WIDTH} ${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="${WIDTH}" height="${height}" fill="#ffffff"/>`,
    `<text x="${plot.left}" y="20" font-weight="bold">${escape(title)}</text>`,
  ];
  let legendX = plot.left;
  series.forEach((name, index) => {
    parts.push(`<rect x="${legendX}" y="30" width="14" height="10" fill="${COLORS[index % COLORS.length]}"/>`);
    parts.push(`<text x="${legendX + 20}" y="40">${escape(name)}</text>`);
    legendX += 20 + name.length * 7 + 24;
  });
  for (let tick = 0; tick <= 4; tick++) {
    const value = (top / 1.1) * (tick / 4);
    parts.push(`<line x1="${plot.left}" y1="${y(value)}" x2="${plot.right}" y2="${y(value)}" stroke="#eeeeee"/>`);
    parts.push(`<text x="${plot.left - 6}" y="${y(value) + 4}" text-anchor="end">${Math.round(value)}</text>`);
  }
  parts.push(`<text x="14" y="${(plot.top + plot.bottom) / 2}" transform="rotate(-90 14 ${(plot.top + plot.bottom) / 2})" text-anchor="middle">${escape(unit)}</text>`);
  groups.forEach((group, groupIndex) => {
    const x0 = plot.left + groupIndex * groupWidth + groupWidth * 0.15;
    group.values.forEach((value, index) => {
      parts.push(`<rect x="${x0 + index * barWidth}" y="${y(value)}" width="${barWidth - 2}" height="${plot.bottom - y(value)}" fill="${COLORS[index % COLORS.length]}"/>`);
      parts.push(`<text x="${x0 + index * barWidth + barWidth / 2 - 1}" y="${y(value) - 4}" text-anchor="middle" font-size="10">${Math.round(value)}</text>`);
    });
    parts.push(`<text x="${plot.left + groupIndex * groupWidth + groupWidth / 2}" y="${plot.bottom + 18}" text-anchor="middle">${escape(group.label)}</text>`);
  });
  for (const reference of references) {
    parts.push(`<line x1="${plot.left}" y1="${y(reference.value)}" x2="${plot.right}" y2="${y(reference.value)}" stroke="#cf222e" stroke-dasharray="6 4"/>`);
    parts.push(`<text x="${plot.right}" y="${y(reference.value) - 4}" text-anchor="end" fill="#cf222e">${escape(reference.label)}</text>`);
  }
  parts.push(`<line x1="${plot.left}" y1="${plot.bottom}" x2="${plot.right}" y2="${plot.bottom}" stroke="#333333"/>`, '</svg>');
  return `${parts.join('\n')}\n`;
}
