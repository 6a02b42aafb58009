import { isIPv4, isIPv6 } from 'node:net';

/**
 * DNS rebinding: a web page on evil.example whose name an attacker re-points at 127.0.0.1 can have the
 * victim's browser read anything on that address it can read under its own origin. The browser still
 * sends `Host: evil.example`, so pages that answer only for addresses and names the operator expects are
 * out of its reach (RFC 9110 §7.2; the same defence as Kubernetes' and Jupyter's allowed hosts).
 */
export type HostPolicy = { readonly any: true } | { readonly any: false; readonly names: ReadonlySet<string> };

/** From `http.allowedHosts` (lower-cased, no trailing dot, by load.ts); `*` turns the check off. */
export function hostPolicy(allowedHosts: readonly string[]): HostPolicy {
  if (allowedHosts.includes('*')) return { any: true };
  return { any: false, names: new Set(allowedHosts.map(normalName)) };
}

const PORT = /^:\d{1,5}$/;

/**
 * Whether a Host header value may see the status page, the JSON API and the metrics: an IP literal (v4,
 * or v6 in brackets), `localhost`, or a configured name, each with an optional port. No Host at all is
 * allowed: HTTP/1.1 requires one (node refuses a request without it), so only an HTTP/1.0 tool can omit
 * it, and a browser, which is what DNS rebinding needs, never does.
 */
export function hostAllowed(host: string | undefined, p: HostPolicy): boolean {
  if (p.any || host === undefined) return true;
  if (host.length > 300) return false;
  let name: string;
  if (host.charCodeAt(0) === 91 /* [ */) {
    const end = host.indexOf(']');
    if (end === -1 || !isIPv6(host.slice(1, end))) return false;
    return end === host.length - 1 || PORT.test(host.slice(end + 1));
  }
  const colon = host.indexOf(':');
  if (colon === -1) name = host;
  else {
    if (!PORT.test(host.slice(colon))) return false;
    name = host.slice(0, colon);
  }
  if (isIPv4(name)) return true;
  name = normalName(name);
  return name === 'localhost' || p.names.has(name);
}

function normalName(n: string): string {
  const lower = n.toLowerCase();
  return lower.endsWith('.') ? lower.slice(0, -1) : lower;
}
