/**
 * The WGSL preprocessor (src/kernels/wgsl-unroll.ts): the loop unroller's exact expansions, nesting,
 * step forms and refusals; line selection; function inlining. The decode tests run the kernels it
 * produces on the GPU (the matrix kernel's inlined step: test/paged-decode-matrix.test.ts).
 */
import { describe, expect, it } from 'vitest';
import { inlineCalls, MAX_UNROLLED_ITERATIONS, selectLines, unrollLoops } from '../src/kernels/wgsl-unroll';

const squash = (s: string) => s.replace(/\/\*[^*]*\*\//g, '').replace(/\s+/g, ' ').trim();

describe('unrollLoops', () => {
  it('expands a marked loop into one block per iteration with the variable replaced', () => {
    const code = 'a; for (var i = 0u; i < N; i++) {  // unroll\n  x[i] = y[i + 1u] * i;\n}\nb;';
    expect(squash(unrollLoops(code, { N: 3 }))).toBe('a; { x[0u] = y[0u + 1u] * 0u; } { x[1u] = y[1u + 1u] * 1u; } { x[2u] = y[2u + 1u] * 2u; } b;');
  });

  it('leaves unmarked loops and look-alike names alone', () => {
    const code = 'for (var i = 0u; i < N; i++) {\n  ii[i] = 0u;\n}';
    expect(unrollLoops(code, { N: 2 })).toBe(code);
    const marked = 'for (var i = 0u; i < 2u; i++) {  // unroll\n  ii[i] = vec4<u32>(i);\n}';
    expect(squash(unrollLoops(marked, {}))).toBe('{ ii[0u] = vec4<u32>(0u); } { ii[1u] = vec4<u32>(1u); }');
  });

  it('handles nested marked loops, shift and constant steps, and braces in comments', () => {
    const code = [
      'for (var g = 0u; g < G; g++) {  // unroll',
      '  for (var r = 1u; r < L; r <<= 1u) {  // unroll { not a brace',
      '    s[g] += f(s[g], r);',
      '  }',
      '}',
      'for (var c = 2u; c < 7u; c += S) {  // unroll',
      '  t[c] = 0.0;',
      '}',
    ].join('\n');
    expect(squash(unrollLoops(code, { G: 2, L: 8, S: 2 }))).toBe(
      '{ { s[0u] += f(s[0u], 1u); } { s[0u] += f(s[0u], 2u); } { s[0u] += f(s[0u], 4u); } } ' +
        '{ { s[1u] += f(s[1u], 1u); } { s[1u] += f(s[1u], 2u); } { s[1u] += f(s[1u], 4u); } } ' +
        '{ t[2u] = 0.0; } { t[4u] = 0.0; } { t[6u] = 0.0; }',
    );
  });

  it('emits nothing for an empty range and keeps the rest of the code', () => {
    expect(squash(unrollLoops('a; for (var i = 0u; i < N; i++) {  // unroll\n x[i] = 1.0;\n}\nb;', { N: 0 }))).toBe('a; b;');
  });

  it('refuses what it cannot unroll faithfully', () => {
    expect(() => unrollLoops('for (var i = 0u; i < M; i++) {  // unroll\n x[i] = 1.0;\n}', {})).toThrow(/unknown bound "M"/);
    expect(() => unrollLoops('for (var i = 0u; i < 4u; i++) {  // unroll\n if (x) { break; }\n}', {})).toThrow(/break\/continue/);
    expect(() => unrollLoops('for (var i = 0u; j < 4u; i++) {  // unroll\n x[i] = 1.0;\n}', {})).toThrow(/mismatch/);
    expect(() => unrollLoops('for (var i = 0u; i < 4u; i++) {  // unroll\n x[i] = 1.0;\n', {})).toThrow(/unbalanced/);
    expect(() => unrollLoops('for (var i = 0u; i < N; i++) {  // unroll\n x[i] = 1.0;\n}', { N: MAX_UNROLLED_ITERATIONS + 1 })).toThrow(/too many iterations/);
    expect(() => unrollLoops('for (var r = 0u; r < 4u; r <<= 1u) {  // unroll\n x[r] = 1.0;\n}', {})).toThrow(/too many iterations/);
  });
});

describe('selectLines', () => {
  const code = ['a', '// #if Q', 'b', '  // #if R', 'c', '  // #else', 'd', '  // #endif', '// #else', 'e', '// #endif', 'f'].join('\n');
  it('keeps the branch its constant selects, nested, and drops the directive lines', () => {
    expect(selectLines(code, { Q: 1, R: 1 })).toBe('a\nb\nc\nf');
    expect(selectLines(code, { Q: 1, R: 0 })).toBe('a\nb\nd\nf');
    expect(selectLines(code, { Q: 0, R: 1 })).toBe('a\ne\nf');
  });
  it('refuses unknown constants and unbalanced directives', () => {
    expect(() => selectLines('// #if NOPE\nx\n// #endif', {})).toThrow(/unknown constant "NOPE"/);
    expect(() => selectLines('// #if Q\nx', { Q: 1 })).toThrow(/without its \/\/ #endif/);
    expect(() => selectLines('x\n// #endif', {})).toThrow(/without a matching/);
  });
});

describe('inlineCalls', () => {
  const step = [
    'struct S { o: array<f32, 2>, }',
    'fn step(state: ptr<function, S>, k: u32, x: f32) {  // inline (the reason)',
    '  (*state).o[k] += x * f(k);',
    '  g(state);',
    '}',
    'fn f(k: u32) -> f32 { return f32(k); }',
  ].join('\n');
  it('pastes a marked function at each call: pointers to the variable, values bound with let unless the same name', () => {
    const code = `${step}\nfn main() {\n  var s: S;\n  let k = 1u;\n  step(&s, k, 2.0 * h(0u, 1u));\n  step(&s, 0u, 1.0);\n}`;
    const out = inlineCalls(code);
    expect(out).not.toMatch(/fn step/);
    expect(squash(out.slice(out.indexOf('fn main')))).toBe(
      'fn main() { var s: S; let k = 1u; { let x = 2.0 * h(0u, 1u); s.o[k] += x * f(k); g(&s); } { let k = 0u; let x = 1.0; s.o[k] += x * f(k); g(&s); } }',
    );
    expect(inlineCalls('fn main() { let a = 1u; }')).toBe('fn main() { let a = 1u; }'); // nothing marked
  });
  it('refuses what it cannot paste faithfully', () => {
    expect(() => inlineCalls(`${step}\nfn main() {\n  var s: S;\n  step(&s, 1u);\n}`)).toThrow(/called with 2 arguments, takes 3/);
    expect(() => inlineCalls(`${step}\nfn main() {\n  var s: S;\n  let p = &s;\n  step(p, 1u, 1.0);\n}`)).toThrow(/needs &variable for state/);
    expect(() => inlineCalls(`${step}\nfn main() { var s: S; let y = step; }`)).toThrow(/used other than as a call statement/);
    expect(() => inlineCalls(`${step}\nfn main() {\n  var s: S;\n  g(step(&s, 1u, 1.0));\n}`)).toThrow(/used other than as a call statement/);
    expect(() => inlineCalls(`${step}\nfn main() {\n  var s: S;\n  let y = 1.0 +\n  step(&s, 1u, 1.0);\n}`)).toThrow(/used other than as a call statement/);
    expect(() => inlineCalls('fn r(a: u32) {  // inline\n  if (a > 0u) { return; }\n}\nfn main() {\n  r(1u);\n}')).toThrow(/has a return/);
    expect(() => inlineCalls('fn r(a: u32, b: u32) {  // inline\n  x = a - b;\n}\nfn main() {\n  r(b, a);\n}')).toThrow(/uses a, bound before it/);
  });
});
