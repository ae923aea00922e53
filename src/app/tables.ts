/**
 * Sortable result tables. Each header holds a <button> (so Tab, Enter and Space sort it) and the
 * <th> carries aria-sort. Cells keep the raw number in data-value (full precision: what sorting and
 * the CSV export use); the text is for reading. Tables sit in a focusable region that scrolls
 * horizontally on narrow screens.
 */
import { el } from './dom';

export type CellValue = number | string | null;

export interface Column<R> {
  /** Stable key (CSV header, test hooks). */
  key: string;
  /** Header text. */
  label: string;
  /** Longer explanation (header tooltip and CSV-independent). */
  title?: string;
  value(row: R): CellValue;
  /** Display text of a value (default: the value itself, '—' for null). */
  format?(value: CellValue, row: R): string;
}

export interface SortState {
  key: string;
  direction: 'ascending' | 'descending';
}

/** Null last; numbers by value; strings by locale. */
function compare(a: CellValue, b: CellValue): number {
  if (a === null || b === null) return a === null ? (b === null ? 0 : 1) : -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

function defaultFormat(value: CellValue): string {
  return value === null ? '—' : String(value);
}

/**
 * Renders `rows` into `container` (replacing what was there) and returns a function that re-sorts.
 * @example renderTable(div, 'Accuracy by method', columns, report.methods)
 */
export function renderTable<R>(container: HTMLElement, caption: string, columns: Column<R>[], rows: readonly R[], initialSort?: SortState): void {
  let sort: SortState | null = initialSort ?? null;
  const table = el('table', {}, el('caption', {}, caption));
  const headRow = el('tr');
  table.append(el('thead', {}, headRow));
  const body = el('tbody');
  table.append(body);

  const headers = columns.map((column) => {
    const button = el('button', { type: 'button', class: 'sort', 'data-key': column.key, title: column.title }, column.label, el('span', { class: 'sort-mark', 'aria-hidden': 'true' }));
    button.addEventListener('click', () => {
      sort = { key: column.key, direction: sort?.key === column.key && sort.direction === 'ascending' ? 'descending' : 'ascending' };
      draw();
      button.focus();
    });
    const th = el('th', { scope: 'col' }, button);
    headRow.append(th);
    return th;
  });

  function draw(): void {
    const sorted = [...rows];
    if (sort) {
      const column = columns.find((c) => c.key === sort!.key);
      if (column) {
        const sign = sort.direction === 'ascending' ? 1 : -1;
        sorted.sort((a, b) => {
          const va = column.value(a);
          const vb = column.value(b);
          // Nulls stay last in both directions.
          if (va === null || vb === null) return compare(va, vb);
          return sign * compare(va, vb);
        });
      }
    }
    headers.forEach((th, i) => {
      const active = sort?.key === columns[i].key;
      th.setAttribute('aria-sort', active ? sort!.direction : 'none');
      th.querySelector('.sort-mark')!.textContent = active ? (sort!.direction === 'ascending' ? ' ▲' : ' ▼') : ' ↕';
    });
    body.replaceChildren(
      ...sorted.map((row) =>
        el('tr', {}, ...columns.map((c, i) => {
          const value = c.value(row);
          const text = (c.format ?? defaultFormat)(value, row);
          const attrs = { 'data-key': c.key, 'data-value': value === null ? undefined : String(value), class: typeof value === 'number' ? 'num' : undefined };
          return i === 0 ? el('th', { scope: 'row', ...attrs }, text) : el('td', attrs, text);
        })),
      ),
    );
  }

  draw();
  const region = el('div', { class: 'table-scroll', role: 'region', tabindex: 0, 'aria-label': caption }, table);
  container.replaceChildren(region);
}

/** Numbers for reading: 4 significant digits, exponent for very small or large values. */
export function formatNumber(value: CellValue, digits = 4): string {
  if (value === null) return '—';
  if (typeof value === 'string') return value;
  if (!Number.isFinite(value)) return String(value);
  if (value === 0) return '0';
  const abs = Math.abs(value);
  if (abs < 1e-3 || abs >= 1e6) return value.toExponential(2);
  return Number(value.toPrecision(digits)).toString();
}
