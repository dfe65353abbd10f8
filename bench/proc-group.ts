import { readdirSync, readFileSync } from 'node:fs';

/**
 * CPU and memory of a whole process group, read from /proc: nginx's master and worker, the
 * gateway's cluster primary and its workers. Every subject is spawned detached, so its group id
 * is its own pid and nothing of the load generator is in it.
 */
function groupPids(pgid: number): number[] {
  const pids: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const fields = statFields(Number(entry));
      if (Number(fields[2]) === pgid) pids.push(Number(entry));
    } catch {
      // exited between readdir and read
    }
  }
  return pids;
}

/** Fields of /proc/PID/stat after the command name: [0] is the state, [2] the group, [11] utime. */
function statFields(pid: number): string[] {
  const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return text.slice(text.lastIndexOf(') ') + 2).split(' ');
}

const TICKS_PER_SECOND = 100;

/** utime + stime of every live process in the group, plus what their waited-for children used. */
export function groupCpuSeconds(pgid: number): number {
  let ticks = 0;
  for (const pid of groupPids(pgid)) {
    try {
      const f = statFields(pid);
      ticks += Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14]);
    } catch {
      // exited
    }
  }
  return ticks / TICKS_PER_SECOND;
}

/** Sum of VmRSS over the group, in bytes. */
export function groupRssBytes(pgid: number): number {
  let kib = 0;
  for (const pid of groupPids(pgid)) {
    try {
      kib += Number(/VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      // exited
    }
  }
  return kib * 1024;
}

/**
 * CPU seconds this process's reaped children used (cutime + cstime of /proc/self/stat): the load
 * generator's share, for figures where it competes with the subject for the same cores.
 */
export function reapedChildrenCpuSeconds(): number {
  const f = statFields(process.pid);
  return (Number(f[13]) + Number(f[14])) / TICKS_PER_SECOND;
}
