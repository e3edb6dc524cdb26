/** Setup of every e2e test file: what it started and made is stopped and removed after its own hooks (harness.ts). */
import { afterAll } from 'vitest';
import { stopAndRemoveAll } from './harness.ts';

afterAll(stopAndRemoveAll);
