// Which schedule starts the rotations for an interval, and how late a rotation may take effect
// relative to its schedule: what retention must cover so that no ticket younger than its
// lifetime is refused.

const HOUR = 3600;
const DAY = 24 * HOUR;

/**
 * Secrets Manager's own schedule: "You can rotate a secret as often as every four hours. If you
 * use a rate() expression, the rotation window starts at midnight", and it "rotates your secret
 * any time during" the window
 * (https://docs.aws.amazon.com/secretsmanager/latest/apireference/API_RotationRulesType.html).
 */
export const SECRETS_MANAGER_MIN_INTERVAL_SECONDS = 4 * HOUR;
/**
 * The rotation window set on Secrets Manager's own schedule (its Duration). Without one a rate in
 * days may rotate at any hour of the UTC day.
 */
export const SECRETS_MANAGER_WINDOW_SECONDS = HOUR;
/**
 * How long EventBridge Scheduler retries one start (its maxEventAge, at least 60 s:
 * https://docs.aws.amazon.com/scheduler/latest/APIReference/API_RetryPolicy.html); a start that
 * cannot get through in that time is left to the next one.
 */
export const SCHEDULER_MAX_EVENT_AGE_SECONDS = 5 * 60;
/**
 * With no flexible time window the Scheduler starts "with 60 second precision": at 1:00 it
 * invokes "between 1:00:00 and 1:00:59" (https://docs.aws.amazon.com/scheduler/latest/UserGuide/schedule-types.html).
 */
export const SCHEDULER_PRECISION_SECONDS = 60;
/** From a rotation's start until every node encrypts with its key: createSecret, then setSecret within its Lambda timeout. */
export const ROTATION_APPLY_SECONDS = 15 * 60;

export type RotationSchedule =
  | {
      /** Secrets Manager's own schedule, with a window of `windowSeconds` from the start of each period. */
      kind: 'secrets-manager';
      expression: string;
      /** RotationRules Duration, in whole hours ("1h"). */
      duration: string;
      /** How much later than its period's start a rotation may take effect. */
      latenessSeconds: number;
    }
  | {
      /** EventBridge Scheduler calling RotateSecret, for intervals Secrets Manager's own schedule cannot keep evenly. */
      kind: 'scheduler';
      expression: string;
      latenessSeconds: number;
    };

function rate(seconds: number): string {
  const [amount, unit] = seconds % DAY === 0 ? [seconds / DAY, 'day'] : seconds % HOUR === 0 ? [seconds / HOUR, 'hour'] : [seconds / 60, 'minute'];
  return `rate(${amount} ${unit}${amount === 1 ? '' : 's'})`;
}

/**
 * Secrets Manager's own schedule when its periods fall evenly: whole days, or whole hours of at
 * least 4 that divide a day (its windows start at midnight, so another number of hours would
 * give a short last period each day). Every other interval is started by the Scheduler.
 */
export function rotationScheduleFor(intervalSeconds: number): RotationSchedule {
  if (!Number.isInteger(intervalSeconds) || intervalSeconds <= 0 || intervalSeconds % 60 !== 0) {
    throw new Error(`rotation interval must be a whole number of minutes (got ${intervalSeconds} seconds)`);
  }
  const evenHours = intervalSeconds >= SECRETS_MANAGER_MIN_INTERVAL_SECONDS && intervalSeconds % HOUR === 0 && DAY % intervalSeconds === 0;
  if (evenHours || intervalSeconds % DAY === 0) {
    return { kind: 'secrets-manager', expression: rate(intervalSeconds), duration: `${SECRETS_MANAGER_WINDOW_SECONDS / HOUR}h`, latenessSeconds: SECRETS_MANAGER_WINDOW_SECONDS + ROTATION_APPLY_SECONDS };
  }
  return { kind: 'scheduler', expression: rate(intervalSeconds), latenessSeconds: SCHEDULER_PRECISION_SECONDS + SCHEDULER_MAX_EVENT_AGE_SECONDS + ROTATION_APPLY_SECONDS };
}
