/** Tiny DOM helpers for the page: typed element lookup and creation. */

/** The element with `id`, which index.html must contain. */
export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const element = document.getElementById(id);
  if (!element) throw new Error(`index.html has no element #${id}`);
  return element as T;
}

type Attrs = Record<string, string | number | boolean | undefined>;

/**
 * Creates `<tag>` with attributes (false/undefined: left out; true: present) and children.
 * @example el('button', { type: 'button', class: 'primary' }, 'Run')
 */
export function el<K extends keyof HTMLElementTagNameMap>(tag: K, attrs: Attrs = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === false) continue;
    element.setAttribute(name, value === true ? '' : String(value));
  }
  element.append(...children);
  return element;
}

/** Adds a `<dt>term</dt><dd>value</dd>` pair to a description list. */
export function addRow(list: HTMLElement, term: string, value: string | Node): void {
  list.append(el('dt', {}, term), el('dd', {}, value));
}

/** "1 token", "3 tokens": a count and its noun (English plural in -s). */
export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/**
 * Why a field reads as empty: a number input holding what is not a number (letters, say) reports ''
 * as its value, so "it is empty" would be wrong for it.
 */
export function emptyReason(field: HTMLInputElement | HTMLTextAreaElement): string {
  return field.validity?.badInput ? 'what was typed is not a number' : 'it is empty';
}
