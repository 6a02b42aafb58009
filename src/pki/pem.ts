import { StaplerError } from '../errors.js';

const BLOCK = /-----BEGIN ([A-Z0-9 ]+)-----([\s\S]*?)-----END \1-----/g;

/**
 * DER of every CERTIFICATE block in a PEM bundle, in file order (RFC 7468). Other blocks (keys, as
 * HAProxy bundles carry them) are ignored. A file that is not PEM at all is tried as one DER certificate.
 */
export function certificatesFromPem(text: string | Uint8Array, source: string): Uint8Array[] {
  const s = typeof text === 'string' ? text : Buffer.from(text).toString('latin1');
  const out: Uint8Array[] = [];
  for (const m of s.matchAll(BLOCK)) {
    if (m[1] !== 'CERTIFICATE' && m[1] !== 'TRUSTED CERTIFICATE') continue;
    const b64 = (m[2] ?? '').replace(/\s+/g, '');
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64)) throw new StaplerError('CERT_PARSE', `${source}: bad base64 in PEM block`);
    out.push(new Uint8Array(Buffer.from(b64, 'base64')));
  }
  if (out.length === 0 && typeof text !== 'string' && text[0] === 0x30) out.push(text.slice());
  if (out.length === 0) throw new StaplerError('CERT_NO_CERTIFICATE', source);
  return out;
}

export function derToPem(der: Uint8Array, label = 'CERTIFICATE'): string {
  const b64 = Buffer.from(der).toString('base64').replace(/(.{64})/g, '$1\n').replace(/\n$/, '');
  return `-----BEGIN ${label}-----\n${b64}\n-----END ${label}-----\n`;
}
