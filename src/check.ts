import { errorCode, StaplerError } from './errors.js';
import { proxyOptionsOf } from './fetch/dispatcher.js';
import { HttpResponderClient } from './fetch/responder-client.js';
import { certIdOf } from './pki/certid.js';
import { buildOcspRequest } from './pki/request.js';
import { verifyOcspResponse } from './pki/verify.js';
import { loadRecord } from './sources/certificates.js';
import { atomicWrite } from './util/atomic-write.js';

export interface CheckOptions {
  chain: string;
  issuer?: string | undefined;
  url?: string | undefined;
  timeoutMs: number;
  /** Write the verified response here (atomically) when it says good or revoked; leave the file alone otherwise. */
  out?: string | undefined;
  now?: Date;
}

/** openssl's time format ("Nov 24 07:43:00 2026 GMT"), so the output reads like `openssl ocsp -resp_text`. */
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

export function opensslTime(d: Date): string {
  const two = (n: number) => String(n).padStart(2, '0');
  const time = `${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}`;
  return `${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${time} ${d.getUTCFullYear()} GMT`;
}

/**
 * `staplerd check`: fetch, verify and print one certificate's OCSP status.
 * Exit codes: 0 good, 1 revoked or unknown, 2 any error (including a response that fails verification).
 * With `out`, a good or revoked response (both are staples: the signed truth) is written there atomically
 * before the exit, so a deploy hook can install a renewed certificate's staple before the server reloads.
 * `unknown` is not a staple (clients may fail a handshake on it) and, like any failure, leaves an existing
 * file untouched: a hook that runs again later must not lose the last good staple.
 */
export async function runCheck(o: CheckOptions, out: (line: string) => void, err: (line: string) => void): Promise<number> {
  // As curl would: through http_proxy / https_proxy unless no_proxy says otherwise.
  const { proxy } = await proxyOptionsOf({}, process.env, 'environment');
  const client = new HttpResponderClient({ timeoutMs: o.timeoutMs, maxResponseBytes: 65536, perHostConcurrency: 1, userAgent: 'staplerd-check', proxy });
  try {
    const rec = await loadRecord({ name: 'check', chain: o.chain, issuer: o.issuer, responder: o.url });
    if (!rec.url) throw new StaplerError('FETCH_URL', 'the certificate has no OCSP URL (not applicable); pass --url to ask a responder anyway');
    const req = buildOcspRequest([certIdOf(rec.leaf, rec.issuer, 'sha1')]);
    const res = await client.fetch(rec.url, req);
    const v = verifyOcspResponse({ der: res.body, leaf: rec.leaf, issuer: rec.issuer, now: o.now ?? new Date(), policy: { skewSeconds: 300, marginSeconds: 0 } });
    const st = v.status;
    out('OCSP Response Data:');
    out('    OCSP Response Status: successful (0x0)');
    out('    Response Type: Basic OCSP Response');
    out(`    Responder: ${v.signer === 'issuer' ? 'the issuer' : 'a delegated responder'} (${rec.url}, ${res.method})`);
    out(`    Produced At: ${opensslTime(v.producedAt)}`);
    out(`    Serial Number: ${rec.leaf.serialHex.toUpperCase()}`);
    out(`    Cert Status: ${st.kind}`);
    if (st.kind === 'revoked') out(`    Revocation Time: ${opensslTime(st.at)}${st.reason !== undefined ? ` (reason ${st.reason})` : ''}`);
    out(`    This Update: ${opensslTime(v.thisUpdate)}`);
    out(`    Next Update: ${opensslTime(v.nextUpdate)}`);
    out('Response verify OK');
    out(`${o.chain}: ${st.kind}`);
    out(`\tThis Update: ${opensslTime(v.thisUpdate)}`);
    out(`\tNext Update: ${opensslTime(v.nextUpdate)}`);
    if (o.out !== undefined && st.kind !== 'unknown') {
      await atomicWrite(o.out, res.body, 0o644).catch((e: unknown) => {
        throw new StaplerError('SINK_WRITE', `${o.out ?? ''}: ${e instanceof Error ? e.message : String(e)}`, { cause: e });
      });
      out(`Response written to ${o.out}`);
    } else if (o.out !== undefined) {
      err(`${o.out} left as it was: an unknown answer is not a staple`);
    }
    return st.kind === 'good' ? 0 : 1;
  } catch (e) {
    err(`Error: ${errorCode(e, 'FETCH_CONNECT')}: ${e instanceof Error ? e.message : String(e)}`);
    return 2;
  } finally {
    client.close();
  }
}
