// The one way tests wait for the system: poll a condition until it holds or a bound passes.
// The bound only keeps a broken run from hanging; it is never what a test asserts.

/**
 * Resolves with the condition's first value that is not undefined, null or false; rejects
 * naming `what` (and the last error the condition threw) once `ms` have passed.
 */
export async function until<T>(condition: () => T | Promise<T>, ms = 15_000, what = 'condition', everyMs = 50): Promise<Exclude<T, undefined | null | false>> {
  const deadline = Date.now() + ms;
  let last: unknown;
  for (;;) {
    try {
      const v = await condition();
      if (v !== undefined && v !== null && v !== false) return v as Exclude<T, undefined | null | false>;
    } catch (err) {
      last = err;
    }
    if (Date.now() >= deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}${last ? `: ${(last as Error).message}` : ''}`);
    await new Promise((r) => setTimeout(r, everyMs));
  }
}
