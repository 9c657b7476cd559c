import type { Flavor } from './flavor.js';

/** nginx: `ssl_session_ticket_key` files, the first encrypting, all decrypting; no limit on their number. */
export const NGINX: Flavor = {
  name: 'nginx',
  includeFileName: 'ticket-keys.conf',
  defaultConfig: '/etc/nginx/nginx.conf',
  commands: { test: 'nginx -t -q', configDump: 'nginx -T', reload: 'systemctl reload nginx' },
  ticketsOn: '`ssl_session_tickets on;` in its TLS server blocks',
  hasRuntimeApi: false,
  // Its own header names are capitalized: a proxy that relays its Server header (HAProxy) writes them in lower case.
  answered: (head) => head.serverProduct === 'nginx' && head.headerNames.some((name) => name !== name.toLowerCase()),
  local: {
    binary: 'nginx',
    install: 'install it with `apt-get install nginx-light` (or nginx)',
    configFileName: 'nginx.conf',
    commands({ binary, prefix, configFile }) {
      const flags = `-p ${prefix} -c ${configFile}`;
      return {
        testCommand: `${binary} -t -q ${flags}`,
        configDumpCommand: `${binary} -T -q ${flags}`,
        reloadCommand: `${binary} -s reload ${flags}`,
        pidFile: `${prefix}/nginx.pid`,
      };
    },
    config: (node, tls) => `daemon off;
worker_processes 1;
error_log ${node.prefix}/logs/error.log notice;
pid ${node.prefix}/nginx.pid;
events { worker_connections 256; }
http {
  access_log off;
  client_body_temp_path ${node.prefix}/tmp/body;
  proxy_temp_path ${node.prefix}/tmp/proxy;
  fastcgi_temp_path ${node.prefix}/tmp/fastcgi;
  uwsgi_temp_path ${node.prefix}/tmp/uwsgi;
  scgi_temp_path ${node.prefix}/tmp/scgi;
  server {
    listen ${node.host}:${node.port} ssl;
    ssl_certificate ${tls.certificate};
    ssl_certificate_key ${tls.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    # Only tickets may resume: a per-node session cache would hide key problems.
    ssl_session_cache off;
    ssl_session_tickets on;
    ssl_session_timeout 1h;
    location / { return 200 "${node.name}\\n"; }
  }
}
`,
    unsharedKeys: () => ({ text: '# no shared keys: nginx makes its own at each reload\n', mode: 0o644 }),
    startArgs: ({ prefix, configFile }) => ['-p', prefix, '-c', configFile],
  },
};
