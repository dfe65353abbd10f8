type StopSignal = 'SIGTERM' | 'SIGINT';

/** What a serving process does on each signal. */
export interface SignalActions {
  /** Called once, on the first of `stopSignals`; later ones are ignored while it runs. */
  readonly stop: (signal: StopSignal) => void | Promise<void>;
  /** Default both. A cluster worker stops on SIGTERM only: Ctrl-C reaches the whole group and the primary decides. */
  readonly stopSignals?: readonly StopSignal[];
  /** SIGHUP; without it SIGHUP is ignored (it must never kill a serving process). */
  readonly reload?: () => void;
  /** SIGUSR1: reopen audit files after log rotation (only installed when given: Node uses it for the inspector). */
  readonly reopen?: () => void;
  /** SIGUSR2: print audit sink counters (only installed when given). */
  readonly report?: () => void;
}

/**
 * The signal contract of every serving process (single process, cluster primary, cluster worker):
 * one stop, however many signals arrive; SIGHUP never kills (Node's default would). The cluster
 * primary installs it before forking, so a SIGTERM during start-up still stops the workers forked.
 */
export function handleSignals(actions: SignalActions): void {
  const stopSignals = actions.stopSignals ?? ['SIGTERM', 'SIGINT'];
  let stopping = false;
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.on(signal, () => {
      if (stopping || !stopSignals.includes(signal)) return;
      stopping = true;
      void actions.stop(signal);
    });
  }
  process.on('SIGHUP', () => actions.reload?.());
  const { reopen, report } = actions;
  if (reopen) process.on('SIGUSR1', () => reopen());
  if (report) process.on('SIGUSR2', () => report());
}

/** Time for the audit flush and the admin API after the drain deadline, before `exitAfter` ends the process. */
export const SHUTDOWN_GRACE_MS = 15_000;

/** Whatever hangs (a sink, a socket), the process ends `ms` from now with status 1. */
export function exitAfter(ms: number, log: (message: string) => void): void {
  setTimeout(() => {
    log('shutdown did not finish in time; exiting');
    process.exit(1);
  }, ms).unref();
}
