import { createHash } from 'node:crypto';

/** CertID hash algorithms (RFC 6960 §4.1.1 lets the requester choose; SHA-1 and SHA-256 are what clients send). */
export type HashName = 'sha1' | 'sha256' | 'sha384' | 'sha512';

export function hash(alg: HashName, data: Uint8Array): Uint8Array {
  return new Uint8Array(createHash(alg).update(data).digest());
}

export function toHex(b: Uint8Array): string {
  return Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.byteLength !== b.byteLength) return false;
  if (a.byteLength > 64) return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(b); // native compare
  for (let i = 0; i < a.byteLength; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** ArrayBuffer holding exactly these bytes, as asn1js and pkijs constructors want. */
export function toArrayBuffer(b: Uint8Array): ArrayBuffer {
  return b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength) as ArrayBuffer;
}
