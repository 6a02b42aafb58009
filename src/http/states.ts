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

/**
 * What an operator should do about certificates without an OCSP URL (no id-ad-ocsp in their AIA, RFC 5280
 * §4.2.2.1): there is nothing to staple, so stapling should be off where they are served. nginx with
 * `ssl_stapling_responder` still asks staplerd for them and logs the `unauthorized` answer every 5 minutes.
 * One text for the status page and `staplerd status`.
 */
export const NO_OCSP_URL_ADVICE =
  'These certificates have no OCSP URL: there is nothing to staple. Turn stapling off in the server blocks that serve them ' +
  '(nginx: ssl_stapling off; Apache: SSLUseStapling off; HAProxy 2.8+: ocsp-update off). ' +
  'Otherwise nginx with ssl_stapling_responder asks staplerd for them and logs an error every 5 minutes.';

/** Certificates listed by that advice at most (the rest: the not_applicable filter). */
export const NO_OCSP_URL_ROWS = 50;
