/**
 * One table of every error staplerd reports. Code is stable (logs, JSON API, metrics labels);
 * callers branch on `code`, never on the message. The HTTP layer maps codes to the wire in one place
 * (src/http/ocsp-routes.ts for the OCSP protocol, src/http/api-routes.ts for JSON).
 */
export const ERRORS = {
  // configuration and inputs
  CONFIG_INVALID: { message: 'invalid configuration', http: 500 },
  CONFIG_FILE: { message: 'cannot read configuration file', http: 500 },
  CERT_FILE: { message: 'cannot read certificate file', http: 500 },
  CERT_PARSE: { message: 'certificate is not valid DER/PEM', http: 500 },
  CERT_NO_CERTIFICATE: { message: 'file contains no certificate', http: 500 },
  ISSUER_NOT_FOUND: { message: 'no issuer certificate found for the leaf', http: 500 },
  ISSUER_MISMATCH: { message: 'issuer certificate did not sign the leaf', http: 500 },

  // upstream transport (RFC 6960 appendix A: OCSP over HTTP)
  FETCH_URL: { message: 'responder URL is not a plain http(s) URL', http: 502 },
  FETCH_CONNECT: { message: 'cannot connect to the OCSP responder', http: 502 },
  FETCH_TIMEOUT: { message: 'OCSP responder did not answer in time', http: 504 },
  FETCH_HTTP_STATUS: { message: 'OCSP responder answered with a non-200 HTTP status', http: 502 },
  FETCH_CONTENT_TYPE: { message: 'OCSP responder answered with a wrong Content-Type', http: 502 },
  FETCH_TOO_LARGE: { message: 'OCSP response exceeds the size limit', http: 502 },
  FETCH_PROTOCOL: { message: 'OCSP responder broke HTTP/1.1 framing', http: 502 },
  FETCH_ABORTED: { message: 'fetch aborted', http: 503 },

  // OCSP response content (RFC 6960 §4.2, §3.2)
  OCSP_MALFORMED: { message: 'OCSP response cannot be parsed', http: 502 },
  OCSP_STATUS_MALFORMED_REQUEST: { message: 'responder said malformedRequest', http: 502 },
  OCSP_STATUS_INTERNAL_ERROR: { message: 'responder said internalError', http: 502 },
  OCSP_STATUS_TRY_LATER: { message: 'responder said tryLater', http: 502 },
  OCSP_STATUS_SIG_REQUIRED: { message: 'responder said sigRequired', http: 502 },
  OCSP_STATUS_UNAUTHORIZED: { message: 'responder said unauthorized', http: 502 },
  OCSP_NOT_BASIC: { message: 'response type is not id-pkix-ocsp-basic', http: 502 },
  OCSP_UNSUPPORTED_ALGORITHM: { message: 'unsupported signature algorithm', http: 502 },
  OCSP_BAD_SIGNATURE: { message: 'OCSP response signature does not verify', http: 502 },
  OCSP_SIGNER_NOT_FOUND: { message: 'no certificate matches the responder ID', http: 502 },
  OCSP_SIGNER_UNAUTHORIZED: { message: 'signer is neither the issuer nor a delegate it issued', http: 502 },
  OCSP_SIGNER_NO_EKU: { message: 'delegated signer lacks id-kp-OCSPSigning', http: 502 },
  OCSP_SIGNER_EXPIRED: { message: 'delegated signer certificate is not valid now', http: 502 },
  OCSP_CERTID_MISMATCH: { message: 'no SingleResponse for this certificate', http: 502 },
  OCSP_CERTID_AMBIGUOUS: { message: 'SingleResponses for this certificate disagree', http: 502 },
  OCSP_CRITICAL_EXTENSION: { message: 'unknown critical extension', http: 502 },
  OCSP_THIS_UPDATE_FUTURE: { message: 'thisUpdate is in the future', http: 502 },
  OCSP_NEXT_UPDATE_MISSING: { message: 'nextUpdate is missing', http: 502 },
  OCSP_EXPIRED: { message: 'nextUpdate is past or within the safety margin', http: 502 },
  OCSP_NONCE_MISMATCH: { message: 'nonce not echoed', http: 502 },
  OCSP_OLDER: { message: 'response is older than the staple held', http: 502 },
  OCSP_CERT_UNKNOWN: { message: 'responder answered certStatus unknown (not served)', http: 502 },

  // fleet mode: records read from the shared store (Redis) are hostile until verified
  FLEET_RECORD_TOO_LARGE: { message: 'shared store record exceeds the size limit', http: 502 },
  FLEET_RECORD_INVALID: { message: 'shared store record is not a valid staple record', http: 502 },

  // incoming requests (our responder side)
  REQUEST_MALFORMED: { message: 'OCSP request cannot be parsed', http: 400 },
  // RFC 9110 §15.5.20 Misdirected Request: DNS rebinding defence for the non-OCSP routes (http.allowedHosts).
  HOST_NOT_ALLOWED: { message: 'this Host name is not served here; see http.allowedHosts', http: 421 },

  // store
  STORE_CORRUPT: { message: 'persisted staple is unreadable', http: 500 },
  STORE_IO: { message: 'staple store I/O failed', http: 500 },

  // sinks (StapleSink implementations) and hooks
  SINK_WRITE: { message: 'cannot write staple file', http: 500 },
  SINK_RELOAD: { message: 'reload command failed', http: 500 },
  HAPROXY_UNREACHABLE: { message: 'cannot talk to the HAProxy stats socket', http: 502 },
  HAPROXY_CERTID_MISMATCH: { message: 'HAProxy has no certificate with this CertID', http: 502 },
  HAPROXY_REJECTED: { message: 'HAProxy refused the OCSP response', http: 502 },
  HOOK_FAILED: { message: 'hook failed', http: 500 },

  // API
  NOT_FOUND: { message: 'no such certificate', http: 404 },
  NO_STAPLE: { message: 'no valid staple held', http: 404 },
  UNAUTHORIZED: { message: 'missing or wrong admin token', http: 401 },
  ADMIN_DISABLED: { message: 'admin API disabled: no admin token configured', http: 403 },
  BAD_CURSOR: { message: 'invalid page cursor: pass back the `next` value of the previous page', http: 400 },
} as const satisfies Record<string, { message: string; http: number }>;

export type ErrorCode = keyof typeof ERRORS;

export class StaplerError extends Error {
  readonly code: ErrorCode;
  /** Seconds the peer asked us to wait (HTTP Retry-After), when it said so. */
  readonly retryAfter: number | undefined;

  /** The specific part of the message (what, where), without the table's generic text. */
  readonly detail: string | undefined;

  constructor(code: ErrorCode, detail?: string, opts?: { cause?: unknown; retryAfter?: number }) {
    super(detail ? `${ERRORS[code].message}: ${detail}` : ERRORS[code].message, { cause: opts?.cause });
    this.name = 'StaplerError';
    this.code = code;
    this.detail = detail;
    this.retryAfter = opts?.retryAfter;
  }

  /** The same error with where it happened put in front ("config.yaml: certificates[0] (www)"). */
  within(where: string): StaplerError {
    return new StaplerError(this.code, this.detail ? `${where}: ${this.detail}` : where, { cause: this, ...(this.retryAfter !== undefined && { retryAfter: this.retryAfter }) });
  }
}

export function isStaplerError(e: unknown): e is StaplerError {
  return e instanceof StaplerError;
}

/** Error code of anything thrown; unknown errors become the given fallback. */
export function errorCode(e: unknown, fallback: ErrorCode): ErrorCode {
  return isStaplerError(e) ? e.code : fallback;
}
