import { type FSWatcher, watch } from 'node:fs';
import { basename, dirname } from 'node:path';

/** Changes closer together than this make one reload (an editor or a Secret update writes several files). */
const DEBOUNCE_MS = 500;

/**
 * Watches the directories of `paths` (Kubernetes swaps Secrets by renaming a `..data` symlink, so
 * the file itself is never written) and calls `onChange` once per burst of changes.
 */
export function watchFiles(paths: readonly string[], onChange: () => void): FSWatcher[] {
  const byDir = new Map<string, Set<string>>();
  for (const path of paths) {
    const dir = dirname(path);
    byDir.set(dir, (byDir.get(dir) ?? new Set()).add(basename(path)));
  }
  let timer: NodeJS.Timeout | undefined;
  const debounced = () => {
    clearTimeout(timer);
    timer = setTimeout(onChange, DEBOUNCE_MS);
    timer.unref();
  };
  const watchers: FSWatcher[] = [];
  for (const [dir, names] of byDir) {
    try {
      const watcher = watch(dir, { persistent: false }, (_event, name) => {
        if (name === null || names.has(String(name)) || String(name).startsWith('..')) debounced();
      });
      watcher.on('error', () => {});
      watchers.push(watcher);
    } catch {
      // A directory that cannot be watched still reloads on SIGHUP and POST /reload.
    }
  }
  return watchers;
}
