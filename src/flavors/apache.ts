import type { Flavor } from './flavor.js';

const MODULES = '/usr/lib/apache2/modules';

/**
 * Apache httpd with mod_ssl: `SSLSessionTicketKeyFile` names one 48-byte key file, read at
 * start and at a graceful restart, and only in the server config (not per virtual host). It
 * holds no next and no previous key, so every rotation costs each client one full handshake,
 * on every node at once. https://httpd.apache.org/docs/2.4/mod/mod_ssl.html#sslsessionticketkeyfile
 */
export const APACHE: Flavor = {
  name: 'apache',
  keyCapacity: 1,
  keyLengths: [48],
  includeFileName: 'ticket-keys.conf',
  defaultConfig: '/etc/apache2/apache2.conf',
  commands: { test: 'apache2ctl configtest', configDump: 'apache2ctl -t -D DUMP_INCLUDES', reload: 'systemctl reload apache2' },
  ticketsOn: '`SSLSessionTickets on` (the default) in its TLS virtual hosts',
  hasRuntimeApi: false,
  answered: (head) => head.serverProduct === 'apache' && head.headerNames.some((name) => name !== name.toLowerCase()),
  local: {
    binary: 'apache2',
    install: 'install it with `apt-get install apache2`',
    configFileName: 'httpd.conf',
    commands({ binary, prefix, configFile }) {
      return {
        testCommand: `${binary} -t -f ${configFile}`,
        configDumpCommand: `${binary} -t -D DUMP_INCLUDES -f ${configFile}`,
        reloadCommand: `${binary} -k graceful -f ${configFile}`,
        pidFile: `${prefix}/httpd.pid`,
      };
    },
    // Tickets resume across nodes only between virtual hosts of one name and port (mod_ssl makes
    // them the session's context), so every node names its TLS host fleet.example:443 whatever
    // port it listens on. Started as root, Apache serves as nobody.
    config: (node, tls) => `ServerRoot ${node.prefix}
DefaultRuntimeDir ${node.prefix}/tmp
PidFile ${node.prefix}/httpd.pid
ErrorLog ${node.prefix}/logs/error.log
LogLevel warn
LoadModule mpm_event_module ${MODULES}/mod_mpm_event.so
LoadModule authz_core_module ${MODULES}/mod_authz_core.so
LoadModule ssl_module ${MODULES}/mod_ssl.so
User nobody
Group nogroup
ServerName fleet.example
StartServers 1
ServerLimit 1
ThreadsPerChild 25
MaxRequestWorkers 25
Listen ${node.host}:${node.port}
DocumentRoot ${node.prefix}/tmp
ErrorDocument 404 "${node.name}"
# Only tickets may resume: a session cache would hide key problems.
SSLSessionCache none
<VirtualHost ${node.host}:${node.port}>
  ServerName fleet.example:443
  SSLEngine on
  SSLCertificateFile ${tls.certificate}
  SSLCertificateKeyFile ${tls.key}
  SSLProtocol -all +TLSv1.2 +TLSv1.3
  SSLSessionTickets on
</VirtualHost>
`,
    unsharedKeys: () => ({ text: '# no shared keys: Apache makes its own at each graceful restart\n', mode: 0o644 }),
    startArgs: ({ configFile }) => ['-f', configFile, '-D', 'FOREGROUND'],
  },
};
