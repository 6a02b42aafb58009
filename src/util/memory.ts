import v8 from 'node:v8';
import vm from 'node:vm';

type Gc = (o?: { type?: 'major' | 'minor'; execution?: 'sync' | 'async' }) => Promise<void> | void;
let gc: Gc | null | undefined;

/**
 * Asks V8 for one full, concurrent garbage collection, after which it shrinks the heap and gives freed
 * pages back to the system. Used once after a burst (start-up fetches, a resync: hundreds of thousands of
 * short-lived objects promoted while the writes were pending): V8 sizes the heap for the burst's peak and
 * would otherwise keep that size until its memory reducer notices an idle process, if ever. At 100,000
 * certificates this is ~100-200 MB of resident memory. The marking runs concurrently; the loop pauses for
 * tens of milliseconds at most. `gc` is obtained at run time, so no command line needs --expose-gc.
 */
export async function releaseMemory(): Promise<boolean> {
  if (gc === undefined) {
    try {
      v8.setFlagsFromString('--expose-gc');
      gc = vm.runInNewContext('gc') as Gc;
    } catch {
      gc = null;
    }
  }
  if (!gc) return false;
  await gc({ type: 'major', execution: 'async' });
  return true;
}
