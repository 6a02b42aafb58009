/**
 * A minimal DER reader (X.690 §8, §10): enough to walk certificates and OCSP responses without building
 * schema objects. staplerd parses tens of thousands of both at start-up; pkijs' schema comparison made that
 * cost about a millisecond each. Every read is bounds-checked and throws DerError on malformed input.
 */
export class DerError extends Error {}

export interface Tlv {
  /** The identifier octet (class, constructed bit, tag number < 31). */
  tag: number;
  /** Offset of the first identifier octet. */
  start: number;
  /** Offset of the first content octet. */
  body: number;
  /** Offset just past the last content octet. */
  end: number;
}

export const TAG = {
  BOOLEAN: 0x01,
  INTEGER: 0x02,
  BIT_STRING: 0x03,
  OCTET_STRING: 0x04,
  NULL: 0x05,
  OID: 0x06,
  ENUMERATED: 0x0a,
  UTF8String: 0x0c,
  PrintableString: 0x13,
  T61String: 0x14,
  IA5String: 0x16,
  UTCTime: 0x17,
  GeneralizedTime: 0x18,
  BMPString: 0x1e,
  SEQUENCE: 0x30,
  SET: 0x31,
} as const;

/** Context-specific tag [n], constructed (EXPLICIT or IMPLICIT constructed) or primitive (IMPLICIT). */
export const ctx = (n: number, constructed = true): number => (constructed ? 0xa0 : 0x80) | n;

export function readTlv(buf: Uint8Array, at: number, limit = buf.length): Tlv {
  if (at + 2 > limit) throw new DerError('truncated header');
  const tag = buf[at]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not used here');
  let len = buf[at + 1]!;
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0 || n > 4) throw new DerError('indefinite or oversized length');
    if (body + n > limit) throw new DerError('truncated length');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[body + i]!;
    body += n;
  }
  const end = body + len;
  if (end > limit) throw new DerError('content runs past its container');
  return { tag, start: at, body, end };
}

/** The single TLV spanning exactly `buf` (no trailing bytes). */
export function readRoot(buf: Uint8Array): Tlv {
  const t = readTlv(buf, 0);
  if (t.end !== buf.length) throw new DerError('trailing data');
  return t;
}

/** The TLVs directly inside a constructed TLV. */
export function children(buf: Uint8Array, parent: Tlv): Tlv[] {
  const out: Tlv[] = [];
  for (let at = parent.body; at < parent.end; ) {
    const t = readTlv(buf, at, parent.end);
    out.push(t);
    at = t.end;
  }
  return out;
}

export function expect(t: Tlv | undefined, tag: number, what: string): Tlv {
  if (!t || t.tag !== tag) throw new DerError(`${what}: expected tag 0x${tag.toString(16)}, got ${t ? `0x${t.tag.toString(16)}` : 'nothing'}`);
  return t;
}

export function content(buf: Uint8Array, t: Tlv): Uint8Array {
  return buf.subarray(t.body, t.end);
}

export function whole(buf: Uint8Array, t: Tlv): Uint8Array {
  return buf.subarray(t.start, t.end);
}

export function oid(buf: Uint8Array, t: Tlv): string {
  const b = content(buf, expect(t, TAG.OID, 'OBJECT IDENTIFIER'));
  if (b.length === 0) throw new DerError('empty OID');
  const parts: number[] = [];
  let v = 0;
  for (const byte of b) {
    v = v * 128 + (byte & 0x7f);
    if (!(byte & 0x80)) {
      parts.push(v);
      v = 0;
    }
  }
  const first = parts.shift()!;
  return [first < 80 ? Math.floor(first / 40) : 2, first < 80 ? first % 40 : first - 80, ...parts].join('.');
}

/** UTCTime (YYMMDDHHMMSSZ, RFC 5280 §4.1.2.5.1) or GeneralizedTime (YYYYMMDDHHMMSS[.f]Z). */
export function time(buf: Uint8Array, t: Tlv): Date {
  const s = Buffer.from(content(buf, t)).toString('latin1');
  let m: RegExpExecArray | null;
  if (t.tag === TAG.GeneralizedTime) m = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d{1,9}))?Z$/.exec(s);
  else if (t.tag === TAG.UTCTime) m = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/.exec(s);
  else throw new DerError('not a time');
  if (!m) throw new DerError(`bad time ${JSON.stringify(s)}`);
  let year = Number(m[1]);
  if (t.tag === TAG.UTCTime) year += year >= 50 ? 1900 : 2000;
  const ms = m[7] ? Math.floor(Number(`0.${m[7]}`) * 1000) : 0;
  const d = new Date(Date.UTC(year, Number(m[2]) - 1, Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6]), ms));
  if (Number.isNaN(d.getTime())) throw new DerError(`bad time ${s}`);
  return d;
}

/** Value of a small non-negative INTEGER or ENUMERATED. */
export function smallInt(buf: Uint8Array, t: Tlv): number {
  const b = content(buf, t);
  if (b.length === 0 || b.length > 6) throw new DerError('integer size');
  let v = 0;
  for (const x of b) v = v * 256 + x;
  return v;
}

/** BIT STRING content without its unused-bits octet. */
export function bitString(buf: Uint8Array, t: Tlv): Uint8Array {
  const b = content(buf, expect(t, TAG.BIT_STRING, 'BIT STRING'));
  if (b.length === 0) throw new DerError('empty BIT STRING');
  return b.subarray(1);
}

// --- writer (X.690 §10: definite lengths, minimal length octets) ---

function lengthOctets(n: number): Uint8Array {
  if (n < 0x80) return Uint8Array.of(n);
  const bytes: number[] = [];
  for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
  return Uint8Array.of(0x80 | bytes.length, ...bytes);
}

export function tlv(tag: number, ...parts: Uint8Array[]): Uint8Array {
  let n = 0;
  for (const p of parts) n += p.byteLength;
  const len = lengthOctets(n);
  // One allocation of the exact size (requests are built on every fetch).
  const out = new Uint8Array(1 + len.byteLength + n);
  out[0] = tag;
  out.set(len, 1);
  let at = 1 + len.byteLength;
  for (const p of parts) {
    out.set(p, at);
    at += p.byteLength;
  }
  return out;
}

export const seq = (...parts: Uint8Array[]): Uint8Array => tlv(TAG.SEQUENCE, ...parts);
export const octets = (b: Uint8Array): Uint8Array => tlv(TAG.OCTET_STRING, b);
export const NULL_DER = Uint8Array.of(0x05, 0x00);

const oidCache = new Map<string, Uint8Array>();

/** An OBJECT IDENTIFIER TLV from dotted form (X.690 §8.19); memoised, OIDs here are few. */
export function encodeOid(dotted: string): Uint8Array {
  let der = oidCache.get(dotted);
  if (!der) {
    const arcs = dotted.split('.').map(Number);
    const body: number[] = [40 * arcs[0]! + arcs[1]!];
    for (const arc of arcs.slice(2)) {
      const chunk = [arc & 0x7f];
      for (let v = Math.floor(arc / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
      body.push(...chunk);
    }
    der = tlv(TAG.OID, Uint8Array.from(body));
    oidCache.set(dotted, der);
  }
  return der;
}

/** GeneralizedTime YYYYMMDDHHMMSSZ: the RFC 5280 §4.1.2.5.2 form, no fractional seconds. */
export function encodeGeneralizedTime(d: Date): Uint8Array {
  return tlv(TAG.GeneralizedTime, Buffer.from(`${d.toISOString().replace(/[-:T]/g, '').slice(0, 14)}Z`, 'ascii'));
}
