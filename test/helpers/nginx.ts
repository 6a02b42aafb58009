import { join } from 'node:path';

/** How nginx gets its staple: asking staplerd (`ssl_stapling_responder`) or reading a file staplerd writes. */
export type NginxStapling = { responder: string; trusted: string } | { stapleFile: string };

/**
 * A self-contained nginx config for the end-to-end tests: every path inside `dir` (pid, logs, temp dirs),
 * one TLS server on 127.0.0.1 with stapling on, no system files touched.
 */
export function nginxConf(dir: string, o: { port: number; chain: string; key: string; writtenBy: string } & NginxStapling): string {
  const tmp = (name: string) => join(dir, name);
  const stapling =
    'stapleFile' in o
      ? `ssl_stapling_file ${o.stapleFile};`
      : `ssl_stapling_verify on;
    ssl_trusted_certificate ${o.trusted};
    ssl_stapling_responder ${o.responder};`;
  return `# written by ${o.writtenBy}
pid ${tmp('nginx.pid')};
error_log ${tmp('error.log')} info;
worker_processes 1;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${tmp('client_body')};
  proxy_temp_path ${tmp('proxy')};
  fastcgi_temp_path ${tmp('fastcgi')};
  uwsgi_temp_path ${tmp('uwsgi')};
  scgi_temp_path ${tmp('scgi')};
  server {
    listen 127.0.0.1:${o.port} ssl;
    server_name good.demo.test;
    ssl_certificate ${o.chain};
    ssl_certificate_key ${o.key};
    ssl_stapling on;
    ${stapling}
    location / { return 200 "ok\\n"; }
  }
}
`;
}
