import type { EntryState } from '../service/staple.js';

/**
 * What the read side (status page, JSON filters, metrics, `staplerd status`) needs to know per certificate
 * state, in display order. A new state is one line here; the compiler asks for it.
 * `problem`: its rank among the certificates listed first and given series of their own (lower first), or
 * null when the state alone needs no one's attention.
 */
export const STATE_INFO: Record<EntryState, { colour: string; problem: number | null }> = {
  failing: { colour: '#cf222e', problem: 0 },
  revoked: { colour: '#8250df', problem: 1 },
  unknown: { colour: '#bc4c00', problem: 2 },
  pending: { colour: '#9a6700', problem: null },
  good: { colour: '#1a7f37', problem: null },
  expired: { colour: '#6e7781', problem: null },
  not_applicable: { colour: '#6e7781', problem: null },
};

export const STATES = Object.keys(STATE_INFO) as EntryState[];

export function zeroCounts(): Record<EntryState, number> {
  return Object.fromEntries(STATES.map((s) => [s, 0])) as Record<EntryState, number>;
}

export function isState(s: string): s is EntryState {
  return Object.hasOwn(STATE_INFO, s);
}
