/** What the responder child is started with: the issuing CA and the OCSP signer, with their keys. */
import type { IssuedCert } from '../src/demo/ca.js';

export interface PkiFileEntry {
  der: string;
  keyPem: string;
  subjectCN: string;
}

export interface PkiFile {
  issuer: PkiFileEntry;
  signer: PkiFileEntry;
  validitySeconds: number;
}

export function toPkiEntry(c: IssuedCert): PkiFileEntry {
  return { der: Buffer.from(c.der).toString('base64'), keyPem: c.keyPem, subjectCN: c.subjectCN };
}
