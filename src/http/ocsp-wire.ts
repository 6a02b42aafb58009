/**
 * The only place where outcomes become OCSP protocol answers (RFC 6960 §4.2.1). Error responses are
 * an OCSPResponse with a responseStatus and no responseBytes: SEQUENCE { ENUMERATED n } = 30 03 0A 01 n.
 * They are sent with HTTP 200, because nginx does not even log a non-200 but does log OCSP statuses.
 */
export type OcspErrorStatus = 'malformedRequest' | 'internalError' | 'tryLater' | 'unauthorized';

const STATUS_VALUE: Record<OcspErrorStatus, number> = { malformedRequest: 1, internalError: 2, tryLater: 3, unauthorized: 6 };

export const OCSP_ERROR_BODY: Readonly<Record<OcspErrorStatus, Buffer>> = Object.freeze(
  Object.fromEntries(Object.entries(STATUS_VALUE).map(([k, v]) => [k, Buffer.from([0x30, 0x03, 0x0a, 0x01, v])])) as Record<OcspErrorStatus, Buffer>,
);

export const OCSP_CONTENT_TYPE = 'application/ocsp-response';
