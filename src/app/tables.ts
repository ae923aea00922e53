/**
 * Sortable result tables that fit their box. The key columns form the table a reader sees; the
 * secondary ones (`more`) go to a second table under a "More columns" disclosure, with the columns
 * that identify a row (`both`) repeated, so neither needs sideways scrolling at desktop width. The
 * first column (the method) stays in view if a box still scrolls; at phone width each row becomes a
 * card (style.css) with every cell labelled.
 *
 * Each header holds a <button> (so Tab, Enter and Space sort it) and the <th> carries aria-sort.
 * Cells keep the raw number in data-value (full precision: what sorting and the CSV export use); the
 * text is for reading. Rows carry data-row (their index in the rows given), the same in both tables.
 * Tables are re-rendered as results arrive; sort order and the disclosure's state survive that.
 */
import { el } from './dom';

export type CellValue = number | string | null;

export interface Column<R> {
  /** Stable key (CSV header, test hooks). */
  key: string;
  /** Header text: short (the title says the rest). */
  label: string;
  /** Longer explanation (header tooltip). */
  title?: string;
  value(row: R): CellValue;
  /** Display text of a value (default: the value itself, '—' for null). */
  format?(value: CellValue, row: R): string;
  /** A secondary column: shown in the "More columns" table. */
  more?: boolean;
  /** Identifies a row: shown in both tables. */
  both?: boolean;
  /** In the CSV only (the same for every row of a run, which the section says once). */
  csvOnly?: boolean;
}

export interface SortState {
  key: string;
  direction: 'ascending' | 'descending';
}

/** What survives a re-render of the same container. */
interface TableState {
  sorts: (SortState | null)[];
  moreOpen: boolean;
}

const states = new WeakMap<HTMLElement, TableState>();

/** Null last; numbers by value; strings by locale. */
function compare(a: CellValue, b: CellValue): number {
  if (a === null || b === null) return a === null ? (b === null ? 0 : 1) : -1;
  if (typeof a === 'number' && typeof b === 'number') return a - b;
  return String(a).localeCompare(String(b), undefined, { numeric: true });
}

function defaultFormat(value: CellValue): string {
  return value === null ? '—' : String(value);
}

/** One sortable table of `columns` over `rows`; `sort` is read and written through `state`. */
function buildTable<R>(caption: string, columns: Column<R>[], rows: readonly R[], state: { sort: SortState | null }): HTMLTableElement {
  // Explicit roles: the phone layout restyles the cells as cards, which drops table semantics in some browsers.
  const table = el('table', { role: 'table' }, el('caption', {}, caption));
  const headRow = el('tr', { role: 'row' });
  table.append(el('thead', { role: 'rowgroup' }, headRow));
  const body = el('tbody', { role: 'rowgroup' });
  table.append(body);

  const headers = columns.map((column) => {
    const button = el('button', { type: 'button', class: 'sort', 'data-key': column.key, title: column.title }, column.label, el('span', { class: 'sort-mark', 'aria-hidden': 'true' }));
    button.addEventListener('click', () => {
      const sort = state.sort;
      state.sort = { key: column.key, direction: sort?.key === column.key && sort.direction === 'ascending' ? 'descending' : 'ascending' };
      draw();
      button.focus();
    });
    const th = el('th', { scope: 'col', role: 'columnheader', 'data-key': column.key }, button);
    headRow.append(th);
    return th;
  });

  function draw(): void {
    const order = rows.map((row, index) => ({ row, index }));
    const sort = state.sort;
    const column = sort && columns.find((c) => c.key === sort.key);
    if (sort && column) {
      const sign = sort.direction === 'ascending' ? 1 : -1;
      order.sort((a, b) => {
        const va = column.value(a.row);
        const vb = column.value(b.row);
        // Nulls stay last in both directions.
        if (va === null || vb === null) return compare(va, vb);
        return sign * compare(va, vb);
      });
    }
    headers.forEach((th, i) => {
      const active = sort?.key === columns[i].key;
      th.setAttribute('aria-sort', active ? sort!.direction : 'none');
      th.querySelector('.sort-mark')!.textContent = active ? (sort!.direction === 'ascending' ? ' ▲' : ' ▼') : ' ↕';
    });
    body.replaceChildren(
      ...order.map(({ row, index }) =>
        el('tr', { role: 'row', 'data-row': index }, ...columns.map((c, i) => {
          const value = c.value(row);
          const text = (c.format ?? defaultFormat)(value, row);
          const attrs = {
            'data-key': c.key,
            'data-label': c.label,
            'data-value': value === null ? undefined : String(value),
            class: typeof value === 'number' ? 'num' : undefined,
          };
          return i === 0 ? el('th', { scope: 'row', role: 'rowheader', ...attrs }, text) : el('td', { role: 'cell', ...attrs }, text);
        })),
      ),
    );
  }

  draw();
  return table;
}

function region(caption: string, table: HTMLTableElement): HTMLElement {
  return el('div', { class: 'table-scroll', role: 'region', tabindex: 0, 'aria-label': caption }, table);
}

/**
 * Renders `rows` into `container` (replacing what was there): the key columns, then the `more`
 * columns in a second table under a disclosure. `initialSort` applies to the first render only.
 * @example renderTable(div, 'Accuracy by method', columns, report.methods)
 */
export function renderTable<R>(container: HTMLElement, caption: string, columns: Column<R>[], rows: readonly R[], initialSort?: SortState): void {
  const state = states.get(container) ?? { sorts: [initialSort ?? null, null], moreOpen: false };
  states.set(container, state);
  const shown = columns.filter((c) => !c.csvOnly);
  const key = shown.filter((c) => !c.more);
  const more = shown.filter((c) => c.more || c.both);
  const mainSort = { get sort() { return state.sorts[0]; }, set sort(s) { state.sorts[0] = s; } };
  const parts: HTMLElement[] = [region(caption, buildTable(caption, key, rows, mainSort))];
  if (more.length > key.filter((c) => c.both).length) {
    const moreCaption = `${caption.replace(/ \(.*\)$/, '')}: more columns`;
    const moreSort = { get sort() { return state.sorts[1]; }, set sort(s) { state.sorts[1] = s; } };
    const details = el(
      'details',
      { class: 'more-columns', open: state.moreOpen },
      el('summary', {}, `More columns: ${shown.filter((c) => c.more).map((c) => c.label).join(', ')}`),
      region(moreCaption, buildTable(moreCaption, more, rows, moreSort)),
    );
    details.addEventListener('toggle', () => (state.moreOpen = details.open));
    parts.push(details);
  }
  container.replaceChildren(...parts);
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
