import { isGatewayError } from '../core/errors.ts';

/** Prints an error as `error [EGW_…]: message` (no stack for expected errors) and exits 2. */
export function failWith(error: unknown): never {
  if (isGatewayError(error)) process.stderr.write(`error [${error.code}]: ${error.message}\n`);
  else process.stderr.write(`error: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(2);
}
