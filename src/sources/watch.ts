import { watch, type FSWatcher } from 'node:fs';
import type { Logger } from 'pino';

/**
 * Calls `onChange` (debounced) when anything in the given directories changes. certbot and cert-manager
 * write a new file and rename it over the old one: that is a rename event here, and the debounce lets a
 * burst of writes settle into one rescan. fs.watch can miss events on some filesystems, so SIGHUP
 * (a full reload) stays the documented fallback.
 */
export function watchDirectories(dirs: string[], debounceMs: number, onChange: () => void, log: Logger): () => void {
  const watchers: FSWatcher[] = [];
  let timer: NodeJS.Timeout | undefined;
  const kick = () => {
    if (timer) clearTimeout(timer);
    timer = setTimeout(onChange, debounceMs);
    timer.unref();
  };
  for (const d of dirs) {
    try {
      const w = watch(d, { persistent: false }, kick);
      w.on('error', (err) => log.warn({ dir: d, err: String(err) }, 'directory watch failed; use SIGHUP to rescan'));
      watchers.push(w);
    } catch (err) {
      log.warn({ dir: d, err: String(err) }, 'cannot watch directory; use SIGHUP to rescan');
    }
  }
  return () => {
    if (timer) clearTimeout(timer);
    for (const w of watchers) w.close();
  };
}
