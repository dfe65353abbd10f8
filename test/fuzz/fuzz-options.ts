import fc from 'fast-check';

/**
 * Every fuzz property runs from a fixed seed so CI is reproducible and a failure can be replayed;
 * FUZZ_SEED and FUZZ_RUNS widen a local run (`FUZZ_RUNS=20000 node --import tsx --test test/fuzz/`).
 * The default run counts keep the whole folder well under 30 s on the shared 2-core machine.
 */
export function fuzzOptions(numRuns: number): fc.Parameters<unknown> {
  const scale = process.env.FUZZ_RUNS ? Number(process.env.FUZZ_RUNS) / 1000 : 1;
  return {
    seed: process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : 0x0e9e55,
    numRuns: Math.max(1, Math.round(numRuns * scale)),
    endOnFailure: true,
  };
}

/** Strings built from tokens chosen to hit parser edge cases (delimiters, IDNA, escapes, case). */
export function tokenString(tokens: readonly string[], maxLength = 24): fc.Arbitrary<string> {
  return fc.string({ unit: fc.constantFrom(...tokens), maxLength });
}
