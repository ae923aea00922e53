/**
 * The part of Vitest's API that the GPU suites use (describe, it, it.skip, beforeAll, afterAll,
 * expect with the matchers below), so that the suites themselves can be bundled into one Node file
 * and run on a GPU machine that has no node_modules (test/device/run-suites.ts; `npm run
 * device-suites`). Tests run one at a time in file order; a hook or test that throws fails.
 */
import { isDeepStrictEqual, inspect } from 'node:util';

type Fn = () => unknown;
interface Test { name: string; fn: Fn; skip: boolean }
interface Suite { name: string; tests: Test[]; suites: Suite[]; beforeAll: Fn[]; afterAll: Fn[] }

const root: Suite = { name: '', tests: [], suites: [], beforeAll: [], afterAll: [] };
let current = root;

export function describe(name: string, body: () => void): void {
  const suite: Suite = { name, tests: [], suites: [], beforeAll: [], afterAll: [] };
  current.suites.push(suite);
  const parent = current;
  current = suite;
  try {
    body();
  } finally {
    current = parent;
  }
}

export function it(name: string, fn: Fn, _timeoutMs?: number): void {
  current.tests.push({ name, fn, skip: false });
}
it.skip = (name: string, fn: Fn = () => {}, _timeoutMs?: number): void => {
  current.tests.push({ name, fn, skip: true });
};
export const test = it;

export const beforeAll = (fn: Fn): void => void current.beforeAll.push(fn);
export const afterAll = (fn: Fn): void => void current.afterAll.push(fn);

/** Suites registered so far, under a file's name (called after each suite file is imported). */
export function takeFileSuite(file: string): Suite {
  const suite: Suite = { ...root, name: file, tests: [...root.tests], suites: [...root.suites], beforeAll: [...root.beforeAll], afterAll: [...root.afterAll] };
  root.tests = [];
  root.suites = [];
  root.beforeAll = [];
  root.afterAll = [];
  return suite;
}

export interface Outcome { name: string; state: 'passed' | 'failed' | 'skipped' | 'filtered'; message?: string; ms: number }

/** Runs a suite tree; `wanted(fullName)` picks tests (the others are reported as filtered; it.skip ones as skipped). */
export async function runSuite(suite: Suite, wanted: (name: string) => boolean, report: (o: Outcome) => void, prefix = ''): Promise<void> {
  const full = (name: string) => (prefix ? `${prefix} > ${name}` : name);
  const hasWork = (s: Suite, p: string): boolean =>
    s.tests.some((t) => !t.skip && wanted(`${p} > ${t.name}`)) || s.suites.some((c) => hasWork(c, `${p} > ${c.name}`));
  const here = full(suite.name);
  if (!hasWork(suite, here)) {
    for (const t of suite.tests) report({ name: `${here} > ${t.name}`, state: t.skip ? 'skipped' : 'filtered', ms: 0 });
    for (const s of suite.suites) await runSuite(s, wanted, report, here);
    return;
  }
  let hookError: unknown;
  for (const hook of suite.beforeAll) {
    try {
      await hook();
    } catch (e) {
      hookError = e;
      break;
    }
  }
  for (const t of suite.tests) {
    const name = `${here} > ${t.name}`;
    if (t.skip || !wanted(name)) {
      report({ name, state: t.skip ? 'skipped' : 'filtered', ms: 0 });
      continue;
    }
    const start = performance.now();
    try {
      if (hookError) throw hookError;
      await t.fn();
      report({ name, state: 'passed', ms: performance.now() - start });
    } catch (e) {
      report({ name, state: 'failed', message: e instanceof Error ? e.message : String(e), ms: performance.now() - start });
    }
  }
  for (const s of suite.suites) await runSuite(s, wanted, report, here);
  for (const hook of suite.afterAll) {
    try {
      await hook();
    } catch (e) {
      report({ name: `${here} (afterAll)`, state: 'failed', message: String(e), ms: 0 });
    }
  }
}

class AssertionError extends Error {}

const show = (x: unknown) => inspect(x, { depth: 4, breakLength: Infinity, maxArrayLength: 8, maxStringLength: 300 });

function matchers(actual: unknown, message: string | undefined, negate: boolean) {
  const check = (ok: boolean, what: string) => {
    if (ok === negate) throw new AssertionError(`${message ? `${message}: ` : ''}expected ${show(actual)} ${negate ? 'not ' : ''}${what}`);
  };
  const thrown = (): unknown => {
    try {
      (actual as () => unknown)();
    } catch (e) {
      return e;
    }
    return undefined;
  };
  const matchesError = (e: unknown, expected?: unknown): boolean => {
    if (e === undefined) return false;
    if (expected === undefined) return true;
    const text = e instanceof Error ? e.message : String(e);
    if (typeof expected === 'string') return text.includes(expected);
    if (expected instanceof RegExp) return expected.test(text);
    if (typeof expected === 'function') return e instanceof (expected as new () => unknown);
    if (expected instanceof ObjectContaining) return containsSubset(e, expected.subset);
    return false;
  };
  return {
    toBe: (want: unknown) => check(Object.is(actual, want), `to be ${show(want)}`),
    toEqual: (want: unknown) => check(isDeepStrictEqual(actual, want) || looselyEqual(actual, want), `to equal ${show(want)}${firstDifference(actual, want)}`),
    toBeLessThanOrEqual: (want: number) => check((actual as number) <= want, `to be ≤ ${want}`),
    toBeLessThan: (want: number) => check((actual as number) < want, `to be < ${want}`),
    toBeGreaterThan: (want: number) => check((actual as number) > want, `to be > ${want}`),
    toBeGreaterThanOrEqual: (want: number) => check((actual as number) >= want, `to be ≥ ${want}`),
    toMatch: (want: RegExp | string) => check(typeof want === 'string' ? String(actual).includes(want) : want.test(String(actual)), `to match ${show(want)}`),
    toContain: (want: unknown) => check((actual as { includes(x: unknown): boolean }).includes(want), `to contain ${show(want)}`),
    toHaveLength: (want: number) => check((actual as { length: number }).length === want, `to have length ${want}`),
    toBeInstanceOf: (want: new () => unknown) => check(actual instanceof want, `to be an instance of ${want.name}`),
    toMatchObject: (want: object) => check(containsSubset(actual, want), `to match ${show(want)}`),
    toBeDefined: () => check(actual !== undefined, 'to be defined'),
    toBeUndefined: () => check(actual === undefined, 'to be undefined'),
    toBeNull: () => check(actual === null, 'to be null'),
    toBeTruthy: () => check(Boolean(actual), 'to be truthy'),
    toBeFalsy: () => check(!actual, 'to be falsy'),
    toThrow: (expected?: unknown) => check(matchesError(thrown(), expected), `to throw ${expected === undefined ? '' : show(expected)}`),
  };
}

/** Where two arrays first differ (for a failed toEqual of long arrays), else ''. */
function firstDifference(a: unknown, b: unknown): string {
  if (!Array.isArray(a) || !Array.isArray(b)) return '';
  const n = Math.max(a.length, b.length);
  for (let i = 0; i < n; i++) if (!Object.is(a[i], b[i])) return ` (first difference at index ${i}: ${show(a[i])} vs ${show(b[i])}; lengths ${a.length}, ${b.length})`;
  return '';
}

/** toEqual ignores undefined properties, as Vitest's does. */
function looselyEqual(a: unknown, b: unknown): boolean {
  return isDeepStrictEqual(JSON.parse(JSON.stringify(a ?? null)), JSON.parse(JSON.stringify(b ?? null)));
}

/** Whether `actual` has every property of `subset`, recursively (Vitest's toMatchObject). */
function containsSubset(actual: unknown, subset: unknown): boolean {
  if (subset instanceof ObjectContaining) return containsSubset(actual, subset.subset);
  if (subset === null || typeof subset !== 'object') return Object.is(actual, subset);
  if (actual === null || typeof actual !== 'object') return false;
  return Object.entries(subset).every(([key, value]) => containsSubset((actual as Record<string, unknown>)[key], value));
}

class ObjectContaining {
  constructor(readonly subset: object) {}
}

type Matchers = ReturnType<typeof matchers>;

export function expect(actual: unknown, message?: string): Matchers & { not: Matchers; rejects: Record<keyof Matchers, (x?: unknown) => Promise<void>> } {
  const rejects = {} as Record<keyof Matchers, (x?: unknown) => Promise<void>>;
  for (const key of Object.keys(matchers(undefined, message, false)) as (keyof Matchers)[]) {
    rejects[key] = async (x?: unknown) => {
      let error: unknown;
      let rejected = false;
      try {
        await (actual as Promise<unknown>);
      } catch (e) {
        error = e;
        rejected = true;
      }
      if (!rejected) throw new AssertionError(`${message ? `${message}: ` : ''}expected the promise to reject`);
      if (key === 'toThrow') return matchers(() => { throw error; }, message, false).toThrow(x);
      (matchers(error, message, false)[key] as (y?: unknown) => void)(x);
    };
  }
  return { ...matchers(actual, message, false), not: matchers(actual, message, true), rejects };
}
expect.objectContaining = (subset: object) => new ObjectContaining(subset);
