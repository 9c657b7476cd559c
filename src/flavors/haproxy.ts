import { randomBytes } from 'node:crypto';
import type { Flavor } from './flavor.js';

/**
 * HAProxy terminating TLS: a `tls-ticket-keys` file of three keys (previous, current, next: its
 * build-time TLS_TICKETS_NO), which its runtime API also takes without a reload.
 */
export const HAPROXY: Flavor = {
  name: 'haproxy',
  keyCapacity: 3,
  includeFileName: 'tls-ticket-keys',
  defaultConfig: '/etc/haproxy/haproxy.cfg',
  commands: { test: 'haproxy -c -q -f /etc/haproxy/haproxy.cfg', configDump: 'cat /etc/haproxy/haproxy.cfg', reload: 'systemctl reload haproxy' },
  ticketsOn: 'no `no-tls-tickets` on its bind lines (tickets are on by default)',
  hasRuntimeApi: true,
  // HAProxy writes HTTP/1 header names in lower case, even those it relays from a backend.
  answered: (head) => head.headerNames.length > 0 && head.headerNames.every((name) => name === name.toLowerCase()),
  local: {
    binary: 'haproxy',
    install: 'install it with `apt-get install haproxy`',
    configFileName: 'haproxy.cfg',
    commands({ binary, prefix, configFile }) {
      const pidFile = `${prefix}/haproxy.pid`;
      return {
        testCommand: `${binary} -c -q -f ${configFile}`,
        configDumpCommand: `cat ${configFile}`,
        // Master-worker mode: USR2 makes the master start new workers with the reloaded config.
        reloadCommand: `kill -USR2 "$(cat ${pidFile})"`,
        pidFile,
        runtimeSocket: `${prefix}/admin.sock`,
      };
    },
    config: (node, tls) => `global
  nbthread 1
  # Only tickets may resume: a session cache would hide key problems.
  tune.ssl.cachesize 0
  stats socket ${node.runtimeSocket} mode 600 level admin
defaults
  mode http
  timeout connect 2s
  timeout client 30s
  timeout server 30s
frontend tls
  bind ${node.host}:${node.port} ssl crt ${tls.certificateWithKey} ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3
  http-request return status 200 content-type text/plain string "${node.name}"
`,
    // Its file needs three keys: three random ones, its own.
    unsharedKeys: () => ({ text: [0, 1, 2].map(() => `${randomBytes(80).toString('base64')}\n`).join(''), mode: 0o600 }),
    startArgs: ({ configFile, pidFile }) => ['-W', '-db', '-f', configFile, '-p', pidFile],
  },
};
