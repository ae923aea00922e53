/**
 * A tiny WGSL preprocessor: fully unrolls `for` loops whose header ends with `// unroll` (below),
 * keeps lines by a constant (selectLines) and pastes marked functions at their calls (inlineCalls).
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

const INLINE_HEADER = /fn (\w+)\(([^)]*)\) \{[ \t]*\/\/ inline\b[^\n]*/;

/** Splits a parameter or argument list at its top-level commas (angles: `<…>` nests, as in types). */
export function splitArguments(text: string, angles = false): string[] {
  const args: string[] = [];
  let depth = 0;
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (c === '(' || c === '[' || (angles && c === '<')) depth++;
    else if (c === ')' || c === ']' || (angles && c === '>')) depth--;
    else if (c === ',' && depth === 0) {
      args.push(text.slice(start, i).trim());
      start = i + 1;
    }
  }
  const last = text.slice(start).trim();
  return last === '' && args.length === 0 ? [] : [...args, last];
}

/**
 * Pastes the bodies of functions whose header ends with `// inline` at their call sites (each call a
 * statement `name(args);`) and drops the functions. A pointer parameter takes an argument `&v`: in
 * the body `(*p)` becomes `v` and a bare `p` becomes `&v`; a value parameter is bound with `let`
 * (nothing when the argument is the parameter's own name). Marked functions return nothing and have
 * no `return`; their bodies must not use names the caller declares, other than through parameters.
 *
 * Why: on an NVIDIA H200 (Dawn/Vulkan) the matrix decode kernel's subgroup-matrix state passed to its
 * step functions by pointer (or by value) made the whole kernel 1.55× slower than the same code
 * written in the caller (docs/tuning.md, "Matrix state in the caller").
 */
export function inlineCalls(code: string): string {
  for (;;) {
    const m = INLINE_HEADER.exec(code);
    if (!m) return code;
    const [header, name, paramText] = m;
    const close = matchingBrace(code, m.index + header.lastIndexOf('{'));
    const body = code.slice(m.index + header.length, close);
    if (/\breturn\b/.test(body.replace(/\/\/[^\n]*/g, ''))) throw new Error(`inline: "${name}" has a return`);
    const params = splitArguments(paramText, true).map((p) => {
      const [pname, type] = p.split(':').map((s) => s.trim());
      return { name: pname, pointer: type.startsWith('ptr<') };
    });
    code = code.slice(0, m.index) + code.slice(close + 1);
    // call statements: at the start of a line, after a statement (checked in the callback), their
    // arguments balanced; every other use of the name (outside comments) is refused
    const calls = new RegExp(`(?<=(?:^|\\n)[ \\t]*)${name}\\(([^;\\n]*)\\);`, 'g');
    const uncommented = code.replace(/\/\/[^\n]*/g, '');
    if ([...uncommented.matchAll(calls)].length !== [...uncommented.matchAll(new RegExp(`\\b${name}\\b`, 'g'))].length) {
      throw new Error(`inline: "${name}" is used other than as a call statement`);
    }
    code = code.replace(calls, (_, argText: string, offset: number) => {
      const before = code.slice(0, offset).replace(/\/\/[^\n]*/g, '').trimEnd();
      if (before !== '' && !/[;{}]$/.test(before)) throw new Error(`inline: "${name}" is used other than as a call statement`);
      const args = splitArguments(argText);
      if (args.some((a) => (a.match(/\(/g) ?? []).length !== (a.match(/\)/g) ?? []).length)) throw new Error(`inline: "${name}" is used other than as a call statement`);
      if (args.length !== params.length) throw new Error(`inline: "${name}" called with ${args.length} arguments, takes ${params.length}`);
      let pasted = body;
      const bindings: string[] = [];
      params.forEach((p, i) => {
        const arg = args[i];
        const shadowed = params.slice(0, i).find((q, j) => !q.pointer && q.name !== args[j] && new RegExp(`\\b${q.name}\\b`).test(arg));
        if (shadowed) throw new Error(`inline: "${name}"'s argument "${arg}" uses ${shadowed.name}, bound before it`);
        if (p.pointer) {
          const target = /^&(\w+)$/.exec(arg);
          if (!target) throw new Error(`inline: "${name}" needs &variable for ${p.name}, got "${arg}"`);
          pasted = pasted.replaceAll(`(*${p.name})`, '\u0000').replace(new RegExp(`\\b${p.name}\\b`, 'g'), `&${target[1]}`).replaceAll('\u0000', target[1]);
        } else if (arg !== p.name) {
          bindings.push(`let ${p.name} = ${arg};`);
        }
      });
      return `{ /* inlined: ${name} */ ${bindings.join(' ')}${pasted}}`;
    });
  }
}
