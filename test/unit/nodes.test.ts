import { describe, expect, it } from 'vitest';
import { parseNodeAddress, parseNodeList } from '../../src/verify/nodes.js';

describe('node addresses', () => {
  it('reads HOST:PORT[/SNI], named after the address, or NAME=HOST:PORT[/SNI] with a name of its own (an instance id)', () => {
    expect(parseNodeAddress('10.0.1.5:443')).toEqual({ name: '10.0.1.5:443', host: '10.0.1.5', port: 443 });
    expect(parseNodeAddress('[::1]:8443/www.example.com')).toEqual({ name: '[::1]:8443', host: '::1', port: 8443, servername: 'www.example.com' });
    expect(parseNodeAddress('i-0123456789abcdef0=10.0.1.5:443/www.example.com')).toEqual({ name: 'i-0123456789abcdef0', host: '10.0.1.5', port: 443, servername: 'www.example.com' });
  });

  it('refuses what is not an address, and a name or an address given twice', () => {
    for (const bad of ['10.0.1.5', '10.0.1.5:0', '10.0.1.5:70000', '=10.0.1.5:443', 'a b=10.0.1.5:443', 'host:443/sni/extra']) {
      expect(() => parseNodeAddress(bad), bad).toThrow(/is not \[NAME=\]HOST:PORT\[\/SNI\]/);
    }
    expect(() => parseNodeList(['i-01=10.0.1.5:443', 'i-01=10.0.1.6:443'])).toThrow('node i-01 is listed twice');
    expect(() => parseNodeList(['10.0.1.5:443', '10.0.1.5:443/other'])).toThrow('node 10.0.1.5:443 is listed twice');
  });
});
