/**
 * JSON and CSV downloads built from Blobs (works in every WebGPU browser: no file-system API). The
 * JSON is the library's report, the same document the CLI writes with --json; the CSV is the table
 * with full-precision numbers.
 */
import { el } from './dom';
import type { Column } from './tables';

/** RFC 4180 field: quoted when it holds a comma, quote or line break. */
function csvField(value: string): string {
  return /[",\r\n]/.test(value) ? `"${value.replaceAll('"', '""')}"` : value;
}

/** The table as CSV: a header of column keys, then raw values (empty for null). */
export function toCsv<R>(columns: Column<R>[], rows: readonly R[]): string {
  const lines = [columns.map((c) => csvField(c.key)).join(',')];
  for (const row of rows) lines.push(columns.map((c) => csvField(String(c.value(row) ?? ''))).join(','));
  return `${lines.join('\r\n')}\r\n`;
}

/** Object URLs handed out per container, revoked when the container's links are replaced. */
const issued = new WeakMap<HTMLElement, string[]>();

export interface Download {
  label: string;
  fileName: string;
  mime: string;
  text: string;
}

/** Replaces the links in `container` with one download link per entry. */
export function showDownloads(container: HTMLElement, downloads: Download[]): void {
  for (const url of issued.get(container) ?? []) URL.revokeObjectURL(url);
  const urls: string[] = [];
  const links = downloads.map((d) => {
    const url = URL.createObjectURL(new Blob([d.text], { type: d.mime }));
    urls.push(url);
    return el('a', { href: url, download: d.fileName, class: 'button-link' }, d.label);
  });
  issued.set(container, urls);
  container.replaceChildren(...links);
  container.hidden = downloads.length === 0;
}

/** A file-name stamp: 2025-01-31T12-00-00. */
export function fileStamp(date = new Date()): string {
  return date.toISOString().slice(0, 19).replaceAll(':', '-');
}
