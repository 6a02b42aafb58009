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

/**
 * One TLV at `at`, read as DER (X.690 §10.1): definite lengths only, in the fewest octets (a long form for
 * a length under 128, or with a leading zero octet, is BER, not DER). Rejecting those is what makes the
 * encoding of a parsed structure unique, so no byte can be changed without changing a value.
 */
export function readTlv(buf: Uint8Array, at: number, limit = buf.length): Tlv {
  if (at + 2 > limit) throw new DerError('truncated header');
  const tag = buf[at]!;
  if ((tag & 0x1f) === 0x1f) throw new DerError('high tag numbers are not used here');
  let len = buf[at + 1]!;
  let body = at + 2;
  if (len & 0x80) {
    const n = len & 0x7f;
    if (n === 0) throw new DerError('indefinite length');
    if (n > 4) throw new DerError('oversized length');
    if (body + n > limit) throw new DerError('truncated length');
    if (buf[body] === 0) throw new DerError('length with a leading zero octet');
    len = 0;
    for (let i = 0; i < n; i++) len = len * 256 + buf[body + i]!;
    if (len < 0x80) throw new DerError('long-form length under 128');
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
  if (!(parent.tag & 0x20)) throw new DerError('primitive element where a constructed one belongs');
  const out: Tlv[] = [];
  for (let at = parent.body; at < parent.end; ) {
    const t = readTlv(buf, at, parent.end);
    out.push(t);
    at = t.end;
  }
  return out;
}

/**
 * Reads the fields of one SEQUENCE in order, as its ASN.1 lists them: `take` a required field, `maybe` an
 * OPTIONAL or DEFAULT one (present only if the next element has its tag), then `end` to refuse anything
 * after the last known field. This is how "exact element counts and order" is enforced (RFC 6960 §4.2.1).
 */
export class Fields {
  readonly #buf: Uint8Array;
  readonly #end: number;
  readonly #what: string;
  #at: number;

  constructor(buf: Uint8Array, parent: Tlv, what: string) {
    if (!(parent.tag & 0x20)) throw new DerError(`${what}: not constructed`);
    this.#buf = buf;
    this.#at = parent.body;
    this.#end = parent.end;
    this.#what = what;
  }

  /** The next field, which must carry `tag`. */
  take(tag: number, what: string): Tlv {
    if (this.#at >= this.#end) throw new DerError(`${this.#what}: ${what} missing`);
    const t = expect(readTlv(this.#buf, this.#at, this.#end), tag, `${this.#what}.${what}`);
    this.#at = t.end;
    return t;
  }

  /** The next field of any tag (a CHOICE the caller decides on). */
  any(what: string): Tlv {
    if (this.#at >= this.#end) throw new DerError(`${this.#what}: ${what} missing`);
    const t = readTlv(this.#buf, this.#at, this.#end);
    this.#at = t.end;
    return t;
  }

  /** The next field if it carries `tag`, else undefined (nothing consumed). */
  maybe(tag: number): Tlv | undefined {
    if (this.#at >= this.#end || this.#buf[this.#at] !== tag) return undefined;
    const t = readTlv(this.#buf, this.#at, this.#end);
    this.#at = t.end;
    return t;
  }

  /** The next field of any tag if there is one (ANY OPTIONAL, such as AlgorithmIdentifier parameters). */
  maybeAny(): Tlv | undefined {
    return this.#at < this.#end ? this.any('') : undefined;
  }

  /** No elements may follow the last field the ASN.1 defines. */
  end(): void {
    if (this.#at !== this.#end) throw new DerError(`${this.#what}: unexpected element after its last field`);
  }
}

/** The one element inside an EXPLICIT [n] wrapper, which must fill it exactly and carry `tag`. */
export function explicit(buf: Uint8Array, wrapper: Tlv, tag: number, what: string): Tlv {
  if (!(wrapper.tag & 0x20)) throw new DerError(`${what}: EXPLICIT tag not constructed`);
  const t = expect(readTlv(buf, wrapper.body, wrapper.end), tag, what);
  if (t.end !== wrapper.end) throw new DerError(`${what}: trailing data inside its EXPLICIT tag`);
  return t;
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

/**
 * Dotted form of an OBJECT IDENTIFIER (X.690 §8.19): every subidentifier in the fewest base-128 octets
 * (no leading 0x80), the last octet closing it; arcs beyond 2^53 are refused rather than rounded.
 */
export function oid(buf: Uint8Array, t: Tlv): string {
  const b = content(buf, expect(t, TAG.OID, 'OBJECT IDENTIFIER'));
  if (b.length === 0) throw new DerError('empty OID');
  if (b[b.length - 1]! & 0x80) throw new DerError('OID ends inside a subidentifier');
  const parts: number[] = [];
  let v = 0;
  let fresh = true;
  for (const byte of b) {
    if (fresh && byte === 0x80) throw new DerError('OID subidentifier with a leading 0x80 octet');
    if (v > 2 ** 45) throw new DerError('OID arc too large');
    v = v * 128 + (byte & 0x7f);
    fresh = !(byte & 0x80);
    if (fresh) {
      parts.push(v);
      v = 0;
    }
  }
  const first = parts.shift()!;
  return [first < 80 ? Math.floor(first / 40) : 2, first < 80 ? first % 40 : first - 80, ...parts].join('.');
}

const GENERALIZED = /^(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(?:\.(\d*[1-9]))?Z$/;
const UTC = /^(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})Z$/;

/**
 * UTCTime (YYMMDDHHMMSSZ, RFC 5280 §4.1.2.5.1) or GeneralizedTime (YYYYMMDDHHMMSSZ, §4.1.2.5.2), in UTC
 * with seconds, every field in range (no 31 April, no hour 24, no leap second). GeneralizedTime may carry
 * fractional seconds in their DER form (X.690 §11.7: no trailing zero, a full stop): RFC 5280 and the
 * RFC 5019/9919 profile forbid them, but they can only occur inside signed data, OpenSSL accepts them,
 * and refusing a CA's whole response over a signed millisecond would cost staples for no safety.
 */
export function time(buf: Uint8Array, t: Tlv): Date {
  const s = Buffer.from(buf.buffer, buf.byteOffset + t.body, t.end - t.body).toString('latin1');
  let m: RegExpExecArray | null;
  if (t.tag === TAG.GeneralizedTime) m = GENERALIZED.exec(s);
  else if (t.tag === TAG.UTCTime) m = UTC.exec(s);
  else throw new DerError('not a time');
  if (!m) throw new DerError(`bad time ${JSON.stringify(s)}`);
  let year = Number(m[1]);
  if (t.tag === TAG.UTCTime) year += year >= 50 ? 1900 : 2000;
  const [month, day, hour, minute, second] = [Number(m[2]), Number(m[3]), Number(m[4]), Number(m[5]), Number(m[6])];
  const ms = m[7] ? Math.floor(Number(`0.${m[7]}`) * 1000) : 0;
  const d = new Date(Date.UTC(year, month - 1, day, hour, minute, second, ms));
  // Date.UTC rolls 31 April over into 1 May: a round trip through the fields catches every out-of-range one.
  if (Number.isNaN(d.getTime()) || d.getUTCMonth() !== month - 1 || d.getUTCDate() !== day || hour > 23 || minute > 59 || second > 59) {
    throw new DerError(`bad time ${JSON.stringify(s)}`);
  }
  return d;
}

/** INTEGER or ENUMERATED content in the fewest octets (X.690 §8.3.2): no 00 or FF padding octet. */
export function integerContent(buf: Uint8Array, t: Tlv): Uint8Array {
  const b = content(buf, t);
  if (b.length === 0) throw new DerError('empty INTEGER');
  if (b.length > 1 && ((b[0] === 0 && !(b[1]! & 0x80)) || (b[0] === 0xff && b[1]! & 0x80))) throw new DerError('INTEGER not in its shortest form');
  return b;
}

/** Value of a small non-negative INTEGER or ENUMERATED, minimally encoded. */
export function smallInt(buf: Uint8Array, t: Tlv): number {
  const b = integerContent(buf, t);
  if (b.length > 6) throw new DerError('integer size');
  if (b[0]! & 0x80) throw new DerError('negative integer');
  let v = 0;
  for (const x of b) v = v * 256 + x;
  return v;
}

/** BOOLEAN (X.690 §11.1): one octet, 0x00 or 0xFF. */
export function boolean(buf: Uint8Array, t: Tlv): boolean {
  const b = content(buf, expect(t, TAG.BOOLEAN, 'BOOLEAN'));
  if (b.length !== 1 || (b[0] !== 0 && b[0] !== 0xff)) throw new DerError('BOOLEAN not 00 or FF');
  return b[0] === 0xff;
}

/** NULL (X.690 §8.8): no content. */
export function nullValue(t: Tlv | undefined, what: string): void {
  if (expect(t, TAG.NULL, what).end !== t!.body) throw new DerError(`${what}: NULL with content`);
}

/**
 * BIT STRING content without its unused-bits octet. Keys and signatures are whole octets, so the
 * unused-bits count must be 0 (X.690 §8.6.2; with it, DER's "unused bits are zero" holds trivially).
 */
export function bitString(buf: Uint8Array, t: Tlv): Uint8Array {
  const b = content(buf, expect(t, TAG.BIT_STRING, 'BIT STRING'));
  if (b.length === 0) throw new DerError('empty BIT STRING');
  if (b[0] !== 0) throw new DerError('BIT STRING with unused bits where whole octets belong');
  return b.subarray(1);
}

/**
 * Checks that the elements in buf[start, end) are DER all the way down (constructed ones recursively),
 * without building TLVs: for bytes staplerd passes on without reading them, such as the certificates in
 * a BasicOCSPResponse. Primitive contents (an extension's OCTET STRING) are not looked into.
 */
export function checkDer(buf: Uint8Array, start: number, end: number, depth = 0): void {
  if (depth > 24) throw new DerError('nesting too deep');
  for (let at = start; at < end; ) {
    const t = readTlv(buf, at, end);
    if (t.tag & 0x20) checkDer(buf, t.body, t.end, depth + 1);
    at = t.end;
  }
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
