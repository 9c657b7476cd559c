import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The secret as a node's role sees it: its versions by id, and which version holds each stage a node may read. */
export interface StubSecret {
  arn: string;
  versions: Iterable<[string, string]>;
  stages: Partial<Record<'AWSCURRENT' | 'AWSPENDING', string>>;
}

/**
 * A stub AWS CLI in `dir` (put `dir` first on PATH) that answers `secretsmanager get-secret-value`
 * from the files `writeStubSecret` leaves there, as AWS answers a node's role, and records each
 * call in `dir/calls`:
 * - another secret, or a request that names neither AWSCURRENT nor AWSPENDING: AccessDeniedException,
 *   since the node policy allows only those (test/cdk/iam.test.ts proves it);
 * - a version id given with a stage "must refer to the same secret version"
 *   (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_GetSecretValue.html; the
 *   page names no error for it: the stub answers InvalidRequestException, and the documents treat
 *   any failure alike);
 * - a stage no version holds: ResourceNotFoundException, "Secrets Manager can't find the resource
 *   that you asked for" (same page).
 */
export function writeAwsCliStub(dir: string): void {
  mkdirSync(dir, { recursive: true });
  writeFileSync(
    join(dir, 'aws'),
    `#!/bin/bash
set -euo pipefail
dir=${dir}
echo "$*" >> "$dir/calls"
[ "$1 $2" = "secretsmanager get-secret-value" ] || { echo "stub aws: $1 $2 is not modelled" >&2; exit 252; }
shift 2
version=
stage=
while [ $# -gt 0 ]; do
  case "$1" in
    --secret-id) [ "$2" = "$(cat "$dir/arn")" ] || { echo "An error occurred (AccessDeniedException) when calling the GetSecretValue operation: not this secret: $2" >&2; exit 254; }; shift 2 ;;
    --version-id) version=$2; shift 2 ;;
    --version-stage) stage=$2; shift 2 ;;
    *) shift ;;
  esac
done
case "$stage" in
  AWSCURRENT | AWSPENDING) ;;
  *) echo "An error occurred (AccessDeniedException) when calling the GetSecretValue operation: no identity-based policy allows the secretsmanager:GetSecretValue action" >&2; exit 254 ;;
esac
holder=$(cat "$dir/stage-$stage")
[ -z "$version" ] || [ "$version" = "$holder" ] || { echo "An error occurred (InvalidRequestException) when calling the GetSecretValue operation: You provided a VersionStage that is not associated to the provided VersionId." >&2; exit 254; }
[ -n "$holder" ] && [ -f "$dir/versions/$holder" ] || { echo "An error occurred (ResourceNotFoundException) when calling the GetSecretValue operation: Secrets Manager can't find the specified secret value for staging label: $stage" >&2; exit 254; }
cat "$dir/versions/$holder"
`,
    { mode: 0o755 },
  );
}

/** The secret's state for the stub in `dir`, replacing what was there (key sets: keep `dir` on a memory filesystem). */
export function writeStubSecret(dir: string, secret: StubSecret): void {
  rmSync(join(dir, 'versions'), { recursive: true, force: true });
  mkdirSync(join(dir, 'versions'), { recursive: true });
  writeFileSync(join(dir, 'arn'), secret.arn);
  for (const [id, value] of secret.versions) writeFileSync(join(dir, 'versions', id), value, { mode: 0o600 });
  for (const stage of ['AWSCURRENT', 'AWSPENDING'] as const) writeFileSync(join(dir, `stage-${stage}`), secret.stages[stage] ?? '');
}
