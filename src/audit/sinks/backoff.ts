/**
 * Delay before retry number `attempt` (1 = first retry): exponential from `minMs`, capped at
 * `maxMs`, with "equal jitter" (half fixed, half random). The fixed half keeps the delay growing
 * while a receiver is down; the random half keeps many gateways restarted together from
 * retrying in lockstep against a receiver that just came back.
 */
export function backoffDelay(
  attempt: number,
  minMs: number,
  maxMs: number,
  random: () => number = Math.random,
): number {
  const exponent = Math.min(Math.max(attempt - 1, 0), 30);
  const cap = Math.min(maxMs, minMs * 2 ** exponent);
  return Math.round(cap / 2 + random() * (cap / 2));
}

/** A sleep that a shutdown can cut short. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const timer = setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}
