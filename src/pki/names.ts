import { bytesEqual } from './bytes.js';
import { content, DerError, expect, Fields, readRoot, readTlv, TAG, whole, type Tlv } from './der.js';

/**
 * X.501 Name comparison as RFC 5280 §7.1 asks: the same RDN sequence, each RDN the same set of attribute
 * types, and string values equal after RFC 4518 preparation (transcode to Unicode, case fold, NFKC,
 * insignificant space removed) - so a responder named in UTF8String matches a certificate naming it in
 * PrintableString, or in other case. OpenSSL's X509_NAME_cmp canonicalises the same way; a CA that re-encodes
 * its own name in responses is rare but real. Byte-equal names (the common case) never get this far.
 */
export function namesMatch(a: Uint8Array, b: Uint8Array): boolean {
  if (a === b || bytesEqual(a, b)) return true;
  try {
    const ra = rdns(a);
    const rb = rdns(b);
    return ra.length === rb.length && ra.every((rdn, i) => rdnsMatch(a, rdn, b, rb[i]!));
  } catch (e) {
    if (e instanceof DerError) return false; // an unreadable name matches nothing
    throw e;
  }
}

/** More attributes in one RDN than any real name carries: bounds the pairwise matching below. */
const MAX_ATTRIBUTES = 16;

type Atv = { type: Uint8Array; value: Tlv };

function rdns(der: Uint8Array): Atv[][] {
  const name = expect(readRoot(der), TAG.SEQUENCE, 'Name');
  const out: Atv[][] = [];
  for (let at = name.body; at < name.end; ) {
    const rdn = expect(readTlv(der, at, name.end), TAG.SET, 'RelativeDistinguishedName');
    at = rdn.end;
    const atvs: Atv[] = [];
    for (let p = rdn.body; p < rdn.end; ) {
      const atv = readTlv(der, p, rdn.end);
      p = atv.end;
      const f = new Fields(der, expect(atv, TAG.SEQUENCE, 'AttributeTypeAndValue'), 'AttributeTypeAndValue');
      const type = content(der, f.take(TAG.OID, 'type'));
      const value = f.any('value');
      f.end();
      atvs.push({ type, value });
    }
    if (atvs.length === 0 || atvs.length > MAX_ATTRIBUTES) throw new DerError('RDN size');
    out.push(atvs);
  }
  return out;
}

/** A SET: every attribute of one matches a distinct attribute of the other. */
function rdnsMatch(a: Uint8Array, ra: Atv[], b: Uint8Array, rb: Atv[]): boolean {
  if (ra.length !== rb.length) return false;
  const used = new Array<boolean>(rb.length).fill(false);
  return ra.every((x) => {
    const i = rb.findIndex((y, j) => !used[j] && bytesEqual(x.type, y.type) && valuesMatch(a, x.value, b, y.value));
    if (i >= 0) used[i] = true;
    return i >= 0;
  });
}

function valuesMatch(a: Uint8Array, va: Tlv, b: Uint8Array, vb: Tlv): boolean {
  const sa = stringOf(a, va);
  const sb = stringOf(b, vb);
  if (sa === undefined || sb === undefined) return bytesEqual(whole(a, va), whole(b, vb));
  return prepare(sa) === prepare(sb);
}

/** The Unicode text of a DirectoryString-like value (RFC 5280 §4.1.2.4), or undefined for other types. */
function stringOf(der: Uint8Array, t: Tlv): string | undefined {
  const raw = Buffer.from(der.buffer, der.byteOffset + t.body, t.end - t.body);
  switch (t.tag) {
    case TAG.UTF8String:
      return raw.toString('utf8');
    case TAG.PrintableString:
    case TAG.IA5String:
    case 0x1a: // VisibleString
    case TAG.T61String: // TeletexString: read as Latin-1, as OpenSSL does
      return raw.toString('latin1');
    case TAG.BMPString:
      if (raw.length % 2) throw new DerError('odd BMPString');
      return Buffer.from(raw).swap16().toString('utf16le');
    case 0x1c: // UniversalString (UCS-4 big-endian)
      if (raw.length % 4) throw new DerError('bad UniversalString');
      return String.fromCodePoint(...Array.from({ length: raw.length / 4 }, (_, i) => raw.readUInt32BE(i * 4)));
    default:
      return undefined;
  }
}

/** RFC 4518 §2: map (case fold), normalize (NFKC), insignificant space handling (§2.6.1), simplified. */
function prepare(s: string): string {
  return s.toLowerCase().normalize('NFKC').toLowerCase().replace(/\s+/gu, ' ').trim();
}
