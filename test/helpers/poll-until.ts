/**
 * Reads `fn` every `intervalMs` until `predicate` accepts its value, and returns that value. Every
 * poll in the tests goes through here so none can spin forever: after `timeoutMs` it rejects with
 * `what` (a function is called then, so the message can show state such as a child's stderr) and
 * the last value read. `what` says what was awaited, e.g. "the gateway logs its listener".
 */
export async function pollUntil<T>(
  fn: () => T | Promise<T>,
  predicate: (value: T) => boolean,
  timeoutMs: number,
  what: string | (() => string),
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await fn();
    if (predicate(value)) return value;
    if (Date.now() > deadline) {
      const label = typeof what === 'function' ? what() : what;
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${label}; last value: ${describe(value)}`);
    }
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/** `pollUntil` for a condition that is read as a boolean. */
export async function waitUntil(
  condition: () => boolean | Promise<boolean>,
  timeoutMs: number,
  what: string | (() => string),
  intervalMs = 50,
): Promise<void> {
  await pollUntil(condition, Boolean, timeoutMs, what, intervalMs);
}

function describe(value: unknown): string {
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  return text.length > 500 ? `${text.slice(0, 500)}…` : text;
}

/** `pollUntil` for a probe that yields `undefined` until the awaited thing exists; returns it. */
export async function pollDefined<T>(
  what: string | (() => string),
  probe: () => T | undefined | Promise<T | undefined>,
  timeoutMs = 20_000,
  intervalMs = 100,
): Promise<T> {
  return (await pollUntil(probe, (value) => value !== undefined, timeoutMs, what, intervalMs)) as T;
}
