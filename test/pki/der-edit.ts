/**
 * A tiny DER tree editor for tests: decode an OCSP response into nodes, change one, encode it again with
 * correct lengths. The BasicOCSPResponse inside responseBytes' OCTET STRING is decoded as well, so a
 * mutation can reach any level. Only for building hostile inputs; the reader under test is src/pki/der.ts.
 */
import { readTlv, tlv } from '../../src/pki/der.js';

export interface Node {
  tag: number;
  kids?: Node[];
  /** Primitive content (undefined when kids are set). */
  bytes?: Uint8Array;
  /** An OCTET STRING whose content is itself one DER element (the BasicOCSPResponse). */
  wraps?: Node;
  /** Bytes written as they are (a hand-made non-DER element). */
  raw?: Uint8Array;
}

export function decode(b: Uint8Array, at = 0, end = b.length): Node {
  const t = readTlv(b, at, end);
  if (t.tag & 0x20) {
    const kids: Node[] = [];
    for (let p = t.body; p < t.end; ) {
      const k = readTlv(b, p, t.end);
      kids.push(decode(b, p, k.end));
      p = k.end;
    }
    return { tag: t.tag, kids };
  }
  const bytes = b.slice(t.body, t.end);
  if (t.tag === 0x04 && bytes[0] === 0x30) {
    try {
      const inner = decode(bytes);
      if (encode(inner).length === bytes.length) return { tag: t.tag, wraps: inner };
    } catch {
      // an OCTET STRING of other bytes
    }
  }
  return { tag: t.tag, bytes };
}

export function encode(n: Node): Uint8Array {
  if (n.raw) return n.raw;
  if (n.wraps) return tlv(n.tag, encode(n.wraps));
  if (n.kids) return tlv(n.tag, ...n.kids.map(encode));
  return tlv(n.tag, n.bytes!);
}

/** Paths through an OCSPResponse as decoded above. */
export const at = {
  ocspResponse: (r: Node): Node => r,
  responseBytes: (r: Node): Node => r.kids![1]!.kids![0]!,
  basic: (r: Node): Node => at.responseBytes(r).kids![1]!.wraps!,
  responseData: (r: Node): Node => at.basic(r).kids![0]!,
  single: (r: Node): Node => at.responseData(r).kids!.find((k) => k.tag === 0x30 && k.kids![0]?.tag === 0x30)!.kids![0]!,
};

/** Decodes `der`, lets `change` edit the tree, and encodes the result. */
export function mutate(der: Uint8Array, change: (root: Node) => void): Uint8Array {
  const root = decode(der);
  change(root);
  return encode(root);
}

/** Replaces the length octets of the outermost element by a non-minimal long form of the same value. */
export function longFormOuterLength(der: Uint8Array): Uint8Array {
  const t = readTlv(der, 0);
  const len = t.end - t.body;
  const octets = [0x84, (len >>> 24) & 0xff, (len >>> 16) & 0xff, (len >>> 8) & 0xff, len & 0xff];
  return Uint8Array.from([der[0]!, ...octets, ...der.subarray(t.body)]);
}

export const JUNK: Node = { tag: 0x04, bytes: new Uint8Array(Buffer.from('JUNK')) };
