/** The error `f` throws; fails the test when it returns (test/serving-inputs.test.ts, test/serving-pools.test.ts). */
export function thrown(f: () => unknown): Error {
  try {
    f();
  } catch (err) {
    return err as Error;
  }
  throw new Error('expected a throw');
}
