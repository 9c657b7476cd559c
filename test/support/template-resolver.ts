/**
 * A synthesized CloudFormation template with its intrinsic functions resolved as CloudFormation
 * would in one account and region, so that its policies can be evaluated against real ARNs.
 * Physical names are the logical ids, unless the template names the resource.
 */
export const ACCOUNT = '123456789012';
export const REGION = 'eu-west-1';
export const PARTITION = 'aws';

type Json = unknown;
interface Resource {
  Type: string;
  Properties?: Record<string, Json>;
}

const PSEUDO: Record<string, string> = { 'AWS::AccountId': ACCOUNT, 'AWS::Region': REGION, 'AWS::Partition': PARTITION, 'AWS::URLSuffix': 'amazonaws.com', 'AWS::StackName': 'TicketKeyRotation' };

export class ResolvedTemplate {
  readonly resources: Record<string, Resource>;

  constructor(template: { Resources: Record<string, Resource> }) {
    this.resources = template.Resources;
  }

  private name(id: string, property: string): string {
    const named = this.resources[id]?.Properties?.[property];
    return typeof named === 'string' ? named : id;
  }

  /** What `Ref` returns for each resource type (AWS::*::* "Return values" in the CloudFormation reference). */
  ref(id: string): string {
    const resource = this.resources[id];
    if (resource === undefined) throw new Error(`Ref to unknown resource ${id}`);
    switch (resource.Type) {
      case 'AWS::SecretsManager::Secret':
        return `arn:${PARTITION}:secretsmanager:${REGION}:${ACCOUNT}:secret:${this.name(id, 'Name')}-AbCdEf`;
      case 'AWS::SNS::Topic':
        return `arn:${PARTITION}:sns:${REGION}:${ACCOUNT}:${this.name(id, 'TopicName')}`;
      case 'AWS::IAM::ManagedPolicy':
        return `arn:${PARTITION}:iam::${ACCOUNT}:policy/${this.name(id, 'ManagedPolicyName')}`;
      case 'AWS::Lambda::Function':
        return this.name(id, 'FunctionName');
      case 'AWS::Logs::LogGroup':
        return this.name(id, 'LogGroupName');
      case 'AWS::IAM::Role':
        return this.name(id, 'RoleName');
      case 'AWS::SSM::Parameter':
        return this.name(id, 'Name');
      default:
        return id;
    }
  }

  getAtt(id: string, attribute: string): string {
    const resource = this.resources[id];
    if (resource === undefined) throw new Error(`GetAtt on unknown resource ${id}`);
    const key = `${resource.Type}.${attribute}`;
    switch (key) {
      case 'AWS::Lambda::Function.Arn':
        return `arn:${PARTITION}:lambda:${REGION}:${ACCOUNT}:function:${this.ref(id)}`;
      case 'AWS::Logs::LogGroup.Arn':
        return `arn:${PARTITION}:logs:${REGION}:${ACCOUNT}:log-group:${this.ref(id)}:*`;
      case 'AWS::KMS::Key.Arn':
        return `arn:${PARTITION}:kms:${REGION}:${ACCOUNT}:key/${id}`;
      case 'AWS::IAM::Role.Arn':
        return `arn:${PARTITION}:iam::${ACCOUNT}:role/${this.ref(id)}`;
      case 'AWS::SNS::Topic.TopicArn':
        return this.ref(id);
      case 'AWS::CloudWatch::Alarm.Arn':
        return `arn:${PARTITION}:cloudwatch:${REGION}:${ACCOUNT}:alarm:${this.name(id, 'AlarmName')}`;
      case 'AWS::Scheduler::Schedule.Arn':
        return `arn:${PARTITION}:scheduler:${REGION}:${ACCOUNT}:schedule/default/${this.name(id, 'Name')}`;
      case 'AWS::EC2::SecurityGroup.GroupId':
      case 'AWS::EC2::VPC.DefaultSecurityGroup':
        return `sg-${id.toLowerCase().slice(0, 17)}`;
      default:
        throw new Error(`GetAtt ${key} is not modelled: add it to ResolvedTemplate`);
    }
  }

  /** A value with every intrinsic function resolved. */
  resolve(value: Json): Json {
    if (Array.isArray(value)) return value.map((item) => this.resolve(item));
    if (value === null || typeof value !== 'object') return value;
    const entries = Object.entries(value as Record<string, Json>);
    if (entries.length === 1) {
      const [fn, argument] = entries[0]!;
      switch (fn) {
        case 'Ref':
          return PSEUDO[argument as string] ?? this.ref(argument as string);
        case 'Fn::GetAtt': {
          const [id, attribute] = Array.isArray(argument) ? argument : String(argument).split('.');
          return this.getAtt(id as string, attribute as string);
        }
        case 'Fn::Join': {
          const [separator, parts] = argument as [string, Json[]];
          return (this.resolve(parts) as string[]).join(separator);
        }
        case 'Fn::Select': {
          const [index, list] = argument as [number, Json];
          return (this.resolve(list) as Json[])[Number(index)];
        }
        case 'Fn::Split': {
          const [separator, text] = argument as [string, Json];
          return String(this.resolve(text)).split(separator);
        }
        case 'Fn::Sub': {
          const text = Array.isArray(argument) ? (argument[0] as string) : (argument as string);
          const variables = Array.isArray(argument) ? (this.resolve(argument[1]) as Record<string, string>) : {};
          return text.replace(/\$\{([^}]+)\}/g, (_, name: string) => {
            if (name in variables) return variables[name]!;
            if (name in PSEUDO) return PSEUDO[name]!;
            const [id, attribute] = name.split('.');
            return attribute === undefined ? this.ref(id!) : this.getAtt(id!, attribute);
          });
        }
      }
      if (fn.startsWith('Fn::')) throw new Error(`${fn} is not modelled: add it to ResolvedTemplate`);
    }
    return Object.fromEntries(entries.map(([key, item]) => [key, this.resolve(item)]));
  }

  /** The resolved properties of every resource of `type`, by logical id. */
  ofType(type: string): [string, Record<string, Json>][] {
    return Object.entries(this.resources)
      .filter(([, resource]) => resource.Type === type)
      .map(([id, resource]) => [id, this.resolve(resource.Properties ?? {}) as Record<string, Json>]);
  }

  /** The one resource of `type` whose logical id starts with `prefix`. */
  one(type: string, prefix: string): { id: string; properties: Record<string, Json> } {
    const matches = this.ofType(type).filter(([id]) => id.startsWith(prefix));
    if (matches.length !== 1) throw new Error(`expected one ${type} named ${prefix}*, found ${matches.length}`);
    return { id: matches[0]![0], properties: matches[0]![1] };
  }
}
