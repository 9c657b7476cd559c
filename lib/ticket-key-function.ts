import { join } from 'node:path';
import type { Duration } from 'aws-cdk-lib';
import type * as iam from 'aws-cdk-lib/aws-iam';
import * as lambda from 'aws-cdk-lib/aws-lambda';
import * as nodejs from 'aws-cdk-lib/aws-lambda-nodejs';
import type * as logs from 'aws-cdk-lib/aws-logs';
import type { Construct } from 'constructs';
import { PROJECT_ROOT } from '../src/project-root.js';

export interface TicketKeyFunctionProps extends Pick<nodejs.NodejsFunctionProps, 'vpc' | 'vpcSubnets' | 'securityGroups'> {
  description: string;
  /** Its handler's file in lambda/. */
  handlerFile: string;
  memorySize: number;
  timeout: Duration;
  role: iam.IRole;
  /** Its own log group, written by its role alone. */
  logGroup: logs.ILogGroup;
  /** Its Powertools service name: the `service` dimension of every metric it publishes. */
  service: string;
  environment: Record<string, string>;
}

/** One of the project's functions: Node.js 24 on arm64, bundled here with the local esbuild, minified, no source map. */
export function ticketKeyFunction(scope: Construct, id: string, props: TicketKeyFunctionProps): nodejs.NodejsFunction {
  const { handlerFile, service, environment, ...rest } = props;
  return new nodejs.NodejsFunction(scope, id, {
    ...rest,
    entry: join(PROJECT_ROOT, 'lambda', handlerFile),
    handler: 'handler',
    runtime: lambda.Runtime.NODEJS_24_X,
    architecture: lambda.Architecture.ARM_64,
    projectRoot: PROJECT_ROOT,
    depsLockFilePath: join(PROJECT_ROOT, 'package-lock.json'),
    bundling: { forceDockerBundling: false, minify: true, sourceMap: false, target: 'node24' },
    environment: { ...environment, POWERTOOLS_SERVICE_NAME: service },
  });
}
