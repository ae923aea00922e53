/**
 * A tiny WGSL preprocessor: fully unrolls `for` loops whose header ends with `// unroll`.
 *
 * Why: a function-scope array (per-invocation registers: accumulators, prefetched words, scores) that
 * is indexed by a loop variable is placed in local memory by some drivers when they do not unroll the
 * loop themselves (measured on an NVIDIA H200 through Dawn/Vulkan: the subgroup decode kernel ran
 * several times slower). After unrolling every index is a constant and the arrays stay in registers.
 *
 * Accepted headers (bounds are integer literals or names in `constants`):
 *   for (var i = 0u; i < NAME; i++) {  // unroll
 *   for (var r = 1u; r < NAME; r <<= 1u) {  // unroll
 *   for (var i = 0u; i < NAME; i += STEP) {  // unroll
 * Each iteration becomes a `{ … }` block with the loop variable replaced by its value, so names
 * declared in the body do not collide. Marked loops may nest; `break` and `continue` are refused.
 */

const HEADER = /for \(var (\w+) = (\w+); (\w+) < (\w+); (\w+)(\+\+| <<= (\w+)| \+= (\w+))\) \{[ \t]*\/\/ unroll[^\n]*/;

/** Upper bound on iterations of one marked loop (a typo in a bound should not explode the code). */
export const MAX_UNROLLED_ITERATIONS = 256;

function value(token: string, constants: Record<string, number>, header: string): number {
  const literal = /^(\d+)u?$/.exec(token);
  if (literal) return Number(literal[1]);
  if (token in constants) return constants[token];
  throw new Error(`unroll: unknown bound "${token}" in "${header}"`);
}

/** Index of the `}` matching the `{` at `open` (braces in // comments are ignored). */
function matchingBrace(code: string, open: number): number {
  let depth = 0;
  for (let i = open; i < code.length; i++) {
    const c = code[i];
    if (c === '/' && code[i + 1] === '/') {
      const end = code.indexOf('\n', i);
      if (end < 0) break;
      i = end;
    } else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return i;
  }
  throw new Error('unroll: unbalanced braces after a marked loop');
}

export function unrollLoops(code: string, constants: Record<string, number>): string {
  let out = '';
  let rest = code;
  for (;;) {
    const m = HEADER.exec(rest);
    if (!m) return out + rest;
    const [header, name, startToken, condName, boundToken, stepName, stepOp, shiftToken, addToken] = m;
    if (condName !== name || stepName !== name) throw new Error(`unroll: loop variable mismatch in "${header}"`);
    const close = matchingBrace(rest, m.index + header.lastIndexOf('{'));
    const body = unrollLoops(rest.slice(m.index + header.length, close), constants);
    if (/\b(break|continue)\b/.test(body.replace(/\/\/[^\n]*/g, ''))) throw new Error(`unroll: break/continue in "${header}"`);
    const start = value(startToken, constants, header);
    const bound = value(boundToken, constants, header);
    const next =
      stepOp === '++' ? (i: number) => i + 1
      : shiftToken !== undefined ? (i: number) => i << value(shiftToken, constants, header)
      : (i: number) => i + value(addToken, constants, header);
    const copies: string[] = [];
    for (let i = start; i < bound; i = next(i)) {
      if (copies.length >= MAX_UNROLLED_ITERATIONS || next(i) <= i) throw new Error(`unroll: too many iterations in "${header}"`);
      copies.push(`{${body.replace(new RegExp(`\\b${name}\\b`, 'g'), `${i}u`)}}`);
    }
    out += rest.slice(0, m.index) + `/* unrolled: ${name} < ${boundToken} */ ` + copies.join(' ');
    rest = rest.slice(close + 1);
  }
}

/**
 * Keeps or drops whole lines by a constant: between `// #if NAME` and `// #endif` (with an optional
 * `// #else`), the first part is kept when constants[NAME] is nonzero, the second otherwise; the
 * directive lines go. Why not a WGSL `if` on a const: the kernel a driver compiles then still holds
 * both paths, and measured on an NVIDIA H200 the unused int8-query path made the f32-query subgroup
 * kernel 13–16 % slower for fp16 and int4 (docs/tuning.md). Directives may nest.
 */
export function selectLines(code: string, constants: Record<string, number>): string {
  const keep: boolean[] = [];
  const out: string[] = [];
  for (const line of code.split('\n')) {
    const directive = /^\s*\/\/ #(if|else|endif)\b\s*(\w*)/.exec(line);
    if (directive) {
      const [, kind, name] = directive;
      if (kind === 'if') {
        if (!(name in constants)) throw new Error(`selectLines: unknown constant "${name}" in "${line.trim()}"`);
        keep.push(constants[name] !== 0);
      } else if (keep.length === 0) {
        throw new Error(`selectLines: "${line.trim()}" without a matching // #if`);
      } else if (kind === 'else') {
        keep[keep.length - 1] = !keep[keep.length - 1];
      } else {
        keep.pop();
      }
      continue;
    }
    if (keep.every(Boolean)) out.push(line);
  }
  if (keep.length) throw new Error('selectLines: a // #if without its // #endif');
  return out.join('\n');
}
