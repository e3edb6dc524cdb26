/** Setup of every edge and edge-auth test file: each test starts from an empty farm (see emptyFarm in helpers.ts). */
import { beforeEach } from 'vitest';
import { emptyFarmUnlessShared } from './helpers.ts';

beforeEach(emptyFarmUnlessShared);
