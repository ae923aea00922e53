/**
 * Inputs the page refuses, shown where they are: a field's reason under it (aria-invalid, its
 * aria-describedby names the message), and the run buttons disabled with the same reasons listed
 * next to them. A setting an error names after a run is highlighted and focused (flagFields).
 */
import { byId, el } from './dom';

/** Which run buttons a problem disables. */
export type ProblemScope = 'main' | 'accuracy' | 'serving' | 'model';

/** Why a run cannot start, and the field (element id) to fix. */
export interface Problem {
  field: string;
  message: string;
  blocks: ProblemScope;
}

/** Shows `message` under the field `id` and marks it invalid, or clears both (null). */
export function showFieldProblem(id: string, message: string | null): void {
  const field = byId(id);
  field.setAttribute('aria-invalid', message ? 'true' : 'false');
  field.classList.toggle('invalid', message !== null);
  const note = byId(`${id}-error`);
  note.textContent = message ?? '';
  note.hidden = message === null;
}

/** Lists the problems that keep runs disabled in `#boxId` (hidden when there are none). */
export function showBlocked(boxId: string, problems: readonly Problem[]): void {
  const box = byId(boxId);
  box.hidden = problems.length === 0;
  box.replaceChildren(
    ...(problems.length === 0
      ? []
      : [
          el('strong', {}, problems.every((p) => p.blocks === 'accuracy') ? 'Accuracy runs are disabled: ' : 'Run is disabled: '),
          el('ul', {}, ...problems.map((p) => el('li', { 'data-field': p.field }, p.message))),
        ]),
  );
}

/** The visible label text of a field (for messages that name it). */
/**
 * A run's plan while `count` of its fields are invalid: none, since the configuration still holds the
 * last valid values, which the fields no longer show.
 */
export function noPlanText(count: number): string {
  return `No plan while ${count === 1 ? 'a setting is' : `${count} settings are`} invalid (the message under each says why).`;
}

export function fieldLabel(id: string): string {
  const element = document.getElementById(id);
  if (element instanceof HTMLFieldSetElement) return element.querySelector('legend')?.textContent?.trim() ?? id;
  const label = document.querySelector(`label[for="${id}"]`);
  return label?.textContent?.trim().replace(/\s+/g, ' ') ?? id;
}

/** Fields highlighted by flagFields, until they change or the next flagging. */
let flagged: HTMLElement[] = [];

/** Removes the highlight of flagFields. */
export function clearFlags(): void {
  for (const f of flagged) f.classList.remove('flagged');
  flagged = [];
}

/**
 * Highlights the fields `ids` (an error named them), opens the disclosure that hides them, and
 * focuses the first. Each loses its highlight when it changes.
 */
export function flagFields(ids: readonly string[]): void {
  clearFlags();
  for (const id of ids) {
    const field = document.getElementById(id);
    if (!field) continue;
    const details = field.closest('details');
    if (details) details.open = true;
    field.classList.add('flagged');
    flagged.push(field);
    field.addEventListener('change', () => field.classList.remove('flagged'), { once: true });
  }
  flagged[0]?.focus();
}
