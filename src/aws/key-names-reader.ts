import { GetParameterCommand, ParameterNotFound, type SSMClient } from '@aws-sdk/client-ssm';
import { parseKeyNames, type PublishedKeyNames } from '../core/key-names.js';

/** The key names the rotation published in its parameter; none when it holds none (yet). */
export async function readKeyNames(client: SSMClient, name: string): Promise<PublishedKeyNames> {
  try {
    const response = await client.send(new GetParameterCommand({ Name: name }));
    return parseKeyNames(response.Parameter?.Value ?? '');
  } catch (error) {
    if (error instanceof ParameterNotFound) return {};
    throw error;
  }
}
