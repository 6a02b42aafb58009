/** Throwaway PKI and fault-injecting OCSP responder for tests, benchmarks and `staplerd demo`. */
export * from './ca.js';
export * from './ocsp-sign.js';
export * from './responder.js';
