import { Duration } from 'aws-cdk-lib';
import * as logs from 'aws-cdk-lib/aws-logs';
import { isKeyLength } from '../src/core/keyset.js';
import { parseDuration } from '../src/core/policy.js';
import { isServerFlavor, supportedFlavors, type ServerFlavor } from '../src/flavors/index.js';
import { parseNodeList } from '../src/verify/nodes.js';
import type { TicketKeyRotationProps } from './ticket-key-rotation.js';
import { SettingError } from './setting-error.js';

/** The context keys the app reads (cdk.json defaults, `-c key=value` overrides). */
export const SETTING_KEYS = [
  'targetTagKey',
  'targetTagValue',
  'nodeRoleArns',
  'rotationInterval',
  'ticketLifetime',
  'keyLength',
  'flavor',
  'keyDirectory',
  'includePath',
  'testCommand',
  'configDumpCommand',
  'reloadCommand',
  'allowPersistentKeyDirectory',
  'runtimeSocket',
  'maxConcurrency',
  'maxErrors',
  'convergenceSchedule',
  'logRetentionDays',
  'verifierVpcId',
  'verifierSubnetIds',
  'verifierPort',
  'verifierSni',
  'verifierStaticNodes',
  'verifierPeersPerNode',
  'canarySchedule',
  'alarmEmail',
  'skippedNodesAlarmThreshold',
] as const;

export type SettingKey = (typeof SETTING_KEYS)[number];

const RATE = /^(\d+%?)$/;

/** Builds the construct's props from context values, naming the setting that is wrong. */
export function propsFromContext(get: (key: SettingKey) => unknown): TicketKeyRotationProps {
  const text = (key: SettingKey): string | undefined => {
    const value = get(key);
    if (value === undefined || value === null || value === '') return undefined;
    return String(value);
  };
  const need = (key: SettingKey): string => {
    const value = text(key);
    if (value === undefined) throw new SettingError(`context setting ${key} is required: set it in cdk.json or pass -c ${key}=VALUE`);
    return value;
  };
  const duration = (key: SettingKey): Duration | undefined => {
    const value = text(key);
    return value === undefined ? undefined : Duration.seconds(parseDuration(value, `context setting ${key}`));
  };
  const rate = (key: SettingKey): string | undefined => {
    const value = text(key);
    if (value !== undefined && !RATE.test(value)) throw new SettingError(`context setting ${key}="${value}" must be a count like 10 or a percentage like 25%`);
    return value;
  };
  const keyLength = text('keyLength') === undefined ? undefined : Number(text('keyLength'));
  if (keyLength !== undefined && !isKeyLength(keyLength)) throw new SettingError(`context setting keyLength="${text('keyLength')}" is not supported: use 80 or 48`);
  const flavor = text('flavor');
  if (flavor !== undefined && !isServerFlavor(flavor)) throw new SettingError(`context setting flavor="${flavor}" is not supported: use ${supportedFlavors()}`);
  const retentionDays = text('logRetentionDays');
  if (retentionDays !== undefined && !Object.values(logs.RetentionDays).includes(Number(retentionDays))) {
    throw new SettingError(`context setting logRetentionDays="${retentionDays}" is not a CloudWatch Logs retention (1, 3, 5, 7, 14, 30, 60, 90, … 3653)`);
  }
  const list = (key: SettingKey): string[] | undefined => {
    const value = text(key);
    return value === undefined ? undefined : value.split(',').map((item) => item.trim()).filter((item) => item !== '');
  };
  const whole = (key: SettingKey, min: number, max: number): number | undefined => {
    const value = text(key);
    if (value === undefined) return undefined;
    const number = Number(value);
    if (!Number.isInteger(number) || number < min || number > max) throw new SettingError(`context setting ${key}="${value}" must be a whole number from ${min} to ${max}`);
    return number;
  };
  const yesNo = (key: SettingKey): boolean | undefined => {
    const value = text(key);
    if (value === undefined) return undefined;
    if (value !== 'true' && value !== 'false') throw new SettingError(`context setting ${key}="${value}" must be true or false`);
    return value === 'true';
  };
  const email = text('alarmEmail');
  if (email !== undefined && !/^[^@\s]+@[^@\s]+\.[^@\s]+$/.test(email)) throw new SettingError(`context setting alarmEmail="${email}" is not an email address`);
  const staticNodes = list('verifierStaticNodes');
  if (staticNodes !== undefined) {
    try {
      parseNodeList(staticNodes);
    } catch (error) {
      throw new SettingError(`context setting verifierStaticNodes: ${(error as Error).message}`);
    }
  }
  const optional = <T>(key: string, value: T | undefined): Record<string, T> => (value === undefined ? {} : { [key]: value });
  return {
    targetTagKey: need('targetTagKey'),
    targetTagValue: need('targetTagValue'),
    ...optional('nodeRoleArns', list('nodeRoleArns')),
    ...optional('rotationInterval', duration('rotationInterval')),
    ...optional('ticketLifetime', duration('ticketLifetime')),
    ...optional('keyLength', keyLength),
    ...optional('flavor', flavor as ServerFlavor | undefined),
    ...optional('keyDirectory', text('keyDirectory')),
    ...optional('includePath', text('includePath')),
    ...optional('testCommand', text('testCommand')),
    ...optional('configDumpCommand', text('configDumpCommand')),
    ...optional('reloadCommand', text('reloadCommand')),
    ...optional('allowPersistentKeyDirectory', yesNo('allowPersistentKeyDirectory')),
    ...optional('runtimeSocket', text('runtimeSocket')),
    ...optional('maxConcurrency', rate('maxConcurrency')),
    ...optional('maxErrors', rate('maxErrors')),
    ...optional('convergenceSchedule', text('convergenceSchedule')),
    ...optional('logRetention', retentionDays === undefined ? undefined : (Number(retentionDays) as logs.RetentionDays)),
    ...optional('verifierVpcId', text('verifierVpcId')),
    ...optional('verifierSubnetIds', list('verifierSubnetIds')),
    ...optional('verifierPort', whole('verifierPort', 1, 65535)),
    ...optional('verifierSni', text('verifierSni')),
    ...optional('verifierStaticNodes', staticNodes),
    ...optional('verifierPeersPerNode', whole('verifierPeersPerNode', 1, 1000)),
    ...optional('canarySchedule', text('canarySchedule')),
    ...optional('alarmEmail', email),
    ...optional('skippedNodesAlarmThreshold', whole('skippedNodesAlarmThreshold', 0, 100_000)),
  };
}
