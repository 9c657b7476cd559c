import { spawnSync } from 'node:child_process';
import { lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { currentKey, serializeKeySet } from '../../src/core/keyset.js';
import { nodeOnboardingArgs, runOnboarding } from '../../src/local/applier.js';
import { onboardingFiles } from '../../src/project-paths.js';
import { startLocalFleet, type FleetNode, type LocalFleet } from '../../src/local/fleet.js';
import { applyTo, freshTicket, lineage, managedInclude } from '../support/helpers.js';

const MARK = '# TLS session ticket keys, managed by apply-ticket-keys.sh';

/** The onboarding options for `node` with another config file and config test. */
function argsFor(node: FleetNode, config: string, testCommand: string): string[] {
  const args = nodeOnboardingArgs(node);
  args[args.indexOf('--config') + 1] = config;
  args[args.indexOf('--test-cmd') + 1] = testCommand;
  return args;
}

describe('onboarding a node (applier/onboard-node.sh) on real nginx, HAProxy and Apache', () => {
  let fleet: LocalFleet;
  let node: FleetNode;
  let haproxyNode: FleetNode;
  let apacheNode: FleetNode;
  let dir: string;

  beforeAll(async () => {
    fleet = await startLocalFleet({ nodeCount: 3, flavor: ['nginx', 'haproxy', 'apache'] });
    [node, haproxyNode, apacheNode] = fleet.nodes as [FleetNode, FleetNode, FleetNode];
    dir = mkdtempSync(join(fleet.baseDir, 'configs-'));
  });
  afterAll(async () => {
    await fleet?.stop();
  });

  it('gave a fresh nginx config the include in its TLS server block; the config test passes and the managed keys load', async () => {
    const config = readFileSync(node.configFile, 'utf8');
    const listen = config.split('\n').findIndex((line) => /listen .* ssl;/.test(line));
    expect(config.split('\n')[listen + 1]).toBe(`    ${managedInclude(node)}  ${MARK}`);
    const [, gen2] = lineage(2);
    expect((await applyTo(fleet, node, gen2!)).exitCode).toBe(0);
    expect((await freshTicket(node, 'TLSv1.3')).keyName).toBe(currentKey(gen2!).name);
  });

  it('changes nothing on a second run', () => {
    const before = readFileSync(node.configFile, 'utf8');
    const again = runOnboarding(nodeOnboardingArgs(node));
    expect(again.exitCode).toBe(0);
    expect(again.summary).toMatchObject({ action: 'unchanged', changed: 0, keyStorage: 'tmpfs', keysInMemory: true });
    expect(readFileSync(node.configFile, 'utf8')).toBe(before);
  });

  it('narrows the include an earlier version added (every *.conf in the key directory) to the managed file alone', () => {
    const current = readFileSync(node.configFile, 'utf8');
    writeFileSync(node.configFile, current.replace(managedInclude(node), `include ${node.keyDir}/*.conf;`));
    try {
      const run = runOnboarding(nodeOnboardingArgs(node));
      expect(run.exitCode, run.summary.error).toBe(0);
      expect(run.summary).toMatchObject({ action: 'onboarded', changed: 1 });
      expect(readFileSync(node.configFile, 'utf8')).toBe(current);
    } finally {
      writeFileSync(node.configFile, current);
    }
  });

  it('edits where a symlinked config points (sites-enabled → sites-available) and keeps the link', () => {
    const available = join(dir, 'sites-available');
    const enabled = join(dir, 'sites-enabled');
    mkdirSync(available);
    mkdirSync(enabled);
    const text = server('    listen 127.0.0.1:9 ssl;');
    writeFileSync(join(available, 'default'), text);
    symlinkSync(join(available, 'default'), join(enabled, 'default'));
    const run = runOnboarding(argsFor(node, join(enabled, 'default'), 'true'));
    expect(run.exitCode, run.summary.error).toBe(0);
    expect(lstatSync(join(enabled, 'default')).isSymbolicLink()).toBe(true);
    expect(readFileSync(join(available, 'default'), 'utf8')).toContain(managedInclude(node));
    expect(readdirSync(available)).toEqual(['default']);
  });

  const server = (body: string): string => `events {}\nhttp {\n  server {\n${body}\n  }\n}\n`;
  const unsafe: [string, string, RegExp][] = [
    ['a TLS listen sharing its line', 'events {}\nhttp { server { listen 127.0.0.1:9 ssl; ssl_certificate x.pem; } }\n', /the TLS listen at line 2 shares its line with other statements: put it on a line of its own, or add `include .*\.con\[f\];` to that server block by hand/],
    ['a listen spread over two lines', server('    listen 127.0.0.1:9\n      ssl;'), /the TLS listen at line 5 shares its line with other statements/],
    ['keys of its own already', server('    listen 127.0.0.1:9 ssl;\n    ssl_session_ticket_key /etc/nginx/ticket.key;'), /line 5 sets ssl_session_ticket_key: the managed keys replace such keys; remove those lines, then run again/],
    ['tickets turned off', server('    listen 127.0.0.1:9 ssl;\n    ssl_session_tickets off;'), /line 5 turns session tickets off \(ssl_session_tickets off\): remove it, then run again/],
    ['no TLS server block', server('    listen 127.0.0.1:9;'), /has no server block with `listen \.\.\. ssl`: give the file that holds the TLS server blocks \(--config\)/],
    ['unbalanced braces', 'events {}\nhttp {\n  server {\n    listen 127.0.0.1:9 ssl;\n', /unbalanced braces: 2 block\(s\) not closed/],
  ];
  it.each(unsafe)('refuses a config with %s, leaving it byte-identical and running no config test', (_, text, message) => {
    const config = join(dir, `unsafe-${readdirSync(dir).length}.conf`);
    writeFileSync(config, text);
    const run = runOnboarding(argsFor(node, config, 'echo the config test ran >&2; exit 1'));
    expect(run.exitCode).toBe(3);
    expect(run.summary.action).toBe('refused');
    expect(run.summary.error).toMatch(message);
    expect(run.summary.error).toMatch(/nothing was changed$/);
    expect(run.stderr).not.toContain('the config test ran');
    expect(readFileSync(config, 'utf8')).toBe(text);
    expect(readdirSync(dir).filter((name) => name.startsWith('.'))).toEqual([]);
  });

  it('restores the config byte for byte when the config test fails after the change', () => {
    const config = join(dir, 'broken-certificate.conf');
    const text = `events {}\nhttp {\n  server {\n    listen 127.0.0.1:9 ssl;\n    ssl_certificate ${dir}/missing.pem;\n    ssl_certificate_key ${dir}/missing.key;\n  }\n}\n`;
    writeFileSync(config, text, { mode: 0o640 });
    const nginx = node.testCommand.split(' ')[0] as string;
    const run = runOnboarding(argsFor(node, config, `${nginx} -t -q -p ${node.prefix} -c ${config}`));
    expect(run.exitCode).toBe(5);
    expect(run.summary.action).toBe('restored');
    expect(run.summary.error).toMatch(/config test .* failed after adding the managed keys: .*missing\.pem.*; .* was restored as it was/);
    expect(readFileSync(config, 'utf8')).toBe(text);
    expect(readdirSync(dir).filter((name) => name.startsWith('.'))).toEqual([]);
  });

  it('refuses a key directory on a persistent filesystem', () => {
    const args = nodeOnboardingArgs(node);
    args[args.indexOf('--key-dir') + 1] = join(fleet.baseDir, 'keys');
    args[args.indexOf('--include') + 1] = join(fleet.baseDir, 'keys', 'ticket-keys.conf');
    const before = readFileSync(node.configFile, 'utf8');
    const run = runOnboarding(args);
    expect(run.exitCode).toBe(3);
    expect(run.summary.error).toMatch(/is on \S+, a persistent filesystem: keys there outlive their rotation; use a directory under \/run, or mount a tmpfs there first/);
    expect(run.summary.keysInMemory).toBe(false);
    expect(readFileSync(node.configFile, 'utf8')).toBe(before);
  });

  it('writes the systemd-tmpfiles entry that recreates the key directory at boot', () => {
    const tmpfiles = mkdtempSync(join(fleet.baseDir, 'tmpfiles-'));
    const args = nodeOnboardingArgs(node);
    args[args.indexOf('--tmpfiles-dir') + 1] = tmpfiles;
    expect(runOnboarding(args).exitCode).toBe(0);
    expect(readFileSync(join(tmpfiles, 'tls-ticket-keys.conf'), 'utf8')).toBe(`d ${node.keyDir} 0700 root root -\n`);
  });

  it('installs the boot-time fetch: this script and the applier, a wrapper holding the settings, and a drop-in that runs it before the server starts', async () => {
    const systemd = mkdtempSync(join(fleet.baseDir, 'systemd-'));
    const installDir = mkdtempSync(join(fleet.baseDir, 'lib-'));
    const set = lineage(3)[2]!;
    const keySetFile = join(fleet.memoryDir, 'current-key-set.json');
    writeFileSync(keySetFile, serializeKeySet(set), { mode: 0o600 });
    const args = nodeOnboardingArgs(node);
    args[args.indexOf('--systemd-dir') + 1] = systemd;
    const run = runOnboarding([...args, '--install-dir', installDir, '--fetch-cmd', `cat '${keySetFile}'`, '--fetch-wait', '5']);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(readFileSync(join(systemd, 'nginx.service.d', 'tls-ticket-keys.conf'), 'utf8')).toBe(
      `# Written by onboard-node.sh: the fleet's current TLS ticket keys before nginx starts.\n[Unit]\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nExecStartPre=/bin/bash ${installDir}/before-start-nginx.sh\n`,
    );
    expect(readdirSync(installDir).sort()).toEqual(['apply-ticket-keys.sh', 'before-start-nginx.sh', 'onboard-node.sh', 'ticket_keys']);
    expect(readdirSync(join(installDir, 'ticket_keys'), { recursive: true }).filter((file) => String(file).endsWith('.py')).sort()).toEqual(onboardingFiles().filter((file) => file.startsWith('ticket_keys/')).map((file) => file.slice('ticket_keys/'.length)).sort());

    // What systemd runs at boot, on a node whose server is stopped.
    await fleet.stopNode(node);
    const boot = spawnSync('/bin/bash', [join(installDir, 'before-start-nginx.sh')], { encoding: 'utf8' });
    expect(boot.status, boot.stderr).toBe(0);
    expect(JSON.parse(boot.stdout)).toMatchObject({ action: 'prepared', flavor: 'nginx', keySource: 'store', generation: 3 });
    expect(boot.stderr).toBe('tls-ticket-keys: nginx starts on generation 3, the fleet\'s current key set\n');
    // The fleet's own start finds its (empty) store answering, and keeps what the boot fetch applied.
    expect(await fleet.startNode(node)).toMatchObject({ keySource: 'kept', generation: 3 });
    expect((await freshTicket(node, 'TLSv1.3')).keyName).toBe(currentKey(set).name);
  });

  it('for HAProxy, the drop-in replaces the unit\'s own ExecStartPre (a config check that fails on the missing keys file) with the boot-time fetch, then the config test', async () => {
    const systemd = mkdtempSync(join(fleet.baseDir, 'systemd-'));
    const installDir = mkdtempSync(join(fleet.baseDir, 'lib-'));
    const args = nodeOnboardingArgs(haproxyNode);
    args[args.indexOf('--systemd-dir') + 1] = systemd;
    const install = (testCommand: string) => {
      const withTest = [...args];
      withTest[withTest.indexOf('--test-cmd') + 1] = testCommand;
      expect(runOnboarding([...withTest, '--install-dir', installDir, '--fetch-cmd', 'exit 254', '--fetch-wait', '1']).exitCode).toBe(0);
    };
    install(haproxyNode.testCommand);
    expect(readFileSync(join(systemd, 'haproxy.service.d', 'tls-ticket-keys.conf'), 'utf8')).toContain(`[Service]\nExecStartPre=\nExecStartPre=/bin/bash ${installDir}/before-start-haproxy.sh\n`);
    await fleet.stopNode(haproxyNode);
    rmSync(haproxyNode.keyDir, { recursive: true, force: true });
    const boot = spawnSync('/bin/bash', [join(installDir, 'before-start-haproxy.sh')], { encoding: 'utf8' });
    expect(boot.status, boot.stderr).toBe(0);
    expect(JSON.parse(boot.stdout)).toMatchObject({ action: 'prepared', flavor: 'haproxy', keySource: 'own' });
    // The config test still decides: a failing one fails the start, as the unit's own check did.
    install('exit 3');
    expect(spawnSync('/bin/bash', [join(installDir, 'before-start-haproxy.sh')], { encoding: 'utf8' }).status).toBe(3);
    await fleet.startNode(haproxyNode);
  });

  it('gave the HAProxy bind line the managed tls-ticket-keys file, and refuses a bind line that loads another', () => {
    const config = readFileSync(haproxyNode.configFile, 'utf8');
    expect(config).toMatch(new RegExp(`bind .* ssl crt \\S+ ssl-min-ver TLSv1.2 ssl-max-ver TLSv1.3 tls-ticket-keys ${haproxyNode.includeFile}\\n`));
    const other = join(dir, 'haproxy-other.cfg');
    const text = config.replace(`tls-ticket-keys ${haproxyNode.includeFile}`, 'tls-ticket-keys /etc/haproxy/old-keys');
    writeFileSync(other, text);
    const run = runOnboarding(argsFor(haproxyNode, other, 'exit 1'));
    expect(run.exitCode).toBe(3);
    expect(run.summary.error).toMatch(/the bind line \d+ already loads tls-ticket-keys \/etc\/haproxy\/old-keys: remove it, then run again/);
    expect(readFileSync(other, 'utf8')).toBe(text);
  });

  it('gave the Apache config one IncludeOptional of the managed file at its end; a second run changes nothing; the managed key loads', async () => {
    const config = readFileSync(apacheNode.configFile, 'utf8');
    expect(config.endsWith(`</VirtualHost>\n${MARK}\nIncludeOptional ${apacheNode.includeFile}\n`)).toBe(true);
    const again = runOnboarding(nodeOnboardingArgs(apacheNode));
    expect(again.summary).toMatchObject({ action: 'unchanged', changed: 0 });
    expect(readFileSync(apacheNode.configFile, 'utf8')).toBe(config);
    const [, gen2] = lineage(2, 1, 48);
    expect((await applyTo(fleet, apacheNode, gen2!)).exitCode).toBe(0);
    expect((await freshTicket(apacheNode, 'TLSv1.2')).keyName).toBe(currentKey(gen2!).name);
  });

  it('refuses an Apache config that sets a ticket key file of its own, byte for byte unchanged', () => {
    const text = readFileSync(apacheNode.configFile, 'utf8').replace(`${MARK}\nIncludeOptional ${apacheNode.includeFile}\n`, 'SSLSessionTicketKeyFile /etc/apache2/ticket.key\n');
    const other = join(dir, 'apache-own-key.conf');
    writeFileSync(other, text);
    const run = runOnboarding(argsFor(apacheNode, other, 'exit 1'));
    expect(run.exitCode).toBe(3);
    expect(run.summary.error).toMatch(/line \d+ sets SSLSessionTicketKeyFile: the managed key replaces it; remove that line, then run again/);
    expect(readFileSync(other, 'utf8')).toBe(text);
  });

  it('for Apache, the drop-in goes to its systemd unit as Debian names it, apache2.service', () => {
    const systemd = mkdtempSync(join(fleet.baseDir, 'systemd-'));
    const installDir = mkdtempSync(join(fleet.baseDir, 'lib-'));
    const args = nodeOnboardingArgs(apacheNode);
    args[args.indexOf('--systemd-dir') + 1] = systemd;
    expect(runOnboarding([...args, '--install-dir', installDir, '--fetch-cmd', 'exit 254', '--fetch-wait', '1']).exitCode).toBe(0);
    expect(readdirSync(systemd)).toEqual(['apache2.service.d']);
    expect(readFileSync(join(systemd, 'apache2.service.d', 'tls-ticket-keys.conf'), 'utf8')).toContain(`[Service]\nExecStartPre=/bin/bash ${installDir}/before-start-apache.sh\n`);
  });
});
